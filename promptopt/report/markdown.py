"""The leaderboard as Markdown (GitHub-flavoured). Every dataset string and prompt text is escaped."""

from __future__ import annotations

import html

from . import fmt
from .inspection import hard_token_segments, soft_summary
from .model import Leaderboard, Row

_MD_SPECIAL = "`*_[]|~"


def md(text) -> str:
    """Text safe inside a Markdown table cell: HTML entities escaped, Markdown punctuation backslash-escaped."""
    out = html.escape(str(text), quote=False).replace("\\", "\\\\")
    for ch in _MD_SPECIAL:
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ").replace("\r", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _score_cell(row: Row) -> str:
    text = fmt.seed_score(row)
    return f"**{text}** ★" if row.best else text


def _has_variants(board: Leaderboard) -> bool:
    return any(r.variant for r in board.rows)


def results_lines(board: Leaderboard, model: str) -> list[str]:
    """The results table of one model: score with interval, verdict, variant, template, compute and time."""
    variants = _has_variants(board)
    body = []
    for task in board.tasks:
        for row in board.rows_of(model, task):
            body.append([md(task), *([md(row.variant or "–")] if variants else []), md(row.method), md(fmt.kind(row)),
                         md(fmt.metric_label(row.metric)), _score_cell(row), fmt.row_score(row),
                         md(fmt.verdict(row)),
                         fmt.number(None if row.std is None else 100 * row.std), fmt.seeds(row.ok, row.runs),
                         fmt.integer(row.n_eval), fmt.number(row.n_train, 0), md(fmt.templates(row)),
                         fmt.integer(row.trainable_parameters), fmt.flops(row.train_flops),
                         fmt.number(row.train_seconds), fmt.flops(row.eval_flops), fmt.number(row.eval_examples_per_second),
                         fmt.number(row.peak_memory_mb, 0)])  # fmt: skip
    header = ["Task", *(["Variant"] if variants else []), "Method", "Kind", "Metric",
              "Score (%, mean over seeds [95% t-interval])", "Test CI (%, bootstrap)", "Verdict",
              "Seed std", "Seeds ok", "Eval n", "Train n", "Template", "Trainable params", "Train FLOPs",
              "Train time (s)", "Eval FLOPs", "Eval throughput (ex/s)", "Peak memory (MB)"]  # fmt: skip
    return _table(header, body)


def significance_lines(board: Leaderboard, model: str) -> list[str]:
    """The pairwise comparisons of one model's methods, task by task."""
    comparisons = [c for task in board.tasks for c in board.comparisons_of(model, task)]
    if not comparisons:
        return []
    variants = _has_variants(board)
    body = [[md(c.task), *([md(c.variant or "–")] if variants else []), f"{md(c.a)} vs {md(c.b)}", fmt.integer(c.n),
             fmt.points(c.diff, c.low, c.high), fmt.pvalue(c.p), fmt.pvalue(c.p_holm), md(fmt.comparison_test(c))]
            for c in comparisons]  # fmt: skip
    header = ["Task", *(["Variant"] if variants else []), "Pair", "n", "Difference (points) [95% CI]", "p", "Holm p",
              "Test"]  # fmt: skip
    return [f"### Significance: {md(model)}", ""] + _table(header, body) + [""]


def meta_lines(board: Leaderboard) -> list[str]:
    meta = board.meta
    out = []
    for key, label in (("command", "Command"), ("machine", "Machine"), ("generated", "Generated"),
                       ("promptopt", "promptopt"), ("progress", "Progress")):  # fmt: skip
        if meta.get(key):
            value = meta[key]
            out.append(f"- {label}: `{value}`" if key == "command" and "`" not in str(value) else f"- {label}: {md(value)}")
    settings = meta.get("settings") or {}
    if settings:
        out.append("- Settings: " + ", ".join(f"{md(k)}={md(v)}" for k, v in settings.items()))
    for note in meta.get("notes") or []:
        out.append(f"- {md(note)}")
    total = fmt.total_time(board)
    if total:
        out.append(f"- {total}")
    return out


def efficiency_lines(board: Leaderboard) -> list[str]:
    """Data-efficiency tables: score [95% interval over seeds, else over test examples] per method and
    training-set size (:meth:`Leaderboard.efficiency`)."""
    out = []
    for model, task, rest, curves in board.efficiency():
        each = fmt.per_class(curves)
        sizes = sorted({fmt.size_of(r, each) for rows in curves.values() for r in rows})
        title = f"### Data efficiency: {md(task)}" + (f" · {md(rest)}" if rest else "") + f" ({md(model)})"
        body = [[md(method), *[next((fmt.score_ci(r.mean, *fmt.interval(r)) for r in rows if fmt.size_of(r, each) == n), "–")
                               for n in sizes]] for method, rows in curves.items()]  # fmt: skip
        out += [title, "", "Score (%) with its 95% t-interval over seeds (over test examples for a single seed).",
                ""] + _table(["Method", *[f"{fmt.number(n, 0)} {'per class' if each else 'train'}" for n in sizes]], body) + [""]
    return out


def render_markdown(board: Leaderboard) -> str:
    """The leaderboard as Markdown: results and significance per model, failed runs, prompts, and the soft-prompt
    inspection."""
    lines = [f"# {md(board.title)}", ""]
    meta = meta_lines(board)
    if meta:
        lines += meta + [""]
    for model in board.models:
        lines += [f"## Results: {md(model)}", ""]
        lines += results_lines(board, model)
        lines.append("")
        lines += significance_lines(board, model)
    lines += efficiency_lines(board)
    lines += [
        "★ best of its task, significantly. " + fmt.SIGNIFICANCE_NOTE + " Seed std: sample standard deviation of the "
        "score over seeds (points). Train n: training examples the method was given. Template: the one each row "
        "used (– when a method chose among several and the run does not say which). Train time: the method's "
        "optimisation, mean over seeds. Throughput: evaluation examples per second. Peak memory: GPU peak "
        "allocation, or on CPU the process's peak resident memory.",
        "",
    ]
    failures = board.failures
    if failures:
        lines += ["## Failed runs", ""]
        lines += _table(["Model", "Task", "Method", "Seed", "Error"],
                        [[md(r.model), md(r.task), md(r.method), str(r.seed), md(r.error or "unknown error")]
                         for r in failures])  # fmt: skip
        lines.append("")
    ok_runs = [r for r in board.runs if r.status == "ok"]
    if ok_runs:
        variants = _has_variants(board)
        lines += ["## Prompts", ""]
        lines += _table(["Model", "Task", *(["Variant"] if variants else []), "Method", "Seed", "Score (%)", "Prompt"],
                        [[md(r.model), md(r.task), *([md(r.variant or "–")] if variants else []), md(r.method),
                          str(r.seed), fmt.percent(r.score), md(fmt.one_line(r.prompt_text))]
                         for r in ok_runs])  # fmt: skip
        lines.append("")
    lines += _inspection_lines(board)
    return "\n".join(lines).rstrip() + "\n"


def _inspection_lines(board: Leaderboard) -> list[str]:
    soft = [(r, soft_summary(r.inspection)) for r in board.runs if r.inspection]
    soft = [(r, s) for r, s in soft if s is not None]
    hard = [(r, hard_token_segments(r.inspection)) for r in board.runs if r.inspection]
    hard = [(r, h) for r, h in hard if h]
    if not soft and not hard:
        return []
    lines = ["## Trained prompts, inspected", ""]
    if soft:
        distilled = any(s["readable"] for _, s in soft)  # records without a readable prompt (v1) render as before
        lines += [
            "Each soft vector replaced by its nearest vocabulary token (cosine similarity) gives the *projected* prompt, "
            "re-scored on the split named; the gap between the two scores says how faithful the readable version is."
            + (" The *readable* prompt is the projection after a short word-token search towards the soft prompt's "
               "own predictions on training data, kept only if it scores at least as well as the projection."
               if distilled else ""),
            "",
        ]  # fmt: skip
        header = ["Model", "Task", "Method", "Seed", "Vectors", "Mean norm (vocab mean)", "Split (n)", "Soft (%)",
                  "Projected (%)", "Gap (points)"] + (["Readable (%)", "Readable gap (points)"] if distilled else [])
        header += ["Projected prompt"] + (["Readable prompt"] if distilled else [])
        rows = []
        for r, s in soft:
            readable = s["readable"] or {}
            row = [md(r.model), md(r.task), md(r.method), str(r.seed), str(s["vectors"]),
                   f"{fmt.number(s['mean_norm'], 2)} ({fmt.number(s['embedding_norm'], 2)})",
                   f"{md(s['split'] or '–')} ({s['n']})", fmt.percent(s["soft_score"]),
                   fmt.percent(s["projected_score"]), fmt.number(s["gap_points"])]  # fmt: skip
            if distilled:
                row += [fmt.percent(readable.get("score")), fmt.number(readable.get("gap_points"))]
            row.append(md(fmt.one_line(s["projected_text"] or "")))
            if distilled:
                row.append(md(fmt.one_line(readable.get("text") or "")))
            rows.append(row)
        lines += _table(header, rows)
        lines.append("")
        for r, s in soft:
            what = ", with ablation and logit lens" if s["ranking"] or s["lens"] else ""
            lines += [f"<details><summary>{md(r.method)} · {md(r.task)} · seed {r.seed}: nearest tokens per vector{what}"
                      "</summary>", ""]  # fmt: skip
            drops = {(a["segment"], a["index"], mode): a["drop"] for mode, rows in s["ranking"].items() for a in rows}
            for seg in s["segments"]:
                for v in seg["vectors"]:
                    near = ", ".join(f"{md(repr(n['token']))} {n['cosine']:.2f}" for n in v["nearest"])
                    cut = "".join(f"; drop ({mode}) {fmt.number(100 * drops[seg['name'], v['index'], mode])}"
                                  for mode in s["ranking"] if (seg["name"], v["index"], mode) in drops)  # fmt: skip
                    lines.append(f"- {md(seg['name'])}[{v['index']}] norm {v['norm']:.2f}: {near}{cut}")
                    for lr in s["lens"].get((seg["name"], v["index"]), []):
                        read = ", ".join(f"{md(repr(t['token']))} {t['prob']:.2f}" for t in lr["top"][:3])
                        lines.append(f"  - lens L{lr['layer']}: {read}")
            lines.append("")
            for mode, rows in s["ranking"].items():
                top = ", ".join(f"{md(a['segment'])}[{a['index']}] {fmt.number(100 * a['drop'])}" for a in rows[:5])
                lines.append(f"Largest drops when a vector is ablated ({md(mode)}), in points: {top}")
                lines.append("")
            if s["eval"]:
                scores = ", ".join(f"{md(k)} {fmt.percent(v)}%" for k, v in s["eval"].items())
                lines += [f"On {md(s['eval_split'] or '–')} (n={s['eval_n']}): {scores}", ""]
            if s["self_description"] is not None:
                lines += [f"Self-description (anecdotal): [vectors] means:{md(fmt.one_line(s['self_description']))}", ""]
            if s["wayward"]:
                w = s["wayward"]
                lines += [f"Waywardness (lambda {w['lam']}, {w['steps']} steps): soft {fmt.percent(w['soft_score'])}%, "
                          f"pulled to the text {fmt.percent(w['wayward_score'])}%. {md(w['sentence'])}", ""]  # fmt: skip
            lines += [f"Note: {md(n)}" for n in s["notes"]] + ([""] if s["notes"] else [])
            lines += ["</details>", ""]
    if hard:
        lines += _table(["Model", "Task", "Method", "Seed", "Token segments (text = ids)"],
                        [[md(r.model), md(r.task), md(r.method), str(r.seed),
                          "; ".join(f"{md(seg['name'])}: {md(repr(seg['text']))} = {md(seg['ids'])}" for seg in h)]
                         for r, h in hard])  # fmt: skip
        lines.append("")
    return lines
