"""An example third-party promptopt plugin, complete in one file.

* ``--method instructions``: puts each of a few instruction sentences in front of the task's first template (or
  ``--template``), scores them with the engine on the selection split and keeps the best.
* A logger: when ``PROMPTOPT_EVENT_LOG`` names a file, every run-lifecycle hook appends one JSON line to it.

Install with ``pip install ./examples/promptopt-instructions``; ``promptopt methods`` then lists it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from promptopt import hookimpl
from promptopt.sdk import MethodKind, OptimizeResult, Prompt, PromptOptimizer

DEFAULT_INSTRUCTIONS = [
    "",
    "Classify the text.\n",
    "Read the text and answer with one word.\n",
    "You are an expert annotator. Label the following text.\n",
]


@dataclass
class InstructionsConfig:
    instructions: list[str] = field(
        default_factory=lambda: list(DEFAULT_INSTRUCTIONS),
        metadata={"help": "instruction sentences to try (comma-separated on the command line)"},
    )

    def __post_init__(self):
        if not self.instructions:
            raise ValueError("InstructionsConfig.instructions must name at least one instruction")


class InstructionsOptimizer(PromptOptimizer):
    name = "instructions"
    description = "example plugin: best instruction sentence in front of the template"
    kind = MethodKind.HARD
    config_class = InstructionsConfig

    def optimize(self, run):
        template = run.templates[0]
        best = None
        for i, instruction in enumerate(self.config.instructions):
            prompt = Prompt.from_template(instruction.replace("{", "{{").replace("}", "}}") + template)
            result = run.evaluate(prompt, step=i)
            run.hook.training_step(run=run, step=i + 1, loss=1.0 - result.score, lr=None)
            if best is None or result.score > best[1].score:
                best = (prompt, result)
        return OptimizeResult(prompt=best[0], select_metrics=best[1].metrics)


@hookimpl
def register_optimizers(register):
    register(InstructionsOptimizer)


def _log(event, **fields):
    path = os.environ.get("PROMPTOPT_EVENT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, **fields}, default=str) + "\n")


@hookimpl
def run_start(run):
    _log("run_start", method=run.method, task=run.task.name)


@hookimpl
def training_step(run, step, loss, lr):
    _log("training_step", step=step, loss=loss, lr=lr)


@hookimpl
def evaluation(run, step, split, metrics):
    _log("evaluation", step=step, split=split, score=metrics.get("score"))


@hookimpl
def run_end(run, result):
    _log("run_end", status=result.status, score=result.metrics.get("eval", {}).get("score"))
