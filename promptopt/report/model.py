"""What a leaderboard holds: one entry per run, one row per (model, task, method), and the JSON form of both.

Everything here is pure: entries in, a :class:`Leaderboard` out. Reading run directories is done elsewhere
(:func:`promptopt.suite.leaderboard.collect_runs`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from promptopt.errors import PromptoptError

REPORT_SCHEMA = "promptopt.suite.leaderboard"
REPORT_SCHEMA_VERSION = 1


@dataclass
class RunEntry:
    """One run as the report sees it. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why).

    ``score`` is the task's metric (``metric``) on the evaluation split, a fraction in [0, 1]. ``curves`` maps a
    curve name (``"loss"``, ``"select"``) to ``[step, value]`` pairs from the run's ``history.jsonl``;
    ``inspection`` is the JSON written by ``promptopt inspect`` (``inspect.json``), if any.
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

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.task, self.method)


@dataclass
class Row:
    """The runs of one method on one task with one model, over seeds.

    ``mean``/``std`` are over the successful seeds (``std`` is the sample standard deviation, None for fewer than
    two); time, throughput and parameters are means over those seeds, peak memory their maximum. ``best`` marks the
    highest mean of its (model, task), ties included.
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

    @property
    def failed(self) -> int:
        return self.runs - self.ok


@dataclass
class Leaderboard:
    """A rendered-ready leaderboard: rows (aggregates), the runs behind them, a title and free-form ``meta``
    (``command``, ``machine``, ``generated``, ``settings``, ``notes``)."""

    title: str
    rows: list[Row]
    runs: list[RunEntry]
    meta: dict = field(default_factory=dict)
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
    def seconds(self) -> tuple[float, float]:
        """Optimisation and evaluation time summed over the finished runs (as each run measured them)."""
        ok = [r for r in self.runs if r.status == "ok"]
        return sum(r.train_seconds for r in ok), sum(r.eval_seconds for r in ok)

    def rows_of(self, model: str, task: str) -> list[Row]:
        return [r for r in self.rows if r.model == model and r.task == task]

    def to_json(self) -> dict:
        return {"schema": REPORT_SCHEMA, "schema_version": self.schema_version, "title": self.title, "meta": self.meta,
                "rows": [asdict(r) for r in self.rows], "runs": [asdict(r) for r in self.runs]}  # fmt: skip

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
        except (KeyError, TypeError) as e:
            raise PromptoptError(f"leaderboard JSON: field 'rows' or 'runs' is malformed ({e})") from None
        return cls(title=obj.get("title", ""), rows=rows, runs=runs, meta=obj.get("meta") or {})


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


def build_leaderboard(runs: list[RunEntry], title: str = "promptopt leaderboard", meta: dict | None = None) -> Leaderboard:
    """Aggregate runs into rows: per (model, task), methods ordered by mean score (best first, failed-only last)."""
    runs = sorted(runs, key=lambda r: (r.model, r.task, r.method, r.seed, r.run_dir))
    groups: dict[tuple[str, str, str], list[RunEntry]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    rows = []
    for (model, task, method), group in groups.items():
        ok = [r for r in group if r.status == "ok" and r.score is not None]
        scores = [float(r.score) for r in ok]
        rows.append(Row(
            model=model, task=task, method=method, metric=(ok or group)[0].metric, runs=len(group), ok=len(ok),
            scores=scores, mean=_mean(scores), std=_std(scores), n_eval=max((r.n_eval for r in ok), default=0),
            trainable_parameters=round(_mean([r.trainable_parameters for r in ok]) or 0),
            train_seconds=_mean([r.train_seconds for r in ok]),
            eval_examples_per_second=_mean([r.eval_examples_per_second for r in ok]),
            peak_memory_mb=max((r.peak_memory_mb for r in ok), default=None),
        ))  # fmt: skip
    rows.sort(key=lambda r: (r.model, r.task, r.mean is None, -(r.mean or 0.0), r.method))
    for (model, task) in {(r.model, r.task) for r in rows}:
        scored = [r for r in rows if r.model == model and r.task == task and r.mean is not None]
        if scored:
            top = max(r.mean for r in scored)
            for r in scored:
                r.best = math.isclose(r.mean, top, rel_tol=0, abs_tol=1e-12)
    return Leaderboard(title=title, rows=rows, runs=runs, meta=dict(meta or {}))
