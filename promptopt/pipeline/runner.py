"""The Python API behind the CLI: ``promptopt.run(...)`` and friends.

    import promptopt
    result = promptopt.run(method="manual", task="tiny-reviews", max_eval=100)
    print(result.metrics["eval"]["accuracy"])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from promptopt.pipeline import config as cfg
from promptopt.engine import distributed
from promptopt.engine.adapt import ModelEdit, applied, check_prefix
from promptopt.engine.model import DEFAULT_MODEL, LoadedModel, load_model, model_identity
from promptopt.engine.scoring import EVAL_BATCH_SIZE, Scorer
from promptopt.engine.train import TrainConfig
from promptopt.errors import ConfigError, PromptoptError
from promptopt.data.files import write_json, write_jsonl
from promptopt.pipeline.methods import OptimizeResult, RunContext
from promptopt.plugins import get_optimizer, get_plugin_manager, get_task
from promptopt.data.prompt import Prompt
from promptopt.pipeline.results import RunResult, environment
from promptopt.pipeline.session import RunSession
from promptopt.data.tasks import Example, TaskSpec
from promptopt.pipeline.verbalizer import check_label_search, label_search_step, log_label_search

DEFAULT_TASK = "tiny-reviews"


@dataclass
class RunOptions:
    """Run-level settings (the ``promptopt run`` flags). Method options go in ``method_options``."""

    method: str = field(default="manual", metadata={"help": "method id (see 'promptopt methods')", "short": "-m"})
    task: str = field(default=DEFAULT_TASK, metadata={"help": "task name or spec file"})
    model: str | None = field(default=None, metadata={"help": "HF model id or local path; default: embedded SmolLM2"})
    model_kind: str | None = field(default=None, metadata={"help": "causal or masked (default: detected)", "choices": ["causal", "masked"]})  # fmt: skip
    seed: int = field(default=0, metadata={"help": "seed for sampling and training"})
    output: str | None = field(default=None, metadata={"help": "run directory (default runs/TASK-METHOD-sSEED)"})
    max_train: int | None = field(default=None, metadata={"help": "sample at most N training examples"})
    shots: int | None = field(default=None, metadata={"help": "sample N training examples per class"})
    kshot: str | None = field(default=None, metadata={"help": "K-SEED: train and select on the task's k-shot split (LM-BFF's 16-13: 16 per class, seed 13; the spec's 'kshot' table), report on its full test set"})
    max_eval: int | None = field(default=None, metadata={"help": "sample at most N examples of select and eval splits"})
    eval_seed: int = field(default=0, metadata={"help": "seed of the --max-eval sample of the eval split: the same for every method and --seed, so comparisons are paired"})
    select_split: str | None = field(default=None, metadata={"help": "split for choosing prompts: dev, train, or holdout:N (N held out of train); default dev, else holdout"})
    eval_split: str | None = field(default=None, metadata={"help": "split reported at the end; default test, else dev"})
    templates: list[str] = field(default_factory=list, metadata={"help": "templates (default: the task's)"})
    batch_size: int = field(default=EVAL_BATCH_SIZE, metadata={"help": f"evaluation batch size (default {EVAL_BATCH_SIZE}; lower it for a large model on a small GPU)", "flag": "--eval-batch-size"})
    device: str | None = field(default=None, metadata={"help": "cuda, mps, cpu (default: best available)"})
    dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16, float16 (default: bf16 on a GPU and on a CPU with native bf16, else float32)"})
    padding_side: str | None = field(default=None, metadata={"help": "left or right (default: left for causal LMs)", "choices": ["left", "right"]})  # fmt: skip
    chat_template: bool = field(default=False, metadata={"help": "wrap each filled-in prompt in the tokenizer's chat template as the user's turn; the answer is read where the assistant's turn starts"})
    scoring: str | None = field(default=None, metadata={"help": "class scoring rule for the method and the evaluation: loglik, norm_token, norm_char (acc_norm) or calibrated (default: the task spec's, else loglik)", "choices": ["loglik", "norm_token", "norm_char", "calibrated"]})  # fmt: skip
    device_map: str | None = field(default=None, metadata={"help": "auto, balanced or sequential: spread the model over devices (Accelerate)", "choices": ["auto", "balanced", "sequential"]})  # fmt: skip
    quantize: str | None = field(default=None, metadata={"help": "8bit or 4bit: load the frozen model quantized by bitsandbytes (CUDA)", "choices": ["8bit", "4bit"]})  # fmt: skip
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in the backward pass (less memory for long inputs)"})
    method_options: dict = field(default_factory=dict, metadata={"help": "method config values (-o KEY=VALUE)"})
    train: dict = field(default_factory=dict, metadata={"help": "training loop options"})
    label_search: bool = field(default=False, metadata={"help": "search label words on the training split (AutoPrompt's label search) and give them to the method and the evaluation"})
    label_k: int = field(default=3, metadata={"help": "label words per class found by --label-search"})
    label_examples: int = field(default=512, metadata={"help": "training examples --label-search fits on (0 = all)"})
    label_candidates: int = field(default=50, metadata={"help": "words per class --label-search proposes and then chooses among by how well they classify (0 = AutoPrompt's classifier ranking alone)"})  # fmt: skip
    budget_flops: float | None = field(default=None, metadata={"help": "stop the method (training or search, selection scoring included) once it has spent this many estimated FLOPs"})
    resume: bool = field(default=False, metadata={"help": "continue an interrupted run in the same directory (refused if its fingerprint differs)"})
    reuse: bool = field(default=False, metadata={"help": "a finished run in the same directory with the same fingerprint is returned as it is; with another fingerprint it is run again"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in the same directory"})
    progress: bool = field(default=True, metadata={"help": "show progress bars", "no_help": "no progress bars"})


def sample(examples: list[Example], n: int | None, seed: int, salt: str) -> list[Example]:
    """A seeded subsample of at most ``n`` examples, in their original order."""
    if n is None or n >= len(examples):
        return list(examples)
    rng = random.Random(f"{seed}:{salt}")
    keep = sorted(rng.sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def sample_shots(examples: list[Example], shots: int, seed: int) -> list[Example]:
    """``shots`` examples per label (fewer where a label has fewer), seeded."""
    rng = random.Random(f"{seed}:shots")
    by_label: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_label.setdefault(ex.label, []).append(i)
    keep = []
    for idx in by_label.values():
        keep.extend(rng.sample(idx, min(shots, len(idx))))
    return [examples[i] for i in sorted(keep)]


def prepare_data(task: TaskSpec, opts: RunOptions, needs_train: bool) -> tuple[dict[str, list[Example]], dict]:
    """Load and sample the splits by role (train, select, eval); returns them and a description of the choice."""
    available = task.available_splits
    eval_split = opts.eval_split or ("test" if "test" in available else "dev")
    select_split = opts.select_split or ("dev" if "dev" in available and eval_split != "dev" else "holdout:200")
    if eval_split not in available:
        raise ConfigError(f"eval split {eval_split!r} is not in task {task.name!r}; it has {available}")
    if select_split == eval_split:
        raise ConfigError(f"--select-split {select_split} is the reported split (--eval-split {eval_split}): choosing a "
                          "prompt on the examples it is scored on overstates it; select on another split (e.g. "
                          "holdout:200) or report another one")  # fmt: skip
    if eval_split == "train" and (needs_train or select_split.startswith("holdout:")):
        raise ConfigError(f"--eval-split train: the method trains (or selects) on task {task.name!r}'s train split, "
                          "so it cannot be the reported split; report dev or test")  # fmt: skip
    data: dict[str, list[Example]] = {}
    train: list[Example] = []
    holdout = None
    if select_split.startswith("holdout:"):
        try:
            holdout = int(select_split.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"select split {select_split!r}: use holdout:N with N an integer") from None
    elif select_split not in available:
        raise ConfigError(f"select split {select_split!r} is not in task {task.name!r}; it has {available} or holdout:N")
    if needs_train or holdout is not None:
        if "train" not in available:
            raise ConfigError(f"task {task.name!r} has no train split; this run needs one")
        train = task.load_split("train")
    if holdout is not None:
        rng = random.Random(f"{opts.seed}:holdout")
        order = list(range(len(train)))
        rng.shuffle(order)
        held = set(order[:holdout])
        data["select"] = [ex for i, ex in enumerate(train) if i in held]
        train = [ex for i, ex in enumerate(train) if i not in held]
    else:
        data["select"] = task.load_split(select_split)
    if opts.shots:
        train = sample_shots(train, opts.shots, opts.seed)
    data["train"] = sample(train, opts.max_train, opts.seed, "train")
    data["select"] = sample(data["select"], opts.max_eval, opts.seed, "select")
    # the evaluation sample does not depend on --seed: every method and seed is scored on the same examples
    data["eval"] = sample(task.load_split(eval_split), opts.max_eval, opts.eval_seed, "eval")
    described = {"select_split": select_split, "eval_split": eval_split, **{k: len(v) for k, v in data.items()},
                 "shots": opts.shots, "max_train": opts.max_train, "max_eval": opts.max_eval, "eval_seed": opts.eval_seed,
                 "ids": {k: ids_digest(v) for k, v in data.items()}}  # fmt: skip
    # the labels of the training set (a k-shot split's even when the method reads none): the report's majority class
    counted = data["train"] or (task.load_split("train") if task.kshot_split is not None else [])
    if counted:
        described["train_labels"] = dict(sorted(Counter(ex.label for ex in counted).items()))
    if task.kshot_split is not None:
        described["kshot"] = task.kshot_split
    return data, described


def parse_kshot(text: str) -> tuple[int, int]:
    """``"16-13"`` -> (16, 13): examples per class and the split's seed."""
    k, _, seed = str(text).partition("-")
    if not (k.isdigit() and seed.isdigit() and int(k) > 0):
        raise ConfigError(f"--kshot {text!r}: give K-SEED, e.g. 16-13 (16 per class, LM-BFF's seed 13)")
    return int(k), int(seed)


def ids_digest(examples: list[Example]) -> str:
    """A short hash of which examples these are (their sources, in order, and labels): equal digests, same data."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.source, ex.inputs, ex.label], sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return f"{len(examples)}:{h.hexdigest()[:16]}"


def default_output(opts: RunOptions) -> Path:
    task = Path(opts.task).stem if opts.task.endswith((".toml", ".json")) else opts.task
    return Path("runs") / f"{task}-{opts.method}-s{opts.seed}"


def run(opts: RunOptions | None = None, lm: LoadedModel | None = None, pm=None, **kwargs) -> RunResult:
    """Run one method on one task and write the run directory. Keyword arguments set :class:`RunOptions` fields.

    ``lm`` reuses an already loaded model (the leaderboard loads each model once).
    """
    opts = dataclasses.replace(opts or RunOptions(), **kwargs)
    _check_counts(opts)
    pm = pm or get_plugin_manager()
    optimizer_cls = get_optimizer(opts.method, pm)
    method_config = cfg.build(optimizer_cls.config_class, opts.method_options)
    train_config = cfg.build(TrainConfig, {**optimizer_cls.train_defaults, **opts.train})
    task = get_task(opts.task, pm)
    if opts.kshot is not None:
        task = task.with_kshot(*parse_kshot(opts.kshot))
    if opts.label_search:
        check_label_search(task, opts)
    session = RunSession(opts.output or default_output(opts), overwrite=opts.overwrite, resume=opts.resume,
                         reuse=opts.reuse)  # fmt: skip

    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    data, described = prepare_data(task, opts, optimizer_cls.needs_training_data or opts.label_search)
    eval_examples = data.pop("eval")  # scored after the method returns; the method never holds it
    lm = lm or load_model(opts.model, device=opts.device, dtype=opts.dtype, kind=opts.model_kind,
                          device_map=opts.device_map, quantize=opts.quantize,
                          gradient_checkpointing=opts.gradient_checkpointing)  # fmt: skip
    templates = list(opts.templates) or list(task.templates)
    reused = session.check(run_fingerprint(opts, lm, task, templates, method_config, train_config, described))
    if reused is not None:
        return reused
    out = session.out
    # the method sees the task with its reported split withheld: task.load_split(eval split) raises
    task = dataclasses.replace(task, withheld=(described["eval_split"],), scoring=opts.scoring or task.scoring)
    # with --label-search every method and the final evaluation score with the found words: they become the task's own
    scorer, label_search = label_search_step(Scorer(lm, task, batch_size=opts.batch_size, padding_side=opts.padding_side,
                                                    chat_template=opts.chat_template), data, templates, opts)  # fmt: skip
    task = scorer.task
    resolved = {
        "method": opts.method,
        "method_kind": optimizer_cls.kind.value if optimizer_cls.kind is not None else None,
        "method_config": cfg.to_dict(method_config),
        "task": task.name,
        "task_spec": str(task.path) if task.path else None,
        "processes": distributed.world_size(),  # data parallel: same global batch, same result up to float sums
        "seed": opts.seed,
        "data": described,
        "templates": templates,
        "train": cfg.to_dict(train_config),
        "batch_size": opts.batch_size,
        "padding_side": scorer.side,
        "scoring": scorer.scoring.value,
        "chat_template": opts.chat_template,
        "budget_flops": opts.budget_flops,
        **environment(lm),
    }
    if label_search is not None:
        resolved["label_words"] = label_search["label_words"]
        resolved["label_search"] = {k: v for k, v in label_search.items() if k != "label_words"}
    resolved = session.write_config(resolved)
    ctx = RunContext(
        method=opts.method, config=method_config, task=task, lm=lm, scorer=scorer, data=data, templates=templates,
        seed=opts.seed, output_dir=out, train_config=train_config, hook=pm.hook, resume=opts.resume,
        progress=opts.progress, options=resolved,
    )  # fmt: skip
    result = RunResult(method=opts.method, task=task.name, model=lm.name, seed=opts.seed, output_dir=str(out),
                       config=resolved)  # fmt: skip
    log_label_search(ctx, resolved)
    counter = ctx.compute
    with session.running(ctx, result):
        start, before = time.perf_counter(), counter.snapshot()
        counter.limit = before.flops + opts.budget_flops if opts.budget_flops is not None else None
        try:
            optimizer = optimizer_cls(method_config)
            found: OptimizeResult = optimizer.optimize(ctx)
        finally:
            counter.limit = None
        result.train_seconds = time.perf_counter() - start
        result.budget_spent = opts.budget_flops is not None and counter.flops - before.flops >= opts.budget_flops
        spent = counter.since(before)
        prompt = found.prompt
        if label_search is not None and prompt.label_words is None:  # the saved prompt re-scores as it was scored
            prompt.label_words = label_search["label_words"]
        prompt.meta.setdefault("method", opts.method)
        prompt.meta.setdefault("model", lm.name)
        prompt.meta.setdefault("task", task.name)
        prompt.meta.setdefault("model_identity", prompt_identity(lm))  # re-scoring elsewhere checks it
        prompt.meta["scored_with"] = scored_with(scorer, lm)  # promptopt eval re-scores the same way
        prompt.save(out / "prompt")
        if found.edit is not None:
            found.edit.save(out / "prompt")
        before = counter.snapshot()
        filled = optimizer.example_inputs(ctx, prompt, [ex.inputs for ex in eval_examples])
        eval_examples = [dataclasses.replace(ex, inputs=x) for ex, x in zip(eval_examples, filled)]
        with applied(lm, found.edit):
            evaluation = ctx.evaluate(prompt, eval_examples, split="eval", progress="eval" if opts.progress else False)
        result.compute = {"train": spent.to_json(), "eval": counter.since(before).to_json()}
        result.metrics = {"eval": evaluation.metrics}
        result.select_metrics = found.select_metrics
        result.prompt_text = prompt.text(lm.tokenizer)
        result.trainable_parameters = found.trainable_parameters
        result.eval_seconds = evaluation.seconds
        result.eval_examples_per_second = evaluation.examples_per_second
        write_json(out / "metrics.json", {"eval": evaluation.metrics, "select": found.select_metrics})
        write_jsonl(out / "predictions.jsonl", ({"split": "eval", "id": row["source"], **row}
                                                for row in evaluation.predictions))  # fmt: skip
    return result


def run_fingerprint(opts: RunOptions, lm: LoadedModel, task: TaskSpec, templates: list[str], method_config,
                    train_config: TrainConfig, described: dict) -> dict:  # fmt: skip
    """What a run's result depends on; a resumed or reused run must match it field by field (see :func:`promptopt.pipeline.session.differs`).

    The model (name, weights hash or Hub revision, dtype, quantization, tokenizer), the task's name, label words and
    the templates given to the method, the method and its options, the training options (``resume_free`` ones aside),
    the seed, which examples each role holds (content hashes of train, select and eval), the label-search and budget
    settings, and the promptopt version.
    """
    from promptopt import __version__

    return {
        "model": model_identity(lm),
        "task": task.name,
        "label_words": task.label_words,
        "templates": templates,
        "method": opts.method,
        "method_config": cfg.fingerprint_dict(method_config),
        "train": cfg.fingerprint_dict(train_config),
        "seed": opts.seed,
        "data": {"select_split": described["select_split"], "eval_split": described["eval_split"], **described["ids"]},
        "label_search": [opts.label_k, opts.label_examples, opts.label_candidates] if opts.label_search else None,
        "budget_flops": opts.budget_flops,
        "scoring": opts.scoring or task.scoring,
        "chat_template": opts.chat_template,
        "promptopt": __version__,
    }


def _check_counts(opts: RunOptions) -> None:
    for name in ("max_train", "shots", "max_eval"):
        value = getattr(opts, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 0, got {value!r}")
    if opts.batch_size < 1:
        raise ConfigError(f"--eval-batch-size must be >= 1, got {opts.batch_size}")
    if opts.budget_flops is not None and not opts.budget_flops > 0:
        raise ConfigError(f"--budget-flops must be > 0, got {opts.budget_flops}")


def scored_with(scorer: Scorer, lm: LoadedModel) -> dict:
    """How a run scored its prompt (a saved prompt's ``meta["scored_with"]``): the scoring rule, whether the chat
    template wrapped it, the dtype and the padding side; :func:`evaluate_prompt` re-scores with these by default."""
    return {"scoring": scorer.scoring.value, "chat_template": scorer.encoder.chat is not None,
            "dtype": str(lm.dtype).replace("torch.", ""), "padding_side": scorer.side}  # fmt: skip


def prompt_identity(lm: LoadedModel) -> dict:
    """What a saved prompt records of the model it was made for: its weights (hash or Hub revision) and tokenizer."""
    identity = model_identity(lm)
    return {k: identity[k] for k in ("weights", "revision", "tokenizer", "dtype") if identity.get(k) is not None}


def check_prompt_fits(prompt: Prompt, lm: LoadedModel, where, allow_other_model: bool = False) -> None:
    """A saved prompt for another model fails with one line: soft vectors of another width, token ids past the
    vocabulary; and, where the prompt recorded the model it was made for, token ids from another tokenizer and
    soft vectors trained on other weights (``allow_other_model`` scores those anyway, e.g. to measure transfer)."""
    made_for = prompt.meta.get("model")
    made = prompt.meta.get("model_identity") or {}
    if made and not allow_other_model:
        now = prompt_identity(lm)
        has_ids = any(getattr(s, "ids", None) is not None for s in prompt.segments)
        if has_ids and made.get("tokenizer", {}).get("sha256") not in (None, now.get("tokenizer", {}).get("sha256")):
            raise PromptoptError(f"{where}: its token ids were made for another tokenizer ({made_for!r}); they would "
                                 f"mean other tokens for {lm.name!r} (pass --allow-other-model to score it anyway)")  # fmt: skip
        for key in ("weights", "revision"):
            if (prompt.vectors or prompt.prefix is not None) and made.get(key) and now.get(key) and made[key] != now[key]:
                raise PromptoptError(f"{where}: its soft vectors were trained on other weights ({made_for!r}, {key} "
                                     f"{made[key][:19]}...) than {lm.name!r}'s ({now[key][:19]}...); pass "
                                     "--allow-other-model to score them anyway")  # fmt: skip
    for name, value in prompt.vectors.items():
        if value.shape[-1] != lm.hidden_size:
            raise PromptoptError(f"{where}: soft segment {name!r} has width {value.shape[-1]} but model {lm.name!r} has "
                                 f"hidden size {lm.hidden_size} (the prompt was made for {made_for!r})")  # fmt: skip
    if prompt.prefix is not None:
        check_prefix(lm, prompt.prefix, str(where))
    for seg in prompt.segments:
        ids = getattr(seg, "ids", None)
        if ids is not None and any(int(i) >= lm.vocab_size or int(i) < 0 for i in ids):
            raise PromptoptError(f"{where}: token segment {seg.name!r} holds ids outside the vocabulary of {lm.name!r} "
                                 f"({lm.vocab_size} tokens; the prompt was made for {made_for!r})")  # fmt: skip


def evaluate_prompt(prompt_dir: str | os.PathLike, task: str, split: str = "dev", model: str | None = None,
                    max_eval: int | None = None, seed: int = 0, batch_size: int = EVAL_BATCH_SIZE, lm: LoadedModel | None = None,
                    device: str | None = None, progress: bool = True, allow_other_model: bool = False,
                    dtype: str | None = None, scoring: str | None = None, chat_template: bool | None = None):  # fmt: skip
    """Re-score a saved prompt on a task split with the same engine; returns an EvalResult.

    ``max_eval`` samples the split as a run samples its reported split, ``seed`` playing ``--eval-seed``: with the
    same values these are the examples the run reported. ``scoring``, ``chat_template`` and ``dtype`` default to how
    the run scored the prompt (its ``meta["scored_with"]``, and the padding side with them), so that re-scoring
    gives the run's numbers; a prompt saved without that record scores by the task's rule, without the chat
    template, in the dtype it recorded (else the device's default)."""
    prompt = Prompt.load(prompt_dir)
    spec = get_task(task)
    prompt.check_fields(spec.inputs)
    saved = prompt.meta.get("scored_with") or {}
    dtype = dtype or saved.get("dtype") or (prompt.meta.get("model_identity") or {}).get("dtype")
    scoring = scoring or saved.get("scoring")
    chat_template = bool(saved.get("chat_template")) if chat_template is None else chat_template
    lm = lm or load_model(model or prompt.meta.get("model"), device=device, dtype=dtype)
    check_prompt_fits(prompt, lm, prompt_dir, allow_other_model)
    examples = sample(spec.load_split(split), max_eval, seed, "eval")
    with applied(lm, ModelEdit.load(prompt_dir)):  # the weights of a method that adapted the model (LoRA, ...)
        scorer = Scorer(lm, spec, batch_size=batch_size, scoring=scoring, chat_template=chat_template,
                        padding_side=saved.get("padding_side"))  # fmt: skip
        return scorer.evaluate(prompt, examples, progress=split if progress else False)


__all__ = ["DEFAULT_MODEL", "RunOptions", "evaluate_prompt", "run"]
