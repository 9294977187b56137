"""Training methods that adapt the model itself (LoRA, fine-tuning) with the shared loop, model left untouched.

Such a method builds a ``torch.nn.Module`` of its own trainable tensors with an ``attached(lm)`` context manager,
inside which the model computes with them (forward hooks, or :func:`promptopt.engine.adapt.swapped_parameters`)
and ``edit()``, the :class:`promptopt.engine.adapt.ModelEdit` of its current state. :func:`train_adapter` trains it
on the run's first template (a hard one: the input is not what is trained) and returns the
:class:`OptimizeResult` whose ``edit`` the run applies when it scores. The model's own parameters never require a
gradient and are never written: outside ``attached`` the model is the one the run was given.

Public through :mod:`promptopt.sdk`.
"""

from __future__ import annotations

from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.engine.train import fit
from promptopt.errors import ConfigError, PromptoptError
from promptopt.pipeline.methods import OptimizeResult, RunContext


def adapter_template(run: RunContext) -> Prompt:
    """The run's first template as a prompt, for a method that trains something other than slots in it (adapter
    weights, a deep prefix); it must have no ``[P]``/``[T]`` slot."""
    if not run.templates:
        raise PromptoptError("no template: the task has none and no --template was given")
    prompt = Prompt.from_template(run.templates[0])
    prompt.check_fields(run.task.inputs)
    if prompt.segments_of(SegmentKind.VECTORS) or prompt.segments_of(SegmentKind.TOKENS):
        raise ConfigError(f"template {run.templates[0]!r}: method {run.method!r} trains under a fixed template, "
                          "not [P]/[T] slots; give one without them (--template)")  # fmt: skip
    return prompt


def train_adapter(run: RunContext, params) -> OptimizeResult:
    """Train ``params`` (see the module docstring) with the shared loop; the best state on the selection split."""
    prompt = adapter_template(run)
    scorer = run.scorer

    def loss(values, batch):
        with params.attached(run.lm):
            return scorer.loss(prompt, batch)

    def evaluate(values):
        with params.attached(run.lm):
            return scorer.evaluate(prompt, list(run.select))

    result = fit(
        params, scorer.usable_examples(prompt, run.train), run.train_config, scorer=scorer, prompt=prompt,
        loss_fn=loss, evaluate_fn=evaluate if run.select else None, checkpoint_dir=run.output_dir / "checkpoint",
        resume=run.resume, seed=run.seed, hook=run.hook, run=run, log_fn=run.log,
        progress="training" if run.progress else False,
    )  # fmt: skip
    prompt.meta.update({"best_step": result.best_step, "steps": result.steps})
    return OptimizeResult(prompt=prompt, trainable_parameters=result.trainable_parameters,
                          select_metrics=result.best_metrics, extra={"best_step": result.best_step},
                          edit=params.edit())  # fmt: skip
