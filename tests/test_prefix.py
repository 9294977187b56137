"""Deep prompts (the prefix method): per-layer keys/values scored through the cache path, trained alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import promptopt
from promptopt.data.prompt import Prompt
from promptopt.engine import Scorer
from promptopt.engine.adapt import prefix_shape
from promptopt.engine.generate import generate
from promptopt.errors import ConfigError, PromptoptError
from promptopt_plugins.prefix import PrefixConfig, PrefixParams

from conftest import TINY_REVIEWS
from test_methods_common import SMALL, TASK, fingerprint

TEMPLATE = "Review: {text}\nSentiment:{answer}"


def deep_prompt(lm, n=3, seed=0):
    prefix = torch.randn(prefix_shape(lm, n), generator=torch.Generator().manual_seed(seed))
    return Prompt.from_template(TEMPLATE, prefix=prefix)


def test_cache_path_and_plain_path_give_the_same_scores_with_a_deep_prefix(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    prompt = deep_prompt(lm)
    examples = reviews_task.load_split("dev")[:6]
    shared = Scorer(lm, reviews_task, share_prefix=True).class_scores(prompt, examples)
    plain = Scorer(lm, reviews_task, share_prefix=False).class_scores(prompt, examples)
    bare = Scorer(lm, reviews_task).class_scores(dataclasses.replace(prompt, prefix=None), examples)
    assert torch.allclose(shared, plain, atol=1e-5, rtol=0)
    assert not torch.allclose(shared, bare, atol=1e-3)  # the prefix is attended to


def test_deep_prefix_scores_as_keys_values_in_front_computed_by_hand(tiny_lms, reviews_task):
    from transformers import DynamicCache

    lm = tiny_lms["causal"]
    prompt = deep_prompt(lm, n=4)
    ex = reviews_task.load_split("dev")[0]
    ours = Scorer(lm, reviews_task).vocab_logprobs(prompt, [ex])[0]
    ids = lm.tokenizer("Review: " + ex.inputs["text"] + "\nSentiment:", add_special_tokens=False, return_tensors="pt")["input_ids"]
    cache = DynamicCache(ddp_cache_data=[(layer[0][None], layer[1][None]) for layer in prompt.prefix])
    with torch.no_grad():
        logits = lm.model(input_ids=ids, attention_mask=torch.ones(1, 4 + ids.shape[1], dtype=torch.long),
                          position_ids=torch.arange(4, 4 + ids.shape[1])[None], past_key_values=cache).logits  # fmt: skip
    assert torch.allclose(torch.log_softmax(logits[0, -1].float(), -1), ours, atol=1e-5, rtol=0)


def test_masked_lm_scores_a_deep_prefix_as_extra_keys_values(tiny_lms, reviews_task):
    lm = tiny_lms["masked"]
    prompt = deep_prompt(lm)
    examples = reviews_task.load_split("dev")[:4]
    with_prefix = Scorer(lm, reviews_task).class_scores(prompt, examples)
    without = Scorer(lm, reviews_task).class_scores(dataclasses.replace(prompt, prefix=None), examples)
    assert torch.isfinite(with_prefix).all() and not torch.allclose(with_prefix, without, atol=1e-3)


def test_generation_with_a_deep_prompt_cache_on_equals_cache_off(tiny_lms):
    lm = tiny_lms["causal"]
    prompt = deep_prompt(lm)
    cached = generate(lm, prompt, {"text": "great food"}, max_new_tokens=8, use_cache=True, stop_at_eos=False)
    plain = generate(lm, prompt, {"text": "great food"}, max_new_tokens=8, use_cache=False, stop_at_eos=False)
    assert cached.ids == plain.ids
    assert all(torch.allclose(a, b, atol=1e-5, rtol=0) for a, b in zip(cached.logits, plain.logits))
    bare = generate(lm, dataclasses.replace(prompt, prefix=None), {"text": "great food"}, max_new_tokens=1)
    assert not torch.allclose(bare.logits[0], cached.logits[0], atol=1e-3)


def test_prefix_training_changes_only_the_prefixes(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    before = fingerprint(lm.model)
    result = promptopt.run(method="prefix", task=TASK, templates=[TEMPLATE], output=str(tmp_path / "run"), lm=lm,
                           seed=1, method_options={"n_tokens": 3}, **SMALL)  # fmt: skip
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    assert fingerprint(lm.model) == before
    assert prompt.template == TEMPLATE and prompt.segments == Prompt.from_template(TEMPLATE).segments
    assert prompt.vectors == {} and tuple(prompt.prefix.shape) == prefix_shape(lm, 3)
    assert result.trainable_parameters == prompt.prefix.numel()
    with torch.no_grad():
        start = PrefixParams(PrefixConfig(n_tokens=3), lm, seed=1)()["prefix"]
    assert start.shape == prompt.prefix.shape
    assert all(not torch.allclose(prompt.prefix[i], start[i], atol=1e-6) for i in range(start.shape[0]))


@pytest.mark.parametrize("options", [{"reparam": True, "reparam_hidden": 16}, {"layers": 1}, {"layers": 1, "reparam": True, "reparam_hidden": 16}])
def test_reparameterised_and_top_layer_prefixes_save_plain_prefixes_that_rescore(options, tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    result = promptopt.run(method="prefix", task=TASK, templates=[TEMPLATE], output=str(tmp_path / "run"), lm=lm,
                           seed=2, method_options={"n_tokens": 3, **options}, **SMALL)  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "run" / "prompt").iterdir())
    assert files == ["prefix.safetensors", "prompt.json"]  # no MLP, no input vectors: plain prefixes only
    rescored = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", lm=lm, max_eval=8,
                                         progress=False)  # fmt: skip
    assert rescored.metrics == result.metrics["eval"]
    _, _, heads, n, dim = prefix_shape(lm, 3)
    per_token = (1 if options.get("layers") else 2) * 2 * heads * dim  # free keys/values of one position
    below = n * lm.hidden_size if options.get("layers") else 0  # the input vectors under the top layer
    mlp = lm.hidden_size * 16 + 16 + 16 * per_token + per_token + n * lm.hidden_size  # MLP and its input table
    assert result.trainable_parameters == below + (mlp if options.get("reparam") else n * per_token)


def test_prefix_refuses_bad_options_and_slot_templates(tiny_lms, tmp_path):
    with pytest.raises(ConfigError, match="PrefixConfig.layers"):
        PrefixConfig(layers=-1)
    with pytest.raises(ConfigError, match="PrefixConfig.init"):
        PrefixConfig(init="zeros")
    with pytest.raises(ConfigError, match=r"not \[P\]/\[T\] slots"):
        promptopt.run(method="prefix", task=TASK, templates=["[P*2]" + TEMPLATE], output=str(tmp_path / "a"),
                      lm=tiny_lms["causal"], **SMALL)  # fmt: skip
    with pytest.raises(ConfigError, match="has 2 layers"):
        promptopt.run(method="prefix", task=TASK, output=str(tmp_path / "b"), lm=tiny_lms["causal"],
                      method_options={"layers": 3}, **SMALL)  # fmt: skip


def test_a_saved_prefix_for_another_model_is_refused(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    Prompt.from_template(TEMPLATE, prefix=torch.zeros(1, 2, 2, 3, 8)).save(tmp_path / "p")
    with pytest.raises(PromptoptError, match="deep prefix has shape"):
        promptopt.evaluate_prompt(tmp_path / "p", str(TINY_REVIEWS / "task.toml"), split="test", lm=lm, progress=False)
