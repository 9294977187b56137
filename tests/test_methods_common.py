"""The common suite every registered method gets for free (PEFT's PeftCommonTester idea)."""

import hashlib

import pytest
import torch

import promptopt
from promptopt.plugins import optimizers
from promptopt.data.prompt import Prompt

from conftest import REPO

TASK = str(REPO / "datasets" / "tiny_reviews" / "task.toml")
METHODS = sorted(optimizers())
SMALL = dict(train={"steps": 2, "eval_every": 1, "batch_size": 4, "checkpoint_every": 0}, max_train=8, max_eval=8,
             progress=False)  # fmt: skip


def fingerprint(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(params=METHODS)
def method(request):
    return request.param


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_method_runs_end_to_end_and_leaves_the_model_untouched(method, kind, tiny_lms, tmp_path):
    lm = tiny_lms[kind]
    before = fingerprint(lm.model)
    result = promptopt.run(method=method, task=TASK, output=str(tmp_path / "run"), lm=lm, seed=1, **SMALL)
    assert result.status == "ok"
    assert fingerprint(lm.model) == before
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert result.metrics["eval"]["n"] == 8 and 0.0 <= result.metrics["eval"]["accuracy"] <= 1.0
    assert result.trainable_parameters >= 0 and result.train_seconds > 0
    for name in ("config.json", "metrics.json", "predictions.jsonl", "result.json", "prompt/prompt.json"):
        assert (tmp_path / "run" / name).exists(), name


def test_saved_prompt_rescored_by_the_engine_gives_the_reported_metrics(method, tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    result = promptopt.run(method=method, task=TASK, output=str(tmp_path / "run"), lm=lm, seed=2, **SMALL)
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    rescored = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", lm=lm, max_eval=8,
                                         progress=False)  # fmt: skip
    assert rescored.metrics["accuracy"] == result.metrics["eval"]["accuracy"]
    assert prompt.meta["method"] == method


def test_same_seed_gives_the_same_prompt_and_metrics(method, tiny_lms, tmp_path):
    lm = tiny_lms["masked"]
    a = promptopt.run(method=method, task=TASK, output=str(tmp_path / "a"), lm=lm, seed=3, **SMALL)
    b = promptopt.run(method=method, task=TASK, output=str(tmp_path / "b"), lm=lm, seed=3, **SMALL)
    assert a.prompt_text == b.prompt_text and a.metrics["eval"] == b.metrics["eval"]
    pa, pb = Prompt.load(tmp_path / "a" / "prompt"), Prompt.load(tmp_path / "b" / "prompt")
    assert pa.vectors.keys() == pb.vectors.keys()
    assert all(torch.equal(pa.vectors[k], pb.vectors[k]) for k in pa.vectors)


def test_method_declares_a_documented_config(method):
    from promptopt.pipeline.config import field_help

    cls, _ = optimizers()[method]
    assert cls.name == method and cls.description
    for name, _type, _default, help_text in field_help(cls.config_class):
        assert help_text, f"{method}: option {name} has no help text"
