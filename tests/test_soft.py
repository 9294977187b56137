"""Soft prompt tuning: default templates, every initialisation, several segments, training and the saved artifact."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import promptopt
from promptopt.engine import Scorer
from promptopt.errors import ConfigError
from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.pipeline.vectors import (
    TemplateRule,
    build_template,
    frequent_token_ids,
    initial_values,
    soft_templates,
)

from promptopt_plugins.soft import SoftConfig
from conftest import TINY_REVIEWS

TASK = str(TINY_REVIEWS / "task.toml")


def fake_run(lm, task):
    return SimpleNamespace(lm=lm, scorer=Scorer(lm, task), seed=0)


def test_default_template_puts_the_vectors_in_front_of_the_first_template():
    templates = ["Review: {text}\nSentiment:{answer}", "{text} It was{answer}"]
    assert soft_templates(templates, 20, TemplateRule.PREFIX) == ["[P*20:p0]Review: {text}\nSentiment:{answer}"]


def test_around_rule_also_puts_vectors_after_the_last_input_field():
    built = build_template("Premise: {premise} Hypothesis: {hypothesis}?{answer}", 5, TemplateRule.AROUND)
    assert built == "[P*3:p0]Premise: {premise} Hypothesis: {hypothesis}[P*2:p1]?{answer}"


def test_templates_that_have_vector_slots_are_used_as_given():
    given = ["Review: {text}", "[P*4]{text}[P*2] It was{answer}", "{text}[P*3]{answer}"]
    assert soft_templates(["Review: {text}{answer}"] + given[1:], 20, TemplateRule.PREFIX) == given[1:]


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match="SoftConfig.init is 'glove'"):
        SoftConfig(init="glove")
    with pytest.raises(ConfigError, match="SoftConfig.init_text"):
        SoftConfig(init="text")
    with pytest.raises(ConfigError, match="SoftConfig.init_prompt"):
        SoftConfig(init="prompt")
    with pytest.raises(ConfigError, match="SoftConfig.n_tokens"):
        SoftConfig(n_tokens=0)


def test_frequent_tokens_are_the_lowest_ordinary_ids(tiny_lms):
    tok = tiny_lms["causal"].tokenizer
    ids = frequent_token_ids(tok, 50, tiny_lms["causal"].vocab_size)
    assert len(ids) == 50 and ids == sorted(ids)
    assert not set(ids) & set(tok.all_special_ids)
    masked = tiny_lms["masked"].tokenizer
    assert not {"[PAD]", "[CLS]", "[MASK]"} & set(masked.convert_ids_to_tokens(frequent_token_ids(masked, 50, 10**6)))


def test_random_init_is_uniform_in_the_range(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    prompt = Prompt.from_template("[P*30]{text}{answer}")
    values = initial_values(SoftConfig(init="random", init_range=0.1), fake_run(lm, reviews_task), prompt)["p0"]
    assert values.shape == (30, lm.hidden_size) and values.abs().max() <= 0.1 and values.std() > 0.03


def test_vocab_init_takes_embeddings_of_frequent_tokens(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    prompt = Prompt.from_template("[P*6]{text}{answer}")
    values = initial_values(SoftConfig(init="vocab", vocab_top=40), fake_run(lm, reviews_task), prompt)["p0"]
    table = lm.embeddings.weight[frequent_token_ids(lm.tokenizer, 40, lm.vocab_size)]
    assert all((table == row).all(dim=1).any() for row in values)


def test_text_init_repeats_the_text_embeddings(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    ids = lm.tokenizer("great review", add_special_tokens=False)["input_ids"]
    prompt = Prompt.from_template("[P*2]Review: {text}[P*3]{answer}")  # rows run on across segments
    values = initial_values(SoftConfig(init="text", init_text="great review"), fake_run(lm, reviews_task), prompt)
    rows = torch.cat([values["p0"], values["p1"]])
    expected = lm.embeddings.weight[(ids * 5)[:5]]
    assert torch.equal(rows, expected)


def test_label_init_uses_the_mean_embedding_of_each_class_words(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    run = fake_run(lm, reviews_task)
    prompt = Prompt.from_template("[P*4]{text}{answer}", label_words={"negative": ["bad", "terrible"], "positive": ["good"]})
    values = initial_values(SoftConfig(init="labels"), run, prompt)["p0"]
    verb = run.scorer.verbalizer(prompt)
    negative = [t for ids in verb.ids[0] for t in ids]
    assert torch.allclose(values[0], lm.embeddings.weight[negative].mean(0))
    assert torch.allclose(values[1], lm.embeddings.weight[[t for ids in verb.ids[1] for t in ids]].mean(0))
    assert not torch.allclose(values[2], values[0])  # the rest: frequent tokens


def test_prompt_init_transfers_saved_vectors_and_rejects_other_shapes(tiny_lms, reviews_task, tmp_path):
    lm = tiny_lms["causal"]
    saved = torch.randn(3, lm.hidden_size)
    Prompt.from_template("[P*3]{text}{answer}", vectors={"p0": saved}).save(tmp_path / "old")
    config = SoftConfig(init="prompt", init_prompt=str(tmp_path / "old"))
    values = initial_values(config, fake_run(lm, reviews_task), Prompt.from_template("[P*3:front]Review: {text}{answer}"))
    assert torch.equal(values["front"], saved)
    with pytest.raises(ConfigError, match="no soft segment fits"):
        initial_values(config, fake_run(lm, reviews_task), Prompt.from_template("[P*4]{text}{answer}"))


def run_soft(lm, tmp_path, name="run", **kwargs):
    options = dict(method="soft", task=TASK, lm=lm, max_train=16, max_eval=12, progress=False,
                   output=str(tmp_path / name), train={"steps": 6, "batch_size": 4, "lr": 0.1, "eval_every": 3})  # fmt: skip
    options.update(kwargs)
    return promptopt.run(**options)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_soft_training_lowers_the_loss_and_saves_a_rescorable_prompt(kind, tiny_lms, tiny_model_dirs, tmp_path):
    result = run_soft(tiny_lms[kind], tmp_path, method_options={"n_tokens": 4, "init": "vocab"})
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in history if "loss" in r]
    assert len(losses) == 6 and min(losses[3:]) < losses[0]
    assert result.trainable_parameters == 4 * 32
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    assert prompt.vectors["p0"].shape == (4, 32) and prompt.meta["init"] == "vocab"
    assert set(load_file(str(tmp_path / "run" / "prompt" / "vectors.safetensors"))) == {"p0"}
    again = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", model=str(tiny_model_dirs[kind]),
                                      max_eval=12, progress=False)  # fmt: skip
    assert again.metrics["accuracy"] == result.metrics["eval"]["accuracy"]


def test_several_vector_segments_between_and_after_the_fields_all_train(tiny_lms, tmp_path):
    template = "[P*2:front]Review: {text}[P*2:middle]\nSentiment:{answer}[P:after]"  # after {answer}: masked LMs see it
    run_soft(tiny_lms["masked"], tmp_path, templates=[template],
             method_options={"init": "text", "init_text": "the review"})  # fmt: skip
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    assert [s.name for s in prompt.segments_of(SegmentKind.VECTORS)] == ["front", "middle", "after"]
    lm = tiny_lms["masked"]
    ids = lm.tokenizer("the review", add_special_tokens=False)["input_ids"]
    initial = lm.embeddings.weight[(ids * 5)[:5]]
    trained = torch.cat([prompt.vectors[n] for n in ("front", "middle", "after")])
    assert all(not torch.allclose(trained[i], initial[i]) for i in range(5))
