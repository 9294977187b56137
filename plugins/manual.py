"""Manual prompts: score hand-written templates on the selection split and keep the best."""

from __future__ import annotations

from dataclasses import dataclass, field

from promptopt import hookimpl
from promptopt.sdk import MethodKind, OptimizeResult, Prompt, PromptOptimizer, ResumableState, RunContext


@dataclass
class ManualConfig:
    label_words: dict = field(default_factory=dict, metadata={"help": "override the task's label words (label -> words)"})


class ManualOptimizer(PromptOptimizer):
    """Scores each template (the task's, or ``--template``) and picks the best on the selection split."""

    name = "manual"
    description = "hand-written templates and label words, best one chosen on the selection split"
    kind = MethodKind.HARD
    config_class = ManualConfig

    def optimize(self, run: RunContext) -> OptimizeResult:
        # each template's selection score is kept in a resumable state: a resumed run scores only the rest
        store = ResumableState(run.output_dir / "checkpoint" / "manual.json",
                               {"templates": run.templates, "label_words": self.config.label_words, "seed": run.seed})
        saved = (store.load() if run.resume else None) or {"scored": [], "history_bytes": run.history_bytes()}
        run.truncate_history(saved["history_bytes"])  # records after the last save are written again
        scored: list[dict] = saved["scored"]
        for i, template in enumerate(run.templates):
            if i < len(scored):
                continue
            if scored and run.compute.exhausted:  # --budget-flops: keep the best scored so far
                run.log({"stopped": "compute_budget", "templates_scored": i})
                break
            prompt = Prompt.from_template(template, label_words=self.config.label_words or None)
            prompt.check_fields(run.task.inputs)
            result = run.evaluate(prompt, step=i, progress=f"template {i + 1}/{len(run.templates)}" if run.progress else False)
            run.log({"template": template, "select": {k: v for k, v in result.metrics.items() if k != "per_class"},
                     "seconds": round(result.seconds, 3)})  # fmt: skip
            scored.append({"score": result.score, "metrics": result.metrics})
            store.save({"scored": scored, "history_bytes": run.history_bytes()})
        best = max(range(len(scored)), key=lambda i: (scored[i]["score"], -i))  # the first of equal scores
        prompt = Prompt.from_template(run.templates[best], label_words=self.config.label_words or None)
        return OptimizeResult(prompt=prompt, trainable_parameters=0, select_metrics=scored[best]["metrics"])


@hookimpl
def register_optimizers(register):
    register(ManualOptimizer)
