"""A readable prompt that keeps the soft prompt's accuracy: distillation by discrete token search; and the
self-description probe.

Distillation starts from the *projected* prompt (each vector replaced by its nearest token) and runs a short
AutoPrompt-style coordinate search (Shin et al., 2020) over word tokens only: at each step one position (round robin)
gets candidate tokens ranked by the first-order estimate ``-E @ grad`` of the loss, the candidates are re-scored
together (:meth:`Scorer.losses`) and a swap is kept only when it lowers the loss. The loss is the cross-entropy
towards the *soft prompt's predictions* on training examples (not the gold labels): the readable prompt is taught to
do what the soft one does. The result is accepted only if it scores at least as well as the projection on the
selection examples; otherwise the projection is reported (so distillation never reports a readable prompt that is
worse than where it started; tested).

The self-description probe puts the vectors in ``[vectors] means:`` and lets the model continue greedily. What it
says is anecdotal: a frozen LM has no reason to describe embeddings it never saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from promptopt.data.prompt import Prompt, Segment, SegmentKind
from promptopt.data.tasks import Example, TaskKind
from promptopt.engine.model import LoadedModel, ModelKind
from promptopt.engine.scoring import Scorer
from promptopt.errors import PromptoptError

DESCRIBE_TEMPLATE = "[vectors] means:"


@dataclass
class Readable:
    """The distilled readable prompt. ``text`` is what is reported (the search's result if ``accepted``, else the
    projection); ``score``/``projected_score`` on the selection examples; ``agreement``: the fraction of the training
    examples on which it predicts what the soft prompt predicts (``projected_agreement``: the projection's)."""

    text: str
    tokens: dict[str, list[int]]
    score: float
    projected_score: float
    accepted: bool
    searched_text: str
    searched_score: float
    agreement: float
    projected_agreement: float
    train_n: int
    steps: int
    swaps: int
    candidates: int
    history: list[dict] = field(default_factory=list)


def soft_targets(scorer: Scorer, prompt: Prompt, examples: list[Example]) -> list[Example]:
    """``examples`` relabelled with the soft prompt's own predictions (the distillation targets)."""
    preds = scorer.evaluate(prompt, examples).predictions
    return [replace(ex, label=row["prediction"]) for ex, row in zip(examples, preds)]


def _agreement(scorer: Scorer, prompt: Prompt, targets: list[Example]) -> float:
    rows = scorer.evaluate(prompt, targets).predictions
    return sum(r["correct"] for r in rows) / len(rows)


def _slots(prompt: Prompt, names: set[str]) -> list[tuple[str, int]]:
    return [(s.name, i) for s in prompt.segments_of(SegmentKind.TOKENS) if s.name in names for i in range(s.n)]


def distill(soft: Prompt, projected: Prompt, lm: LoadedModel, scorer: Scorer, train: list[Example],
            select: list[Example], steps: int | None = None, candidates: int = 8, projected_score: float | None = None,
            allowed: torch.Tensor | None = None) -> Readable:  # fmt: skip
    """Search word tokens for ``projected`` (the projection of ``soft``) towards ``soft``'s predictions on ``train``.

    ``steps``: positions tried (default: each projected position once). ``allowed``: ``(vocab,)`` bool mask of the
    candidate tokens (default: word tokens, :func:`promptopt.pipeline.verbalizer.allowed_tokens`)."""
    from promptopt.pipeline.verbalizer import allowed_tokens

    if scorer.task.kind != TaskKind.CLASSIFICATION:
        raise PromptoptError("distillation needs a classification task (it matches the soft prompt's predicted labels)")
    if not train or not select:
        raise PromptoptError("distillation needs training and selection examples")
    names = {s.name for s in soft.segments_of(SegmentKind.VECTORS)}
    slots = _slots(projected, names)
    weight = lm.embeddings.weight
    if allowed is None:
        allowed = allowed_tokens(lm.tokenizer, weight.shape[0])
    allowed = allowed.to(weight.device)
    steps = len(slots) if steps is None else steps
    targets = soft_targets(scorer, soft, train)
    current = projected
    with torch.inference_mode():
        loss = float(scorer.losses([current], targets)[0])
    history, swaps = [{"step": 0, "loss": round(loss, 5)}], 0
    for step in range(1, steps + 1 if slots and int(allowed.sum()) else 1):
        name, i = slots[(step - 1) % len(slots)]
        ids = list(next(s for s in current.segments_of(SegmentKind.TOKENS) if s.name == name).ids)
        vectors = {s.name: weight[list(s.ids)].detach().clone().requires_grad_()
                   for s in current.segments_of(SegmentKind.TOKENS) if s.name in names}  # fmt: skip
        with torch.enable_grad():
            scorer.losses([current], targets, vectors=vectors)[0].backward()
        estimate = -(weight.detach().float() @ vectors[name].grad[i].float())
        estimate[~allowed] = float("-inf")
        estimate[ids[i]] = float("-inf")
        top = estimate.topk(min(candidates, int(torch.isfinite(estimate).sum()))).indices.tolist()
        tried = [current.with_tokens(name, ids[:i] + [t] + ids[i + 1 :]) for t in top]
        if not tried:
            continue
        with torch.inference_mode():
            losses = scorer.losses(tried, targets).float().cpu()
        j = int(losses.argmin())
        kept = float(losses[j]) < loss
        if kept:
            current, loss, swaps = tried[j], float(losses[j]), swaps + 1
        history.append({"step": step, "position": [name, i], "candidate": lm.tokenizer.decode([top[j]]),
                        "candidate_loss": round(float(losses[j]), 5), "kept": kept, "loss": round(loss, 5)})  # fmt: skip
    if projected_score is None:
        projected_score = float(scorer.evaluate(projected, select).score)
    searched_score = float(scorer.evaluate(current, select).score) if current is not projected else projected_score
    accepted = current is not projected and searched_score >= projected_score
    chosen = current if accepted else projected
    tok = lm.tokenizer
    return Readable(
        text=chosen.text(tok),
        tokens={s.name: list(s.ids) for s in chosen.segments_of(SegmentKind.TOKENS) if s.name in names},
        score=searched_score if accepted else projected_score, projected_score=projected_score, accepted=accepted,
        searched_text=current.text(tok), searched_score=searched_score,
        agreement=round(_agreement(scorer, chosen, targets), 6),
        projected_agreement=round(_agreement(scorer, projected, targets), 6), train_n=len(targets), steps=steps,
        swaps=swaps, candidates=candidates, history=history,
    )  # fmt: skip


def readable_prompt(projected: Prompt, readable: Readable) -> Prompt:
    """The projected prompt with the readable tokens in (a hard prompt, saveable and scoreable as any other)."""
    for name, ids in readable.tokens.items():
        projected = projected.with_tokens(name, ids)
    return projected


def self_description(lm: LoadedModel, prompt: Prompt, max_new_tokens: int = 16) -> str | None:
    """What the model writes after ``[vectors] means:`` (every soft segment's vectors, in order); None for a masked
    LM (it cannot write). Anecdotal."""
    from promptopt.engine.generate import generate

    if lm.kind == ModelKind.MASKED:
        return None
    segments = [s for s in prompt.segments if s.kind == SegmentKind.VECTORS]
    if not segments:
        return None
    probe = Prompt(segments=[*segments, Segment(SegmentKind.TEXT, text=DESCRIBE_TEMPLATE.replace("[vectors]", "")),
                             Segment(SegmentKind.ANSWER)], vectors=dict(prompt.vectors))  # fmt: skip
    return generate(lm, probe, {}, max_new_tokens=max_new_tokens).text
