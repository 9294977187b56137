"""Typed records of a run's ``history.jsonl``: one dataclass per kind, each line tagged with its ``kind``.

    {"kind": "train_step", "v": 1, "step": 3, "loss": 0.61, "lr": 0.03, "flops": 1.2e12}
    {"kind": "evaluation", "v": 1, "step": 50, "split": "select", "metrics": {"accuracy": 0.81, "score": 0.81}}
    {"kind": "search_iteration", "v": 1, "step": 4, "loss": 0.7, "accepted": true, "prompt": "...", ...}

Readers (reports, trackers) dispatch on ``kind`` instead of guessing key names; :func:`read_history` parses a file
back into these types (lines of other kinds, e.g. a method's own notes, come back as plain dicts). Records of older
runs without ``kind`` are plain dicts too. ``to_json`` keeps the legacy key of an evaluation (``"select": metrics``
for the selection split) so that older readers still find it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

HISTORY_VERSION = 1


@dataclass
class _Record:
    kind: ClassVar[str] = ""
    #: anything else the method wants on the same line (written at the top level)
    extra: dict = field(default_factory=dict, kw_only=True)

    def to_json(self) -> dict:
        body = {k: v for k, v in asdict(self).items() if k != "extra"}
        return {"kind": self.kind, "v": HISTORY_VERSION, **body, **self.extra}

    @classmethod
    def from_json(cls, obj: dict):
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: obj[k] for k in known if k in obj},
                   extra={k: v for k, v in obj.items() if k not in known and k not in ("kind", "v")})  # fmt: skip


@dataclass
class TrainStep(_Record):
    """One optimizer step of the shared training loop: ``loss`` of the step, learning rate ``lr``."""

    kind: ClassVar[str] = "train_step"
    step: int
    loss: float
    lr: float | None = None


@dataclass
class Evaluation(_Record):
    """A prompt scored on ``split`` (``"select"`` while optimising) at ``step`` (None: after the method)."""

    kind: ClassVar[str] = "evaluation"
    step: int | None
    split: str
    metrics: dict

    def to_json(self) -> dict:
        out = super().to_json()
        out.setdefault(self.split, self.metrics)  # legacy readers look for "select"
        return out


@dataclass
class SearchIteration(_Record):
    """One iteration of a discrete search: the ``loss`` its proposal was based on, whether a change was
    ``accepted``, and the current ``prompt`` text."""

    kind: ClassVar[str] = "search_iteration"
    step: int
    loss: float
    accepted: bool
    prompt: str


KINDS = {cls.kind: cls for cls in (TrainStep, Evaluation, SearchIteration)}


def parse_record(obj: dict):
    """A typed record for a known ``kind``, else the dict itself."""
    cls = KINDS.get(obj.get("kind")) if isinstance(obj, dict) else None
    return cls.from_json(obj) if cls is not None else obj


def read_history(path: str | Path) -> list:
    """Every line of a ``history.jsonl`` (typed where the kind is known); a torn last line is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(parse_record(json.loads(line)))
        except json.JSONDecodeError:
            continue
    return out
