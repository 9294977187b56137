"""LoRA (Hu et al., 2021): a fine-tuning reference row. Low-rank updates ``W + (alpha/r) B A`` of the model's
projections, trained with the shared loop under the run's first template; the model's own weights stay frozen.

``targets`` names the linear layers adapted, by the last part of their module name (``q_proj,v_proj``), or
``all-linear`` (default): every linear layer of the model body, i.e. the attention and MLP projections (the
vocabulary head is never adapted). ``A`` starts random (seeded), ``B`` at zero, as in PEFT: training starts from the
frozen model. While training, forward hooks add ``dropout(x) A^T B^T alpha/r`` to each target's output; for scoring
the run applies the result as a low-rank :class:`promptopt.sdk.ModelEdit` and removes it afterwards.
:func:`promptopt.interop.peft.export_peft` writes it as a PEFT LoRA adapter.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from promptopt import hookimpl
from promptopt.sdk import ConfigError, MethodKind, ModelEdit, OptimizeResult, PromptOptimizer, RunContext, train_adapter


@dataclass
class LoraConfig:
    rank: int = field(default=8, metadata={"help": "rank r of each update"})
    alpha: float = field(default=16.0, metadata={"help": "scale numerator: updates are multiplied by alpha/rank"})
    targets: str = field(default="all-linear", metadata={"help": "comma-separated module names to adapt (e.g. q_proj,v_proj), or all-linear: every linear layer of the model body"})  # fmt: skip
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapted layers' input while training"})

    def __post_init__(self):
        if self.rank < 1:
            raise ConfigError(f"LoraConfig.rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise ConfigError(f"LoraConfig.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"LoraConfig.dropout must be in [0, 1), got {self.dropout}")
        if not [t for t in self.targets.split(",") if t.strip()]:
            raise ConfigError("LoraConfig.targets must name at least one module, or be all-linear")


def target_modules(model: torch.nn.Module, targets: str) -> dict[str, torch.nn.Linear]:
    """The linear layers of the model body that ``targets`` names, by full module name (as in the model)."""
    body = getattr(model, model.base_model_prefix, None) or model
    prefix = f"{model.base_model_prefix}." if body is not model else ""
    names = {t.strip() for t in targets.split(",") if t.strip()}
    head = model.get_output_embeddings()  # inside the body where there is no separate body (T5): never adapted
    linear = {prefix + n: m for n, m in body.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
    found = linear if names == {"all-linear"} else {n: m for n, m in linear.items() if n.rsplit(".", 1)[-1] in names}
    if not found:
        known = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ConfigError(f"LoraConfig.targets {targets!r} matches no linear layer of the model; it has {known}")
    return found


class LoraParams(torch.nn.Module):
    """``A`` (r, in) and ``B`` (out, r) per target module, keyed by the module name with ``.`` as ``__``."""

    def __init__(self, config: LoraConfig, modules: dict[str, torch.nn.Linear], seed: int):
        super().__init__()
        self.modules_by_key = {name.replace(".", "__"): (name, m) for name, m in modules.items()}
        self.scale = config.alpha / config.rank
        self.dropout = torch.nn.Dropout(config.dropout)
        generator = torch.Generator().manual_seed(seed)
        self.A, self.B = torch.nn.ParameterDict(), torch.nn.ParameterDict()
        for key, (_, m) in self.modules_by_key.items():
            bound = 1 / math.sqrt(m.in_features)  # kaiming-uniform with a = sqrt(5), as nn.Linear and PEFT
            a = (torch.rand(config.rank, m.in_features, generator=generator) * 2 - 1) * bound
            self.A[key] = torch.nn.Parameter(a)
            self.B[key] = torch.nn.Parameter(torch.zeros(m.out_features, config.rank))

    def forward(self) -> dict[str, torch.Tensor]:
        return {}  # nothing goes into the prompt: the model computes with the updates inside attached()

    @contextlib.contextmanager
    def attached(self, lm):
        handles = []
        try:
            for key, (_, module) in self.modules_by_key.items():
                a, b = self.A[key], self.B[key]

                def hook(mod, args, out, a=a, b=b):
                    # in the activations' dtype (bf16 where the model runs in it), the parameters cast, not the
                    # activations: two casts of (r, d) matrices instead of two of (tokens, d); scale folded into B
                    x = self.dropout(args[0])
                    return out + (x @ a.to(x.dtype).T) @ (b * self.scale).to(x.dtype).T

                handles.append(module.register_forward_hook(hook))
            yield
        finally:
            for h in handles:
                h.remove()

    def edit(self) -> ModelEdit:
        return ModelEdit(low_rank={f"{name}.weight": (self.B[key].detach().cpu() * self.scale, self.A[key].detach().cpu())
                                   for key, (name, _) in self.modules_by_key.items()})  # fmt: skip


class LoraOptimizer(PromptOptimizer):
    """Trains low-rank updates of the model's projections under a fixed template (a fine-tuning reference row)."""

    name = "lora"
    description = "LoRA: low-rank updates of the attention and MLP projections (fine-tuning reference; the run's model is left untouched)"  # fmt: skip
    kind = MethodKind.ADAPTER
    config_class = LoraConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        params = LoraParams(self.config, target_modules(run.lm.model, self.config.targets), run.seed).to(run.lm.device)
        found = train_adapter(run, params)
        found.prompt.meta.update({"lora": {"rank": self.config.rank, "alpha": self.config.alpha,
                                           "targets": sorted({n.rsplit(".", 1)[-1] for n, _ in params.modules_by_key.values()})}})  # fmt: skip
        return found


@hookimpl
def register_optimizers(register):
    register(LoraOptimizer)
