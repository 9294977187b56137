"""Several tasks in one run, for the methods that need them (``multitask``, ``continual``); public through
:mod:`promptopt.sdk`.

Each task is loaded exactly as ``promptopt run`` loads its one task (:func:`promptopt.pipeline.runner.prepare_data`: the same
split roles and the same seeded sampling, so a task's examples are those a single-task run with the same options
sees), scored by its own :class:`~promptopt.engine.Scorer` on one shared model, and keeps its own hard template
(tasks have different input fields), in front of which these methods put their soft vectors::

    [P*20:p0]Review: {sentence}\\nSentiment:{answer}                      (sst2)
    [P*20:p0]{sentence1}\\nQuestion: {sentence2} True or False?\\nAnswer:{answer}   (rte)

:class:`TaskSetOptions` holds the run-level settings of such a run (the flags of ``promptopt multitask`` and
``promptopt continual``); :func:`taskset_options` adds those flags to a click command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from promptopt.pipeline import config as cfg
from promptopt.pipeline.methods import RunContext
from promptopt.pipeline.runner import RunOptions, ids_digest, prepare_data
from promptopt.engine.model import LoadedModel, load_model, model_identity
from promptopt.engine.scoring import EVAL_BATCH_SIZE, EvalResult, Scorer
from promptopt.engine.train import TrainConfig
from promptopt.errors import ConfigError, PromptoptError
from promptopt.data.files import write_json, write_jsonl
from promptopt.plugins import get_task
from promptopt.data.prompt import Prompt, SegmentKind, decode_escapes, parse_template
from promptopt.pipeline.results import RunResult, environment, peak_memory_mb
from promptopt.data.tasks import Example, TaskSpec


@dataclass
class TaskSetOptions:
    """Run-level settings of a run over several tasks. Method options go in ``method_options``."""

    tasks: list[str] = field(default_factory=list, metadata={"help": "task names or spec files, in order"})
    model: str | None = field(default=None, metadata={"help": "HF model id or local path; default: embedded SmolLM2"})
    model_kind: str | None = field(default=None, metadata={"help": "causal or masked (default: detected)", "choices": ["causal", "masked"]})  # fmt: skip
    seed: int = field(default=0, metadata={"help": "seed for sampling and training"})
    output: str | None = field(default=None, metadata={"help": "run directory"})
    max_train: int | None = field(default=None, metadata={"help": "sample at most N training examples per task"})
    shots: int | None = field(default=None, metadata={"help": "sample N training examples per class, per task"})
    max_eval: int | None = field(default=None, metadata={"help": "sample at most N examples of each task's select and eval splits"})  # fmt: skip
    select_split: str | None = field(default=None, metadata={"help": "dev, train or holdout:N (default per task: dev, else holdout:200)"})  # fmt: skip
    eval_split: str | None = field(default=None, metadata={"help": "split reported (default per task: test, else dev)"})
    templates: dict = field(default_factory=dict, metadata={"help": "task name -> template (default: its first)"})
    batch_size: int = field(default=EVAL_BATCH_SIZE, metadata={"help": f"evaluation batch size (default {EVAL_BATCH_SIZE}; lower it for a large model on a small GPU)", "flag": "--eval-batch-size"})
    device: str | None = field(default=None, metadata={"help": "cuda, mps, cpu (default: best available)"})
    dtype: str | None = field(default=None, metadata={"help": "float32, bfloat16, float16 (default: bf16 on GPU)"})
    padding_side: str | None = field(default=None, metadata={"help": "left or right (default: left for causal LMs)", "choices": ["left", "right"]})  # fmt: skip
    select: bool = field(default=True, metadata={"help": "keep the step that scores best on the selection splits (off: keep the last step and skip selection scoring)", "no_help": "keep the last step; no scoring on the selection splits"})  # fmt: skip
    method_options: dict = field(default_factory=dict, metadata={"help": "method config values (-o KEY=VALUE)"})
    train: dict = field(default_factory=dict, metadata={"help": "training loop options (TrainConfig fields)"})
    resume: bool = field(default=False, metadata={"help": "continue an interrupted run in the same directory"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in the same directory"})
    progress: bool = field(default=True, metadata={"help": "show progress bars", "no_help": "no progress bars"})

    def __post_init__(self):
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if not self.tasks:
            raise ConfigError("TaskSetOptions.tasks is empty; name at least one task (see 'promptopt tasks')")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"TaskSetOptions.tasks names a task twice: {self.tasks}")
        if self.batch_size < 1:
            raise ConfigError(f"TaskSetOptions.batch_size must be >= 1, got {self.batch_size}")

    def run_options(self) -> RunOptions:
        """The single-task options each task's data is prepared with."""
        return RunOptions(seed=self.seed, max_train=self.max_train, shots=self.shots, max_eval=self.max_eval,
                          select_split=self.select_split, eval_split=self.eval_split)  # fmt: skip


@dataclass
class TaskData:
    """One task of the set: its spec, scorer, data by role (train, select, eval) and hard template."""

    spec: TaskSpec
    scorer: Scorer
    data: dict[str, list[Example]]
    template: str
    described: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def train(self) -> list[Example]:
        return self.data.get("train", [])

    @property
    def select(self) -> list[Example]:
        return self.data.get("select", [])

    @property
    def eval(self) -> list[Example]:
        return self.data.get("eval", [])

    def without_eval(self) -> "TaskData":
        """A copy for the training code: the evaluation examples left out, and the spec refusing to load that split
        (the pipeline scores the trained prompts on it afterwards, as ``promptopt run`` does)."""
        withheld = (self.described["eval_split"],) if self.described.get("eval_split") else ()
        return dataclasses.replace(self, spec=dataclasses.replace(self.spec, withheld=withheld),
                                   data={k: v for k, v in self.data.items() if k != "eval"})  # fmt: skip

    def prompt(self, segments: list[tuple[str, int]], vectors: dict[str, torch.Tensor] | None = None) -> Prompt:
        """The task's template with soft segments ``(name, rows)`` in front, in the order given."""
        return soft_in_front(self.template, segments, vectors)

    def evaluate(self, prompt: Prompt, split: str = "eval", progress: bool | str = False) -> EvalResult:
        return self.scorer.evaluate(prompt, self.data[split], progress=progress)


def soft_in_front(template: str, segments: list[tuple[str, int]], vectors: dict | None = None) -> Prompt:
    """``[P*n:name]...`` + ``template`` as a Prompt, holding ``vectors`` when given."""
    prompt = Prompt.from_template("".join(f"[P*{n}:{name}]" for name, n in segments) + template)
    return prompt.with_vectors(vectors) if vectors else prompt


def hard_template(spec: TaskSpec, given: str | None) -> str:
    """The task's template (``given``, else its first); it must have no ``[P]`` slot: the method puts its own."""
    template = decode_escapes(given) if given else (spec.templates[0] if spec.templates else None)
    if not template:
        raise ConfigError(f"task {spec.name!r} has no template; give one with --template {spec.name}=TEMPLATE")
    segments = parse_template(template)
    if any(s.kind == SegmentKind.VECTORS for s in segments):
        raise ConfigError(f"template {template!r} of task {spec.name!r} has [P] slots; these methods put their own "
                          "vectors in front, so give a template without them")  # fmt: skip
    Prompt(segments=segments, template=template).check_fields(spec.inputs)
    return template


def load_taskset(opts: TaskSetOptions, lm: LoadedModel, pm=None, needs_train: bool = True) -> list[TaskData]:
    """Every task of ``opts``, in order, with its data sampled as ``promptopt run`` would and its own scorer."""
    unknown = set(opts.templates) - set(opts.tasks)
    specs = [get_task(name, pm) for name in opts.tasks]
    names = [s.name for s in specs]
    unknown -= set(names)
    if unknown:
        raise ConfigError(f"--template names tasks {sorted(unknown)} that are not in --tasks {opts.tasks}")
    if len(set(names)) != len(names):
        raise ConfigError(f"two of the tasks {opts.tasks} have the same name: {names}")
    out = []
    run_opts = opts.run_options()
    for given, spec in zip(opts.tasks, specs):
        template = hard_template(spec, opts.templates.get(spec.name) or opts.templates.get(given))
        data, described = prepare_data(spec, run_opts, needs_train)
        if needs_train and not data["train"]:
            raise PromptoptError(f"task {spec.name!r}: no training example after sampling")
        scorer = Scorer(lm, spec, batch_size=opts.batch_size, padding_side=opts.padding_side)
        out.append(TaskData(spec=spec, scorer=scorer, data=data, template=template, described=described))
    return out


def load_lm(opts: TaskSetOptions) -> LoadedModel:
    return load_model(opts.model, device=opts.device, dtype=opts.dtype, kind=opts.model_kind)


def resolved_config(opts: TaskSetOptions, method: str, method_config, train_config: TrainConfig, lm: LoadedModel,
                    tasks: list[TaskData]) -> dict:  # fmt: skip
    """What ``config.json`` records: every setting as resolved, per task its data and template."""
    return {
        "method": method,
        "method_config": cfg.to_dict(method_config),
        "tasks": [t.name for t in tasks],
        "task_specs": {t.name: str(t.spec.path) if t.spec.path else None for t in tasks},
        "templates": {t.name: t.template for t in tasks},
        "data": {t.name: t.described for t in tasks},
        "seed": opts.seed,
        "select": opts.select,
        "train": cfg.to_dict(train_config),
        "batch_size": opts.batch_size,
        **environment(lm),
    }


def taskset_fingerprint(opts: TaskSetOptions, method: str, method_config, train_config: TrainConfig, lm: LoadedModel,
                        tasks: list[TaskData]) -> dict:  # fmt: skip
    """What a run over several tasks depends on; a resumed run must match it field by field (as a one-task run's
    :func:`~promptopt.pipeline.runner.run_fingerprint`): the model, the method and its options, the training options
    (``resume_free`` ones aside), the seed, the task order and per task its label words, template and which examples
    each role holds (:func:`~promptopt.pipeline.runner.ids_digest` of train, select and eval), and the version."""
    from promptopt import __version__

    return {
        "model": model_identity(lm),
        "method": method,
        "method_config": cfg.fingerprint_dict(method_config),
        "train": cfg.fingerprint_dict(train_config),
        "seed": opts.seed,
        "select": opts.select,
        "task_order": [t.name for t in tasks],
        "tasks": {t.name: {"label_words": t.spec.label_words, "template": t.template,
                           "data": {"select_split": t.described.get("select_split"),
                                    "eval_split": t.described.get("eval_split"),
                                    **(t.described.get("ids") or {k: ids_digest(v) for k, v in t.data.items()})}}
                  for t in tasks},
        "promptopt": __version__,
    }  # fmt: skip


def taskset_context(opts: TaskSetOptions, method: str, method_config, train_config: TrainConfig, lm: LoadedModel,
                    tasks: list[TaskData], output_dir: Path, hook, options: dict) -> RunContext:  # fmt: skip
    """The :class:`RunContext` hooks and training code of a run over several tasks get: the first task as ``task``
    (its scorer, data and template), every task in ``tasks``, each without its evaluation split."""
    training = [t.without_eval() for t in tasks]
    first = training[0]
    return RunContext(method=method, config=method_config, task=first.spec, lm=lm, scorer=first.scorer,
                      data=first.data, templates=[first.template], seed=opts.seed, output_dir=output_dir,
                      train_config=train_config, hook=hook, resume=opts.resume, progress=opts.progress,
                      options=options, tasks=training)  # fmt: skip


def tell_evaluation(run: RunContext, task: TaskData, evaluation: EvalResult) -> None:
    """The ``evaluation`` hook for one task's final evaluation in a run over several tasks (``split="eval/TASK"``)."""
    metrics = {k: v for k, v in evaluation.metrics.items() if isinstance(v, (int, float))}
    run.hook.evaluation(run=run, step=None, split=f"eval/{task.name}", metrics=metrics)


def taskset_result(method: str, lm: LoadedModel, opts: TaskSetOptions, output_dir: Path, config: dict) -> RunResult:
    """The whole run's :class:`RunResult` (``result.json`` at the top of the run directory), to be filled in."""
    return RunResult(method=method, task="+".join(config.get("tasks", [])), model=lm.name, seed=opts.seed,
                     output_dir=str(output_dir), config=config)  # fmt: skip


def write_task_run(directory: Path, task: TaskData, prompt: Prompt, evaluation: EvalResult, *, method: str, lm,
                   seed: int, config: dict, select_metrics: dict | None = None, train_seconds: float = 0.0,
                   trainable_parameters: int = 0) -> RunResult:  # fmt: skip
    """Write one task's part of a multi-task run as an ordinary run directory: ``prompt/``, ``metrics.json``,
    ``predictions.jsonl`` and, last, ``result.json``, so that ``promptopt report`` and ``promptopt eval`` read it."""
    prompt.save(directory / "prompt")
    write_json(directory / "metrics.json", {"eval": evaluation.metrics, "select": select_metrics or {}})
    write_jsonl(directory / "predictions.jsonl", ({"split": "eval", **row} for row in evaluation.predictions))
    result = RunResult(method=method, task=task.name, model=lm.name, seed=seed, metrics={"eval": evaluation.metrics},
                       select_metrics=select_metrics or {}, prompt_text=prompt.text(lm.tokenizer),
                       trainable_parameters=trainable_parameters, train_seconds=train_seconds,
                       eval_seconds=evaluation.seconds, eval_examples_per_second=evaluation.examples_per_second,
                       peak_memory_mb=peak_memory_mb(lm.device), output_dir=str(directory), config=config)  # fmt: skip
    write_json(directory / "result.json", result.to_json())
    return result


def task_dir_name(name: str) -> str:
    """A task name as a directory name (task names are identifiers, but a spec may say anything)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "task"


# -- command-line flags --------------------------------------------------------------------------------------------


def taskset_options(func):
    """Add the flags of :class:`TaskSetOptions` (generated from its fields' metadata, so the help cannot drift) and
    one per :class:`TrainConfig` field to a click command; ``resume`` is the command's own."""
    import click

    func = cfg.train_flags(func)
    func = click.option("-o", "--option", "options", multiple=True, help="Method option KEY=VALUE.")(func)
    func = click.option("-t", "--template", "templates", multiple=True,
                        help="TASK=TEMPLATE (default: the task's first template).")(func)  # fmt: skip
    func = cfg.click_options(TaskSetOptions, exclude=("tasks", "templates", "resume"))(func)
    return click.option("--tasks", required=True, help="Comma-separated task names (see 'promptopt tasks') or spec files.")(func)  # fmt: skip


def options_from_cli(kwargs: dict, **extra) -> TaskSetOptions:
    """:class:`TaskSetOptions` from the values of the flags :func:`taskset_options` added (``kwargs`` is consumed)."""
    train = {k[len("train_"):]: kwargs.pop(k) for k in list(kwargs) if k.startswith("train_")}
    templates = cfg.parse_pairs(kwargs.pop("templates"))
    method_options = cfg.parse_pairs(kwargs.pop("options"))
    values = cfg.from_click(TaskSetOptions, {k: kwargs.pop(k) for k in list(kwargs)})
    return TaskSetOptions(**values, templates=templates, method_options=method_options,
                          train={k: v for k, v in train.items() if v is not None}, **extra)  # fmt: skip
