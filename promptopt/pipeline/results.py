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
    #: ``{"train": ..., "eval": ...}``: positions and FLOPs (:class:`promptopt.engine.compute.Compute`) spent by the
    #: method (training, search and its selection scoring) and by the final evaluation
    compute: dict = field(default_factory=dict)
    #: whether the method stopped because ``--budget-flops`` was spent
    budget_spent: bool = False
    #: set when a suite found this run finished with the same fingerprint and did not run it again
    reused: bool = False
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


class PeakMemory:
    """Peak memory over one run, not the process's lifetime: on CUDA the allocator's peak, reset at the start; on
    CPU the resident set size sampled every 20 ms by a background thread (Linux ``/proc``; elsewhere the process's
    lifetime peak). Use as a context manager; :attr:`mb` is the peak in MiB."""

    def __init__(self, device):
        self.device, self.mb = device, 0.0
        self._stop = None

    def __enter__(self):
        import threading

        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif Path("/proc/self/statm").exists():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._sample_once()
            self._thread.start()
        return self

    def _sample_once(self) -> None:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        self.mb = max(self.mb, pages * os.sysconf("SC_PAGE_SIZE") / 2**20)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._sample_once()

    def read(self) -> float:
        """The peak so far (MiB)."""
        if self._stop is None:
            return peak_memory_mb(self.device)
        self._sample_once()
        return self.mb

    def __exit__(self, *exc):
        self.mb = self.read()
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
        return False


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
