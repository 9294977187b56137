"""Generation with a saved prompt: KV cache on gives what cache off gives, and starts where the scorer reads."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.engine import Scorer
from promptopt.errors import PromptoptError
from promptopt.engine.generate import fill_inputs, generate
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example


def vector_prompt(lm, template="[P*3]Review: {text}[P*2:mid]\nSentiment:{answer}"):
    g = torch.Generator().manual_seed(0)
    return Prompt.from_template(template, vectors={"p0": torch.randn(3, lm.hidden_size, generator=g),
                                                   "mid": torch.randn(2, lm.hidden_size, generator=g)})  # fmt: skip


def test_generation_with_cache_equals_generation_without(tiny_lms):
    lm = tiny_lms["causal"]
    prompt = vector_prompt(lm)
    for text in ("great food and friendly staff", "the room was dirty"):
        cached = generate(lm, prompt, {"text": text}, max_new_tokens=12, use_cache=True, stop_at_eos=False)
        plain = generate(lm, prompt, {"text": text}, max_new_tokens=12, use_cache=False, stop_at_eos=False)
        assert cached.ids == plain.ids and len(cached.ids) == 12
        assert all(torch.allclose(a, b, atol=1e-5, rtol=0) for a, b in zip(cached.logits, plain.logits))
        sampled = [generate(lm, prompt, {"text": text}, max_new_tokens=8, use_cache=c, temperature=1.0, seed=5,
                            stop_at_eos=False).ids for c in (True, False)]  # fmt: skip
        assert sampled[0] == sampled[1]


def test_first_generated_token_is_read_where_the_scorer_reads_the_answer(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    prompt = vector_prompt(lm)
    out = generate(lm, prompt, {"text": "lovely"}, max_new_tokens=1)
    expected = Scorer(lm, reviews_task).vocab_logprobs(prompt, [Example({"text": "lovely"}, "positive")])[0]
    assert torch.allclose(torch.log_softmax(out.logits[0], -1), expected, atol=1e-5)


def test_generation_needs_a_causal_lm_and_every_field(tiny_lms):
    with pytest.raises(PromptoptError, match="masked LM"):
        generate(tiny_lms["masked"], Prompt.from_template("{text}{answer}"), {"text": "x"})
    two = Prompt.from_template("{premise} {hypothesis}{answer}")
    with pytest.raises(PromptoptError, match="missing"):
        fill_inputs(two, "text")
    assert fill_inputs(two, "b", {"premise": "a"}) == {"premise": "a", "hypothesis": "b"}


def test_cli_generate_prints_the_api_output(tiny_lms, tiny_model_dirs, tmp_path):
    lm = tiny_lms["causal"]
    prompt = vector_prompt(lm)
    prompt.meta["model"] = str(tiny_model_dirs["causal"])
    prompt.save(tmp_path / "p")
    expected = generate(lm, prompt, {"text": "nice place"}, max_new_tokens=5).text
    for extra in ([], ["--no-cache"]):
        out = CliRunner().invoke(cli, ["generate", "--prompt", str(tmp_path / "p"), "--max-new-tokens", "5", *extra,
                                       "nice place"])  # fmt: skip
        assert out.exit_code == 0, out.output
        assert out.output.rstrip("\n").endswith(expected)
