"""Number formatting shared by every output format, so Markdown, HTML and CSV agree."""

from __future__ import annotations

METRIC_LABELS = {"accuracy": "accuracy", "p_at_1": "P@1", "macro_f1": "macro-F1"}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def score(mean: float | None, std: float | None) -> str:
    """``83.4 ± 1.2`` (percent); the ``±`` part only when there are two or more seeds."""
    if mean is None:
        return "–"
    return percent(mean) if std is None else f"{percent(mean)} ± {100 * std:.1f}"


def integer(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def seeds(ok: int, runs: int) -> str:
    return f"{ok}/{runs}"


def one_line(text: str) -> str:
    """Prompt text on one line: newlines and tabs shown as ``\\n`` and ``\\t``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def total_time(board) -> str | None:
    """``Time: 18.3 min optimising, 9.1 min evaluating, summed over 24 finished runs.``, or None without runs."""
    ok = sum(r.status == "ok" for r in board.runs)
    if not ok:
        return None
    train, evaluation = board.seconds
    return (f"Time: {train / 60:.1f} min optimising, {evaluation / 60:.1f} min evaluating, summed over {ok} finished "
            f"run{'s' if ok != 1 else ''} (as each run measured them).")  # fmt: skip
