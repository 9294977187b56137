"""Encoder-decoders (the conformance matrix's tiny T5): every registered method runs on one; soft vectors and
triggers are encoder inputs, label words decoder continuations, a deep prefix sits in the decoder's self-attention;
generation runs the encoder once and the decoder on; the logit lens refuses, naming why."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import promptopt
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example
from promptopt.engine import Scorer, load_model
from promptopt.engine.adapt import prefix_shape
from promptopt.engine.generate import generate
from promptopt.errors import PromptoptError
from promptopt.plugins import optimizers

from conftest import DEVICE
from test_conformance import CAUSAL_TEMPLATE, TASK, examples, family
from test_methods_common import fingerprint

SMALL = dict(train={"steps": 2, "eval_every": 1, "batch_size": 4, "checkpoint_every": 0}, max_train=8, max_eval=8,
             progress=False)  # fmt: skip
# every registered method, and the token-search rules beyond autoprompt's default
RUNS = [(m, {}) for m in sorted(optimizers())] + [("autoprompt", {"rule": "gcg"}), ("autoprompt", {"rule": "pez"})]


def build_t5(folder, **changes):
    tok, config, model_cls = family("t5")
    for key, value in changes.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = model_cls(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return load_model(str(folder), device=DEVICE, dtype="float32")


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return build_t5(tmp_path_factory.mktemp("t5"))


def deep_prompt(lm, n=3):
    g = torch.Generator().manual_seed(0)
    return dataclasses.replace(Prompt.from_template(CAUSAL_TEMPLATE), prefix=torch.randn(prefix_shape(lm, n), generator=g))


@pytest.mark.parametrize("method, options", RUNS, ids=[m + "".join(f"-{v}" for v in o.values()) for m, o in RUNS])
def test_every_method_runs_on_an_encoder_decoder_and_its_prompt_rescores_to_the_reported_metric(t5, method, options,
                                                                                                 tmp_path):  # fmt: skip
    before = fingerprint(t5.model)
    result = promptopt.run(method=method, task=TASK, output=str(tmp_path / "run"), lm=t5, seed=1,
                           method_options=options, **SMALL)  # fmt: skip
    assert result.status == "ok" and result.metrics["eval"]["n"] == 8
    assert 0.0 <= result.metrics["eval"]["accuracy"] <= 1.0
    assert fingerprint(t5.model) == before
    rescored = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", lm=t5, max_eval=8,
                                         progress=False)  # fmt: skip
    assert rescored.metrics["accuracy"] == result.metrics["eval"]["accuracy"]


def test_continual_learning_runs_on_an_encoder_decoder(t5, tmp_path):
    from promptopt.sdk import TaskSetOptions
    from promptopt_plugins.continual import run_continual
    from tiny_tasks import write_tiny_tasks

    specs = write_tiny_tasks(tmp_path / "tasks")
    result = run_continual(TaskSetOptions(tasks=list(specs.values())[:2], output=str(tmp_path / "run"), max_eval=4,
                                          progress=False, train={"steps": 1, "batch_size": 2, "checkpoint_every": 0},
                                          method_options={"n_tokens": 2}), lm=t5)  # fmt: skip
    matrix = result.summary["matrix"]
    assert len(matrix) == 2 and all(v is not None for v in matrix[-1])


def test_a_deep_prefix_on_an_encoder_decoder_changes_the_scores_and_takes_gradients(t5, reviews_task):
    prompt = deep_prompt(t5)
    scorer = Scorer(t5, reviews_task)
    with_prefix = scorer.class_scores(prompt, examples())
    without = scorer.class_scores(dataclasses.replace(prompt, prefix=None), examples())
    assert torch.isfinite(with_prefix).all() and not torch.allclose(with_prefix, without, atol=1e-4)
    prefix = prompt.prefix.clone().requires_grad_(True)
    scorer.loss(dataclasses.replace(prompt, prefix=prefix), examples()).backward()
    assert torch.isfinite(prefix.grad).all() and prefix.grad.abs().sum() > 0


def test_a_deep_prefix_has_the_decoders_layers_and_head_size(tmp_path, reviews_task):
    lm = build_t5(tmp_path / "t5", num_decoder_layers=3, d_kv=6)  # neither the encoder's depth nor d_model / heads
    assert prefix_shape(lm, 2) == (3, 2, 4, 2, 6)
    assert torch.isfinite(Scorer(lm, reviews_task).class_scores(deep_prompt(lm, 2), examples())).all()


def test_generation_on_an_encoder_decoder_equals_transformers_greedy_and_cache_off(t5, reviews_task):
    prompt = Prompt.from_template(CAUSAL_TEMPLATE)
    text = "great food and friendly staff"
    ours = generate(t5, prompt, {"text": text}, max_new_tokens=6, stop_at_eos=False)
    source = t5.tokenizer(f"Review: {text}\nSentiment:", return_tensors="pt")["input_ids"]
    want = t5.model.generate(source, max_new_tokens=6, min_new_tokens=6, do_sample=False)[0, 1:].tolist()
    assert ours.ids == want
    for p in (prompt, deep_prompt(t5)):
        cached = generate(t5, p, {"text": text}, max_new_tokens=6, use_cache=True, stop_at_eos=False)
        plain = generate(t5, p, {"text": text}, max_new_tokens=6, use_cache=False, stop_at_eos=False)
        assert cached.ids == plain.ids
        assert all(torch.allclose(a, b, atol=1e-5, rtol=0) for a, b in zip(cached.logits, plain.logits))
    first = Scorer(t5, reviews_task).vocab_logprobs(prompt, [Example({"text": text}, "positive")])[0]
    assert torch.allclose(torch.log_softmax(ours.logits[0], -1), first, atol=1e-5)


def test_instruction_search_on_an_encoder_decoder_proposes_with_it(t5, tmp_path):
    promptopt.run(method="instruct", task=TASK, output=str(tmp_path / "run"), lm=t5, seed=0, max_train=8, max_eval=4,
                  method_options={"candidates": 2, "rounds": 0, "max_new_tokens": 4}, progress=False)  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert any(r.get("origin") == "proposed" for r in records)


def test_the_logit_lens_refuses_an_encoder_decoder_and_inspection_says_so(t5, reviews_task):
    from promptopt.interpret.inspection import InspectOptions, inspect_prompt
    from promptopt.interpret.lens import logit_lens

    prompt = Prompt.from_template("[P*2] " + CAUSAL_TEMPLATE, vectors={"p0": t5.embeddings.weight[5:7].detach().clone()})
    with pytest.raises(PromptoptError, match="encoder-decoder.*output head reads only the decoder"):
        logit_lens(t5, prompt, examples())
    options = InspectOptions(ablate=True, lens=True, distill=True, describe=True, distill_steps=1,
                             distill_candidates=2, distill_train=4)  # fmt: skip
    result = inspect_prompt(prompt, t5, Scorer(t5, reviews_task), examples(), split="dev", options=options,
                            train=reviews_task.load_split("train")[:4])  # fmt: skip
    assert result.readable is not None
    assert not result.lens and any(n.startswith("logit lens skipped: ") for n in result.notes)
    assert result.segments[0].vectors[0].nearest and result.projected_score is not None
    assert isinstance(result.self_description, str) and len(result.ablations) == 2 * len(options.ablation_modes)


def test_fact_retrieval_on_an_encoder_decoder_reads_the_first_decoder_position(t5, tmp_path):
    from promptopt.data.tasks import parse_task_spec

    (tmp_path / "f.jsonl").write_text('{"s": "the food", "o": "great"}\n{"s": "the staff", "o": "terrible"}\n')
    (tmp_path / "f.toml").write_text(
        'name = "f"\nkind = "fact_retrieval"\ninputs = ["s"]\nlabel = "o"\ntemplates = ["{s} was {answer} ."]\n'
        '[split_from]\npath = "{spec_dir}/f.jsonl"\nfractions = { test = 1.0 }\n'
    )  # fmt: skip
    task = parse_task_spec(tmp_path / "f.toml")
    facts = task.load_split("test")
    logp = Scorer(t5, task).vocab_logprobs(Prompt.from_template(task.templates[0]), facts)
    for row, fact in zip(logp, facts):
        source = t5.tokenizer(f"{fact.inputs['s']} was .", return_tensors="pt")["input_ids"]
        start = torch.tensor([[t5.model.config.decoder_start_token_id]])
        with torch.no_grad():
            want = torch.log_softmax(t5.model(input_ids=source, decoder_input_ids=start).logits[0, 0].float(), -1)
        torch.testing.assert_close(row.cpu(), want, atol=1e-5, rtol=0)
