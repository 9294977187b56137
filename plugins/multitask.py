"""Multi-task prompt tuning (MPT style, Wang et al. 2023): one shared prompt plus a small part per task.

Every task ``k`` reads its own effective prompt ``P_k`` (``n`` rows) in front of its own template. With the shared
prompt ``P`` (``n_tokens x hidden``) and per-task factors ``U_k`` (``n x rank``) and ``V_k`` (``hidden x rank``),
``composition`` says how ``P_k`` is made:

* ``multiplicative`` (MPT): ``P_k = P * (U_k V_k^T)``, elementwise; ``U_k V_k^T`` starts near all-ones, so every task
  starts from ``P`` (``U_k`` gets a little seeded noise, else its ``rank`` columns would stay equal forever);
* ``additive``: ``P_k = P + U_k V_k^T``; ``V_k`` starts at zero (so does the product; LoRA's choice);
* ``concat``: ``P_k = [P; Q_k]``: ``task_tokens`` vectors of the task's own after the shared ones.

Training draws the task of each batch from a mixture over the tasks' training-set sizes ``N_k`` (after sampling):
``proportional``: ``p_k = N_k / sum N``; ``temperature``: ``p_k ~ N_k^(1/T)`` (T = 1 is proportional, large T
approaches uniform; T5/mT5's temperature-scaled mixing). A batch holds examples of one task, so one optimizer step
(``grad_accum`` = 1) changes the shared prompt and that task's part only. The batches are drawn before training, a
pure function of the seed (task ``k``'s batches are consecutive slices of its own seeded permutations, as in a
single-task run), and go through the shared training loop :func:`promptopt.engine.train.fit` as a stream of
one-batch items; the selection score is the mean of the tasks' selection scores.

Each task's effective prompt is exported as an ordinary prompt artifact (one soft segment ``p0`` in front of the
task's template), so ``promptopt eval``, ``generate``, ``export-peft`` and the soft method's transfer
initialisation (``-o init=prompt -o init_prompt=RUN/tasks/TASK/prompt``, with ``n_tokens`` equal to its rows) take
it as they take a ``soft`` run's prompt.

Two ways in:

* ``promptopt multitask --tasks sst2,rte,subj ...`` (:func:`run_multitask`): trains on every task at once, evaluates
  each, and writes ``RUN/multitask.json`` (per-task metrics, mixture, parameter counts, times),
  ``RUN/multitask.safetensors`` (shared and per-task parameters), ``RUN/shared/prompt`` (the shared prompt) and per
  task ``RUN/tasks/TASK/`` laid out as a ``promptopt run`` directory (``prompt/``, ``metrics.json``,
  ``predictions.jsonl``, ``result.json``), so ``promptopt report RUN`` shows each task, as method
  ``multitask:a+b+c`` (the mixture names the row, apart from single-task runs); ``RUN/config.json`` (with the
  run's fingerprint), ``RUN/history.jsonl`` and, last, ``RUN/result.json`` (the whole run: mean score, each task's)
  or ``RUN/error.json``, as every run of the pipeline;
* ``promptopt run --method multitask`` (:class:`MultitaskOptimizer`): the degenerate mixture of the run's one task.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from promptopt.sdk import config as cfg
from promptopt import hookimpl
from promptopt.sdk import (
    MethodKind, BatchStream,
    ConfigError,
    FitResult,
    OptimizeResult,
    Prompt,
    PromptOptimizer,
    PromptoptError,
    RunContext,
    SegmentKind,
    SoftPromptInit,
    TrainConfig,
    atomic_path,
    fit,
    get_plugin_manager,
    initial_rows,
    transfer_values,
    write_json,
)
from promptopt.sdk import (
    RunSession,
    TaskData,
    TaskSetOptions,
    enum_value,
    hard_template,
    load_lm,
    load_taskset,
    options_from_cli,
    resolved_config,
    task_dir_name,
    taskset_context,
    taskset_fingerprint,
    taskset_options,
    taskset_result,
    tell_evaluation,
    write_task_run,
)

SEGMENT = "p0"
SUMMARY_FILE = "multitask.json"
PARAMS_FILE = "multitask.safetensors"
SCHEMA = "promptopt.multitask"
SCHEMA_VERSION = 1


class Composition(str, enum.Enum):
    MULTIPLICATIVE = "multiplicative"
    ADDITIVE = "additive"
    CONCAT = "concat"


class Mixture(str, enum.Enum):
    PROPORTIONAL = "proportional"
    TEMPERATURE = "temperature"


@dataclass
class MultitaskConfig:
    n_tokens: int = field(default=20, metadata={"help": "rows of the shared prompt"})
    composition: Composition = field(default=Composition.MULTIPLICATIVE, metadata={"help": "how a task's part joins the shared prompt: multiplicative (P * U V^T), additive (P + U V^T) or concat ([P; Q_k])"})  # fmt: skip
    rank: int = field(default=1, metadata={"help": "rank of the per-task product U V^T (multiplicative, additive)"})
    task_tokens: int = field(default=4, metadata={"help": "rows each task appends to the shared prompt (concat)"})
    mixture: Mixture = field(default=Mixture.TEMPERATURE, metadata={"help": "task sampling: proportional to training-set size, or temperature-scaled"})  # fmt: skip
    temperature: float = field(default=2.0, metadata={"help": "mixture temperature T: p_k ~ N_k^(1/T) (mixture=temperature)"})  # fmt: skip
    init: SoftPromptInit = field(default=SoftPromptInit.VOCAB, metadata={"help": "shared prompt's initial values: random, vocab, text, labels (first task's label words) or prompt"})  # fmt: skip
    init_text: str = field(default="", metadata={"help": "text whose token embeddings initialise the shared prompt (init=text)"})  # fmt: skip
    init_prompt: str = field(default="", metadata={"help": "saved prompt directory whose vectors start the shared prompt (init=prompt)"})  # fmt: skip
    init_range: float = field(default=0.5, metadata={"help": "half-width of the uniform range (init=random)"})
    vocab_top: int = field(default=5000, metadata={"help": "sample from this many most frequent tokens (init=vocab, labels)"})  # fmt: skip
    factor_noise: float = field(default=0.02, metadata={"help": "std of the seeded noise on U_k at the start (multiplicative)"})  # fmt: skip

    def __post_init__(self):
        name = "MultitaskConfig"
        self.composition = enum_value(Composition, self.composition, f"{name}.composition")
        self.mixture = enum_value(Mixture, self.mixture, f"{name}.mixture")
        self.init = enum_value(SoftPromptInit, self.init, f"{name}.init")
        for key in ("n_tokens", "rank", "task_tokens", "vocab_top"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key} must be >= 1, got {getattr(self, key)}")
        if not self.temperature > 0:
            raise ConfigError(f"{name}.temperature must be > 0, got {self.temperature}")
        if self.init_range <= 0 or self.factor_noise < 0:
            raise ConfigError(f"{name}.init_range must be > 0 and factor_noise >= 0")
        if self.init == SoftPromptInit.TEXT and not self.init_text:
            raise ConfigError(f"{name}.init_text must be a non-empty text when init=text")
        if self.init == SoftPromptInit.PROMPT and not self.init_prompt:
            raise ConfigError(f"{name}.init_prompt must name a saved prompt directory when init=prompt")

    @property
    def rows(self) -> int:
        """Rows of each task's effective prompt."""
        return self.n_tokens + (self.task_tokens if self.composition == Composition.CONCAT else 0)


# -- the parameters -------------------------------------------------------------------------------------------------


class MultitaskPrompt(torch.nn.Module):
    """The shared prompt and the per-task parts; ``forward()`` gives every task's effective prompt by task name.

    ``task_parameters(k)`` are task ``k``'s own parameters; ``shared`` is everyone's. A loss that reads only task
    ``k``'s prompt leaves every other task's parameters without a gradient (``grad`` stays None), so the optimizer
    does not touch them.
    """

    def __init__(self, shared: torch.Tensor, tasks: list[str], composition: Composition, rank: int = 1,
                 extra: list[torch.Tensor] | None = None, factor_noise: float = 0.02, seed: int = 0):  # fmt: skip
        super().__init__()
        self.tasks = list(tasks)
        self.composition = Composition(composition)
        self.shared = torch.nn.Parameter(shared.detach().to(torch.float32).clone())
        n, hidden = self.shared.shape
        g = torch.Generator().manual_seed(seed)
        self.u = torch.nn.ParameterList()
        self.v = torch.nn.ParameterList()
        self.extra = torch.nn.ParameterList()
        for k in range(len(self.tasks)):
            if self.composition == Composition.MULTIPLICATIVE:
                scale = 1.0 / math.sqrt(rank)  # U V^T = 1 everywhere without the noise
                self.u.append(torch.nn.Parameter(scale + factor_noise * torch.randn(n, rank, generator=g)))
                self.v.append(torch.nn.Parameter(torch.full((hidden, rank), scale)))
            elif self.composition == Composition.ADDITIVE:
                self.u.append(torch.nn.Parameter(torch.randn(n, rank, generator=g)))
                self.v.append(torch.nn.Parameter(torch.zeros(hidden, rank)))
            else:
                if extra is None or len(extra) != len(self.tasks):
                    raise PromptoptError("concat composition needs one starting table per task")
                self.extra.append(torch.nn.Parameter(extra[k].detach().to(torch.float32).clone()))

    def effective(self, k: int) -> torch.Tensor:
        """Task ``k``'s prompt, ``(rows, hidden)``."""
        if self.composition == Composition.MULTIPLICATIVE:
            return self.shared * (self.u[k] @ self.v[k].T)
        if self.composition == Composition.ADDITIVE:
            return self.shared + self.u[k] @ self.v[k].T
        return torch.cat([self.shared, self.extra[k]], dim=0)

    def forward(self) -> dict[str, torch.Tensor]:
        return {name: self.effective(k) for k, name in enumerate(self.tasks)}

    def task_parameters(self, k: int) -> list[torch.nn.Parameter]:
        if self.composition == Composition.CONCAT:
            return [self.extra[k]]
        return [self.u[k], self.v[k]]

    def parameter_counts(self) -> dict:
        per_task = {name: sum(p.numel() for p in self.task_parameters(k)) for k, name in enumerate(self.tasks)}
        return {"shared": self.shared.numel(), "per_task": per_task,
                "total": self.shared.numel() + sum(per_task.values())}  # fmt: skip


# -- the mixture ----------------------------------------------------------------------------------------------------


def mixture_weights(sizes: list[int], mixture: Mixture, temperature: float = 1.0) -> list[float]:
    """Probability of drawing each task: ``N_k / sum N`` (proportional) or ``N_k^(1/T)`` normalised (temperature)."""
    if not sizes or min(sizes) < 1:
        raise PromptoptError(f"every task needs a training example; sizes {sizes}")
    power = 1.0 if Mixture(mixture) == Mixture.PROPORTIONAL else 1.0 / temperature
    raw = [n**power for n in sizes]
    return [r / sum(raw) for r in raw]


@dataclass(frozen=True)
class TaskBatch:
    """One training batch of the mixture: task ``task`` (an index) and its examples."""

    task: int
    examples: tuple


def mixture_batches(tasks: list[TaskData], weights: list[float], count: int, batch_size: int,
                    seed: int) -> list[TaskBatch]:  # fmt: skip
    """``count`` batches: each batch's task drawn from ``weights``, its examples the task's next seeded batch."""
    rng = random.Random(f"{seed}:mixture")
    streams = [BatchStream(len(t.train), batch_size, seed + 7919 * k) for k, t in enumerate(tasks)]
    used = [0] * len(tasks)
    out = []
    for k in rng.choices(range(len(tasks)), weights=weights, k=count):
        out.append(TaskBatch(k, tuple(tasks[k].train[i] for i in streams[k].batch(used[k]))))
        used[k] += 1
    return out


# -- training -------------------------------------------------------------------------------------------------------


def initial_shared(config: MultitaskConfig, lm, task: TaskData, seed: int) -> torch.Tensor:
    """Starting values of the shared prompt by ``config.init`` (``labels``: the first task's label words)."""
    if config.init == SoftPromptInit.PROMPT:
        return transfer_values(Path(config.init_prompt), task.prompt([(SEGMENT, config.n_tokens)]).segments_of(
            SegmentKind.VECTORS), lm.hidden_size)[SEGMENT]  # fmt: skip
    run = SimpleNamespace(lm=lm, scorer=task.scorer, seed=seed)
    prompt = task.prompt([(SEGMENT, config.n_tokens)])
    return initial_rows(config, run, prompt, config.n_tokens, torch.Generator().manual_seed(seed))


def build_params(config: MultitaskConfig, lm, tasks: list[TaskData], seed: int) -> MultitaskPrompt:
    shared = initial_shared(config, lm, tasks[0], seed)
    extra = None
    if config.composition == Composition.CONCAT:
        # a transferred prompt starts the shared rows; the task's own rows start as init=vocab would
        plain = config
        if config.init == SoftPromptInit.PROMPT:
            plain = dataclasses.replace(config, init=SoftPromptInit.VOCAB)
        extra = []
        for k, t in enumerate(tasks):
            run = SimpleNamespace(lm=lm, scorer=t.scorer, seed=seed)
            g = torch.Generator().manual_seed(seed + 7919 * (k + 1))
            extra.append(initial_rows(plain, run, t.prompt([(SEGMENT, config.rows)]), config.task_tokens, g))
    return MultitaskPrompt(shared, [t.name for t in tasks], config.composition, config.rank, extra,
                           config.factor_noise, seed)  # fmt: skip


def task_prompt(task: TaskData, rows: int, value: torch.Tensor | None = None) -> Prompt:
    return task.prompt([(SEGMENT, rows)], {SEGMENT: value} if value is not None else None)


def batch_loss(tasks: list[TaskData], prompts: list[Prompt]):
    """The loss of one :class:`TaskBatch` given every task's effective prompt (``fit``'s ``loss_fn``)."""

    def loss_fn(values: dict[str, torch.Tensor], items: list[TaskBatch]) -> torch.Tensor:
        losses = []
        for item in items:
            task = tasks[item.task]
            vectors = {SEGMENT: values[task.name]}
            losses.append(task.scorer.loss(prompts[item.task], list(item.examples), vectors=vectors))
        return torch.stack(losses).mean()

    return loss_fn


def selection(tasks: list[TaskData], prompts: list[Prompt]):
    """``fit``'s ``evaluate_fn``: the mean of the tasks' selection scores, and each task's score."""

    def evaluate_fn(values: dict[str, torch.Tensor]) -> dict:
        scores = {}
        for task, prompt in zip(tasks, prompts):
            trained = prompt.with_vectors({SEGMENT: values[task.name]})
            scores[task.name] = task.scorer.evaluate(trained, task.select).score
        return {"score": sum(scores.values()) / len(scores), **{f"score/{k}": v for k, v in scores.items()}}

    return evaluate_fn


@dataclass
class MultitaskTraining:
    params: MultitaskPrompt
    fit: FitResult
    weights: list[float]
    batches_per_task: list[int]
    prompts: list[Prompt]  # each task's trained prompt


def train_multitask(tasks: list[TaskData], config: MultitaskConfig, train_config: TrainConfig, lm, *, seed: int = 0,
                    select: bool = True, checkpoint_dir=None, resume: bool = False, hook=None, run=None,
                    log_fn=None, progress: bool | str = False) -> MultitaskTraining:  # fmt: skip
    """Train the shared prompt and every task's part with the shared loop (see the module docstring)."""
    for t in tasks:
        t.data["train"] = t.scorer.usable_examples(task_prompt(t, config.rows), t.train)
    weights = mixture_weights([len(t.train) for t in tasks], config.mixture, config.temperature)
    count = train_config.steps * train_config.grad_accum
    batches = mixture_batches(tasks, weights, count, train_config.batch_size, seed)
    params = build_params(config, lm, tasks, seed)
    prompts = [task_prompt(t, config.rows) for t in tasks]
    # the loop sees one pre-drawn batch per item: one item per batch, in the drawn order (no length grouping)
    loop_config = TrainConfig(**{**train_config.__dict__, "batch_size": 1, "group_by_length": 0})
    result = fit(params, batches, loop_config, loss_fn=batch_loss(tasks, prompts),
                 evaluate_fn=selection(tasks, prompts) if select and all(t.select for t in tasks) else None,
                 checkpoint_dir=checkpoint_dir, resume=resume, seed=seed, hook=hook, run=run, log_fn=log_fn,
                 progress=progress, frozen=lm.model)  # fmt: skip
    trained = []
    for t, prompt in zip(tasks, prompts):
        p = prompt.with_vectors({SEGMENT: result.values[t.name]})
        p.meta.update({"best_step": result.best_step, "steps": result.steps, "composition": config.composition.value})
        trained.append(p)
    counts = [sum(b.task == k for b in batches) for k in range(len(tasks))]
    return MultitaskTraining(params, result, weights, counts, trained)


# -- the single-task method ----------------------------------------------------------------------------------------


class MultitaskOptimizer(PromptOptimizer):
    """Multi-task prompt tuning through ``promptopt run``: the mixture of the run's one task (for several tasks at
    once use ``promptopt multitask --tasks a,b,c``)."""

    name = "multitask"
    description = "multi-task prompt tuning (shared prompt x per-task low-rank part); 'promptopt multitask --tasks a,b' trains several tasks, 'run' one"  # fmt: skip
    kind = MethodKind.SOFT
    config_class = MultitaskConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        task = TaskData(spec=run.task, scorer=run.scorer, data=dict(run.data),
                        template=hard_template(run.task, run.templates[0] if run.templates else None))  # fmt: skip
        trained = train_multitask(
            [task], self.config, run.train_config, run.lm, seed=run.seed, checkpoint_dir=run.output_dir / "checkpoint",
            resume=run.resume, hook=run.hook, run=run, log_fn=run.log, progress="training" if run.progress else False,
        )  # fmt: skip
        prompt = trained.prompts[0]
        return OptimizeResult(prompt=prompt, trainable_parameters=trained.params.parameter_counts()["total"],
                              select_metrics=trained.fit.best_metrics, extra={"best_step": trained.fit.best_step})  # fmt: skip


# -- several tasks: the API and the command --------------------------------------------------------------------------


def mixture_label(tasks: list[str]) -> str:
    """The method name a multi-task run's per-task results carry: ``multitask:sst2+cr+subj``."""
    return "multitask:" + "+".join(tasks)


@dataclass
class MultitaskResult:
    """What :func:`run_multitask` returns: per task its :class:`~promptopt.pipeline.results.RunResult`, and the summary."""

    output_dir: Path
    results: dict
    summary: dict


def run_multitask(opts: TaskSetOptions | None = None, lm=None, pm=None, **kwargs) -> MultitaskResult:
    """Train one multi-task prompt on ``opts.tasks``, evaluate each task, and write the run directory (see the
    module docstring). Keyword arguments set :class:`~promptopt.pipeline.taskset.TaskSetOptions` fields.

    It goes through the run pipeline as ``promptopt run`` does (:class:`~promptopt.sdk.RunSession`): the hooks
    (``run_start`` once, ``training_step`` and ``evaluation`` on the selection splits from the shared loop, one
    ``evaluation`` per task at the end with ``split="eval/TASK"``, ``run_end`` once with the whole run's result),
    ``config.json`` with a fingerprint (``--resume`` with other settings is refused, naming the field),
    ``error.json`` on failure and ``result.json`` last. The training code never holds the evaluation splits."""
    opts = dataclasses.replace(opts or TaskSetOptions(tasks=kwargs.get("tasks", [])), **kwargs)
    config = cfg.build(MultitaskConfig, opts.method_options)
    train_config = cfg.build(TrainConfig, {**MultitaskOptimizer.train_defaults, **opts.train})  # as `promptopt run -m multitask`
    pm = pm or get_plugin_manager()
    out = Path(opts.output) if opts.output else Path("runs") / f"multitask-{'+'.join(opts.tasks)}-s{opts.seed}"
    session = RunSession(out, overwrite=opts.overwrite, resume=opts.resume)
    out = session.out
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    lm = lm or load_lm(opts)
    tasks = load_taskset(opts, lm, pm)
    session.check(taskset_fingerprint(opts, "multitask", config, train_config, lm, tasks))
    resolved = session.write_config(resolved_config(opts, "multitask", config, train_config, lm, tasks))
    run = taskset_context(opts, "multitask", config, train_config, lm, tasks, out, pm.hook, resolved)
    whole = taskset_result("multitask", lm, opts, out, resolved)
    counter = run.compute
    with session.running(run, whole):
        start, before = time.perf_counter(), counter.snapshot()
        trained = train_multitask(run.tasks, config, train_config, lm, seed=opts.seed, select=opts.select,
                                  checkpoint_dir=out / "checkpoint", resume=opts.resume, hook=run.hook, run=run,
                                  log_fn=run.log, progress="training" if opts.progress else False)  # fmt: skip
        train_seconds = time.perf_counter() - start
        spent = counter.since(before)
        before = counter.snapshot()
        result = _write_multitask(out, tasks, trained, config, lm, opts, resolved, train_seconds, run)
        whole.compute = {"train": spent.to_json(), "eval": counter.since(before).to_json()}
        summary = result.summary
        whole.metrics = {"eval": {"score": summary["mean_eval_score"]},
                         "tasks": {name: m["eval"] for name, m in summary["metrics"].items()}}  # fmt: skip
        whole.select_metrics = trained.fit.best_metrics
        whole.trainable_parameters = summary["trainable_parameters"]["total"]
        whole.train_seconds, whole.eval_seconds = train_seconds, summary["eval_seconds"]
    return result


def _write_multitask(out: Path, tasks, trained: MultitaskTraining, config: MultitaskConfig, lm, opts: TaskSetOptions,
                     resolved: dict, train_seconds: float, run: RunContext) -> MultitaskResult:  # fmt: skip
    """Save the parameters and the shared prompt, evaluate every task (the ``evaluation`` hook told each), write
    the per-task run directories and ``multitask.json``."""
    counts = trained.params.parameter_counts()
    from safetensors.torch import save_file

    with atomic_path(out / PARAMS_FILE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in trained.params.state_dict().items()}, str(tmp))
    shared = task_prompt(tasks[0], config.n_tokens, trained.params.shared)
    shared.meta.update({"method": "multitask", "model": lm.name, "role": "shared prompt of a multi-task run",
                        "tasks": [t.name for t in tasks], "template_from": tasks[0].name})  # fmt: skip
    shared.save(out / "shared" / "prompt")
    # reports group runs by (model, task, method): the mixture names the row, apart from single-task runs
    label = mixture_label([t.name for t in tasks])
    results, metrics = {}, {}
    for k, (task, prompt) in enumerate(zip(tasks, trained.prompts)):
        prompt.meta.update({"method": "multitask", "model": lm.name, "task": task.name,
                            "tasks": [t.name for t in tasks]})  # fmt: skip
        evaluation = task.evaluate(prompt, progress=f"eval {task.name}" if opts.progress else False)
        tell_evaluation(run, task, evaluation)
        best = trained.fit.best_metrics
        select = {"score": best[f"score/{task.name}"]} if f"score/{task.name}" in best else {}
        task_config = {**resolved, "task": task.name, "data": task.described, "templates": [task.template]}
        results[task.name] = write_task_run(
            out / "tasks" / task_dir_name(task.name), task, prompt, evaluation, method=label, lm=lm,
            seed=opts.seed, config=task_config, select_metrics=select,
            train_seconds=train_seconds, trainable_parameters=counts["total"],
        )  # fmt: skip
        metrics[task.name] = {"eval": evaluation.metrics, "select": results[task.name].select_metrics,
                              "training_batches": trained.batches_per_task[k],
                              "mixture_weight": trained.weights[k],
                              "prompt": str(Path("tasks") / task_dir_name(task.name) / "prompt")}  # fmt: skip
    scores = [m["eval"]["score"] for m in metrics.values()]
    summary = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "tasks": [t.name for t in tasks],
        "method_config": cfg.to_dict(config), "model": lm.name, "seed": opts.seed,
        "metrics": metrics, "mean_eval_score": sum(scores) / len(scores),
        "trainable_parameters": counts, "best_step": trained.fit.best_step, "steps": trained.fit.steps,
        "train_seconds": train_seconds, "eval_seconds": sum(r.eval_seconds for r in results.values()),
    }  # fmt: skip
    write_json(out / SUMMARY_FILE, summary)
    return MultitaskResult(output_dir=out, results=results, summary=summary)


@hookimpl
def register_optimizers(register):
    register(MultitaskOptimizer)


@hookimpl
def register_commands(cli):
    import click

    @cli.command("multitask")
    @click.option("--resume", is_flag=True, help="Continue an interrupted run in the same directory.")
    @taskset_options
    def multitask_cmd(resume, **kwargs):
        """Train one multi-task prompt (shared + per task) on several tasks; evaluate and export each task's prompt.

        Method options (-o KEY=VALUE) are those of 'promptopt methods' for multitask, e.g. -o composition=additive
        -o mixture=proportional."""
        result = run_multitask(options_from_cli(kwargs, resume=resume))
        for name, res in result.results.items():
            m = res.metrics["eval"]
            click.echo(f"{name:<16} score {m['score']:.4f} on {m['n']} examples")
        s = result.summary
        click.echo(f"mean:            {s['mean_eval_score']:.4f}")
        click.echo(f"time:            train {s['train_seconds']:.1f}s, evaluate {s['eval_seconds']:.1f}s")
        click.echo(f"written:         {result.output_dir}")
