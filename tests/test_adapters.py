"""Methods that adapt the model (lora, finetune): the run applies their edit while scoring and removes it after."""

from __future__ import annotations

import pytest
import torch

import promptopt
from promptopt.data.files import read_json
from promptopt.data.prompt import Prompt
from promptopt.engine import Scorer
from promptopt.engine.adapt import ModelEdit, swapped_parameters
from promptopt.errors import ConfigError, PromptoptError
from promptopt.pipeline.runner import RunOptions
from promptopt.suite.leaderboard import SuiteConfig, run_suite
from promptopt_plugins.finetune import chosen_parameters
from promptopt_plugins.lora import target_modules

from test_methods_common import SMALL, TASK, fingerprint

PLAIN = "Review: {text}\nSentiment:{answer}"


def test_a_suite_of_lora_and_finetune_leaves_the_shared_model_bit_identical_for_the_next_run(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    before = fingerprint(lm.model)
    alone = promptopt.run(method="manual", task=TASK, output=str(tmp_path / "alone"), lm=lm, max_eval=8, progress=False)
    config = SuiteConfig(methods=["lora", "finetune", "manual"], tasks=[TASK], seeds=[0], models=["tiny"],
                         output=str(tmp_path / "board"), inspect=False,
                         run=RunOptions(max_eval=8, max_train=8, device="cpu", progress=False,
                                        train={"steps": 2, "batch_size": 4, "lr": 0.05, "eval_every": 1}))  # fmt: skip
    result = run_suite(config, load=lambda name: lm)
    assert [e.status for e in result.entries] == ["ok", "ok", "ok"]
    assert fingerprint(lm.model) == before and not any(p.requires_grad for p in lm.model.parameters())
    manual = next(e for e in result.entries if e.method == "manual")
    after = read_json(tmp_path / "board" / "tiny" / "tiny-reviews" / "manual" / "seed0" / "result.json")
    assert after["metrics"]["eval"] == alone.metrics["eval"], manual
    rows = [e for e in result.entries if e.method in ("lora", "finetune")]
    adapted = [read_json(tmp_path / "board" / "tiny" / "tiny-reviews" / e.method / "seed0" / "result.json") for e in rows]
    assert all(r["trainable_parameters"] > 0 and r["compute"]["train"]["flops"] > 0 for r in adapted)
    html = result.reports["html"].read_text()
    assert "Score against trainable parameters" in html and "lora:" in html and "finetune:" in html


def test_the_edit_is_applied_while_scoring_and_saved_with_the_prompt(tiny_lms, reviews_task, tmp_path):
    lm = tiny_lms["causal"]
    result = promptopt.run(method="lora", task=TASK, templates=[PLAIN], output=str(tmp_path / "run"), lm=lm, seed=0,
                           method_options={"rank": 2}, **{**SMALL, "train": {**SMALL["train"], "lr": 0.1}})  # fmt: skip
    edit = ModelEdit.load(tmp_path / "run" / "prompt")
    assert edit is not None and not edit.replace and len(edit.low_rank) == len(target_modules(lm.model, "all-linear"))
    examples = reviews_task.load_split("test")[:8]
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    plain = Scorer(lm, reviews_task).class_scores(prompt, examples)
    with edit.applied(lm):
        adapted = Scorer(lm, reviews_task).class_scores(prompt, examples)
    assert not torch.allclose(plain, adapted, atol=1e-5)
    assert torch.equal(Scorer(lm, reviews_task).class_scores(prompt, examples), plain)  # removed after the block
    n = sum(m.in_features * 2 + m.out_features * 2 for m in target_modules(lm.model, "all-linear").values())
    assert result.trainable_parameters == n


def test_finetune_top_blocks_changes_only_those_blocks(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    result = promptopt.run(method="finetune", task=TASK, templates=[PLAIN], output=str(tmp_path / "run"), lm=lm,
                           method_options={"layers": 1}, **{**SMALL, "train": {**SMALL["train"], "lr": 0.01}})  # fmt: skip
    edit = ModelEdit.load(tmp_path / "run" / "prompt")
    assert sorted(edit.replace) == sorted(chosen_parameters(lm.model, 1))
    assert all(name.startswith("model.layers.1.") for name in edit.replace)
    own = dict(lm.model.named_parameters())
    assert any(not torch.equal(v, own[k].detach()) for k, v in edit.replace.items())  # trained
    assert result.trainable_parameters == sum(own[k].numel() for k in edit.replace)
    full = chosen_parameters(lm.model, 0)
    assert len(full) == len(dict(lm.model.named_parameters()))


def test_swapped_parameters_are_restored_on_error_and_keep_tied_weights_tied(tiny_lms):
    lm = tiny_lms["causal"]
    before = fingerprint(lm.model)
    name, param = next(iter(lm.model.named_parameters()))
    with pytest.raises(RuntimeError, match="inside"):
        with swapped_parameters(lm.model, {name: torch.zeros_like(param)}):
            assert dict(lm.model.named_parameters()).get(name) is None  # set aside, not written
            raise RuntimeError("inside")
    assert dict(lm.model.named_parameters())[name] is param and fingerprint(lm.model) == before
    tied = torch.nn.Linear(3, 3, bias=False)
    model = torch.nn.Sequential(tied, torch.nn.Linear(3, 3, bias=False))
    model[1].weight = tied.weight
    with swapped_parameters(model, {"0.weight": torch.eye(3)}):
        assert torch.equal(model[1].weight, torch.eye(3))  # every holder of a tied weight sees the new value
    assert model[1].weight is tied.weight


def test_edits_and_options_are_checked(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    with pytest.raises(PromptoptError, match="no parameter 'nope.weight'"):
        with ModelEdit(replace={"nope.weight": torch.zeros(1)}).applied(lm):
            pass
    name, param = next(iter(lm.model.named_parameters()))
    with pytest.raises(PromptoptError, match="has shape"):
        with ModelEdit(replace={name: torch.zeros(1)}).applied(lm):
            pass
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "model_edit.safetensors").write_bytes(b"cut")
    with pytest.raises(PromptoptError, match="corrupt or truncated"):
        ModelEdit.load(tmp_path / "p")
    with pytest.raises(ConfigError, match="matches no linear layer"):
        target_modules(lm.model, "qkv")
    with pytest.raises(ConfigError, match=r"not \[P\]/\[T\] slots|without \[P\]/\[T\] slots"):
        promptopt.run(method="lora", task=TASK, templates=["[P*2]" + PLAIN], output=str(tmp_path / "r"), lm=lm, **SMALL)
    with pytest.raises(ConfigError, match="FinetuneConfig.layers is 5"):
        promptopt.run(method="finetune", task=TASK, output=str(tmp_path / "f"), lm=lm, method_options={"layers": 5},
                      **SMALL)  # fmt: skip
