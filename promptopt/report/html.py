"""The leaderboard as one self-contained HTML file: inline CSS and inline SVG charts, no script, no network.

A Content-Security-Policy meta tag forbids every fetch (``default-src 'none'``), so even a mistake in this file
cannot make the page load anything. Every dataset string and prompt text passes through :func:`esc`.
"""

from __future__ import annotations

from . import fmt
from .inspection import hard_token_segments, soft_summary
from .model import Leaderboard, Row
from .svg import MARKERS, _unique, bar_chart, colors_for, efficiency_chart, esc, line_chart, scatter_chart

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2433; background: #f6f7f9;
       margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 8px; } h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid #e3e6eb;
  padding-bottom: 4px; } h3 { font-size: 15px; margin: 20px 0 6px; }
ul.meta { list-style: none; padding: 0; margin: 0 0 8px; color: #4a5568; } ul.meta li { margin: 2px 0; }
code, .prompt { font: 12.5px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.prompt { white-space: pre-wrap; word-break: break-word; background: #f3f4f6; padding: 2px 5px; border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0 6px; width: 100%; font-size: 13px; }
th, td { padding: 4px 7px; border-bottom: 1px solid #e8eaee; text-align: left; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; font-size: 13px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; } td.num { white-space: nowrap; }
tr.best td { background: #eef8f0; } .star { color: #1a7f37; font-weight: 700; }
.failed { color: #b42318; } .note { color: #5a6473; font-size: 12.5px; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; }
svg.chart { background: #fff; border: 1px solid #e3e6eb; border-radius: 6px; max-width: 100%; height: auto; }
svg .chart-title { font: 600 14px system-ui, sans-serif; fill: #1d2433; }
svg .tick, svg .legend, svg .group { font: 11.5px system-ui, sans-serif; fill: #4a5568; }
svg .group { font-weight: 600; fill: #1d2433; } svg .value { font: 10.5px system-ui, sans-serif; fill: #1d2433; }
svg .axis-label { font: 12px system-ui, sans-serif; fill: #4a5568; }
svg .grid { stroke: #eceef2; stroke-width: 1; } svg .axis { stroke: #9aa3af; stroke-width: 1; }
svg .errbar { stroke: #1d2433; stroke-width: 1.3; fill: none; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
"""


def _cell(text, cls: str = "") -> str:
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _table(header: list[tuple[str, str]], rows: list[str]) -> str:
    head = "".join(f'<th class="{c}">{esc(h)}</th>' if c else f"<th>{esc(h)}</th>" for h, c in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def _results_table(board: Leaderboard, model: str) -> str:
    variants = any(r.variant for r in board.rows)
    rows = []
    for task in board.tasks:
        for r in board.rows_of(model, task):
            score = esc(fmt.seed_score(r))
            if r.best:
                star = '<span class="star" title="beats every other method of this task significantly">★</span>'
                score = f"{star} <b>{score}</b>"
            seeds = esc(fmt.seeds(r.ok, r.runs))
            if r.failed:
                seeds = f'<span class="failed">{seeds}</span>'
            template = f"<span class=prompt>{esc(fmt.templates(r))}</span>" if r.templates else esc(fmt.templates(r))
            rows.append(f'<tr class="{"best" if r.best else ""}">' + "".join([
                _cell(esc(task)), *([_cell(esc(r.variant or "–"))] if variants else []), _cell(esc(r.method)),
                _cell(esc(fmt.kind(r))), _cell(esc(fmt.metric_label(r.metric))), _cell(score, "num"),
                _cell(esc(fmt.row_score(r)), "num"), _cell(esc(fmt.verdict(r))),
                _cell(esc(fmt.number(None if r.std is None else 100 * r.std)), "num"), _cell(seeds, "num"),
                _cell(esc(fmt.integer(r.n_eval)), "num"), _cell(esc(fmt.number(r.n_train, 0)), "num"), _cell(template),
                _cell(esc(fmt.integer(r.trainable_parameters)), "num"), _cell(esc(fmt.flops(r.train_flops)), "num"),
                _cell(esc(fmt.number(r.train_seconds)), "num"), _cell(esc(fmt.flops(r.eval_flops)), "num"),
                _cell(esc(fmt.number(r.eval_examples_per_second)), "num"),
                _cell(esc(fmt.number(r.peak_memory_mb, 0)), "num")]) + "</tr>")  # fmt: skip
    header = [("Task", ""), *([("Variant", "")] if variants else []), ("Method", ""), ("Kind", ""), ("Metric", ""),
              ("Score (%, mean over seeds [95% t-interval])", "num"), ("Test CI (%, bootstrap)", "num"),
              ("Verdict", ""), ("Seed std", "num"), ("Seeds ok", "num"),
              ("Eval n", "num"), ("Train n", "num"), ("Template", ""), ("Trainable params", "num"),
              ("Train FLOPs", "num"), ("Train time (s)", "num"), ("Eval FLOPs", "num"),
              ("Eval throughput (ex/s)", "num"), ("Peak memory (MB)", "num")]  # fmt: skip
    return _table(header, rows)


def _significance_table(board: Leaderboard, model: str) -> str:
    comparisons = [c for task in board.tasks for c in board.comparisons_of(model, task)]
    if not comparisons:
        return ""
    variants = any(r.variant for r in board.rows)
    rows = [f'<tr class="{"best" if c.significant else ""}">' + "".join([
        _cell(esc(c.task)), *([_cell(esc(c.variant or "–"))] if variants else []),
        _cell(f"{esc(c.a)} vs {esc(c.b)}"), _cell(esc(fmt.integer(c.n)), "num"),
        _cell(esc(fmt.points(c.diff, c.low, c.high)), "num"), _cell(esc(fmt.pvalue(c.p)), "num"),
        _cell(esc(fmt.pvalue(c.p_holm)), "num"), _cell(esc(fmt.comparison_test(c)))]) + "</tr>"
        for c in comparisons]  # fmt: skip
    header = [("Task", ""), *([("Variant", "")] if variants else []), ("Pair", ""), ("n", "num"),
              ("Difference (points) [95% CI]", "num"), ("p", "num"), ("Holm p", "num"), ("Test", "")]  # fmt: skip
    return f"<h3>Significance: {esc(model)}</h3>" + _table(header, rows)


def _group(row: Row) -> str:
    return f"{row.task} · {row.variant}" if row.variant else row.task


def _charts(board: Leaderboard) -> list[str]:
    methods = board.methods
    colors = colors_for(methods)
    out = []
    for model in board.models:
        rows: dict[tuple[str, str], Row] = {(_group(r), r.method): r for r in board.rows if r.model == model}
        groups = _unique(_group(r) for r in board.rows if r.model == model)
        # the interval the table gives: over seeds where a row has several, else over the test examples
        values = {k: (r.mean, *fmt.interval(r)) for k, r in rows.items()}
        suffix = f" ({model})" if len(board.models) > 1 else ""
        title = f"Score per method and task{suffix}: bars 95% intervals over seeds (over test examples for one seed)"
        out.append(bar_chart(title, groups, methods, values, colors, "score (%), 95% interval"))
    out += _efficiency_charts(board, colors)
    markers = {t: MARKERS[i % len(MARKERS)] for i, t in enumerate(board.tasks)}
    points = [{"x": r.trainable_parameters, "y": r.mean, "series": r.method, "group": r.task,
               "tip": f"{r.task} · {r.method}: {fmt.score_ci(r.mean, r.ci_low, r.ci_high)}% with "
                      f"{r.trainable_parameters:,} trainable parameters, {fmt.flops(r.train_flops)} training FLOPs ({r.model})"}
              for r in board.rows if r.mean is not None]  # fmt: skip
    if points:
        out.append(scatter_chart("Score against trainable parameters", points, colors, markers,
                                 "trainable parameters (log scale; 0 at the left edge)", "score (%)"))  # fmt: skip
    curves = _curve_charts(board, colors)
    if curves:
        out += curves
    else:
        out.append('<p class="note">No run logged a learning curve (records with a "step" and a loss or selection '
                   "score in history.jsonl).</p>")  # fmt: skip
    return out


def _efficiency_charts(board: Leaderboard, colors: dict[str, str]) -> list[str]:
    """Score against training examples, one line per method (:meth:`Leaderboard.efficiency`)."""
    out = []
    many_models = len(board.models) > 1
    for model, task, rest, curves in board.efficiency():
        each = fmt.per_class(curves)
        lines = [{"series": method, "points": [
            {"x": fmt.size_of(r, each), "y": r.mean, "low": fmt.interval(r)[0], "high": fmt.interval(r)[1],
             "tip": f"{method}, {fmt.number(r.n_train, 0)} training examples ({r.variant}): "
                    f"{fmt.score_ci(r.mean, *fmt.interval(r))}%"} for r in rows]}
            for method, rows in curves.items()]  # fmt: skip
        title = f"Data efficiency: {task}" + (f" · {rest}" if rest else "") + (f" ({model})" if many_models else "")
        axis = "training examples per class (log scale)" if each else "training examples (log scale)"
        out.append(efficiency_chart(title, lines, colors, axis, "score (%), 95% interval over seeds"))
    return out


def _curve_charts(board: Leaderboard, colors: dict[str, str]) -> list[str]:
    out = []
    many_models = len(board.models) > 1
    for model in board.models:
        for task in board.tasks:
            runs = [r for r in board.runs if r.model == model and r.task == task and r.status == "ok" and r.curves]
            for name, label in (("loss", "training loss"), ("select", "selection score")):
                lines = [{"series": r.method, "points": r.curves[name], "tip": f"{r.method} seed {r.seed}: {label}"}
                         for r in runs if len(r.curves.get(name) or []) >= 1]  # fmt: skip
                if not lines:
                    continue
                values = [p[1] for ln in lines for p in ln["points"]]
                percent = name == "select" and all(0.0 <= v <= 1.0 for v in values)
                title = f"Learning curves: {label} on {task}" + (f" ({model})" if many_models else "")
                out.append(line_chart(title, lines, colors, "step", label + (" (%)" if percent else ""),
                                      percent=percent))  # fmt: skip
    return out


def _failures(board: Leaderboard) -> str:
    rows = []
    for r in board.failures:
        error = '<span class="failed">' + esc(r.error or "unknown error") + "</span>"
        rows.append(f"<tr>{_cell(esc(r.model))}{_cell(esc(r.task))}{_cell(esc(r.method))}{_cell(r.seed, 'num')}"
                    f"{_cell(error)}{_cell('<code>' + esc(r.run_dir) + '</code>')}</tr>")  # fmt: skip
    return _table([("Model", ""), ("Task", ""), ("Method", ""), ("Seed", "num"), ("Error", ""), ("Run directory", "")],
                  rows)  # fmt: skip


def _prompts(board: Leaderboard) -> str:
    variants = any(r.variant for r in board.rows)
    rows = [f"<tr>{_cell(esc(r.task))}{_cell(esc(r.variant or '–')) if variants else ''}{_cell(esc(r.method))}"
            f"{_cell(r.seed, 'num')}{_cell(esc(fmt.percent(r.score)), 'num')}"
            f"{_cell(f'<span class=prompt>{esc(r.prompt_text)}</span>')}</tr>"
            for r in board.runs if r.status == "ok"]  # fmt: skip
    return _table([("Task", ""), *([("Variant", "")] if variants else []), ("Method", ""), ("Seed", "num"),
                   ("Score (%)", "num"), ("Prompt", "")], rows)  # fmt: skip


def _inspection(board: Leaderboard) -> list[str]:
    soft = [(r, soft_summary(r.inspection)) for r in board.runs if r.status == "ok" and r.inspection]
    soft = [(r, s) for r, s in soft if s is not None]
    hard = [(r, hard_token_segments(r.inspection)) for r in board.runs if r.status == "ok" and r.inspection]
    hard = [(r, h) for r, h in hard if h]
    if not soft and not hard:
        return []
    out = ["<h2>Trained prompts, inspected</h2>"]
    if soft:
        out.append('<p class="note">Each soft vector is replaced by its nearest vocabulary token (cosine similarity); '
                   "the resulting <i>projected</i> prompt is re-scored on the split named. The gap between the soft "
                   "and projected scores says how faithful the readable version is. The <i>readable</i> prompt is "
                   "the projection after a short word-token search towards the soft prompt's own predictions on "
                   "training data (kept only if it scores at least as well as the projection). Norms are compared "
                   "with the mean norm of the model's token embeddings.</p>")  # fmt: skip
        rows = []
        for r, s in soft:
            readable = s["readable"] or {}
            rows.append("<tr>" + "".join([
                _cell(esc(r.task)), _cell(esc(r.method)), _cell(r.seed, "num"), _cell(s["vectors"], "num"),
                _cell(f"{esc(fmt.number(s['mean_norm'], 2))} ({esc(fmt.number(s['embedding_norm'], 2))})", "num"),
                _cell(f"{esc(s['split'] or '–')} ({s['n']})"), _cell(esc(fmt.percent(s["soft_score"])), "num"),
                _cell(esc(fmt.percent(s["projected_score"])), "num"), _cell(esc(fmt.number(s["gap_points"])), "num"),
                _cell(esc(fmt.percent(readable.get("score"))), "num"),
                _cell(esc(fmt.number(readable.get("gap_points"))), "num"),
                _cell(f"<span class=prompt>{esc(s['projected_text'] or '')}</span>"),
                _cell(f"<span class=prompt>{esc(readable.get('text') or '')}</span>")]) + "</tr>")  # fmt: skip
        out.append(_table([("Task", ""), ("Method", ""), ("Seed", "num"), ("Vectors", "num"),
                           ("Mean norm (vocab mean)", "num"), ("Split (n)", ""), ("Soft (%)", "num"),
                           ("Projected (%)", "num"), ("Gap (points)", "num"), ("Readable (%)", "num"),
                           ("Readable gap (points)", "num"), ("Projected prompt", ""), ("Readable prompt", "")],
                          rows))  # fmt: skip
        for i, (r, s) in enumerate(soft):
            drops = {(a["segment"], a["index"], mode): a["drop"] for mode, rows in s["ranking"].items() for a in rows}
            modes = list(s["ranking"])
            vrows = []
            for seg in s["segments"]:
                for v in seg["vectors"]:
                    near = " ".join(f"<span class=prompt>{esc(repr(n['token']))}</span>&nbsp;{n['cosine']:.2f}"
                                    for n in v["nearest"])  # fmt: skip
                    read = "<br>".join(f"L{lr['layer']}: " + " ".join(
                        f"<span class=prompt>{esc(repr(t['token']))}</span>&nbsp;{t['prob']:.2f}" for t in lr["top"][:3])
                        for lr in s["lens"].get((seg["name"], v["index"]), []))  # fmt: skip
                    cut = [_cell(esc(fmt.number(100 * drops[seg["name"], v["index"], m]))
                                 if (seg["name"], v["index"], m) in drops else "–", "num") for m in modes]  # fmt: skip
                    norm = f"{v['norm']:.2f}"
                    vrows.append(f"<tr>{_cell(esc(seg['name']))}{_cell(v['index'], 'num')}{_cell(norm, 'num')}"
                                 f"{''.join(cut)}{_cell(near)}{_cell(read or '–')}</tr>")  # fmt: skip
            opened = " open" if i == 0 else ""  # the first one shows what the others hold
            extra = []
            for mode, rows in s["ranking"].items():
                top = ", ".join(f"{esc(a['segment'])}[{a['index']}] {esc(fmt.number(100 * a['drop']))}" for a in rows[:5])
                extra.append(f"<p>Largest drops when a vector is ablated ({esc(mode)}), in points: {top}</p>")
            if s["eval"]:
                scores = ", ".join(f"{esc(k)} {esc(fmt.percent(v))}%" for k, v in s["eval"].items())
                extra.append(f"<p>On {esc(s['eval_split'] or '–')} (n={s['eval_n']}): {scores}</p>")
            if s["self_description"] is not None:
                extra.append(f"<p>Self-description (anecdotal): <span class=prompt>[vectors] means:"
                             f"{esc(s['self_description'])}</span></p>")  # fmt: skip
            if s["wayward"]:
                w = s["wayward"]
                extra.append(f"<p>Waywardness (lambda {esc(w['lam'])}, {w['steps']} steps): soft "
                             f"{esc(fmt.percent(w['soft_score']))}%, pulled to the text "
                             f"{esc(fmt.percent(w['wayward_score']))}%. {esc(w['sentence'])}</p>")  # fmt: skip
            extra += [f"<p>Note: {esc(n)}</p>" for n in s["notes"]]
            header = [("Segment", ""), ("Vector", "num"), ("Norm", "num"),
                      *((f"Drop, {m} (points)", "num") for m in modes), ("Nearest tokens (cosine)", ""),
                      ("Logit lens (prob)", "")]  # fmt: skip
            out.append(f"<details{opened}><summary>{esc(r.method)} · {esc(r.task)} · seed {r.seed} ({esc(r.model)}): nearest "
                       f"tokens of each vector, its ablation and its logit lens</summary>"
                       + _table(header, vrows) + "".join(extra) + "</details>")  # fmt: skip
    if hard:
        rows = []
        for r, segs in hard:
            text = "<br>".join(f"{esc(seg['name'])}: <span class=prompt>{esc(seg.get('text', ''))}</span> = "
                               f"<code>{esc(seg['ids'])}</code>" for seg in segs)  # fmt: skip
            rows.append(f"<tr>{_cell(esc(r.task))}{_cell(esc(r.method))}{_cell(r.seed, 'num')}{_cell(text)}</tr>")
        out.append("<h3>Discrete token segments</h3>")
        out.append(_table([("Task", ""), ("Method", ""), ("Seed", "num"), ("Tokens (text = ids)", "")], rows))
    return out


def _meta(board: Leaderboard) -> str:
    meta = board.meta
    items = []
    for key, label in (("command", "Command"), ("machine", "Machine"), ("generated", "Generated"),
                       ("promptopt", "promptopt"), ("progress", "Progress")):  # fmt: skip
        if meta.get(key):
            value = f"<code>{esc(meta[key])}</code>" if key == "command" else esc(meta[key])
            items.append(f"<li><b>{label}:</b> {value}</li>")
    settings = meta.get("settings") or {}
    if settings:
        items.append("<li><b>Settings:</b> " + ", ".join(f"{esc(k)}={esc(v)}" for k, v in settings.items()) + "</li>")
    for note in meta.get("notes") or []:
        items.append(f"<li>{esc(note)}</li>")
    total = fmt.total_time(board)
    if total:
        items.append(f"<li>{esc(total)}</li>")
    return '<ul class="meta">' + "".join(items) + "</ul>" if items else ""


def render_html(board: Leaderboard) -> str:
    """The whole leaderboard as one HTML document that loads nothing (see the module docstring)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(board.title)}</title><style>{_CSS}</style></head>", "<body><main>",
             f"<h1>{esc(board.title)}</h1>", _meta(board)]  # fmt: skip
    for model in board.models:
        parts += [f"<h2>Results: {esc(model)}</h2>", _results_table(board, model), _significance_table(board, model)]
    parts.append(f'<p class="note">★ best of its task, significantly. {esc(fmt.SIGNIFICANCE_NOTE)} Seed std: sample '
                 "standard deviation of the score over seeds (points). Train n: training examples the method was "
                 "given. Template: the one each row used (– when a method chose among several and the run does not "
                 "say which). Train time: the method's optimisation, mean over seeds. Throughput: evaluation examples "
                 "per second. Peak memory: GPU peak allocation, or on CPU the process's peak resident memory.</p>")
    parts += ["<h2>Charts</h2>", '<div class="charts">', *_charts(board), "</div>"]
    if board.failures:
        parts += ["<h2>Failed runs</h2>", _failures(board)]
    if any(r.status == "ok" for r in board.runs):
        parts += ["<h2>Prompts</h2>", _prompts(board)]
    parts += _inspection(board)
    parts += [f'<p class="note">Generated by promptopt (report schema {board.schema_version}); this page contains no '
              "script and loads nothing.</p>", "</main></body></html>"]  # fmt: skip
    return "\n".join(p for p in parts if p) + "\n"
