"""Soft prompt tuning (Lester et al., 2021): trainable vectors wherever the template puts ``[P*n]`` slots.

Where the vectors go (``template_rule``) and what they start as (``init``) are the SDK's soft-prompt building
blocks, documented in :mod:`promptopt.pipeline.vectors`; training is the shared loop (:func:`promptopt.sdk.fit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from promptopt import hookimpl
from promptopt.sdk import MethodKind, OptimizeResult, PromptOptimizer, RunContext, SoftPromptConfig, train_soft_prompt


@dataclass
class SoftConfig(SoftPromptConfig):
    """The ``soft`` method's options: those of every soft prompt (:class:`promptopt.sdk.SoftPromptConfig`)."""


class SoftOptimizer(PromptOptimizer):
    """Trains the vectors of the template's ``[P]`` slots with the shared training loop; the model stays frozen."""

    name = "soft"
    description = "soft prompt tuning: trainable vectors where the template puts [P] slots (default: in front)"
    kind = MethodKind.SOFT
    config_class = SoftConfig
    needs_training_data = True
    # 500 steps (the loop's default is 300): chosen by benchmarks/tune_soft_defaults.sh on a proxy task made of SST-2's
    # train split alone (88.2% at 500 and 600 steps against 86.0% at 300 and 88.9% at 800, which takes 6.7 minutes on
    # a 2-core CPU)
    train_defaults = {"steps": 500}

    def optimize(self, run: RunContext) -> OptimizeResult:
        return train_soft_prompt(run, self.config)


@hookimpl
def register_optimizers(register):
    register(SoftOptimizer)
