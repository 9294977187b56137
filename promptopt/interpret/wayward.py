"""Waywardness check (Khashabi et al., 2022, "Prompt Waywardness"): retrain the soft prompt with a pull towards the
embeddings of an unrelated text and see what that costs.

The loss is the task loss plus ``lam`` times the mean squared distance between each vector and the embedding of its
target token (the unrelated text's tokens, cycled over the vectors), relative to the mean squared norm of the
token embeddings (so ``lam`` does not depend on the model's scale). The vectors start at the target embeddings. If
the retrained prompt scores about as well while its vectors project onto the unrelated text, the nearest tokens of
a soft prompt say little about what it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.data.tasks import Example
from promptopt.engine.model import LoadedModel
from promptopt.engine.scoring import Scorer
from promptopt.engine.train import PromptVectors, TrainConfig, fit
from promptopt.errors import PromptoptError

DEFAULT_TEXT = "the quick brown fox jumps over the lazy dog while the old clock ticks"
#: the accuracy cost (points) under which the report calls the pull cheap
CHEAP_POINTS = 2.0


@dataclass
class Wayward:
    """``soft_score``: the trained prompt's score on the selection examples; ``wayward_score``: the retrained one's;
    ``match``: the fraction of its vectors whose nearest token is their target token; ``sentence``: the verdict."""

    text: str
    lam: float
    steps: int
    soft_score: float
    wayward_score: float
    cost_points: float
    match: float
    projected_text: str
    sentence: str


def targets(lm: LoadedModel, prompt: Prompt, text: str) -> dict[str, torch.Tensor]:
    """Per soft segment, the target embeddings: the text's tokens cycled over all the prompt's vectors, in order."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PromptoptError(f"the waywardness text {text!r} tokenizes to nothing")
    weight = lm.embeddings.weight.detach().float().cpu()
    out, k = {}, 0
    for seg in prompt.segments_of(SegmentKind.VECTORS):
        out[seg.name] = weight[[ids[(k + i) % len(ids)] for i in range(seg.n)]].clone()
        k += seg.n
    return out


def verdict(text: str, cost_points: float, match: float) -> str:
    """The report's sentence on a waywardness check."""
    if match < 0.5:
        return (f"The pull towards {text!r} left only {100 * match:.0f}% of the vectors projecting onto it (cost "
                f"{cost_points:.1f} points): inconclusive; a larger lambda would pull harder.")  # fmt: skip
    if cost_points <= CHEAP_POINTS:
        change = f"loses only {cost_points:.1f} points" if cost_points > 0 else f"scores {-cost_points:.1f} points higher"
        return (f"Retrained to project onto the unrelated text {text!r} ({100 * match:.0f}% of its vectors do), the "
                f"prompt {change}: its nearest tokens say little about what it does.")  # fmt: skip
    return (f"Retrained to project onto the unrelated text {text!r} ({100 * match:.0f}% of its vectors do), the prompt "
            f"loses {cost_points:.1f} points: the pull costs accuracy, so where the vectors sit is not arbitrary.")  # fmt: skip


def waywardness(prompt: Prompt, lm: LoadedModel, scorer: Scorer, train: list[Example], select: list[Example],
                config: TrainConfig, text: str = DEFAULT_TEXT, lam: float = 1.0, seed: int = 0,
                soft_score: float | None = None) -> Wayward:  # fmt: skip
    """Retrain ``prompt``'s vectors on ``train`` with the pull (module docstring); score both on ``select``."""
    from promptopt.interpret.inspection import nearest_tokens, project

    if lam < 0:
        raise PromptoptError(f"the waywardness lambda must be >= 0, got {lam}")
    goal = targets(lm, prompt, text)
    scale = float(lm.embeddings.weight.detach().float().pow(2).sum(-1).mean())
    device = lm.device

    def loss_fn(values, batch):
        task = scorer.loss(prompt, batch, vectors=values)
        pull = torch.stack([(values[n] - goal[n].to(device)).pow(2).sum(-1).mean() for n in goal]).mean() / scale
        return task + lam * pull

    params = PromptVectors(goal).to(device)
    result = fit(params, train, config, loss_fn=loss_fn, scorer=scorer, prompt=prompt, select=select, seed=seed)
    retrained = prompt.with_vectors(result.values)
    if soft_score is None:
        soft_score = float(scorer.evaluate(prompt, select).score)
    wayward_score = float(scorer.evaluate(retrained, select).score)
    hits = total = 0
    weight = lm.embeddings.weight.detach()
    for name, want in goal.items():
        _, got = nearest_tokens(result.values[name], weight, 1)
        _, aim = nearest_tokens(want, weight, 1)
        hits += int((got[:, 0] == aim[:, 0]).sum())
        total += want.shape[0]
    cost = 100 * (soft_score - wayward_score)
    match = hits / total
    return Wayward(text=text, lam=lam, steps=result.steps, soft_score=soft_score, wayward_score=wayward_score,
                   cost_points=round(cost, 4), match=round(match, 4),
                   projected_text=project(retrained, lm).text(lm.tokenizer), sentence=verdict(text, cost, match))  # fmt: skip
