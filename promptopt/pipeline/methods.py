"""What a method (prompt optimizer) is, and what it gets to work with.

A method subclasses :class:`PromptOptimizer`, sets ``name`` and ``config_class`` (a dataclass whose fields carry
``metadata={"help": ...}``) and implements :meth:`PromptOptimizer.optimize`, which returns the prompt it found.
Every method is scored afterwards by the same engine, on the same data, so results compare like with like.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from promptopt.data.files import append_jsonl
from promptopt.engine import distributed
from promptopt.engine.adapt import ModelEdit
from promptopt.engine.compute import ComputeCounter, compute_counter
from promptopt.engine.model import LoadedModel
from promptopt.engine.scoring import EvalResult, Scorer
from promptopt.engine.train import TrainConfig
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example, TaskSpec


@dataclass
class NoConfig:
    """A method without options."""


@dataclass
class OptimizeResult:
    """What :meth:`PromptOptimizer.optimize` returns.

    ``prompt`` is the final prompt (soft values included); ``select_metrics`` its metrics on the selection split if
    the method computed them; ``trainable_parameters`` the number of values the method optimised.
    ``edit``, when a method adapts the model itself (LoRA, fine-tuning), holds its new weights
    (:class:`promptopt.engine.adapt.ModelEdit`): the run applies it while it scores on the reported split and
    removes it afterwards (the model stays bit-identical for the next run), and saves it with the prompt, so that
    ``promptopt eval`` re-scores the adapted model. A deep prefix travels in the prompt (``Prompt.prefix``).
    """

    prompt: Prompt
    trainable_parameters: int = 0
    select_metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    edit: ModelEdit | None = None


@dataclass
class RunContext:
    """Everything a method needs: the model, the task, the data splits, the scorer and the run's settings.

    ``data`` holds the examples by role: ``train`` (to optimise on) and ``select`` (to choose between prompts).
    The evaluation split is not here: the run scores the returned prompt on it after :meth:`PromptOptimizer.optimize`
    returns, and ``task.load_split`` refuses to read it (see :func:`promptopt.pipeline.runner.run`).
    A run over several tasks (``promptopt multitask``, ``promptopt continual``) gives its first task as ``task``,
    ``scorer``, ``data`` and ``templates`` and every task, in order, in ``tasks``
    (:class:`promptopt.pipeline.taskset.TaskData`, their evaluation splits left out); a one-task run's ``tasks`` is
    empty.
    ``compute`` counts what the model runs (:mod:`promptopt.engine.compute`); a search method should stop when
    ``compute.exhausted`` (the run's ``--budget-flops``), as :func:`~promptopt.engine.train.fit` does.
    """

    method: str
    config: Any
    task: TaskSpec
    lm: LoadedModel
    scorer: Scorer
    data: dict[str, list[Example]]
    templates: list[str]
    seed: int
    output_dir: Path
    train_config: TrainConfig
    hook: Any
    resume: bool = False
    progress: bool = True
    options: dict = field(default_factory=dict)
    tasks: list = field(default_factory=list)

    @property
    def train(self) -> list[Example]:
        return self.data.get("train", [])

    @property
    def compute(self) -> ComputeCounter:
        return compute_counter(self.lm)

    @property
    def select(self) -> list[Example]:
        return self.data.get("select", [])

    def evaluate(self, prompt: Prompt, examples: list[Example] | None = None, step: int | None = None,
                 split: str = "select", progress: bool | str = False) -> EvalResult:  # fmt: skip
        """Score ``prompt`` (default: on the selection split) and tell the ``evaluation`` hook."""
        result = self.scorer.evaluate(prompt, self.select if examples is None else examples, progress=progress)
        self.hook.evaluation(run=self, step=step, split=split, metrics=_flat(result.metrics))
        return result

    def log(self, record: dict) -> None:
        """Append one record (a dict) to the run's ``history.jsonl``: the method's own trace (main process only)."""
        if distributed.is_main():
            append_jsonl(self.output_dir / "history.jsonl", record)

    def history_bytes(self) -> int:
        """The size of ``history.jsonl`` now: a checkpoint records it, so that a resumed run can cut the records
        written after the checkpoint (they are written again) with :meth:`truncate_history`."""
        path = self.output_dir / "history.jsonl"
        return path.stat().st_size if path.exists() else 0

    def truncate_history(self, size: int) -> None:
        path = self.output_dir / "history.jsonl"
        if distributed.is_main() and path.exists() and path.stat().st_size > size:
            with open(path, "r+b") as f:
                f.truncate(size)


def _flat(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


class MethodKind(str, enum.Enum):
    """What a method changes, as a leaderboard groups methods: ``hard`` (text and label words), ``soft`` (input
    vectors), ``deep`` (keys and values at every layer), ``adapter`` (the model's weights: LoRA, fine-tuning)."""

    HARD = "hard"
    SOFT = "soft"
    DEEP = "deep"
    ADAPTER = "adapter"


class PromptOptimizer:
    """Base class of every method. Subclasses set ``name``, ``kind`` and ``config_class`` and implement
    ``optimize``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: what the method changes (a :class:`MethodKind`; None: unknown, shown as "–" in reports)
    kind: ClassVar[MethodKind | None] = None
    config_class: ClassVar[type] = NoConfig
    #: whether the method optimises on the train split (the manual method only selects)
    needs_training_data: ClassVar[bool] = False
    #: training-loop settings (:class:`~promptopt.engine.train.TrainConfig` fields) the method runs with unless the
    #: run sets them itself, e.g. ``{"steps": 500}``; measured choices, stated by ``promptopt methods``
    train_defaults: ClassVar[dict] = {}

    def __init__(self, config=None):
        self.config = config if config is not None else self.config_class()

    def optimize(self, run: RunContext) -> OptimizeResult:
        raise NotImplementedError

    def example_inputs(self, run: RunContext, prompt: Prompt, inputs: list[dict]) -> list[dict]:
        """The input fields the returned ``prompt`` is scored with on the reported split, after :meth:`optimize`.

        Called once with every example's inputs (never their labels). A method whose prompt is completed per input
        (in-context demonstrations chosen for each input) adds its fields here; the default returns ``inputs``.
        """
        return inputs
