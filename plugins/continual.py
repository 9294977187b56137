"""Continual prompt learning: tasks arrive in order, one frozen model, and an accuracy matrix of what is kept.

``promptopt continual --tasks a,b,c --strategy progressive|sequential`` (:func:`run_continual`). Each task keeps its
own template (:mod:`promptopt.pipeline.taskset`); the strategies differ in the soft vectors in front of it:

* ``progressive`` (Progressive Prompts, Razdaibiedina et al. 2023): task ``i`` gets a new segment ``s_i`` of
  ``n_tokens`` vectors; the earlier segments are frozen (kept as buffers, never given to the optimizer) and the
  prompt is ``[s_i; s_{i-1}; ...; s_0] + template_i`` (the newest first, as in the paper). With
  ``progressive_eval=own`` (the paper's protocol, task identity known at test time) task ``j`` is evaluated with
  ``[s_j; ...; s_0]``, which later training never changes; with ``all`` it is evaluated with every segment trained so
  far, which measures whether later segments disturb it.
* ``sequential`` (the baseline that forgets): one prompt ``p0`` of ``n_tokens`` vectors, trained on each task in
  turn, each stage starting from where the previous one stopped.

Every stage trains with the shared loop :func:`promptopt.engine.train.fit` (best step on the task's selection split
unless ``--no-select``). After stage ``i`` every seen task ``j <= i`` is evaluated on its evaluation split, and so
is the next task ``i + 1`` (for forward transfer); before any training every task is evaluated with the untrained
first prompt. Rows and columns count from 0 here; with ``T`` tasks:

* ``A[i][j]``: score (the task's metric, accuracy for these tasks) on task ``j`` after training tasks ``0..i``;
  ``None`` where not evaluated (``j > i + 1``);
* ``b[j]`` (``initial``): score on task ``j`` of the untrained prompt: the first stage's initial vectors (the same
  for both strategies, given the seed, ``n_tokens`` and ``init``) in front of task ``j``'s template;
* average accuracy ``ACC = mean_j A[T-1][j]``;
* backward transfer ``BWT = mean_{j < T-1} (A[T-1][j] - A[j][j])`` (GEM, Lopez-Paz and Ranzato 2017): negative is
  forgetting; 0 when nothing is forgotten;
* forward transfer ``FWT = mean_{j >= 1} (A[j-1][j] - b[j])`` (GEM): how much training on the earlier tasks helps
  a task before it is trained on (for ``progressive``, task ``j`` is then read with its still untrained segment in
  front of the trained ones);
* forgetting of task ``j < T-1``: ``max_{j <= l < T-1} A[l][j] - A[T-1][j]`` (Chaudhry et al. 2018).

The run directory: ``config.json``; ``continual.json`` (the matrix, ``initial``, the metrics above, per stage its
times, best step and selection score; rewritten after each stage with ``"complete": false``, atomically);
``stages/I-TASK/prompt`` (the prompt trained at stage I, as evaluated for ``A[I][I]``); ``final/TASK/`` (``prompt/``,
``metrics.json``, ``predictions.jsonl``: each task's prompt as evaluated in the last row); ``history.jsonl``.
``promptopt report RUN`` renders the matrix (:mod:`promptopt.report.continual`).

The run goes through the run pipeline as ``promptopt run`` does (:class:`promptopt.sdk.RunSession`): ``run_start``
once, ``training_step`` and selection ``evaluation`` calls from each stage's loop, one ``evaluation`` per task for
the last row (``split="eval/TASK"``), ``run_end`` once; ``config.json`` with a fingerprint; ``error.json`` on
failure, and last ``result.json`` (the whole run: ``metrics["eval"]["score"]`` is ACC, ``metrics["tasks"]`` the last
row, ``metrics["continual"]`` the metrics above). Training never holds the evaluation splits.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from promptopt.sdk import config as cfg
from promptopt import hookimpl
from promptopt.sdk import (
    ConfigError,
    Prompt,
    ResumableState,
    PromptoptError,
    PromptVectors,
    SoftPromptInit,
    TrainConfig,
    fit,
    get_plugin_manager,
    initial_rows,
    read_json,
    write_json,
    write_jsonl,
)
from promptopt.sdk import (
    RunSession,
    TaskData,
    TaskSetOptions,
    enum_value,
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
)

SUMMARY_FILE = "continual.json"
SCHEMA = "promptopt.continual"
SCHEMA_VERSION = 1


class Strategy(str, enum.Enum):
    PROGRESSIVE = "progressive"
    SEQUENTIAL = "sequential"


class ProgressiveEval(str, enum.Enum):
    OWN = "own"
    ALL = "all"


@dataclass
class ContinualConfig:
    strategy: Strategy = field(default=Strategy.PROGRESSIVE, metadata={"help": "progressive (a new frozen-after-training segment per task) or sequential (one prompt trained on each task in turn)"})  # fmt: skip
    n_tokens: int = field(default=10, metadata={"help": "vectors per task segment (progressive) or of the one prompt (sequential)"})  # fmt: skip
    progressive_eval: ProgressiveEval = field(default=ProgressiveEval.OWN, metadata={"help": "segments task j is evaluated with (progressive): own (s_j..s_0, as in the paper) or all (every segment trained so far)"})  # fmt: skip
    init: SoftPromptInit = field(default=SoftPromptInit.VOCAB, metadata={"help": "initial values of each new segment: random, vocab, text or labels (the task's label words)"})  # fmt: skip
    init_text: str = field(default="", metadata={"help": "text whose token embeddings initialise the vectors (init=text)"})  # fmt: skip
    init_range: float = field(default=0.5, metadata={"help": "half-width of the uniform range (init=random)"})
    vocab_top: int = field(default=5000, metadata={"help": "sample from this many most frequent tokens (init=vocab, labels)"})  # fmt: skip

    def __post_init__(self):
        name = "ContinualConfig"
        self.strategy = enum_value(Strategy, self.strategy, f"{name}.strategy")
        self.progressive_eval = enum_value(ProgressiveEval, self.progressive_eval, f"{name}.progressive_eval")
        self.init = enum_value(SoftPromptInit, self.init, f"{name}.init")
        if self.init == SoftPromptInit.PROMPT:
            raise ConfigError(f"{name}.init cannot be 'prompt'; one of ['random', 'vocab', 'text', 'labels']")
        if self.init == SoftPromptInit.TEXT and not self.init_text:
            raise ConfigError(f"{name}.init_text must be a non-empty text when init=text")
        if self.n_tokens < 1 or self.vocab_top < 1:
            raise ConfigError(f"{name}.n_tokens and {name}.vocab_top must be >= 1")
        if self.init_range <= 0:
            raise ConfigError(f"{name}.init_range must be > 0, got {self.init_range}")


# -- the metrics ----------------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def continual_metrics(matrix: list[list[float | None]], initial: list[float | None]) -> dict:
    """ACC, BWT, FWT and per-task forgetting of a ``T x T`` matrix (definitions in the module docstring).

    A value whose inputs were not evaluated is None (BWT and forgetting need ``T >= 2``, so do FWT's terms).
    """
    t = len(matrix)
    last = matrix[-1] if t else []
    acc = _mean([v for v in last if v is not None])
    bwt = _mean([last[j] - matrix[j][j] for j in range(t - 1) if last[j] is not None and matrix[j][j] is not None])
    fwt = _mean([matrix[j - 1][j] - initial[j] for j in range(1, t)
                 if matrix[j - 1][j] is not None and initial[j] is not None])  # fmt: skip
    forgetting = []
    for j in range(t - 1):
        seen = [matrix[i][j] for i in range(j, t - 1) if matrix[i][j] is not None]
        forgetting.append(max(seen) - last[j] if seen and last[j] is not None else None)
    return {"average_accuracy": acc, "bwt": bwt, "fwt": fwt, "forgetting": forgetting}


# -- the parameters -------------------------------------------------------------------------------------------------


class FrozenAndNew(torch.nn.Module):
    """One trainable segment (``new``) and frozen earlier ones, kept as buffers: the optimizer never sees them."""

    def __init__(self, name: str, value: torch.Tensor, frozen: dict[str, torch.Tensor]):
        super().__init__()
        self.name = name
        self.new = torch.nn.Parameter(value.detach().to(torch.float32).clone())
        self.frozen_names = list(frozen)
        for i, v in enumerate(frozen.values()):
            self.register_buffer(f"frozen{i}", v.detach().to(torch.float32).clone())

    def forward(self) -> dict[str, torch.Tensor]:
        out = {self.name: self.new}
        out.update({n: getattr(self, f"frozen{i}") for i, n in enumerate(self.frozen_names)})
        return out


def segment(i: int) -> str:
    return f"s{i}"


class Plan:
    """Which segments a strategy puts in front of a task's template, and their starting values."""

    def __init__(self, config: ContinualConfig, tasks: list[TaskData], lm, seed: int):
        self.config, self.tasks, self.lm, self.seed = config, tasks, lm, seed
        self.n = config.n_tokens
        self._initial: dict[int, torch.Tensor] = {}

    @property
    def progressive(self) -> bool:
        return self.config.strategy == Strategy.PROGRESSIVE

    def initial(self, i: int) -> torch.Tensor:
        """Starting values of stage ``i``'s new segment (progressive), seeded by (seed, i); stage 0's also start
        the sequential prompt."""
        if i not in self._initial:
            task = self.tasks[i]
            run = SimpleNamespace(lm=self.lm, scorer=task.scorer, seed=self.seed)
            prompt = task.prompt([(segment(i), self.n)])
            g = torch.Generator().manual_seed(self.seed + 1_000_003 * i)
            self._initial[i] = initial_rows(self.config, run, prompt, self.n, g)
        return self._initial[i]

    def names(self, newest: int) -> list[str]:
        """Segments ``s_newest .. s_0`` (progressive) or the one prompt ``p0`` (sequential)."""
        return [segment(k) for k in range(newest, -1, -1)] if self.progressive else ["p0"]

    def prompt(self, task: int, newest: int, values: dict[str, torch.Tensor]) -> Prompt:
        names = self.names(newest)
        return self.tasks[task].prompt([(name, self.n) for name in names], {name: values[name] for name in names})

    def eval_newest(self, stage: int, task: int) -> int:
        """The newest segment task ``task`` is read with after stage ``stage`` (progressive)."""
        if task > stage or self.config.progressive_eval == ProgressiveEval.OWN:
            return task
        return stage


# -- the run --------------------------------------------------------------------------------------------------------


@dataclass
class ContinualResult:
    output_dir: Path
    summary: dict
    prompts: dict = field(default_factory=dict)  # task -> final prompt (as evaluated in the last row)


def run_continual(opts: TaskSetOptions | None = None, lm=None, pm=None, **kwargs) -> ContinualResult:
    """Learn ``opts.tasks`` in order by ``strategy`` and write the run directory (see the module docstring).
    Keyword arguments set :class:`~promptopt.pipeline.taskset.TaskSetOptions` fields."""
    opts = dataclasses.replace(opts or TaskSetOptions(tasks=kwargs.get("tasks", [])), **kwargs)
    config = cfg.build(ContinualConfig, opts.method_options)
    train_config = cfg.build(TrainConfig, opts.train)
    out = Path(opts.output) if opts.output else Path("runs") / f"continual-{config.strategy.value}-{'+'.join(opts.tasks)}-s{opts.seed}"  # fmt: skip
    if not opts.overwrite and (out / SUMMARY_FILE).exists() and read_json(out / SUMMARY_FILE).get("complete"):
        # finished by a promptopt that wrote no result.json
        raise PromptoptError(f"{out} holds a finished run; pass --overwrite to replace it or --output elsewhere")
    session = RunSession(out, overwrite=opts.overwrite, resume=opts.resume)
    out = session.out
    if (out / SUMMARY_FILE).exists() and not opts.resume:  # an unfinished earlier run: its stages would mix with these
        (out / SUMMARY_FILE).unlink()
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)
    start_all = time.perf_counter()
    lm = lm or load_lm(opts)
    pm = pm or get_plugin_manager()
    tasks = load_taskset(opts, lm, pm)
    session.check(taskset_fingerprint(opts, "continual", config, train_config, lm, tasks))
    resolved = session.write_config(resolved_config(opts, "continual", config, train_config, lm, tasks))
    run = taskset_context(opts, "continual", config, train_config, lm, tasks, out, pm.hook, resolved)
    whole = taskset_result("continual", lm, opts, out, resolved)
    with session.running(run, whole):
        result = _learn(run, tasks, config, train_config, opts, start_all)
        summary = result.summary
        last = dict(zip(summary["tasks"], summary["matrix"][-1]))
        whole.metrics = {"eval": {"score": summary["metrics"]["average_accuracy"]},
                         "tasks": {name: {"score": score} for name, score in last.items()},
                         "continual": summary["metrics"]}  # fmt: skip
        whole.train_seconds, whole.eval_seconds = summary["train_seconds"], summary["eval_seconds"]
        whole.trainable_parameters = sum(s["trainable_parameters"] for s in summary["stages"])
    return result


def _learn(run, tasks: list[TaskData], config: ContinualConfig, train_config: TrainConfig, opts: TaskSetOptions,
           start_all: float) -> ContinualResult:  # fmt: skip
    """The stages, their evaluations and the artifacts (see the module docstring); ``run.tasks`` (no evaluation
    split) is what training sees, ``tasks`` what the evaluations score."""
    out, lm = run.output_dir, run.lm
    plan = Plan(config, tasks, lm, opts.seed)
    names = [t.name for t in tasks]
    n_tasks = len(tasks)

    def evaluate(task: int, prompt: Prompt, label: str):
        return tasks[task].evaluate(prompt, progress=f"{label} {names[task]}" if opts.progress else False)

    summary = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "strategy": config.strategy.value, "tasks": names,
        "model": lm.name, "seed": opts.seed, "method_config": cfg.to_dict(config), "train": cfg.to_dict(train_config),
        "metric": {t.name: t.spec.metric.value for t in tasks}, "n_eval": {t.name: len(t.eval) for t in tasks},
        "initial": [], "matrix": [[None] * n_tasks for _ in range(n_tasks)], "stages": [], "complete": False,
    }  # fmt: skip
    values: dict[str, torch.Tensor] = {}
    first = segment(0) if plan.progressive else "p0"
    start_values = {first: plan.initial(0)}
    eval_seconds = 0.0
    # stage-level resume: after each stage but the last, the trained vectors, the summary so far and the history's
    # size are saved; a resumed run skips the finished stages and runs the interrupted one again from its start
    # (each stage's training is seeded, so it ends as it would have)
    store = ResumableState(out / "checkpoint" / "stages.json", run.options.get("fingerprint") or {})
    saved = store.load() if run.resume else None

    def save(stages_done: int) -> None:
        store.save({"stages_done": stages_done, "summary": summary, "eval_seconds": eval_seconds,
                    "values": {k: v.tolist() for k, v in values.items()}, "history_bytes": run.history_bytes()})

    if saved is not None:
        run.truncate_history(saved["history_bytes"])
        summary, eval_seconds, done = saved["summary"], saved["eval_seconds"], saved["stages_done"]
        values = {k: torch.tensor(v, dtype=torch.float32) for k, v in saved["values"].items()}
    else:
        done = 0
        for j in range(n_tasks):  # b_j: the untrained first prompt in front of each task's template
            result = evaluate(j, tasks[j].prompt([(first, plan.n)], start_values), "initial")
            summary["initial"].append(result.score)
            eval_seconds += result.seconds
        if not plan.progressive:
            values["p0"] = plan.initial(0)
        save(0)
    final_eval = {}
    for i, task in enumerate(tasks):
        if i < done:
            continue
        if plan.progressive:
            values[segment(i)] = plan.initial(i)
            params = FrozenAndNew(segment(i), values[segment(i)], {segment(k): values[segment(k)] for k in range(i)})
        else:
            params = PromptVectors({"p0": values["p0"]})
        prompt = plan.prompt(i, i, values)
        stage_dir = out / "stages" / f"{i}-{task_dir_name(task.name)}"
        started = time.perf_counter()
        training = run.tasks[i]
        fitted = fit(params, task.scorer.usable_examples(prompt, training.train), train_config, scorer=task.scorer,
                     prompt=prompt, select=training.select if opts.select else None, checkpoint_dir=None,
                     seed=opts.seed, hook=run.hook, run=run,
                     log_fn=lambda r, i=i: run.log({"stage": i, "task": names[i], **r}),
                     progress=f"task {i + 1}/{n_tasks} {task.name}" if opts.progress else False)  # fmt: skip
        train_seconds = time.perf_counter() - started
        trained = segment(i) if plan.progressive else "p0"
        values[trained] = fitted.values[trained]
        stage_prompt = plan.prompt(i, i, values)
        stage_prompt.meta.update({"method": "continual", "strategy": config.strategy.value, "model": lm.name,
                                  "task": task.name, "stage": i, "segments": _segment_tasks(plan, i, i, names)})  # fmt: skip
        stage_prompt.save(stage_dir / "prompt")
        row_seconds = 0.0
        for j in range(min(i + 2, n_tasks)):
            if plan.progressive and j == i + 1:
                values.setdefault(segment(j), plan.initial(j))
            p = stage_prompt if j == i else plan.prompt(j, plan.eval_newest(i, j), values)
            result = evaluate(j, p, f"after {names[i]}:")
            summary["matrix"][i][j] = result.score
            row_seconds += result.seconds
            if i == n_tasks - 1:
                p.meta.update({"method": "continual", "strategy": config.strategy.value, "model": lm.name,
                               "task": names[j], "segments": _segment_tasks(plan, i, plan.eval_newest(i, j), names)})  # fmt: skip
                final_eval[j] = (p, result)
                tell_evaluation(run, tasks[j], result)
        eval_seconds += row_seconds
        summary["stages"].append({
            "task": task.name, "train_seconds": train_seconds, "eval_seconds": row_seconds,
            "steps": fitted.steps, "best_step": fitted.best_step, "select": fitted.best_metrics.get("score"),
            "trainable_parameters": fitted.trainable_parameters,
            "prompt": str(stage_dir.relative_to(out) / "prompt"),
        })  # fmt: skip
        summary["metrics"] = continual_metrics(summary["matrix"][: i + 1], summary["initial"][: i + 1])
        write_json(out / SUMMARY_FILE, summary)
        if i < n_tasks - 1:
            save(i + 1)
    prompts = {}
    for j, (p, result) in sorted(final_eval.items()):
        directory = out / "final" / task_dir_name(names[j])
        p.save(directory / "prompt")
        write_json(directory / "metrics.json", {"eval": result.metrics})
        write_jsonl(directory / "predictions.jsonl", ({"split": "eval", **row} for row in result.predictions))
        prompts[names[j]] = p
    summary["final_prompts"] = {names[j]: str(Path("final") / task_dir_name(names[j]) / "prompt") for j in final_eval}
    summary["metrics"] = continual_metrics(summary["matrix"], summary["initial"])
    summary["train_seconds"] = sum(s["train_seconds"] for s in summary["stages"])
    summary["eval_seconds"] = eval_seconds
    summary["seconds"] = time.perf_counter() - start_all
    summary["complete"] = True
    write_json(out / SUMMARY_FILE, summary)
    return ContinualResult(output_dir=out, summary=summary, prompts=prompts)


def _segment_tasks(plan: Plan, stage: int, newest: int, names: list[str]) -> dict:
    """Which task(s) trained each segment of a prompt read after stage ``stage`` (for the artifact's meta)."""
    if not plan.progressive:
        return {"p0": names[: stage + 1]}
    return {segment(k): names[k] for k in range(newest, -1, -1)}


@hookimpl
def register_commands(cli):
    import click

    @cli.command("continual")
    @click.option("--strategy", type=click.Choice([s.value for s in Strategy]), default=Strategy.PROGRESSIVE.value,
                  show_default=True, help="progressive (new frozen segment per task) or sequential (one prompt).")  # fmt: skip
    @click.option("--resume", is_flag=True, help="Continue an interrupted run: finished stages are kept, the "
                  "interrupted one runs again (refused if the settings differ).")
    @taskset_options
    def continual_cmd(strategy, resume, **kwargs):
        """Learn tasks in order (--tasks a,b,c); after each, evaluate every seen task and write the accuracy matrix,
        average accuracy, backward and forward transfer to RUN/continual.json ('promptopt report RUN' shows it).

        Method options (-o KEY=VALUE): n_tokens, progressive_eval=own|all, init, init_text, init_range, vocab_top."""
        from promptopt.sdk import render_continual

        opts = options_from_cli(kwargs, resume=resume)
        opts.method_options = {**opts.method_options, "strategy": strategy}
        result = run_continual(opts)
        click.echo(render_continual([result.summary], "md"), nl=False)
        click.echo(f"written: {result.output_dir}")
