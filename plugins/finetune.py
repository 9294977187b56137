"""Fine-tuning: the reference row every prompt method is compared with. Trains a copy of the model's weights (all of
them, or the top ``layers`` transformer blocks) under the run's first template with the shared loop.

The model the run was given is never written: the method trains its own float32 copies of the chosen parameters
and runs the model with them in place (:func:`promptopt.sdk.swapped_parameters`); for scoring the run applies the
result as a :class:`promptopt.sdk.ModelEdit` (replacement values, saved with the prompt as
``model_edit.safetensors``) and removes it afterwards. Use a small ``--lr`` (1e-5 to 1e-4).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from promptopt import hookimpl
from promptopt.sdk import (ConfigError, MethodKind, ModelEdit, OptimizeResult, PromptOptimizer, RunContext,
                           swapped_parameters, train_adapter)


@dataclass
class FinetuneConfig:
    layers: int = field(default=0, metadata={"help": "0: every parameter of the model (full fine-tuning); N: only the top N transformer blocks"})  # fmt: skip

    def __post_init__(self):
        if self.layers < 0:
            raise ConfigError(f"FinetuneConfig.layers must be 0 (all) or a number of top blocks, got {self.layers}")


def blocks(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The model's stack of transformer blocks: its longest ``ModuleList``."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ConfigError(f"{type(model).__name__} has no list of blocks; use FinetuneConfig.layers=0")
    return max(lists, key=lambda item: len(item[1]))


def chosen_parameters(model: torch.nn.Module, layers: int) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    if not layers:
        return names
    where, stack = blocks(model)
    if layers > len(stack):
        raise ConfigError(f"FinetuneConfig.layers is {layers}; the model has {len(stack)} blocks")
    top = tuple(f"{where}.{i}." for i in range(len(stack) - layers, len(stack)))
    return [n for n in names if n.startswith(top)]


class FinetuneParams(torch.nn.Module):
    """Float32 copies of the chosen parameters, keyed by parameter name with ``.`` as ``__``."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        own = dict(model.named_parameters())
        self.names = {name.replace(".", "__"): name for name in names}
        self.weights = torch.nn.ParameterDict(
            {key: torch.nn.Parameter(own[name].detach().float().clone()) for key, name in self.names.items()}
        )

    def forward(self) -> dict[str, torch.Tensor]:
        return {}  # nothing goes into the prompt: the model computes with the copies inside attached()

    @contextlib.contextmanager
    def attached(self, lm):
        with swapped_parameters(lm.model, {name: self.weights[key] for key, name in self.names.items()}):
            yield

    def edit(self) -> ModelEdit:
        return ModelEdit(replace={name: self.weights[key].detach().cpu() for key, name in self.names.items()})


class FinetuneOptimizer(PromptOptimizer):
    """Fine-tunes (a copy of) the model's weights under a fixed template: the reference row for prompt methods."""

    name = "finetune"
    description = "fine-tuning reference: all weights or the top N blocks, trained on copies (the run's model is left untouched)"  # fmt: skip
    kind = MethodKind.ADAPTER
    config_class = FinetuneConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        names = chosen_parameters(run.lm.model, self.config.layers)
        found = train_adapter(run, FinetuneParams(run.lm.model, names).to(run.lm.device))
        found.prompt.meta["finetune_layers"] = self.config.layers or "all"
        return found


@hookimpl
def register_optimizers(register):
    register(FinetuneOptimizer)
