"""Typed run results and the run directory layout."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from promptopt.data.files import read_json
from promptopt.errors import ConfigError, PromptoptError

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


def prepare_output(out: Path, marker: str = "result.json", overwrite: bool = False, resume: bool = False) -> Path:
    """Create the run directory; a finished run (``marker`` exists) is kept unless ``overwrite`` (or ``resume``).
    A fresh (not resumed) run starts a new ``history.jsonl``. An output path under a file, or a directory this
    process cannot write, fails with one line before any work is done."""
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{out}: output path {parent} is a file, not a directory (pass --output DIR)")
        if parent.exists():
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the run directory ({e.strerror})") from None
    if (out / marker).exists() and not resume:
        if not overwrite:
            raise PromptoptError(f"{out} holds a finished run; pass --overwrite to replace it or --output elsewhere")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume and (out / "history.jsonl").exists():
        (out / "history.jsonl").unlink()
    return out


def peak_memory_mb(device) -> float:
    """GPU peak allocation, or on CPU the process's peak resident memory (KiB on Linux), in MiB."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment(lm) -> dict:
    """The model and machine part of ``config.json``: model, kind, device, dtype, library versions, platform."""
    import torch
    import transformers

    return {
        "model": lm.name,
        "model_kind": lm.kind.value,
        "device": str(lm.device),
        "dtype": str(lm.dtype).replace("torch.", ""),
        "versions": {"torch": torch.__version__, "python": platform.python_version(),
                     "transformers": transformers.__version__},  # fmt: skip
        "machine": platform.platform(),
    }
