"""A trainable third-party method on the public SDK alone: a soft prompt trained with sharpness-aware minimisation.

Each step takes the gradient at the vectors pushed ``rho`` along their normalised loss gradient (Foret et al. 2021),
so training prefers flat minima. ``promptopt run --method sam -o rho=0.05`` after ``pip install ./examples/promptopt-sam``.
"""

from dataclasses import dataclass, field

import torch

from promptopt import hookimpl
from promptopt.sdk import MethodKind, OptimizeResult, PromptOptimizer, PromptVectors, SoftPromptConfig, initial_values, soft_templates
from promptopt.sdk import train_templates


@dataclass
class SamConfig(SoftPromptConfig):
    rho: float = field(default=0.05, metadata={"help": "radius of the sharpness-aware perturbation (0 = plain soft)"})


class SharpnessAware(PromptVectors):
    """Vectors whose loss the shared loop takes at the SAM-perturbed point (the perturbation is not trained)."""

    def __init__(self, values, rho: float, scorer, prompt):
        super().__init__(values)
        self.rho, self.scorer, self.prompt = rho, scorer, prompt

    def loss(self, values, batch):
        if self.rho == 0 or not torch.is_grad_enabled():
            return self.scorer.loss(self.prompt, batch, vectors=values)
        names = list(values)
        first = self.scorer.loss(self.prompt, batch, vectors=values)
        grads = torch.autograd.grad(first, [values[n] for n in names])
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads)).clamp_min(1e-12)
        shifted = {n: values[n] + (self.rho * g / norm).detach() for n, g in zip(names, grads)}
        return self.scorer.loss(self.prompt, batch, vectors=shifted)


class SamOptimizer(PromptOptimizer):
    name = "sam"
    description = "soft prompt trained with a sharpness-aware (SAM) update (example third-party plugin)"
    kind = MethodKind.SOFT
    config_class = SamConfig
    needs_training_data = True

    def optimize(self, run):
        templates = soft_templates(run.templates, self.config.n_tokens, self.config.template_rule)
        make = lambda p: SharpnessAware(initial_values(self.config, run, p), self.config.rho, run.scorer, p)  # noqa: E731
        prompt, result, _ = train_templates(run, templates, make)
        return OptimizeResult(prompt=prompt, trainable_parameters=result.trainable_parameters,
                              select_metrics=result.best_metrics)


@hookimpl
def register_optimizers(register):
    register(SamOptimizer)
