"""What a leaderboard holds: one entry per run, one row per (model, task, method, variant), the paired comparisons of
the methods of each task, and the JSON form of all three.

Everything here is pure: entries in, a :class:`Leaderboard` out. Reading run directories is done elsewhere
(:func:`promptopt.suite.leaderboard.collect_runs`). The statistics are :mod:`promptopt.report.stats`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields

from promptopt.errors import PromptoptError
from . import stats

REPORT_SCHEMA = "promptopt.suite.leaderboard"
REPORT_SCHEMA_VERSION = 3
MAJORITY = "majority"  # baseline rows the report makes itself (kind "baseline"), see build_leaderboard
ZERO_SHOT = "zero-shot-manual"
BASELINE = "baseline"
SIGNIFICANCE = 0.05  # Holm-adjusted p below this: a real difference


@dataclass
class RunEntry:
    """One run as the report sees it. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why).

    ``score`` is the task's metric (``metric``) on the evaluation split, a fraction in [0, 1]. ``curves`` maps a
    curve name (``"loss"``, ``"select"``) to ``[step, value]`` pairs from the run's ``history.jsonl``;
    ``inspection`` is the JSON written by ``promptopt inspect`` (``inspect.json``), if any.

    ``ids``/``golds``/``preds`` are the per-example evaluation outcomes from ``predictions.jsonl`` (empty when the
    run has none). ``n_train``, ``shots`` and ``max_train`` describe its training set (from ``config.json``),
    ``templates`` the templates the method was given, ``template_index`` the index among the task's templates when
    it was given one, ``template`` the one it used (empty when unknown). ``train_flops``/``eval_flops`` are the
    estimated FLOPs from ``result.json``'s ``compute`` (None when the run did not count them). ``variant`` is set
    by :func:`build_leaderboard`. ``kind`` is what the method changes (``hard``, ``soft``, ``deep``, ``adapter``;
    ``baseline`` for the report's own rows; empty when unknown), ``kshot`` the k-shot split it ran on (``"16-13"``)
    and ``train_labels`` the label counts of its training set.
    """

    model: str
    task: str
    method: str
    seed: int
    status: str = "ok"
    error: str | None = None
    metric: str = "accuracy"
    score: float | None = None
    select_score: float | None = None
    n_eval: int = 0
    trainable_parameters: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    eval_examples_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    prompt_text: str = ""
    run_dir: str = ""
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    inspection: dict | None = None
    ids: list[str] = field(default_factory=list)
    golds: list[str] = field(default_factory=list)
    preds: list[str] = field(default_factory=list)
    n_train: int | None = None
    shots: int | None = None
    max_train: int | None = None
    templates: list[str] = field(default_factory=list)
    template_index: int | None = None
    template: str = ""
    train_flops: float | None = None
    eval_flops: float | None = None
    variant: str = ""
    kind: str = ""
    kshot: str | None = None
    train_labels: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.task, self.method, self.variant)

    @property
    def outcomes(self) -> dict[str, tuple[str, str]]:
        """Example id -> (gold, prediction)."""
        return {i: (g, p) for i, g, p in zip(self.ids, self.golds, self.preds)}


@dataclass
class Row:
    """The runs of one method on one task with one model and one variant (training-set size, template), over seeds.

    ``mean``/``std`` are over the successful seeds (``std`` is the sample standard deviation, None for fewer than
    two); time, throughput, parameters, training-set size and FLOPs are means over those seeds (FLOPs over the seeds
    that counted them, None if none did), peak memory their maximum.

    ``ci_low``/``ci_high``: the 95% percentile bootstrap interval of the score over the ``ci_n`` examples that every
    successful seed has predictions for. With several seeds the statistic resampled is the seed mean: each resample
    of examples is scored with every seed's predictions and the scores are averaged (for accuracy that is exactly the
    mean over the resampled examples of each example's mean correctness over seeds).

    ``best``: the top row of its (model, task, variant) beats every other row significantly (Holm-adjusted p <
    0.05 in :attr:`Leaderboard.comparisons`). Otherwise ``tied`` marks the rows not significantly worse than the
    top (the top included when any is), and ``tied_with`` names them (for the top: the rows tied with it; for the
    others: the top). The top is the best method row: baseline rows (``kind == "baseline"``) are compared with it
    but never are it. ``mark`` is ``"▼"`` for a row significantly below the top, ``"▲"`` for a baseline
    significantly above it, else empty.

    ``seed_low``/``seed_high``: the 95% t-interval of the mean over seeds (:func:`promptopt.report.stats.t_interval`
    of ``scores``, cut to [0, 1]), None for fewer than two seeds: how much the score moves with the seed (for k-shot runs: with
    the training split), where ``ci_low``/``ci_high`` say how much it moves with the test examples.
    """

    model: str
    task: str
    method: str
    metric: str
    runs: int
    ok: int
    scores: list[float]
    mean: float | None
    std: float | None
    n_eval: int
    trainable_parameters: int
    train_seconds: float | None
    eval_examples_per_second: float | None
    peak_memory_mb: float | None
    best: bool = False
    variant: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    ci_n: int = 0
    n_train: float | None = None
    shots: int | None = None
    max_train: int | None = None
    train_flops: float | None = None
    eval_flops: float | None = None
    templates: list[str] = field(default_factory=list)
    tied: bool = False
    tied_with: list[str] = field(default_factory=list)
    kind: str = ""
    seed_low: float | None = None
    seed_high: float | None = None
    mark: str = ""

    @property
    def failed(self) -> int:
        return self.runs - self.ok


@dataclass
class Comparison:
    """Method ``a`` (the higher mean) against ``b`` on the same examples of one (model, task, variant).

    ``n``: the example ids every successful seed of both has predictions for; ``diff``/``low``/``high``: the
    difference of their scores on those examples (seed means, as in :class:`Row`) and its 95% paired-bootstrap
    interval. ``test`` is ``"McNemar exact"`` for accuracy-type metrics: ``discordant_a`` (only ``a`` right) and
    ``discordant_b`` (only ``b`` right) are the discordant counts per seed that both have, averaged over those
    ``seeds`` and rounded to the nearest integer (halves to even), so that the test's sample size stays the number
    of examples however many seeds ran (pooling the counts of seeds would count one example once per seed, as if
    the seeds were independent samples; a deterministic method would make every difference look significant).
    Otherwise (other metrics, or no seed in common) ``test`` is ``"paired bootstrap"`` with its two-sided p
    (:func:`promptopt.report.stats.bootstrap_p`). ``p_holm`` is Holm-adjusted over the comparisons of the group.
    ``p``/``p_holm`` are None when the two share no example.
    """

    model: str
    task: str
    variant: str
    a: str
    b: str
    metric: str
    n: int
    seeds: int = 0
    diff: float | None = None
    low: float | None = None
    high: float | None = None
    test: str = ""
    discordant_a: int | None = None
    discordant_b: int | None = None
    p: float | None = None
    p_holm: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < SIGNIFICANCE and (self.diff or 0.0) > 0


@dataclass
class Leaderboard:
    """A rendered-ready leaderboard: rows (aggregates), the runs behind them, the paired comparisons, a title and
    free-form ``meta`` (``command``, ``machine``, ``generated``, ``settings``, ``notes``)."""

    title: str
    rows: list[Row]
    runs: list[RunEntry]
    meta: dict = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    schema_version: int = REPORT_SCHEMA_VERSION

    @property
    def models(self) -> list[str]:
        return _unique(r.model for r in self.rows)

    @property
    def tasks(self) -> list[str]:
        return _unique(r.task for r in self.rows)

    @property
    def methods(self) -> list[str]:
        return sorted({r.method for r in self.rows})

    @property
    def failures(self) -> list[RunEntry]:
        return [r for r in self.runs if r.status != "ok"]

    @property
    def finished(self) -> list[RunEntry]:
        """The runs that ran and finished (not the report's own :data:`MAJORITY` rows)."""
        return [r for r in self.runs if r.status == "ok" and r.method != MAJORITY]

    @property
    def seconds(self) -> tuple[float, float]:
        """Optimisation and evaluation time summed over the finished runs (as each run measured them)."""
        finished = self.finished
        return sum(r.train_seconds for r in finished), sum(r.eval_seconds for r in finished)

    def rows_of(self, model: str, task: str) -> list[Row]:
        return [r for r in self.rows if r.model == model and r.task == task]

    def variants_of(self, model: str, task: str) -> list[str]:
        return _unique(r.variant for r in self.rows_of(model, task))

    def comparisons_of(self, model: str, task: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.model == model and c.task == task]

    def efficiency(self) -> list[tuple[str, str, str, dict[str, list[Row]]]]:
        """Data-efficiency curves: ``(model, task, rest, {method: rows by training examples})`` for every (model,
        task, variant less its size part) where a method has scores at two or more training-set sizes (``n_train``);
        methods with fewer (e.g. one that uses no training examples) are left out."""
        out = []
        for model, task, rest in _unique((r.model, r.task, _without_size(r)) for r in self.rows):
            rows = [r for r in self.rows if (r.model, r.task, _without_size(r)) == (model, task, rest)
                    and r.mean is not None and r.n_train is not None]  # fmt: skip
            lines = {m: sorted((r for r in rows if r.method == m), key=lambda r: r.n_train)
                     for m in _unique(r.method for r in rows)}  # fmt: skip
            lines = {m: rs for m, rs in lines.items() if len({r.n_train for r in rs}) >= 2}
            if lines:
                out.append((model, task, rest, lines))
        return out

    def to_json(self) -> dict:
        return {"schema": REPORT_SCHEMA, "schema_version": self.schema_version, "title": self.title, "meta": self.meta,
                "rows": [asdict(r) for r in self.rows], "runs": [asdict(r) for r in self.runs],
                "comparisons": [asdict(c) for c in self.comparisons]}  # fmt: skip

    @classmethod
    def from_json(cls, obj: dict) -> "Leaderboard":
        """Read the JSON form; a different schema or schema version is an error naming the field."""
        if not isinstance(obj, dict) or obj.get("schema") != REPORT_SCHEMA:
            got = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
            raise PromptoptError(f"field 'schema' is {got!r}; expected {REPORT_SCHEMA!r}")
        if obj.get("schema_version") != REPORT_SCHEMA_VERSION:
            raise PromptoptError(
                f"field 'schema_version' is {obj.get('schema_version')!r}; this promptopt reads {REPORT_SCHEMA_VERSION}"
            )
        try:
            rows = [_make(Row, r) for r in obj["rows"]]
            runs = [_make(RunEntry, r) for r in obj["runs"]]
            comparisons = [_make(Comparison, c) for c in obj.get("comparisons") or []]
        except (KeyError, TypeError) as e:
            raise PromptoptError(
                f"leaderboard JSON: field 'rows', 'runs' or 'comparisons' is malformed ({e})"
            ) from None
        return cls(title=obj.get("title", ""), rows=rows, runs=runs, meta=obj.get("meta") or {},
                   comparisons=comparisons)  # fmt: skip


def _make(cls, obj: dict):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in obj.items() if k in known})


def _unique(items) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


# -- variants -------------------------------------------------------------------------------------------------------


def size_label(shots: int | None, max_train: int | None) -> str:
    """``shots 16``, ``max-train 100``, both joined, or ``all training examples``."""
    parts = ([f"shots {shots}"] if shots is not None else []) + ([f"max-train {max_train}"] if max_train else [])
    return ", ".join(parts) or "all training examples"


def template_label(run: RunEntry) -> str:
    """``template 0`` (the task's first), ``all N templates``, or the given template's text when its index is
    unknown."""
    if run.template_index is not None:
        return f"template {run.template_index}"
    if len(run.templates) == 1:
        return f"template {run.templates[0]!r}"
    return f"all {len(run.templates)} templates" if run.templates else "the task's templates"


def _without_size(row: Row) -> str:
    """The row's variant less its training-set size part (what stays fixed along a data-efficiency curve)."""
    size = size_label(row.shots, row.max_train)
    return "; ".join(p for p in row.variant.split("; ") if p and p != size)


def assign_variants(runs: list[RunEntry]) -> None:
    """Set each run's ``variant``: the parts of its setting that differ between the runs of its (model, task) --
    the training-set size (:func:`size_label`) and the templates given (:func:`template_label`) -- joined by
    ``"; "``; empty when the runs of that task share one setting. Failed runs that recorded no setting (no
    ``config.json``) are left out of the decision."""
    groups: dict[tuple[str, str], list[RunEntry]] = {}
    for run in runs:
        groups.setdefault((run.model, run.task), []).append(run)
    for group in groups.values():
        known = [r for r in group if r.status == "ok" or r.templates or r.shots is not None or r.max_train is not None]
        sizes = len({(r.shots, r.max_train) for r in known}) > 1
        templates = len({tuple(r.templates) for r in known}) > 1
        for r in group:
            parts = ([size_label(r.shots, r.max_train)] if sizes else []) + ([template_label(r)] if templates else [])
            r.variant = "; ".join(parts)


# -- statistics -----------------------------------------------------------------------------------------------------


class _Outcomes:
    """The per-example outcomes of a row's successful seeds on a set of example ids, as one statistic of a resample:
    the metric of each seed on the resampled examples, averaged over seeds (see :class:`Row`)."""

    def __init__(self, runs: list[RunEntry], ids: list[str], metric: str, labels: list[str]):
        self.seeds = [r.seed for r in runs]
        maps = [r.outcomes for r in runs]
        self.golds = [maps[0][i][0] for i in ids] if maps else []
        self.preds = [[m[i][1] for i in ids] for m in maps]
        self.accuracy = metric in stats.ACCURACY_METRICS
        self.metric = stats.metric_function(metric, labels)
        self.labels = list(labels)
        if self.accuracy:  # the fast path: each example's mean correctness over seeds
            k = len(self.preds)
            self.per_example = [sum(p[j] == g for p in self.preds) / k for j, g in enumerate(self.golds)]
        elif metric == "macro_f1":  # the fast path: (gold, prediction) pairs counted per resample
            self.pairs = [list(zip(self.golds, p)) for p in self.preds]

    def value(self, idx: list[int] | None = None) -> float:
        if idx is None:
            idx = list(range(len(self.golds)))
        if self.accuracy:
            return sum(self.per_example[i] for i in idx) / len(idx)
        if hasattr(self, "pairs"):
            return sum(stats.macro_f1_of_pairs(Counter(map(p.__getitem__, idx)), self.labels)
                       for p in self.pairs) / len(self.pairs)  # fmt: skip
        golds = [self.golds[i] for i in idx]
        return sum(self.metric(golds, [p[i] for i in idx]) for p in self.preds) / len(self.preds)

    def correct(self, seed: int) -> list[bool]:
        p = self.preds[self.seeds.index(seed)]
        return [x == g for x, g in zip(p, self.golds)]


def _common_ids(runs: list[RunEntry]) -> list[str]:
    """The example ids every run has an outcome for, in the first run's order."""
    if not runs or any(not r.ids for r in runs):
        return []
    shared = set(runs[0].ids)
    for r in runs[1:]:
        shared &= set(r.ids)
    return [i for i in dict.fromkeys(runs[0].ids) if i in shared]


class _Resamples:
    """Bootstrap resamples (:func:`promptopt.report.stats.resample_indices`) cached by example count, so every
    statistic over ``n`` examples uses the same resamples."""

    def __init__(self, n_resamples: int, seed: int):
        self.n_resamples, self.seed, self.cache = n_resamples, seed, {}

    def __call__(self, n: int) -> list[list[int]]:
        if n not in self.cache:
            self.cache[n] = stats.resample_indices(n, self.n_resamples, self.seed)
        return self.cache[n]


def _row_interval(row: Row, ok: list[RunEntry], labels: list[str], resamples: _Resamples) -> None:
    with_preds = [r for r in ok if r.ids]
    ids = _common_ids(with_preds)
    if not ids or stats.metric_function(row.metric, labels) is None or len(with_preds) != len(ok):
        return
    outcomes = _Outcomes(with_preds, ids, row.metric, labels)
    row.ci_low, row.ci_high = stats.interval([outcomes.value(idx) for idx in resamples(len(ids))])
    row.ci_n = len(ids)


def _compare(a: Row, b: Row, runs_a: list[RunEntry], runs_b: list[RunEntry], labels: list[str],
             resamples: _Resamples) -> Comparison:  # fmt: skip
    out = Comparison(model=a.model, task=a.task, variant=a.variant, a=a.method, b=b.method, metric=a.metric, n=0)
    ids = _common_ids(runs_a + runs_b)
    if not ids or stats.metric_function(a.metric, labels) is None:
        return out
    oa, ob = _Outcomes(runs_a, ids, a.metric, labels), _Outcomes(runs_b, ids, a.metric, labels)
    diffs = [oa.value(idx) - ob.value(idx) for idx in resamples(len(ids))]
    out.n, out.diff = len(ids), oa.value() - ob.value()
    out.low, out.high = stats.interval(diffs)
    paired = [s for s in oa.seeds if s in ob.seeds]
    out.seeds = len(paired)
    if a.metric in stats.ACCURACY_METRICS and paired:
        only_a = only_b = 0
        for s in paired:
            for x, y in zip(oa.correct(s), ob.correct(s)):
                only_a += x and not y
                only_b += y and not x
        out.discordant_a, out.discordant_b = round(only_a / len(paired)), round(only_b / len(paired))
        out.test, out.p = "McNemar exact", stats.mcnemar_exact(out.discordant_a, out.discordant_b)
    else:
        out.test, out.p = "paired bootstrap", stats.bootstrap_p(diffs)
    return out


def _decide(group: list[Row], comparisons: list[Comparison]) -> None:
    """Holm over the group's comparisons, then ``best`` or ``tied`` (see :class:`Row`)."""
    tested = [c for c in comparisons if c.p is not None]
    for c, adjusted in zip(tested, stats.holm([c.p for c in tested])):
        c.p_holm = adjusted
    methods = [r for r in group if r.mean is not None and r.kind != BASELINE]
    if not methods:
        return
    top = methods[0]
    against = {c.b if c.a == top.method else c.a: c for c in comparisons if top.method in (c.a, c.b)}
    others = [r for r in group if r.mean is not None and r is not top]
    for r in others:
        c = against.get(r.method)
        if c is not None and c.significant:
            r.mark = "▼" if c.a == top.method else "▲"
    if len(others) < 1:
        return
    if all(r.mark for r in others):
        top.best = not any(r.mark == "▲" for r in others)
        return
    tied = [r for r in others if not r.mark]
    top.tied, top.tied_with = True, [r.method for r in tied]
    for r in tied:
        r.tied, r.tied_with = True, [top.method]


def zero_shot_runs(candidates: list[RunEntry], runs: list[RunEntry]) -> list[RunEntry]:
    """The zero-shot manual baseline (LM-BFF's "prompt-based zero-shot" row): of the :data:`ZERO_SHOT` runs of each
    (model, task), the one of the lowest template index, i.e. the task's first, hand-written template, no training
    and no selection. Never the best score: that would choose on the reported split. It joins the variant of the task's k-shot runs
    (else its first variant)."""
    out = []
    for model, task in _unique((r.model, r.task) for r in candidates):
        scored = [r for r in candidates
                  if (r.model, r.task) == (model, task) and r.status == "ok" and r.score is not None]  # fmt: skip
        if not scored:
            continue
        best = min(scored, key=lambda r: r.template_index or 0)
        peers = [r for r in runs if (r.model, r.task) == (model, task)]
        home = next((r for r in peers if r.kshot), peers[0] if peers else None)
        best.kind, best.n_train = BASELINE, None  # no training examples: never a point of a data-efficiency curve
        best.variant, best.shots, best.max_train = (home.variant, home.shots, home.max_train) if home else ("", None, None)
        out.append(best)
    return out


def majority_runs(runs: list[RunEntry]) -> list[RunEntry]:
    """The majority-class baseline, one run per (model, task, variant, seed): the most frequent label of that
    seed's training set (``train_labels``; on a tie, as on LM-BFF's balanced splits, the first in sorted order)
    predicted for every evaluation example of that seed's runs. Only classification runs with recorded training
    labels and predictions count; a seed without one gets no majority run."""
    out = []
    found: dict[tuple, RunEntry] = {}
    for r in runs:
        if r.status == "ok" and r.train_labels and r.ids and r.kind != BASELINE:
            found.setdefault((r.model, r.task, r.variant, r.seed), r)
    for (model, task, variant, seed), source in found.items():
        counts = source.train_labels
        label = min(counts, key=lambda lab: (-counts[lab], lab))
        preds = [label] * len(source.ids)
        metric = stats.metric_function(source.metric, sorted(set(source.golds) | {label}))
        score = metric(source.golds, preds) if metric else None
        out.append(RunEntry(model=model, task=task, method=MAJORITY, seed=seed, metric=source.metric, score=score,
                            n_eval=len(source.ids), ids=list(source.ids), golds=list(source.golds), preds=preds,
                            variant=variant, kind=BASELINE, kshot=source.kshot, train_labels=dict(counts),
                            shots=source.shots, max_train=source.max_train,
                            prompt_text=f"always {label!r} (training labels {dict(counts)})"))  # fmt: skip
    return out


def _variant_order(item) -> tuple:
    """Variants in the order of their training-set size (numbers, not text), then by name."""
    return (item.shots if item.shots is not None else -1, item.max_train if item.max_train is not None else -1,
            item.variant)  # fmt: skip


def build_leaderboard(runs: list[RunEntry], title: str = "promptopt leaderboard", meta: dict | None = None,
                      n_resamples: int = 1000, seed: int = 0, baselines: bool = False) -> Leaderboard:  # fmt: skip
    """Aggregate runs into rows and compare them: per (model, task, variant), methods ordered by mean score (best
    first, failed-only last), each with its bootstrap interval, and every pair of methods compared on their shared
    examples (:class:`Comparison`), Holm-corrected within the group; ``best``/``tied`` as :class:`Row` says.
    ``n_resamples`` and ``seed`` drive every bootstrap (:func:`promptopt.report.stats.resample_indices`).

    Baseline rows (kind ``baseline``): runs named :data:`ZERO_SHOT` (the manual method on one template each, no
    training) become one row per (model, task), the task's first template (see :func:`zero_shot_runs`);
    with ``baselines`` a :data:`MAJORITY` row per (model, task, variant) is made from the data
    (:func:`majority_runs`)."""
    runs = list(runs)
    zero_shot = [r for r in runs if r.method == ZERO_SHOT]
    runs = [r for r in runs if r.method != ZERO_SHOT]
    assign_variants(runs)
    runs += zero_shot_runs(zero_shot, runs)
    if baselines:
        runs += majority_runs(runs)
    runs.sort(key=lambda r: (r.model, r.task, r.method, *_variant_order(r), r.seed, r.run_dir))
    labels_of: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        labels_of.setdefault((run.model, run.task), []).extend([*run.golds, *run.preds])
    labels_of = {k: sorted(set(v)) for k, v in labels_of.items()}
    groups: dict[tuple[str, str, str, str], list[RunEntry]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    resamples = _Resamples(n_resamples, seed)
    rows, ok_of = [], {}
    for (model, task, method, variant), group in groups.items():
        ok = [r for r in group if r.status == "ok" and r.score is not None]
        scores = [float(r.score) for r in ok]
        n_train = [float(r.n_train) for r in ok if r.n_train is not None]
        row = Row(
            model=model, task=task, method=method, metric=(ok or group)[0].metric, runs=len(group), ok=len(ok),
            scores=scores, mean=_mean(scores), std=_std(scores), n_eval=max((r.n_eval for r in ok), default=0),
            trainable_parameters=round(_mean([r.trainable_parameters for r in ok]) or 0),
            train_seconds=_mean([r.train_seconds for r in ok]),
            eval_examples_per_second=_mean([r.eval_examples_per_second for r in ok]),
            peak_memory_mb=max((r.peak_memory_mb for r in ok), default=None), variant=variant,
            n_train=_mean(n_train), shots=group[0].shots, max_train=group[0].max_train,
            train_flops=_mean([r.train_flops for r in ok if r.train_flops is not None]),
            eval_flops=_mean([r.eval_flops for r in ok if r.eval_flops is not None]),
            templates=_unique(r.template for r in ok if r.template), kind=group[0].kind,
        )  # fmt: skip
        low, high = stats.t_interval(scores) or (None, None)
        if low is not None:  # scores are fractions: an interval past 0 or 1 is cut there
            low, high = max(low, 0.0), min(high, 1.0)
        row.seed_low, row.seed_high = low, high
        if method == MAJORITY:  # computed here, not run: it has no time, throughput or memory of its own
            row.train_seconds = row.eval_examples_per_second = row.peak_memory_mb = None
        _row_interval(row, ok, labels_of[model, task], resamples)
        rows.append(row)
        ok_of[id(row)] = ok
    rows.sort(key=lambda r: (r.model, r.task, *_variant_order(r), r.mean is None, -(r.mean or 0.0), r.method))
    comparisons = []
    for key in _unique((r.model, r.task, r.variant) for r in rows):
        group = [r for r in rows if (r.model, r.task, r.variant) == key]
        compared = [r for r in group if r.mean is not None]
        found = [_compare(a, b, ok_of[id(a)], ok_of[id(b)], labels_of[key[:2]], resamples)
                 for i, a in enumerate(compared) for b in compared[i + 1:]]  # fmt: skip
        _decide(group, found)
        comparisons += found
    return Leaderboard(title=title, rows=rows, runs=runs, meta=dict(meta or {}), comparisons=comparisons)
