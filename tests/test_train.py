"""The shared training loop: options, schedule, data order, accumulation, clipping, selection, checkpoints, speed paths."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from promptopt.engine import Scorer
from promptopt.engine.train import (
    CHECKPOINT_FILE,
    BatchStream,
    PromptVectors,
    TrainConfig,
    fit,
    lr_factor,
    read_checkpoint,
)
from promptopt.errors import ConfigError, PromptoptError
from promptopt.data.prompt import Prompt

TARGET = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])


def toy_params():
    return PromptVectors({"p0": torch.zeros(2, 3)})


def toy_loss(values, batch):
    """Distance to TARGET scaled per example; draws from torch, Python and NumPy RNGs like a dropout would."""
    scale = torch.tensor([float(x) for x in batch]).mean()
    noise = torch.rand(()) * 1e-3 + random.random() * 1e-3 + float(np.random.rand()) * 1e-3
    return scale * ((values["p0"] - TARGET) ** 2).mean() + noise


TOY_DATA = [1.0, 2.0, 0.5, 1.5, 1.0, 3.0, 0.25, 2.5, 1.0, 1.0]


class Recorder:
    """A stand-in for ``pm.hook`` that records the training_step and evaluation calls."""

    def __init__(self, stop_at=None):
        self.steps, self.evals, self.stop_at = [], [], stop_at

    def training_step(self, run, step, loss, lr):
        self.steps.append((step, loss, lr))
        if self.stop_at is not None and step == self.stop_at:
            raise KeyboardInterrupt  # an interruption between a step and its checkpoint

    def evaluation(self, run, step, split, metrics):
        self.evals.append((step, split, metrics["score"]))


def test_train_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match="TrainConfig.steps"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match="TrainConfig.optimizer.*adamw"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="TrainConfig.schedule.*cosine"):
        TrainConfig(schedule="step")
    with pytest.raises(ConfigError, match="TrainConfig.group_by_length"):
        TrainConfig(group_by_length=-1)


def test_learning_rate_warms_up_then_decays_linearly_or_by_cosine():
    linear = TrainConfig(steps=10, warmup_steps=4, schedule="linear")
    assert [lr_factor(linear, s) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert lr_factor(linear, 4) == 1.0 and lr_factor(linear, 7) == pytest.approx(0.5) and lr_factor(linear, 10) == 0.0
    cosine = TrainConfig(steps=10, schedule="cosine")
    assert lr_factor(cosine, 0) == 1.0 and lr_factor(cosine, 5) == pytest.approx(0.5) and lr_factor(cosine, 10) == pytest.approx(0)
    assert all(lr_factor(TrainConfig(schedule="constant"), s) == 1.0 for s in range(0, 300, 50))


def test_batch_stream_visits_every_example_once_per_epoch_in_a_seeded_order():
    stream = BatchStream(10, 5, seed=3)
    first = stream.batch(0) + stream.batch(1)
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert BatchStream(10, 5, seed=3).batch(1) == stream.batch(1)
    assert BatchStream(10, 5, seed=4).batch(0) != stream.batch(0)
    assert sorted(stream.batch(2) + stream.batch(3)) == list(range(10))  # the next epoch, reshuffled


def test_batch_stream_groups_examples_of_similar_length():
    lengths = [random.Random(i).randint(1, 100) for i in range(64)]
    plain = BatchStream(64, 8, seed=0)
    grouped = BatchStream(64, 8, seed=0, lengths=lengths, group=8)

    def padding(stream):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in map(stream.batch, range(8)))

    assert sorted(sum(map(grouped.batch, range(8)), [])) == list(range(64))
    assert padding(grouped) < padding(plain) / 3


def test_fit_lowers_the_loss_and_tells_the_hooks():
    hook = Recorder()
    scores = iter([0.1, 0.2, 0.3])
    result = fit(toy_params(), TOY_DATA, TrainConfig(steps=6, batch_size=2, lr=0.1, eval_every=2, group_by_length=0),
                 loss_fn=toy_loss, evaluate_fn=lambda v: {"score": next(scores)}, hook=hook, run="RUN")  # fmt: skip
    assert [s for s, _, _ in hook.steps] == [1, 2, 3, 4, 5, 6]
    assert hook.steps[-1][1] < hook.steps[0][1]
    assert hook.steps[0][2] == pytest.approx(0.1) and hook.steps[-1][2] < hook.steps[0][2]  # linear decay by default
    assert hook.evals == [(2, "select", 0.1), (4, "select", 0.2), (6, "select", 0.3)]
    assert result.best_step == 6 and result.steps == 6 and result.trainable_parameters == 6


def test_fit_returns_the_best_evaluated_state_and_stops_after_patience():
    seen = {}
    scores = iter([0.2, 0.9, 0.5, 0.4, 0.95, 0.99])

    def evaluate(values):
        score = next(scores)
        seen[score] = values["p0"].clone()
        return {"score": score}

    params = toy_params()
    result = fit(params, TOY_DATA, TrainConfig(steps=12, batch_size=2, lr=0.1, eval_every=2, patience=2),
                 loss_fn=toy_loss, evaluate_fn=evaluate)  # fmt: skip
    assert result.stopped_early and result.steps == 8  # evaluations at 2, 4, 6, 8; no gain after step 4
    assert result.best_step == 4 and result.best_metrics == {"score": 0.9}
    assert torch.equal(result.values["p0"], seen[0.9]) and torch.equal(params()["p0"].detach(), seen[0.9])


def test_gradient_accumulation_equals_one_batch_of_the_same_examples():
    def loss(values, batch):  # no noise, so the two runs differ only in how the examples are split
        return torch.tensor([float(x) for x in batch]).mean() * ((values["p0"] - TARGET) ** 2).mean()

    common = {"steps": 5, "lr": 0.05, "group_by_length": 0, "eval_every": 0}
    one = fit(toy_params(), TOY_DATA, TrainConfig(batch_size=4, grad_accum=1, **common), loss_fn=loss)
    acc = fit(toy_params(), TOY_DATA, TrainConfig(batch_size=2, grad_accum=2, **common), loss_fn=loss)
    assert torch.allclose(one.values["p0"], acc.values["p0"], atol=1e-6)


def test_gradients_are_clipped_to_max_grad_norm():
    params = toy_params()
    fit(params, TOY_DATA, TrainConfig(steps=2, batch_size=2, max_grad_norm=0.5, eval_every=0),
        loss_fn=lambda v, b: 1000 * toy_loss(v, b))  # fmt: skip
    assert params.vectors["p0"].grad.norm() <= 0.5 + 1e-5
    unclipped = toy_params()
    fit(unclipped, TOY_DATA, TrainConfig(steps=2, batch_size=2, max_grad_norm=0, eval_every=0),
        loss_fn=lambda v, b: 1000 * toy_loss(v, b))  # fmt: skip
    assert unclipped.vectors["p0"].grad.norm() > 10


def test_adafactor_trains_the_prompt():
    result = fit(toy_params(), TOY_DATA, TrainConfig(steps=30, batch_size=2, lr=0.1, optimizer="adafactor", eval_every=0),
                 loss_fn=toy_loss)  # fmt: skip
    assert ((result.values["p0"] - TARGET) ** 2).mean() < ((0 - TARGET) ** 2).mean() / 2


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_resume_after_an_interruption_reaches_the_uninterrupted_result(tmp_path, optimizer):
    config = TrainConfig(steps=9, batch_size=3, lr=0.1, warmup_steps=2, eval_every=2, checkpoint_every=1,
                         optimizer=optimizer, group_by_length=0)  # fmt: skip

    def evaluate(values):  # a score that depends on the values, so selection is exercised
        return {"score": -float(((values["p0"] - TARGET) ** 2).mean().round(decimals=1))}

    def train(directory, resume, hook):
        return fit(toy_params(), TOY_DATA, config, loss_fn=toy_loss, evaluate_fn=evaluate, checkpoint_dir=directory,
                   resume=resume, seed=7, hook=hook)  # fmt: skip

    full = train(tmp_path / "full", False, Recorder())
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", False, Recorder(stop_at=5))  # steps 1-4 checkpointed, step 5 lost
    meta, _ = read_checkpoint(tmp_path / "cut" / CHECKPOINT_FILE)
    assert meta["state"]["step"] == 4
    random.seed(123), torch.manual_seed(123), np.random.seed(123)  # the resumed process starts in another state
    hook = Recorder()
    resumed = train(tmp_path / "cut", True, hook)
    assert resumed.resumed_from == 4 and [s for s, _, _ in hook.steps] == [5, 6, 7, 8, 9]
    assert torch.equal(resumed.values["p0"], full.values["p0"])
    assert resumed.best_step == full.best_step and resumed.best_metrics == full.best_metrics
    assert [h for h in resumed.history if "select" in h] == [h for h in full.history if "select" in h]


def test_resume_refuses_a_checkpoint_written_with_other_options(tmp_path):
    fit(toy_params(), TOY_DATA, TrainConfig(steps=2, batch_size=2, eval_every=0), loss_fn=toy_loss, checkpoint_dir=tmp_path)
    with pytest.raises(PromptoptError, match="cannot resume: field 'train'"):
        fit(toy_params(), TOY_DATA, TrainConfig(steps=2, batch_size=2, lr=0.5, eval_every=0), loss_fn=toy_loss,
            checkpoint_dir=tmp_path, resume=True)  # fmt: skip


def test_checkpoint_is_one_safetensors_file_without_pickle(tmp_path):
    fit(toy_params(), TOY_DATA, TrainConfig(steps=2, batch_size=2, eval_every=0), loss_fn=toy_loss, checkpoint_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # the temporary file was renamed into place
    meta, tensors = read_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert meta["state"]["step"] == 2 and meta["state"]["batches"] == 2
    assert {"params.0", "rng.1"} <= set(tensors) and any(k.startswith("optimizer.") for k in tensors)


def reviews(task, n=8):
    return task.load_split("train")[:n]


def test_model_stays_frozen_and_gets_no_optimizer_state(tiny_lms, reviews_task, tmp_path):
    lm = tiny_lms["causal"]
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    scorer = Scorer(lm, reviews_task)
    prompt = Prompt.from_template("[P*4]Review: {text}\nSentiment:{answer}")
    params = PromptVectors({"p0": torch.randn(4, lm.hidden_size)})
    fit(params, reviews(reviews_task), TrainConfig(steps=3, batch_size=4, eval_every=0), scorer=scorer, prompt=prompt,
        checkpoint_dir=tmp_path)  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in lm.model.parameters())
    _, tensors = read_checkpoint(tmp_path / CHECKPOINT_FILE)
    optimizer_state = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    big = [v.shape for v in optimizer_state.values() if v.numel() > 1]
    assert big == [torch.Size([4, lm.hidden_size])] * 2  # AdamW's two moments of the prompt, nothing of the model


def test_fit_refuses_model_parameters_in_the_prompt_module(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task)
    prompt = Prompt.from_template("[P*2]{text}{answer}")
    module = PromptVectors({"p0": torch.zeros(2, lm.hidden_size)})
    module.stolen = lm.model.get_input_embeddings()  # frozen, so not trainable: fine
    fit(module, reviews(reviews_task, 2), TrainConfig(steps=1, batch_size=2, eval_every=0), scorer=scorer, prompt=prompt)
    lm.model.get_input_embeddings().weight.requires_grad_(True)
    try:
        with pytest.raises(PromptoptError, match="must stay frozen"):
            fit(module, reviews(reviews_task, 2), TrainConfig(steps=1, eval_every=0), scorer=scorer, prompt=prompt)
    finally:
        lm.model.get_input_embeddings().weight.requires_grad_(False)


def test_shared_prefix_fast_path_gives_the_plain_loss_and_gradient(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    assert next(lm.model.parameters()).dtype == torch.float32
    fast = Scorer(lm, reviews_task, share_prefix=True)
    plain = Scorer(lm, reviews_task, share_prefix=False)
    examples = reviews(reviews_task, 8)  # of different lengths: left padding between the prefix and the text
    used = []
    original = fast._hidden_shared
    fast._hidden_shared = lambda *a, **k: used.append(1) or original(*a, **k)
    for words in (None, {"negative": ["awful stuff"], "positive": ["good", "very good"]}):  # multi-token words too
        prompt = Prompt.from_template("[P*5]Review: {text}\nSentiment:{answer}", label_words=words)
        grads, losses = [], []
        for scorer in (fast, plain):
            vectors = torch.randn(5, lm.hidden_size, generator=torch.Generator().manual_seed(0)).requires_grad_()
            loss = scorer.loss(prompt, examples, vectors={"p0": vectors})
            loss.backward()
            losses.append(loss.detach())
            grads.append(vectors.grad)
        assert torch.allclose(losses[0], losses[1], atol=1e-5, rtol=0)
        assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=0)
    assert used  # the fast path really ran


def test_training_uses_the_shared_prefix_path(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task)
    calls = []
    original = scorer._hidden_shared
    scorer._hidden_shared = lambda *a, **k: calls.append(torch.is_grad_enabled()) or original(*a, **k)
    prompt = Prompt.from_template("[P*4]Review: {text}\nSentiment:{answer}")
    fit(PromptVectors({"p0": torch.randn(4, lm.hidden_size)}), reviews(reviews_task), TrainConfig(steps=2, batch_size=4),
        scorer=scorer, prompt=prompt, select=reviews(reviews_task, 4))  # fmt: skip
    assert calls[:2] == [True, True]  # both training steps went through it with gradients on


def test_fit_with_scorer_evaluates_the_selection_split(tiny_lms, reviews_task):
    lm = tiny_lms["masked"]
    hook = Recorder()
    prompt = Prompt.from_template("[P*3]Review: {text}\nSentiment:{answer}")
    result = fit(PromptVectors({"p0": torch.randn(3, lm.hidden_size)}), reviews(reviews_task),
                 TrainConfig(steps=2, batch_size=4, eval_every=1), scorer=Scorer(lm, reviews_task), prompt=prompt,
                 select=reviews_task.load_split("dev")[:6], hook=hook)  # fmt: skip
    assert [s for s, _, _ in hook.evals] == [1, 2]
    assert result.best_metrics["n"] == 6 and 0 <= result.best_metrics["accuracy"] <= 1


class TwoPart(torch.nn.Module):
    """A prompt module whose two parts train at different learning rates through ``optimizer_groups``."""

    def __init__(self, scales):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(1, 3))
        self.b = torch.nn.Parameter(torch.zeros(1, 3))
        self.scales = scales

    def optimizer_groups(self):
        return [{"params": [p], "lr_scale": f} for p, f in zip((self.a, self.b), self.scales)]

    def forward(self):
        return {"p0": torch.cat([self.a, self.b])}


def test_optimizer_groups_give_parts_of_a_prompt_module_their_own_learning_rate():
    config = TrainConfig(steps=3, batch_size=2, lr=0.1, schedule="constant", group_by_length=0, max_grad_norm=0)
    params = TwoPart((1.0, 0.01))
    fit(params, TOY_DATA, config, loss_fn=toy_loss)
    # AdamW moves each coordinate by about lr per step whatever the gradient's size: 3 steps
    assert params.a.detach().abs().max().item() == pytest.approx(0.3, rel=0.05)
    assert params.b.detach().abs().max().item() == pytest.approx(0.003, rel=0.05)
    with pytest.raises(PromptoptError, match="must cover every trainable parameter"):
        fit(TwoPart((1.0,)), TOY_DATA, config, loss_fn=toy_loss)


def test_a_nan_loss_stops_training_naming_the_batch():
    calls = []

    def nan_on_third(values, batch):
        calls.append(1)
        return toy_loss(values, batch) * (float("nan") if len(calls) == 3 else 1.0)

    with pytest.raises(PromptoptError, match=r"training loss is nan at step 3 on training batch 3 \(example"):
        fit(toy_params(), TOY_DATA, TrainConfig(steps=6, batch_size=2, lr=0.1, eval_every=0), loss_fn=nan_on_third)
