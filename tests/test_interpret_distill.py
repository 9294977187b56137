"""Distillation to a readable prompt never reports one that scores below the projection it started from; the
self-description probe and the waywardness check run and say what they found."""

from __future__ import annotations

import torch

from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.engine.scoring import Scorer
from promptopt.engine.train import TrainConfig
from promptopt.interpret.distill import distill, readable_prompt, self_description, soft_targets
from promptopt.interpret.inspection import project
from promptopt.interpret.wayward import CHEAP_POINTS, verdict, waywardness


def noisy_soft(lm, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = lm.embeddings.weight.detach()[[5, 60, 200, 300]].clone() + 0.05 * torch.randn(4, lm.hidden_size, generator=g)
    return Prompt.from_template("[P*4] {text} It was{answer}").with_vectors({"p0": values})


class Pessimist:
    """A scorer that scores any prompt but the projection at 0 on evaluation: the search can never be accepted."""

    def __init__(self, scorer, projected):
        self.scorer, self.projected = scorer, projected

    def __getattr__(self, name):
        return getattr(self.scorer, name)

    def evaluate(self, prompt, examples, **kwargs):
        result = self.scorer.evaluate(prompt, examples, **kwargs)
        if prompt.segments != self.projected.segments and prompt.segments_of(SegmentKind.TOKENS):
            result.metrics = {**result.metrics, "score": 0.0}
        return result


def test_distillation_keeps_the_projection_unless_the_search_scores_at_least_as_well(tiny_lm, reviews_task):
    scorer = Scorer(tiny_lm, reviews_task)
    soft = noisy_soft(tiny_lm)
    projected = project(soft, tiny_lm)
    train, select = reviews_task.load_split("train")[:24], reviews_task.load_split("dev")[:16]
    real = distill(soft, projected, tiny_lm, scorer, train, select, steps=4, candidates=6)
    assert real.score >= real.projected_score
    assert real.projected_score == scorer.evaluate(projected, select).score
    assert real.steps == 4 and len(real.history) == 5 and real.train_n == 24
    if real.accepted:
        assert real.swaps >= 1 and real.text == real.searched_text
        assert scorer.evaluate(readable_prompt(projected, real), select).score == real.score
    else:
        assert real.text == projected.text(tiny_lm.tokenizer)
    losses = [h["loss"] for h in real.history]
    assert losses == sorted(losses, reverse=True)  # a swap is kept only when it lowers the distillation loss
    worse = distill(soft, projected, tiny_lm, Pessimist(scorer, projected), train, select, steps=4, candidates=6)
    # the search moved (it always finds lower-loss swaps here) but scored below the projection: the projection stays
    assert worse.swaps >= 1 and worse.searched_score < worse.projected_score and not worse.accepted
    assert worse.text == projected.text(tiny_lm.tokenizer) and worse.score == worse.projected_score
    assert worse.tokens == {"p0": list(projected.segments_of(SegmentKind.TOKENS)[0].ids)}


def test_distillation_targets_are_the_soft_prompts_predictions(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task)
    soft = noisy_soft(lm)
    examples = reviews_task.load_split("dev")[:10]
    targets = soft_targets(scorer, soft, examples)
    assert [t.inputs for t in targets] == [e.inputs for e in examples]
    assert scorer.evaluate(soft, targets).score == 1.0  # the soft prompt agrees with itself everywhere


def test_self_description_continues_the_vectors_and_is_none_for_a_masked_lm(tiny_lms):
    text = self_description(tiny_lms["causal"], noisy_soft(tiny_lms["causal"]), max_new_tokens=4)
    assert isinstance(text, str)
    assert self_description(tiny_lms["masked"], noisy_soft(tiny_lms["masked"])) is None


def test_waywardness_with_a_strong_pull_lands_on_the_text_and_says_so(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task)
    config = TrainConfig(steps=3, batch_size=4, lr=0.01, eval_every=0, checkpoint_every=0)
    train, select = reviews_task.load_split("train")[:8], reviews_task.load_split("dev")[:8]
    result = waywardness(noisy_soft(lm), lm, scorer, train, select, config, text="great film", lam=100.0)
    assert result.match == 1.0 and result.steps == 3
    ids = lm.tokenizer("great film", add_special_tokens=False)["input_ids"]
    assert result.projected_text == lm.tokenizer.decode([ids[i % len(ids)] for i in range(4)]) + " {text} It was{answer}"
    assert result.cost_points == round(100 * (result.soft_score - result.wayward_score), 4)
    assert result.sentence == verdict("great film", 100 * (result.soft_score - result.wayward_score), 1.0)


def test_the_verdict_says_in_words_what_the_cost_means():
    assert "say little" in verdict("x", CHEAP_POINTS - 1, 0.9) and "loses only" in verdict("x", CHEAP_POINTS - 1, 0.9)
    assert "scores 8.0 points higher: its nearest tokens say little" in verdict("x", -8.0, 1.0)
    assert "not arbitrary" in verdict("x", CHEAP_POINTS + 5, 0.9)
    assert "inconclusive" in verdict("x", 0.0, 0.2)
