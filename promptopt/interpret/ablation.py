"""Which soft vectors matter: per-vector ablation, re-scored.

Each vector of a soft prompt is ablated in turn, in one of two ways, and the prompt is re-scored on the same
examples as the intact one:

* ``remove``: the vector is taken out (its segment gets one vector fewer; what follows moves one position up);
* ``mean``: the vector is replaced by the mean of the model's input token embeddings (the position stays).

The *drop* is the intact score minus the ablated one: how much of the accuracy that vector carries. A vector that
already equals the mean embedding drops exactly nothing under ``mean`` ablation (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.data.tasks import Example
from promptopt.engine.model import LoadedModel
from promptopt.engine.scoring import Scorer
from promptopt.errors import PromptoptError

ABLATIONS = ("remove", "mean")


@dataclass
class VectorAblation:
    """The score of the prompt with vector ``index`` of segment ``segment`` ablated by ``mode``; ``drop`` is the intact
    score minus it (positive: the vector carries that much)."""

    segment: str
    index: int
    mode: str
    score: float
    drop: float


def mean_embedding(lm: LoadedModel) -> torch.Tensor:
    """The mean of the input token embeddings, ``(hidden,)`` float32 on CPU: the neutral stand-in of a vector."""
    return lm.embeddings.weight.detach().float().mean(dim=0).cpu()


def ablated(prompt: Prompt, name: str, index: int, mode: str, mean: torch.Tensor) -> Prompt:
    """A copy of ``prompt`` with vector ``index`` of soft segment ``name`` ablated by ``mode`` (see the module)."""
    if mode not in ABLATIONS:
        raise PromptoptError(f"ablation {mode!r} is not one of {list(ABLATIONS)}")
    values = prompt.vectors[name]
    if mode == "mean":
        new = values.clone()
        new[index] = mean.to(new.dtype)
        return prompt.with_vectors({name: new})
    keep = torch.cat([values[:index], values[index + 1 :]], dim=0)
    segments, vectors = [], dict(prompt.vectors)
    for seg in prompt.segments:
        if seg.kind == SegmentKind.VECTORS and seg.name == name:
            if seg.n == 1:
                vectors.pop(name)
                continue
            seg = replace(seg, n=seg.n - 1)
            vectors[name] = keep
        segments.append(seg)
    return replace(prompt, segments=segments, vectors=vectors, template=None)


def ablate_vectors(prompt: Prompt, lm: LoadedModel, scorer: Scorer, examples: list[Example],
                   modes: tuple[str, ...] = ABLATIONS, intact: float | None = None) -> list[VectorAblation]:  # fmt: skip
    """Every vector of every soft segment, ablated by each of ``modes`` and re-scored on ``examples``.

    ``intact`` is the unablated score when already known (else computed). Returned in prompt order."""
    if intact is None:
        intact = float(scorer.evaluate(prompt, examples).score)
    mean = mean_embedding(lm)
    out = []
    for seg in prompt.segments_of(SegmentKind.VECTORS):
        for i in range(seg.n):
            for mode in modes:
                score = float(scorer.evaluate(ablated(prompt, seg.name, i, mode, mean), examples).score)
                out.append(VectorAblation(seg.name, i, mode, round(score, 6), round(intact - score, 6)))
    return out


def ranking(ablations: list[VectorAblation], mode: str | None = None) -> list[VectorAblation]:
    """The ablations (of ``mode``, default the first mode present) sorted by drop, largest first (ties: prompt
    order)."""
    if not ablations:
        return []
    mode = mode or ablations[0].mode
    chosen = [a for a in ablations if a.mode == mode]
    return sorted(chosen, key=lambda a: -a.drop)
