"""Deep prompts: prefix tuning (Li & Liang, 2021) and P-tuning v2 (Liu et al., 2022).

Trainable keys and values in front of the input at every layer of the frozen model, instead of vectors at its
input only. The prompt's template stays as it is (the run's first template; it must have no ``[P]``/``[T]`` slot):
the prefix is ``Prompt.prefix``, a ``(layers, 2, kv_heads, n_tokens, head_dim)`` tensor that the engine puts in
front of every input's keys/values (the cache path of a causal LM; extra keys/values of a masked LM's attention).

* ``layers=0`` (default): every layer's prefix is free (P-tuning v2). ``layers=N``: the top ``N`` layers' prefixes
  are free and the layers below hold the keys/values the model itself computes for ``n_tokens`` trainable input
  vectors (a soft prompt underneath), so that every layer sees the same ``n_tokens`` positions.
* ``reparam=true``: the free prefixes are trained through a two-layer MLP over a table of ``n_tokens`` vectors
  (Li & Liang's reparameterisation), added to the starting prefixes with its last layer zero at start (training
  starts exactly from the initialisation). Only the resulting plain prefixes are saved: inference needs no MLP.
* ``init=vocab`` (default): the starting prefixes are the model's own keys/values of ``n_tokens`` frequent tokens
  (as if a hard prompt of those tokens stood in front); ``init=random``: standard normal, as PEFT's prefix encoder.

Training is the shared loop (:func:`promptopt.sdk.fit`); the learning rate is the run's ``--lr`` (P-tuning v2
uses 5e-3 to 1e-2).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

import torch

from promptopt import hookimpl
from promptopt.sdk import (
    MethodKind, ConfigError,
    OptimizeResult,
    PromptOptimizer,
    RunContext,
    adapter_template,
    enum_value,
    fit,
    frequent_token_ids,
    model_kv,
    prefix_shape,
)


class PrefixInit(str, enum.Enum):
    VOCAB = "vocab"
    RANDOM = "random"


@dataclass
class PrefixConfig:
    n_tokens: int = field(default=20, metadata={"help": "prefix positions (keys/values per layer)"})
    layers: int = field(default=0, metadata={"help": "layers with free prefixes: 0 = all, N = the top N (the layers below get the model's keys/values of trainable input vectors)"})  # fmt: skip
    reparam: bool = field(default=False, metadata={"help": "train the prefixes through an MLP (Li & Liang); saved as plain prefixes"})  # fmt: skip
    reparam_hidden: int = field(default=512, metadata={"help": "hidden width of the reparameterisation MLP (reparam=true)"})  # fmt: skip
    init: PrefixInit = field(default=PrefixInit.VOCAB, metadata={"help": "starting prefixes: vocab (the model's keys/values of frequent tokens) or random (standard normal)"})  # fmt: skip
    vocab_top: int = field(default=5000, metadata={"help": "draw the init=vocab tokens (and the input vectors below the top layers) from this many most frequent tokens"})  # fmt: skip

    def __post_init__(self):
        self.init = enum_value(PrefixInit, self.init, "PrefixConfig.init")
        for name in ("n_tokens", "reparam_hidden", "vocab_top"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PrefixConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.layers < 0:
            raise ConfigError(f"PrefixConfig.layers must be 0 (all) or a number of top layers, got {self.layers}")


class PrefixParams(torch.nn.Module):
    """The trainable part of a deep prompt; ``forward()`` returns ``{"prefix": (layers, 2, kv_heads, n, dim)}``."""

    def __init__(self, config: PrefixConfig, lm, seed: int):
        super().__init__()
        self.lm = lm  # not a module: the frozen model is used, never held as a parameter
        shape = prefix_shape(lm, config.n_tokens)
        total = shape[0]
        if config.layers > total:
            raise ConfigError(f"PrefixConfig.layers is {config.layers}; model {lm.name!r} has {total} layers")
        self.top = config.layers or total
        self.bottom = total - self.top
        generator = torch.Generator().manual_seed(seed)
        weight = lm.embeddings.weight.detach().to("cpu", torch.float32)
        pool = torch.tensor(frequent_token_ids(lm.tokenizer, config.vocab_top, weight.shape[0]))
        tokens = weight[pool[torch.randint(len(pool), (config.n_tokens,), generator=generator)]].clone()
        if config.init == PrefixInit.VOCAB:
            with torch.no_grad():
                start = model_kv(lm, tokens.to(lm.device))[self.bottom :].cpu()
        else:
            start = torch.randn((self.top, *shape[1:]), generator=generator)
        self.embeds = torch.nn.Parameter(tokens) if self.bottom else None
        if config.reparam:
            torch.manual_seed(seed)  # the MLP's own weights
            width = lm.hidden_size
            self.register_buffer("start", start)
            self.inputs = torch.nn.Parameter(tokens.clone())
            self.mlp = torch.nn.Sequential(torch.nn.Linear(width, config.reparam_hidden), torch.nn.Tanh(),
                                           torch.nn.Linear(config.reparam_hidden, start[:, :, :, 0].numel()))  # fmt: skip
            torch.nn.init.zeros_(self.mlp[-1].weight)
            torch.nn.init.zeros_(self.mlp[-1].bias)
            self.free = None
        else:
            self.free = torch.nn.Parameter(start)
            self.mlp = None

    def forward(self) -> dict[str, torch.Tensor]:
        if self.mlp is not None:
            top, _, heads, n, dim = self.start.shape
            out = self.mlp(self.inputs).view(n, top, 2, heads, dim).permute(1, 2, 3, 0, 4)
            free = self.start + out
        else:
            free = self.free
        parts = [model_kv(self.lm, self.embeds)[: self.bottom].to(free.device)] if self.bottom else []
        return {"prefix": torch.cat([*parts, free.to(self.lm.device)], dim=0) if parts else free}


class PrefixOptimizer(PromptOptimizer):
    """Trains per-layer key/value prefixes (a deep prompt) with the shared loop; the model stays frozen."""

    name = "prefix"
    description = "prefix tuning / P-tuning v2: trainable keys/values in front of the input at every layer"
    kind = MethodKind.DEEP
    config_class = PrefixConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        config = self.config
        prompt = adapter_template(run)
        params = PrefixParams(config, run.lm, run.seed)
        scorer = run.scorer

        def with_prefix(values):
            return dataclasses.replace(prompt, prefix=values["prefix"])

        result = fit(
            params, scorer.usable_examples(prompt, run.train), run.train_config, scorer=scorer, prompt=prompt,
            loss_fn=lambda values, batch: scorer.loss(with_prefix(values), batch),
            evaluate_fn=(lambda values: scorer.evaluate(with_prefix(values), list(run.select))) if run.select else None,
            checkpoint_dir=run.output_dir / "checkpoint", resume=run.resume, seed=run.seed, hook=run.hook, run=run,
            log_fn=run.log, progress="training" if run.progress else False,
        )  # fmt: skip
        trained = with_prefix(result.values)
        trained.meta.update({"best_step": result.best_step, "steps": result.steps, "prefix_layers": params.top,
                             "reparam": config.reparam, "init": config.init.value})  # fmt: skip
        return OptimizeResult(prompt=trained, trainable_parameters=result.trainable_parameters,
                              select_metrics=result.best_metrics, extra={"best_step": result.best_step})  # fmt: skip


@hookimpl
def register_optimizers(register):
    register(PrefixOptimizer)
