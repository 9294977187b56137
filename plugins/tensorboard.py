"""Log runs to TensorBoard, built only on the run hooks: proof that they carry what an experiment tracker needs.

Opt-in: ``PROMPTOPT_TENSORBOARD=1`` writes event files to ``RUN_DIR/tensorboard/``; ``PROMPTOPT_TENSORBOARD=DIR``
writes them to ``DIR/<run directory name>/`` (one TensorBoard root for a whole suite: ``tensorboard --logdir DIR``).
Needs ``pip install 'promptopt[tensorboard]'``; without it a run with the variable set says so once and goes on.

What is logged: the resolved ``config.json`` (fingerprint included) as text and as hyper-parameters, every training
step's loss and learning rate (and the FLOPs spent so far), every evaluation's metrics by split (``select/score``,
``eval/accuracy``, ...), and at the end the prompt's text, the reported metrics, time, compute and the paths of the
artifacts (prompt directory, predictions).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from promptopt import hookimpl

log = logging.getLogger(__name__)
ENV = "PROMPTOPT_TENSORBOARD"
_writers: dict[int, object] = {}
_warned = False


def _writer(run):
    """The event writer of this run, opened at ``run_start`` (None when logging is off or unavailable)."""
    return _writers.get(id(run))


def _open(run):
    global _warned
    target = os.environ.get(ENV, "")
    if target in ("", "0"):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _warned:
            log.warning("%s is set but TensorBoard is not installed: pip install 'promptopt[tensorboard]'", ENV)
            _warned = True
        return None
    out = Path(run.output_dir)
    logdir = out / "tensorboard" if target == "1" else Path(target) / out.name
    return SummaryWriter(log_dir=str(logdir))


def _numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@hookimpl
def run_start(run):
    writer = _open(run)
    if writer is None:
        return
    _writers[id(run)] = writer
    config = json.dumps(run.options, indent=1, default=str)
    writer.add_text("config", f"```\n{config}\n```", 0)
    writer.add_text("method", f"{run.method} on {run.task.name} ({run.lm.name}, seed {run.seed})", 0)


@hookimpl
def training_step(run, step, loss, lr):
    writer = _writer(run)
    if writer is None:
        return
    writer.add_scalar("train/loss", loss, step)
    if lr is not None:
        writer.add_scalar("train/lr", lr, step)
    writer.add_scalar("train/flops", run.compute.flops, step)


@hookimpl
def evaluation(run, step, split, metrics):
    writer = _writer(run)
    if writer is None:
        return
    for name, value in _numbers(metrics).items():
        writer.add_scalar(f"{split}/{name}", value, step or 0)


@hookimpl
def run_end(run, result):
    writer = _writers.pop(id(run), None)
    if writer is None:
        return
    writer.add_text("prompt", result.prompt_text or "(none)", 0)
    writer.add_text("status", result.status + (f": {result.error}" if result.error else ""), 0)
    final = {f"eval/{k}": v for k, v in _numbers((result.metrics or {}).get("eval", {})).items()}
    spent = {f"compute/{phase}_flops": float(v.get("flops", 0.0)) for phase, v in (result.compute or {}).items()}
    summary = {**final, **spent, "time/train_seconds": result.train_seconds, "time/eval_seconds": result.eval_seconds}
    params = {k: v for k, v in run.options.get("train", {}).items() if isinstance(v, (int, float, str, bool))}
    writer.add_hparams({"method": run.method, "seed": run.seed, **params}, summary, run_name="hparams")
    out = Path(run.output_dir)
    artifacts = (out / "prompt", out / "predictions.jsonl", out / "result.json")
    writer.add_text("artifacts", "\n".join(f"- {p}" for p in artifacts), 0)
    writer.close()
