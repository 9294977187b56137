"""The training loop shared by every trainable method: :func:`fit`.

A method hands :func:`fit` a ``torch.nn.Module`` that holds *only* the prompt's own parameters and whose
``forward()`` returns the prompt's vectors by segment name (``{"p0": (n, hidden) tensor, ...}``): a plain table of
vectors (:class:`PromptVectors`), or an encoder that produces them. A module may define ``optimizer_groups()``,
a list of ``{"params": [...], "lr_scale": f}`` covering its parameters, to give parts of it their own peak
learning rate (``f * lr``). The loop trains those parameters and nothing
else: the language model stays frozen, gets no gradient and no optimizer state.

What the loop does, in order, for each optimizer step: ``grad_accum`` batches (loss averaged), gradient clipping,
the optimizer (AdamW or Adafactor) and the learning-rate schedule (warm-up, then constant, linear or cosine decay),
the ``training_step`` hook, an evaluation on the selection split every ``eval_every`` steps (``evaluation`` hook;
the best state is kept, ``patience`` evaluations without improvement stop training), and a checkpoint every
``checkpoint_every`` steps.

Data order is a pure function of the seed: epoch ``e`` visits the examples in a permutation seeded by
``(seed, e)``; with ``group_by_length`` each run of ``group_by_length`` batches of that permutation is sorted by
length, so that a batch holds examples of similar length (less padding) while the epochs stay shuffled. Batches
are consecutive slices of that stream, so a position in it (a count of batches) is all that resuming needs.

A checkpoint is one ``checkpoint.safetensors`` file, replaced atomically: the prompt parameters, the best state
so far, the optimizer state, the torch RNG state as tensors, and in its metadata (JSON) the step, the data
position, the scheduler state, the Python and NumPy RNG states, the best score and the history. No pickle.
Resuming from it continues exactly where the run stopped: on CPU with the same seed the final prompt and metric
equal those of an uninterrupted run.

Data parallel (several processes under ``torchrun`` / ``accelerate launch``, :mod:`promptopt.engine.distributed`):
every process draws the same global batch, computes the loss on its contiguous slice of it weighted by the slice's
share, and the trainable gradients alone are summed across processes before clipping, so each step equals the
single-process step on the global batch (``loss_fn`` must return a mean over its examples). Only the main process
writes checkpoints; they hold no process count, so a run resumes on any number of processes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from promptopt.engine import distributed
from promptopt.engine.compute import compute_counter
from promptopt.errors import ConfigError, PromptoptError, enum_value
from promptopt.data.files import atomic_path
from promptopt.data.history import Evaluation, TrainStep

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_VERSION = 1


class OptimizerName(str, enum.Enum):
    ADAMW = "adamw"
    ADAFACTOR = "adafactor"


class Schedule(str, enum.Enum):
    CONSTANT = "constant"
    LINEAR = "linear"
    COSINE = "cosine"


@dataclass
class TrainConfig:
    """Options of the shared training loop. Each is also a ``promptopt run`` flag (``--steps``, ``--lr``, ...).

    Fields whose metadata says ``"resume_free": True`` may change when a run is resumed (they do not change what
    is trained); every other field is part of the run's fingerprint. Method configs follow the same convention.
    """

    steps: int = field(default=300, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "training examples per step (before accumulation)"})
    grad_accum: int = field(default=1, metadata={"help": "batches accumulated into one optimizer step"})
    lr: float = field(default=3e-2, metadata={"help": "peak learning rate"})
    optimizer: OptimizerName = field(default=OptimizerName.ADAMW, metadata={"help": "adamw or adafactor"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    schedule: Schedule = field(default=Schedule.LINEAR, metadata={"help": "learning-rate schedule after warm-up"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    eval_every: int = field(default=50, metadata={"help": "evaluate on the selection split every N steps (0 = only at the end)", "resume_free": True})  # fmt: skip
    patience: int = field(default=0, metadata={"help": "stop after N evaluations without improvement (0 = never)", "resume_free": True})  # fmt: skip
    checkpoint_every: int = field(default=50, metadata={"help": "write a resumable checkpoint every N steps (0 = off)", "resume_free": True})  # fmt: skip
    group_by_length: int = field(default=16, metadata={"help": "sort the shuffled examples by length within runs of N batches, so batches hold similar lengths (0 = off)"})  # fmt: skip

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "patience", "checkpoint_every", "group_by_length"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        self.optimizer = enum_value(OptimizerName, self.optimizer, "TrainConfig.optimizer")
        self.schedule = enum_value(Schedule, self.schedule, "TrainConfig.schedule")

    def to_json(self) -> dict:
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in self.__dict__.items()}


class PromptVectors(torch.nn.Module):
    """The simplest prompt parameters: one trainable ``(n, hidden)`` table per vector segment, returned as is."""

    def __init__(self, values: dict[str, torch.Tensor]):
        super().__init__()
        self.vectors = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(v.detach().to(torch.float32).clone()) for name, v in values.items()}
        )

    def forward(self) -> dict[str, torch.Tensor]:
        return dict(self.vectors.items())


@dataclass
class FitResult:
    """What :func:`fit` returns. ``values`` are the prompt vectors of the best state (detached, CPU, float32).

    ``best_step`` is the step whose evaluation chose them (the last step when there was no evaluation); after
    :func:`fit` the ``params`` module holds that state too.
    """

    values: dict[str, torch.Tensor]
    best_step: int
    best_metrics: dict
    steps: int
    stopped_early: bool
    resumed_from: int | None
    seconds: float
    trainable_parameters: int
    history: list[dict] = field(default_factory=list)
    #: training stopped because the run's compute budget (``--budget-flops``) was spent
    budget_spent: bool = False


# -- data order ---------------------------------------------------------------------------------------------------


class BatchStream:
    """Batches as consecutive slices of an endless stream of seeded epoch permutations (see the module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int, lengths: Sequence[int] | None = None, group: int = 0):
        if n < 1:
            raise PromptoptError("training needs at least one example")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.lengths = lengths
        self.group = group
        self._epochs: dict[int, list[int]] = {}

    def epoch(self, e: int) -> list[int]:
        order = self._epochs.get(e)
        if order is None:
            order = list(range(self.n))
            random.Random(f"{self.seed}:epoch:{e}").shuffle(order)
            if self.lengths is not None and self.group > 0:
                chunk = self.group * self.batch_size
                lengths = self.lengths
                order = [i for s in range(0, self.n, chunk) for i in sorted(order[s : s + chunk], key=lambda i: -lengths[i])]
            self._epochs = {e: order}  # one epoch at a time is all a step needs
        return order

    def batch(self, k: int) -> list[int]:
        """Indices of the ``k``-th batch (k counts from 0)."""
        start = k * self.batch_size
        return [self.epoch(p // self.n)[p % self.n] for p in range(start, start + self.batch_size)]


# -- schedule and optimizer ------------------------------------------------------------------------------------


def lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (counting from 0)."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if config.schedule == Schedule.CONSTANT:
        return 1.0
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    if config.schedule == Schedule.LINEAR:
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(config: TrainConfig, parameters: list):
    """The optimizer and its schedule. ``parameters``: a list of parameters, or of groups ``{"params": [...],
    "lr_scale": f}`` (a group's peak learning rate is ``f * config.lr``)."""
    if parameters and isinstance(parameters[0], dict):
        parameters = [{"params": list(g["params"]), "lr": config.lr * float(g.get("lr_scale", 1.0))} for g in parameters]
    if config.optimizer == OptimizerName.ADAFACTOR:
        from transformers.optimization import Adafactor

        # fixed learning rate driven by our schedule (Adafactor's own relative step would ignore --lr)
        optimizer = Adafactor(parameters, lr=config.lr, weight_decay=config.weight_decay, scale_parameter=False,
                              relative_step=False, warmup_init=False)  # fmt: skip
    else:
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))
    return optimizer, scheduler


# -- the loop ---------------------------------------------------------------------------------------------------


@dataclass
class _State:
    step: int = 0
    batches: int = 0  # position in the batch stream
    best_score: float | None = None
    best_step: int = 0
    best_metrics: dict = field(default_factory=dict)
    bad_evals: int = 0
    last_eval: int = -1
    stopped_early: bool = False
    budget_spent: bool = False
    #: FLOPs spent by this loop before the last checkpoint (a resumed run adds them to the model's counter)
    flops: float = 0.0
    #: size of the run's history file at the last checkpoint (``run.history_bytes()``; None: not known)
    history_bytes: int | None = None
    history: list = field(default_factory=list)


def fit(
    params: torch.nn.Module,
    examples: Sequence,
    config: TrainConfig,
    *,
    loss_fn: Callable[[dict[str, torch.Tensor], list], torch.Tensor] | None = None,
    scorer=None,
    prompt=None,
    select: Sequence | None = None,
    evaluate_fn: Callable[[dict[str, torch.Tensor]], Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    hook=None,
    run=None,
    log_fn: Callable[[dict], None] | None = None,
    progress: bool | str = False,
    frozen: torch.nn.Module | None = None,
    length_fn: Callable[[Any], int] | None = None,
    compute=None,
) -> FitResult:
    """Train the parameters of ``params`` (and nothing else) on ``examples``.

    ``params()`` returns ``{segment name: (n, hidden) tensor}``. The loss is ``loss_fn(values, batch)``, else
    ``params.loss(values, batch)`` when the module defines one, else, given ``scorer`` and ``prompt``,
    ``scorer.loss(prompt, batch, vectors=values)``. The selection evaluation is
    ``evaluate_fn(values)`` (an ``EvalResult`` or a metrics dict with ``"score"``, higher is better) or, given
    ``scorer``, ``prompt`` and ``select``, ``scorer.evaluate(prompt.with_vectors(values), select)``. ``hook`` (the
    plugin manager's ``pm.hook``) gets ``training_step`` and ``evaluation`` calls with ``run``. ``frozen`` (by
    default the scorer's model) must have no trainable parameter and share none with ``params``.

    With a ``checkpoint_dir``, checkpoints are written there; with ``resume`` the latest one is loaded first (a
    missing one starts afresh). Returns a :class:`FitResult`; ``params`` is left holding the best state.

    ``compute`` (by default the scorer's model's :class:`~promptopt.engine.compute.ComputeCounter`) carries the
    run's budget: before each step the loop stops when the budget is spent (so it overshoots by at most one step
    and its evaluation), keeping the best state evaluated so far.
    """
    start_time = time.perf_counter()
    if loss_fn is None and callable(getattr(params, "loss", None)):
        loss_fn = params.loss  # the module's own objective (e.g. a sharpness-aware or regularised loss)
    if scorer is not None and prompt is not None:
        if loss_fn is None:
            loss_fn = lambda values, batch: scorer.loss(prompt, batch, vectors=values)  # noqa: E731
        if evaluate_fn is None and select:
            evaluate_fn = lambda values: scorer.evaluate(prompt.with_vectors(values), list(select))  # noqa: E731
        if length_fn is None:
            length_fn = _prompt_length(scorer, prompt)
        if frozen is None:
            frozen = scorer.lm.model
    if compute is None:
        compute = getattr(run, "compute", None) or (compute_counter(scorer.lm) if scorer is not None else None)
    if loss_fn is None:
        raise PromptoptError("fit() needs a loss_fn, or a scorer and a prompt")
    trainable = _check_parameters(params, frozen)
    examples = list(examples)
    lengths = [length_fn(ex) for ex in examples] if length_fn is not None and config.group_by_length else None
    stream = BatchStream(len(examples), config.batch_size, seed, lengths, config.group_by_length)
    groups = params.optimizer_groups() if hasattr(params, "optimizer_groups") else None
    if groups is not None:
        grouped = {id(p) for g in groups for p in g["params"]}
        if grouped != {id(p) for p in trainable}:
            raise PromptoptError(f"{type(params).__name__}.optimizer_groups() must cover every trainable parameter once")
    optimizer, scheduler = make_optimizer(config, groups or trainable)
    state = _State()
    best_state = None
    resumed_from = None
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    fingerprint = _fingerprint(params, examples, config, seed)
    if resume and ckpt is not None and ckpt.exists():
        state, best_state = _load_checkpoint(ckpt, params, optimizer, scheduler, fingerprint)
        resumed_from = state.step
        if compute is not None:  # what the interrupted process spent counts toward this run's compute and budget
            compute.totals.flops += state.flops
        unfinished = state.step < config.steps and not state.stopped_early and not state.budget_spent
        if unfinished and state.history_bytes is not None and hasattr(run, "truncate_history"):
            run.truncate_history(state.history_bytes)  # records after the checkpoint are written again
        log.info("resumed from %s at step %d", ckpt, state.step)
    else:
        _seed_everything(seed)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=state.step, desc=progress if isinstance(progress, str) else "training",
                   unit="step", leave=False)  # fmt: skip
    n_params = sum(p.numel() for p in trainable)
    done = state.step >= config.steps or state.stopped_early or state.budget_spent
    flops_at_start = (compute.flops - state.flops) if compute is not None else 0.0

    def save():  # the checkpoint, with what this loop spent and how long the run's history is at this point
        state.flops = compute.flops - flops_at_start if compute is not None else 0.0
        state.history_bytes = run.history_bytes() if hasattr(run, "history_bytes") else None
        _save_checkpoint(ckpt, params, best_state, optimizer, scheduler, state, fingerprint)

    while not done:
        if compute is not None and compute.exhausted:
            state.budget_spent = True
            log.info("compute budget spent at step %d", state.step)
            if ckpt is not None and distributed.is_main():
                save()
            break
        params.train()
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        for _ in range(config.grad_accum):
            indices = stream.batch(state.batches)
            state.batches += 1
            # data parallel: this process's slice of the global batch, weighted so that the summed gradients
            # are those of the mean over the global batch (alone: the whole batch, weight 1)
            mine = [indices[i] for i in distributed.shard(len(indices))]
            if not mine:
                continue
            loss = loss_fn(params(), [examples[i] for i in mine]) * (len(mine) / len(indices))
            if not torch.isfinite(loss.detach()).all():
                where = ", ".join(getattr(examples[i], "source", "") or f"example {i}" for i in mine[:4]) + (", ..." if len(mine) > 4 else "")
                raise PromptoptError(f"training loss is {float(loss.detach())} at step {state.step + 1} on training batch "
                                     f"{state.batches} ({where}); lower --lr, or use float32 (--dtype float32)")  # fmt: skip
            (loss / config.grad_accum).backward()
            total += loss.detach().double().cpu() / config.grad_accum
        distributed.all_reduce_grads(trainable)
        total = float(distributed.all_reduce_sum(total))
        if not math.isfinite(total):
            raise PromptoptError(f"training loss is {total} at step {state.step + 1}; lower --lr")
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        state.step += 1
        spent = {"flops": compute.flops - flops_at_start} if compute is not None else {}
        record = TrainStep(step=state.step, loss=total, lr=lr, extra=spent).to_json()
        state.history.append(record)
        if hook is not None:
            hook.training_step(run=run, step=state.step, loss=total, lr=lr)
        if log_fn is not None:
            log_fn(record)
        final = state.step >= config.steps
        if evaluate_fn is not None and ((config.eval_every and state.step % config.eval_every == 0) or final):
            improved = _evaluate(params, evaluate_fn, state, hook, run, log_fn)
            if improved:
                best_state = _copy_state(params)
            elif config.patience and state.bad_evals >= config.patience:
                state.stopped_early = True
        done = final or state.stopped_early
        if ckpt is not None and (done or (config.checkpoint_every and state.step % config.checkpoint_every == 0)) \
                and distributed.is_main():
            save()
        if bar is not None:
            postfix = {"loss": f"{total:.4f}"}
            if state.best_score is not None:
                postfix["select"] = f"{state.best_score:.4f}"
            bar.set_postfix(postfix)
            bar.update(1)
    if bar is not None:
        bar.close()
    if best_state is not None:
        params.load_state_dict(best_state)
    else:
        state.best_step = state.step
    params.eval()
    with torch.no_grad():
        values = {k: v.detach().to("cpu", torch.float32).clone() for k, v in params().items()}
    return FitResult(values=values, best_step=state.best_step, best_metrics=state.best_metrics, steps=state.step,
                     stopped_early=state.stopped_early, resumed_from=resumed_from,
                     seconds=time.perf_counter() - start_time, trainable_parameters=n_params,
                     history=state.history, budget_spent=state.budget_spent)  # fmt: skip


def _prompt_length(scorer, prompt):
    from promptopt.data.prompt import SegmentKind
    from promptopt.engine.inputs import VectorLayout

    zeros = {s.name: torch.zeros(s.n, 1) for s in prompt.segments_of(SegmentKind.VECTORS)}
    layout = VectorLayout.build(prompt, zeros)
    return lambda ex: len(scorer.encoder.encode(prompt, ex.inputs, layout).ids)


def _check_parameters(params: torch.nn.Module, frozen: torch.nn.Module | None) -> list[torch.nn.Parameter]:
    trainable = [p for p in params.parameters() if p.requires_grad]
    if not trainable:
        raise PromptoptError("the prompt module has no trainable parameter")
    if frozen is not None:
        unfrozen = [name for name, p in frozen.named_parameters() if p.requires_grad]
        if unfrozen:
            raise PromptoptError(f"the model must stay frozen, but {unfrozen[:3]} require gradients")
        model_ids = {id(p) for p in frozen.parameters()}
        if any(id(p) in model_ids for p in trainable):
            raise PromptoptError("the prompt module holds a parameter of the model; it must hold only its own")
    return trainable


def _evaluate(params, evaluate_fn, state: _State, hook, run, log_fn) -> bool:
    params.eval()
    with torch.no_grad():
        result = evaluate_fn(params())
    metrics = result.metrics if hasattr(result, "metrics") else dict(result)
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if "score" not in flat:
        raise PromptoptError("the selection evaluation returned no 'score'")
    state.last_eval = state.step
    record = Evaluation(step=state.step, split="select", metrics=flat).to_json()
    state.history.append(record)
    if hook is not None:
        hook.evaluation(run=run, step=state.step, split="select", metrics=flat)
    if log_fn is not None:
        log_fn(record)
    score = flat["score"]
    if state.best_score is None or score > state.best_score:
        state.best_score, state.best_step, state.best_metrics, state.bad_evals = score, state.step, flat, 0
        return True
    state.bad_evals += 1
    return False


def _copy_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def _fingerprint(params, examples, config: TrainConfig, seed: int) -> dict:
    """What must match for a checkpoint to continue this run (the schedule-free options may change)."""
    shapes = {k: list(v.shape) for k, v in params.state_dict().items()}
    free = {f.name for f in dataclasses.fields(config) if f.metadata.get("resume_free")}
    keep = {k: v for k, v in config.to_json().items() if k not in free}
    return {"params": shapes, "examples": len(examples), "seed": seed, "train": keep}


# -- checkpoints: tensors in safetensors, the rest as JSON in its metadata -----------------------------------------


def _pack(obj, tensors: dict, key: str):
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _pack(v, tensors, f"{key}.{i}")] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        items = [_pack(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return {"__list__": obj.tolist(), "dtype": str(getattr(obj, "dtype", ""))}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise PromptoptError(f"cannot write a {type(obj).__name__} into a checkpoint ({key})")


def _unpack(obj, tensors: dict):
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unpack(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
        if "__list__" in obj:
            import numpy as np

            return np.array(obj["__list__"], dtype=obj["dtype"] or None)
    return obj


def _rng_state() -> dict:
    out: dict = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        out["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(obj):
    return tuple(_as_tuple(x) for x in obj) if isinstance(obj, (list, tuple)) else obj


def _save_checkpoint(path: Path, params, best_state, optimizer, scheduler, state: _State, fingerprint: dict) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    meta = {
        "version": CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "state": {k: v for k, v in state.__dict__.items()},
        "params": _pack(params.state_dict(), tensors, "params"),
        "best": _pack(best_state, tensors, "best") if best_state is not None else None,
        "optimizer": _pack(optimizer.state_dict(), tensors, "optimizer"),
        "scheduler": _pack(scheduler.state_dict(), tensors, "scheduler"),
        "rng": _pack(_rng_state(), tensors, "rng"),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"promptopt_checkpoint": json.dumps(meta)})


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The metadata (JSON) and tensors of a checkpoint file, for inspection."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("promptopt_checkpoint")
    if raw is None:
        raise PromptoptError(f"{path}: not a promptopt checkpoint (no 'promptopt_checkpoint' metadata)")
    return json.loads(raw), load_file(str(path))


def _load_checkpoint(path: Path, params, optimizer, scheduler, fingerprint: dict):
    meta, tensors = read_checkpoint(path)
    if meta.get("version") != CHECKPOINT_VERSION:
        raise PromptoptError(f"{path}: field 'version' is {meta.get('version')!r}; this promptopt reads {CHECKPOINT_VERSION}")
    saved = meta["fingerprint"]
    for key in fingerprint:
        if saved.get(key) != fingerprint[key]:
            raise PromptoptError(
                f"{path}: cannot resume: field {key!r} was {saved.get(key)!r} and is now {fingerprint[key]!r}; "
                "resume with the same options, or start a new run"
            )
    params.load_state_dict(_unpack(meta["params"], tensors))
    optimizer.load_state_dict(_unpack(meta["optimizer"], tensors))
    scheduler.load_state_dict(_unpack(meta["scheduler"], tensors))
    _set_rng_state(_unpack(meta["rng"], tensors))
    state = _State(**meta["state"])
    best = _unpack(meta["best"], tensors) if meta["best"] is not None else None
    return state, best
