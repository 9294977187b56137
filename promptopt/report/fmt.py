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
    ok = len(board.finished)
    if not ok:
        return None
    train, evaluation = board.seconds
    text = (f"Time: {train / 60:.1f} min optimising, {evaluation / 60:.1f} min evaluating, summed over {ok} finished "
            f"run{'s' if ok != 1 else ''} (as each run measured them).")  # fmt: skip
    counted = [r for r in board.runs if r.status == "ok" and r.train_flops is not None]
    if counted:
        text += (f" Compute: {flops(sum(r.train_flops for r in counted))} FLOPs optimising, "
                 f"{flops(sum(r.eval_flops or 0 for r in counted))} evaluating, over the {len(counted)} runs that "
                 "counted them.")  # fmt: skip
    return text


def score_ci(mean: float | None, low: float | None, high: float | None) -> str:
    """``81.0 [77.1, 84.6]`` (percent): the mean and its 95% interval; the mean alone when there is no interval."""
    if mean is None:
        return "–"
    return percent(mean) if low is None or high is None else f"{percent(mean)} [{percent(low)}, {percent(high)}]"


def interval(row) -> tuple[float | None, float | None]:
    """The interval a row's score is shown with: over seeds where it has several (how much the score moves with the
    training sample), else the bootstrap over the test examples."""
    if row.seed_low is not None:
        return row.seed_low, row.seed_high
    return row.ci_low, row.ci_high


def row_score(row) -> str:
    """A row's :func:`score_ci`, saying on how many examples the interval is when that is fewer than were scored
    (seeds scored on different examples share only some)."""
    text = score_ci(row.mean, row.ci_low, row.ci_high)
    return f"{text} (CI on n={row.ci_n})" if row.ci_low is not None and row.ci_n < row.n_eval else text


def points(diff: float | None, low: float | None = None, high: float | None = None) -> str:
    """A difference of scores in percentage points, signed: ``+6.0``, or ``+6.0 [1.2, 10.4]`` with its interval."""
    if diff is None:
        return "–"
    text = f"{100 * diff:+.1f}"
    return text if low is None or high is None else f"{text} [{100 * low:+.1f}, {100 * high:+.1f}]"


def pvalue(p: float | None) -> str:
    """``0.031``, ``<0.001``, ``1``, or ``–`` when no test could be made."""
    if p is None:
        return "–"
    if p < 0.001:
        return "<0.001"
    return "1" if p >= 1 else f"{p:.3f}"


def flops(value: float | None) -> str:
    """``1.2e12``; ``–`` when the run did not count its compute."""
    if value is None:
        return "–"
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def verdict(row) -> str:
    """``best``, ``tied with a, b``, ``▼ below the top`` / ``▲ above the top`` (significantly), or empty (what the
    significance tests say of a row)."""
    if row.best:
        return "best"
    if row.tied:
        return "tied with " + ", ".join(row.tied_with)
    return {"▼": "▼ below the top", "▲": "▲ above the top"}.get(row.mark, "")


def per_class(curves: dict) -> bool:
    """Whether a data-efficiency curve's points all have a per-class size (``shots``, a k-shot split): then its
    axis is training examples per class, else training examples in all (``n_train``)."""
    return all(r.shots is not None for rows in curves.values() for r in rows)


def size_of(row, per_class_axis: bool) -> float | None:
    """A row's place on a data-efficiency axis (:func:`per_class`)."""
    return row.shots if per_class_axis else row.n_train


def seed_score(row) -> str:
    """A row's mean over seeds with its 95% t-interval over seeds, ``81.0 [77.1, 84.6]`` (percent)."""
    return score_ci(row.mean, row.seed_low, row.seed_high)


def kind(row) -> str:
    return row.kind or "–"


def templates(row) -> str:
    """The template a row's seeds used, on one line; ``N templates`` when they differ; ``–`` when unknown."""
    if not row.templates:
        return "–"
    return one_line(row.templates[0]) if len(row.templates) == 1 else f"{len(row.templates)} templates (see Prompts)"


def comparison_test(c) -> str:
    """``McNemar exact (b=12, c=3)`` or ``paired bootstrap``; ``no shared examples`` when none was possible."""
    if c.p is None:
        return "no shared examples"
    if c.discordant_a is not None:
        seeds = f", mean over {c.seeds} seeds" if c.seeds > 1 else ""
        return f"{c.test} (b={c.discordant_a}, c={c.discordant_b}{seeds})"
    return c.test


SIGNIFICANCE_NOTE = (
    "Score: the task's metric on its evaluation split, mean over the seeds that finished, with its 95% t-interval "
    "over seeds (mean ± t(0.975, n-1) · s/√n, cut to [0, 100]; none for one seed). Test CI: the 95% bootstrap interval over "
    "examples (1,000 resamples, seeded; several seeds: each resample scored with every seed and averaged). Kind: "
    "what the method changes (hard: text; soft: input vectors; deep: keys/values at every layer; adapter: model "
    "weights; baseline: computed by the report). Verdict: *best* only when the top method beats every other row "
    "significantly (Holm-adjusted p < 0.05 in the significance table); otherwise the rows not significantly "
    "different from the top are *tied* with it, ▼ marks a row significantly below the top method and ▲ a baseline "
    "significantly above it; baselines are compared but never the top. Comparisons are paired, on the evaluation "
    "examples both methods were scored on (n): the difference's paired-bootstrap interval, and for accuracy an exact McNemar test on the discordant examples (b: only the "
    "first right, c: only the second; counts per seed averaged over the seeds both ran), else the paired-bootstrap "
    "p; Holm-corrected over the pairs of each task. Compute: estimated FLOPs (2 x parameters x positions, forward "
    "and backward), mean over seeds; – where a run did not count them."
)
