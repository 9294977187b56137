"""Per-vector ablation: a planted vector that carries the task drops accuracy when ablated, neutral ones do not."""

from __future__ import annotations

import pytest
import torch

from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.engine.scoring import Scorer
from promptopt.engine.train import TrainConfig, fit
from promptopt.interpret.ablation import ablate_vectors, ablated, mean_embedding, ranking


class OneTrainable(torch.nn.Module):
    """Three vectors: two fixed copies of the mean embedding (neutral), and a trainable one last."""

    def __init__(self, mean: torch.Tensor):
        super().__init__()
        self.mean = mean
        self.v = torch.nn.Parameter(mean.clone().unsqueeze(0))

    def forward(self):
        return {"p0": torch.cat([self.mean.expand(2, -1), self.v], dim=0)}


def skewed(examples, label, others: int):
    """All examples of ``label`` and ``others`` of the rest: a split where predicting ``label`` is worth a lot."""
    return [e for e in examples if e.label == label] + [e for e in examples if e.label != label][:others]


@pytest.fixture(scope="module")
def planted(tiny_lms, reviews_task):
    """A prompt whose last vector was trained (the read position of a causal LM, so it is heard) and whose other two
    are the mean embedding. The tiny random model cannot read sentiment, so the split is skewed towards the label the
    neutral prompt predicts least: what a vector can carry here is that label, worth tens of points."""
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task)
    mean = mean_embedding(lm)
    prompt = Prompt.from_template("{text} It was [P*3]{answer}")
    neutral = prompt.with_vectors({"p0": mean.expand(3, -1).clone()})
    dev = reviews_task.load_split("dev")
    predicted = [r["prediction"] for r in scorer.evaluate(neutral, dev).predictions]
    label = min(scorer.verbalizer(prompt).labels, key=predicted.count)
    select = skewed(dev, label, 10)
    params = OneTrainable(mean)
    fit(params, skewed(reviews_task.load_split("train"), label, 30)[:96],
        TrainConfig(steps=20, batch_size=16, lr=0.3, eval_every=0, checkpoint_every=0), scorer=scorer, prompt=prompt)
    trained = prompt.with_vectors({k: v.detach() for k, v in params().items()})
    return lm, scorer, trained, neutral, select


def test_ablating_the_planted_vector_drops_accuracy_and_ablating_the_neutral_ones_does_not(planted):
    lm, scorer, trained, neutral, select = planted
    intact = scorer.evaluate(trained, select).score
    assert intact - scorer.evaluate(neutral, select).score >= 0.2  # the planted vector really carries something
    found = {(a.index, a.mode): a for a in ablate_vectors(trained, lm, scorer, select)}
    assert set(found) == {(i, m) for i in range(3) for m in ("remove", "mean")}
    for mode in ("remove", "mean"):
        assert found[2, mode].drop >= 0.2
        assert found[2, mode].score == pytest.approx(intact - found[2, mode].drop)
    for i in (0, 1):
        assert found[i, "mean"].drop == 0.0  # a mean vector replaced by the mean: the very same input
        assert abs(found[i, "remove"].drop) <= 0.05
    assert [a.index for a in ranking(list(found.values()), "mean")][0] == 2


def test_remove_ablation_shortens_the_segment_and_drops_a_one_vector_segment(tiny_lms):
    lm = tiny_lms["causal"]
    values = torch.arange(3 * lm.hidden_size, dtype=torch.float32).view(3, -1)
    prompt = Prompt.from_template("[P*3] {text} [P*1]{answer}").with_vectors({"p0": values, "p1": values[:1]})
    mean = mean_embedding(lm)
    shorter = ablated(prompt, "p0", 1, "remove", mean)
    assert shorter.segments_of(SegmentKind.VECTORS)[0].n == 2
    assert torch.equal(shorter.vectors["p0"], values[[0, 2]]) and torch.equal(prompt.vectors["p0"], values)
    gone = ablated(prompt, "p1", 0, "remove", mean)
    assert [s.name for s in gone.segments_of(SegmentKind.VECTORS)] == ["p0"] and "p1" not in gone.vectors
    meaned = ablated(prompt, "p0", 2, "mean", mean)
    assert torch.equal(meaned.vectors["p0"][2], mean) and torch.equal(meaned.vectors["p0"][:2], values[:2])
