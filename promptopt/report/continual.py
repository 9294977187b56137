"""Continual-learning runs (``continual.json``) as Markdown, HTML, JSON or CSV: the accuracy matrix and its summary.

    from promptopt.report.continual import load_continual, render_continual
    print(render_continual(load_continual(["runs/cl-progressive", "runs/cl-sequential"]), "md"))

A ``continual.json`` holds ``tasks`` (in training order), ``strategy``, ``initial`` (``b[j]``: score of the untrained
prompt on task ``j``), ``matrix`` (``A[i][j]``: score on task ``j`` after training tasks ``0..i``, ``null`` where
not evaluated) and ``metrics`` (``average_accuracy``, ``bwt``, ``fwt``, ``forgetting``), as written by the
``continual`` plugin, whose docstring defines them. Rendering is pure: dicts in, text out.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from ..errors import ConfigError, PromptoptError
from . import fmt

CONTINUAL_FILE = "continual.json"
CONTINUAL_REPORT_SCHEMA = "promptopt.continual-report"


def find_continual(dirs: list[str | Path]) -> list[Path]:
    """The ``continual.json`` files in ``dirs`` or one level below, in order, each once."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        for path in [d / CONTINUAL_FILE, *sorted(d.glob(f"*/{CONTINUAL_FILE}"))]:
            if path.is_file() and path.resolve() not in {p.resolve() for p in found}:
                found.append(path)
    return found


def load_continual(dirs: list[str | Path]) -> list[dict]:
    """Every continual run found by :func:`find_continual`, each with ``"run_dir"`` added."""
    runs = []
    for path in find_continual(dirs):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise PromptoptError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        for key in ("tasks", "matrix", "initial"):
            if key not in data:
                raise PromptoptError(f"{path}: field {key!r} is missing; not a continual-learning result")
        runs.append({**data, "run_dir": str(path.parent)})
    return runs


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _title(run: dict) -> str:
    status = "" if run.get("complete", True) else " (unfinished)"
    return f"{run.get('strategy', '?')}: {' → '.join(run['tasks'])} (seed {run.get('seed', '?')}){status}"


def _rows(run: dict) -> list[list[str]]:
    """Matrix rows as text: 'before training', then 'after TASK' per trained stage."""
    rows = [["before training", *(fmt.percent(v) for v in run["initial"])]]
    for i, row in enumerate(run["matrix"]):
        if i < len(run.get("stages", run["matrix"])):
            rows.append([f"after {run['tasks'][i]}", *(fmt.percent(v) for v in row)])
    return rows


def _summary(run: dict) -> list[tuple[str, str]]:
    m = run.get("metrics") or {}
    forgetting = m.get("forgetting") or []
    out = [("average accuracy (last row)", fmt.percent(m.get("average_accuracy"))),
           ("backward transfer (BWT)", _signed(m.get("bwt"))),
           ("forward transfer (FWT)", _signed(m.get("fwt")))]  # fmt: skip
    if forgetting:
        out.append(("forgetting per task", ", ".join(f"{t} {_signed(v)}" for t, v in zip(run["tasks"], forgetting))))
    if run.get("seconds") is not None:
        out.append(("time", f"{run['seconds']:.1f}s (train {run.get('train_seconds', 0):.1f}s, "
                            f"evaluate {run.get('eval_seconds', 0):.1f}s)"))  # fmt: skip
    return out


def render_markdown(runs: list[dict], title: str) -> str:
    from .markdown import md

    out = [f"# {md(title)}", ""]
    for run in runs:
        n_eval = run.get("n_eval") or {}
        out += [f"## {md(_title(run))}", "", f"- Model: {md(run.get('model', '?'))}"]
        if run.get("run_dir"):
            out.append(f"- Run: {md(run['run_dir'])}")
        if n_eval:
            out.append("- Evaluation examples: " + ", ".join(f"{md(t)} {n}" for t, n in n_eval.items()))
        out += ["", "| score (%) | " + " | ".join(md(t) for t in run["tasks"]) + " |",
                "|---|" + "---|" * len(run["tasks"])]  # fmt: skip
        out += ["| " + " | ".join(md(c) for c in row) + " |" for row in _rows(run)]
        out.append("")
        out += [f"- {label}: {md(value)}" for label, value in _summary(run)]
        out.append("")
    return "\n".join(out)


def render_html(runs: list[dict], title: str) -> str:
    e = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
             "th:first-child,td:first-child{text-align:left}"
             "</style>", f"<h1>{e(title)}</h1>"]  # fmt: skip
    for run in runs:
        parts.append(f"<h2>{e(_title(run))}</h2><p>Model: {e(str(run.get('model', '?')))}</p>")
        head = "".join(f"<th>{e(t)}</th>" for t in run["tasks"])
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in _rows(run))
        parts.append(f"<table><tr><th>score (%)</th>{head}</tr>{body}</table><ul>")
        parts += [f"<li>{e(label)}: {e(value)}</li>" for label, value in _summary(run)]
        parts.append("</ul>")
    return "\n".join(parts) + "\n"


def render_json(runs: list[dict], title: str) -> str:
    return json.dumps({"schema": CONTINUAL_REPORT_SCHEMA, "title": title, "runs": runs}, indent=2) + "\n"


def render_csv(runs: list[dict], title: str) -> str:
    """One line per evaluated cell: ``run_dir, strategy, seed, after`` (a task, or empty for the initial row),
    ``task, score``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run_dir", "strategy", "seed", "after", "task", "score"])
    for run in runs:
        ident = [run.get("run_dir", ""), run.get("strategy", ""), run.get("seed", "")]
        for j, value in enumerate(run["initial"]):
            writer.writerow([*ident, "", run["tasks"][j], "" if value is None else value])
        for i, row in enumerate(run["matrix"]):
            for j, value in enumerate(row):
                if value is not None:
                    writer.writerow([*ident, run["tasks"][i], run["tasks"][j], value])
    return buf.getvalue()


_RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json, "csv": render_csv}


def render_continual(runs: list[dict], fmt_name: str = "md", title: str | None = None) -> str:
    """The runs' matrices and summaries in one format: ``md``, ``html``, ``json`` or ``csv``."""
    if fmt_name not in _RENDERERS:
        raise ConfigError(f"report format {fmt_name!r} is not one of {list(_RENDERERS)}")
    return _RENDERERS[fmt_name](runs, title or "promptopt continual learning")
