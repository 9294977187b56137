"""Prompt transfer (SPoT, Vu et al. 2022): soft prompt tuning that starts from a prompt trained on other task(s).

``source`` is a saved prompt with one soft segment: a ``soft`` run's ``prompt/``, a ``multitask`` run's
``tasks/TASK/prompt``, or a ``multitask`` run directory itself (its ``shared/prompt``, the shared prompt, is taken).
The new prompt gets that many vectors in front of the run's template (see :mod:`promptopt.pipeline.vectors`, rule
``prefix``), starting from the source's values; training is the ``soft`` method's. Without a source it starts as
``soft`` does (``init=vocab``), so ``--methods all`` runs it harmlessly.

Its own method id lets a leaderboard show transfer beside fresh initialisation::

    promptopt leaderboard --methods soft,transfer -o transfer.source=runs/mt --tasks cr --output runs/transfer

(``promptopt run --method soft -o init=prompt -o init_prompt=DIR`` trains the same prompt, but is reported as
``soft``, in the same leaderboard row as fresh ``soft`` runs.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from promptopt import hookimpl
from promptopt.sdk import (
    MethodKind, ConfigError,
    OptimizeResult,
    Prompt,
    PromptOptimizer,
    RunContext,
    SegmentKind,
    SoftPromptConfig,
    train_soft_prompt,
)


@dataclass
class TransferConfig:
    source: str = field(default="", metadata={"help": "prompt directory to start from (a soft run's prompt/, a multitask run's tasks/TASK/prompt, or a multitask run directory: its shared prompt); empty: start as soft does"})  # fmt: skip
    n_tokens: int = field(default=20, metadata={"help": "soft vectors when there is no source (with a source: its rows)"})  # fmt: skip

    def __post_init__(self):
        if self.n_tokens < 1:
            raise ConfigError(f"TransferConfig.n_tokens must be >= 1, got {self.n_tokens}")


def source_prompt_dir(source: str) -> Path:
    """The prompt directory ``source`` names (a multitask run directory gives its shared prompt)."""
    path = Path(source)
    if (path / "multitask.json").exists():
        path = path / "shared" / "prompt"
    if not (path / "prompt.json").exists():
        raise ConfigError(f"TransferConfig.source {source!r} is not a prompt directory (no prompt.json)")
    return path


class TransferOptimizer(PromptOptimizer):
    """Soft prompt tuning initialised from ``source``'s vectors (see the module docstring)."""

    name = "transfer"
    description = "prompt transfer: soft prompt tuning started from a prompt trained on other task(s) (-o source=DIR)"
    kind = MethodKind.SOFT
    config_class = TransferConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        if not self.config.source:
            soft = SoftPromptConfig(n_tokens=self.config.n_tokens)
        else:
            directory = source_prompt_dir(self.config.source)
            segments = Prompt.load(directory).segments_of(SegmentKind.VECTORS)
            if len(segments) != 1:
                raise ConfigError(f"TransferConfig.source {str(directory)!r} has {len(segments)} soft segments; "
                                  "transfer starts from a prompt with one")  # fmt: skip
            soft = SoftPromptConfig(n_tokens=segments[0].n, init="prompt", init_prompt=str(directory))
        found = train_soft_prompt(run, soft)
        found.prompt.meta["transfer_from"] = soft.init_prompt or None
        return found


@hookimpl
def register_optimizers(register):
    register(TransferOptimizer)
