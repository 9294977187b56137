"""Typed run results and the run directory layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from promptopt.data.files import read_json

RESULT_SCHEMA_VERSION = 1


@dataclass
class RunResult:
    """What one run produced. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why)."""

    method: str
    task: str
    model: str
    seed: int
    status: str = "ok"
    error: str | None = None
    metrics: dict = field(default_factory=dict)  # split name -> metric name -> value
    select_metrics: dict = field(default_factory=dict)
    prompt_text: str = ""
    trainable_parameters: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    eval_examples_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    output_dir: str | None = None
    config: dict = field(default_factory=dict)
    schema_version: int = RESULT_SCHEMA_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "RunResult":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunResult":
        return cls.from_json(read_json(Path(run_dir) / "result.json"))
