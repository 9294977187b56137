"""Manual prompts: score hand-written templates on the selection split and keep the best."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptopt import hookimpl
from promptopt.sdk import OptimizeResult, Prompt, PromptOptimizer, RunContext


@dataclass
class ManualConfig:
    label_words: dict = field(default_factory=dict, metadata={"help": "override the task's label words (label -> words)"})


class ManualOptimizer(PromptOptimizer):
    """Scores each template (the task's, or ``--template``) and picks the best on the selection split."""

    name = "manual"
    description = "hand-written templates and label words, best one chosen on the selection split"
    config_class = ManualConfig

    def optimize(self, run: RunContext) -> OptimizeResult:
        best = None
        for i, template in enumerate(run.templates):
            if best is not None and run.compute.exhausted:  # --budget-flops: keep the best scored so far
                run.log({"stopped": "compute_budget", "templates_scored": i})
                break
            prompt = Prompt.from_template(template, label_words=self.config.label_words or None)
            prompt.check_fields(run.task.inputs)
            result = run.evaluate(prompt, step=i, progress=f"template {i + 1}/{len(run.templates)}" if run.progress else False)
            run.log({"template": template, "select": {k: v for k, v in result.metrics.items() if k != "per_class"},
                     "seconds": round(result.seconds, 3)})  # fmt: skip
            if best is None or result.score > best[1].score:
                best = (prompt, result)
        prompt, result = best
        return OptimizeResult(prompt=prompt, trainable_parameters=0, select_metrics=result.metrics)


@hookimpl
def register_optimizers(register):
    register(ManualOptimizer)
