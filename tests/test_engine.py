import subprocess
import sys
from pathlib import Path

import pytest
import torch

from promptopt.engine import Scorer
from promptopt.engine.inputs import VectorLayout, collate
from promptopt.engine.model import ModelKind
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example, parse_task_spec

TEXTS = ["great food and a lovely view", "the battery died after a day", "not bad at all, really"]


def examples(labels=("positive", "negative", "positive")):
    return [Example(inputs={"text": t}, label=lab) for t, lab in zip(TEXTS, labels)]


def direct_causal_logprob(lm, context: str, continuation: str) -> float:
    """log P(continuation | context) computed plainly with transformers, no promptopt code."""
    tok = lm.tokenizer
    ctx = tok(context, add_special_tokens=True)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont], device=lm.device)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=ids).logits.float(), dim=-1)[0]
    return sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))


def direct_masked_logprob(lm, text_with_mask: str, word: str) -> float:
    tok = lm.tokenizer
    enc = tok(text_with_mask, return_tensors="pt").to(lm.device)
    pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(**enc).logits.float(), dim=-1)[0, pos]
    (target,) = tok(" " + word, add_special_tokens=False)["input_ids"]
    return float(logp[target])


@pytest.mark.parametrize("side", ["left", "right"])
def test_causal_class_scores_equal_transformers_logprobs(tiny_lms, reviews_task, side):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task, padding_side=side)
    prompt = Prompt.from_template("Review: {text}\nSentiment: {answer}")
    got = scorer.class_scores(prompt, examples())
    for i, text in enumerate(TEXTS):
        for j, word in enumerate(["negative", "positive"]):
            want = direct_causal_logprob(lm, f"Review: {text}\nSentiment:", " " + word)
            assert abs(float(got[i, j]) - want) < 1e-5


@pytest.mark.parametrize("side", ["left", "right"])
def test_multi_token_label_words_sum_their_tokens_and_pool_words(tiny_lms, reviews_task, side):
    lm = tiny_lms["causal"]
    words = {"negative": ["negative", "unremarkably dreadful"], "positive": ["positive"]}
    assert len(lm.tokenizer(" unremarkably dreadful", add_special_tokens=False)["input_ids"]) > 2
    scorer = Scorer(lm, reviews_task, padding_side=side)
    prompt = Prompt.from_template("{text} It was{answer}", label_words=words)
    got = scorer.class_scores(prompt, examples())
    for i, text in enumerate(TEXTS):
        parts = [direct_causal_logprob(lm, f"{text} It was", " " + w) for w in words["negative"]]
        assert abs(float(got[i, 0]) - float(torch.logsumexp(torch.tensor(parts), 0))) < 1e-5


@pytest.mark.parametrize("side", ["left", "right"])
def test_masked_class_scores_equal_transformers_logprobs(tiny_lms, reviews_task, side):
    lm = tiny_lms["masked"]
    scorer = Scorer(lm, reviews_task, padding_side=side)
    prompt = Prompt.from_template("{text} It was {answer}.")
    got = scorer.class_scores(prompt, examples())
    for i, text in enumerate(TEXTS):
        for j, word in enumerate(["negative", "positive"]):
            want = direct_masked_logprob(lm, f"{text} It was [MASK].", word)
            assert abs(float(got[i, j]) - want) < 1e-5


def test_masked_multi_token_word_uses_one_mask_per_token(tiny_lms, reviews_task):
    lm = tiny_lms["masked"]
    word = "unremarkably"
    ids = lm.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    assert len(ids) > 1
    scorer = Scorer(lm, reviews_task)
    prompt = Prompt.from_template("{text} It was {answer}.", label_words={"negative": [word], "positive": ["positive"]})
    got = scorer.class_scores(prompt, examples()[:1])
    enc = lm.tokenizer(f"{TEXTS[0]} It was " + " ".join(["[MASK]"] * len(ids)) + ".", return_tensors="pt").to(lm.device)
    masks = (enc["input_ids"][0] == lm.tokenizer.mask_token_id).nonzero()[:, 0]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(**enc).logits.float(), -1)[0]
    want = sum(float(logp[p, t]) for p, t in zip(masks, ids))
    assert abs(float(got[0, 0]) - want) < 1e-5


def test_text_only_prompt_encodes_exactly_as_the_tokenizer(tiny_lm, reviews_task):
    scorer = Scorer(tiny_lm, reviews_task)
    prompt = Prompt.from_template("Review: {text}\nSentiment:{answer}")
    enc = scorer.encoder.encode(prompt, {"text": TEXTS[0]}, VectorLayout({}, None))
    if tiny_lm.kind == ModelKind.CAUSAL:
        want = tiny_lm.tokenizer(f"Review: {TEXTS[0]}\nSentiment:")["input_ids"]
        assert enc.ids == want and enc.read == [len(want) - 1]
    else:
        want = tiny_lm.tokenizer(f"Review: {TEXTS[0]}\nSentiment: [MASK]")["input_ids"]
        assert enc.ids == want and enc.read == [want.index(tiny_lm.tokenizer.mask_token_id)]


@pytest.mark.parametrize("side", ["left", "right"])
def test_collate_pads_on_the_requested_side_with_continuing_positions(tiny_lms, reviews_task, side):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task, padding_side=side)
    prompt = Prompt.from_template("{text}{answer}")
    encs = [scorer.encoder.encode(prompt, ex.inputs, VectorLayout({}, None)) for ex in examples()]
    batch = collate(encs, scorer.encoder.pad_id, side, lm.device)
    for row, enc in enumerate(encs):
        n = len(enc.ids)
        mask = batch.attention_mask[row]
        real = mask.nonzero()[:, 0]
        assert real.tolist() == (list(range(batch.input_ids.shape[1] - n, batch.input_ids.shape[1])) if side == "left" else list(range(n)))
        assert batch.input_ids[row, real].tolist() == enc.ids
        assert batch.position_ids[row, real].tolist() == list(range(n))
        assert batch.input_ids[row, batch.read[row, 0]] == enc.ids[-1]


def test_left_and_right_padding_give_the_same_scores(tiny_lm, reviews_task):
    prompt = Prompt.from_template("Review: {text}\nSentiment: {answer}")
    left = Scorer(tiny_lm, reviews_task, padding_side="left").class_scores(prompt, examples())
    right = Scorer(tiny_lm, reviews_task, padding_side="right").class_scores(prompt, examples())
    assert torch.allclose(left, right, atol=1e-5)


def test_right_padded_causal_batches_run_without_a_padding_mask_only_where_proven(tiny_lms, reviews_task):
    tiny_lm = tiny_lms["causal"]
    prompt = Prompt.from_template("Review: {text}\nSentiment: {answer}")
    scorer = Scorer(tiny_lm, reviews_task)
    batch = collate([scorer.encoder.encode(prompt, ex.inputs, VectorLayout.build(prompt)) for ex in examples()],
                    scorer.encoder.pad_id, scorer.side, tiny_lm.device)  # fmt: skip
    assert scorer.side == "right" and bool((batch.attention_mask == 0).any())  # the batch really is padded
    assert scorer._mask(batch) is None
    assert Scorer(tiny_lm, reviews_task, padding_side="left")._mask(batch) is batch.attention_mask
    maskless = scorer.class_scores(prompt, examples())
    scorer.facts.maskless_ok = False  # as for a model where the check failed: the mask is passed
    try:
        assert scorer._mask(batch) is batch.attention_mask
        torch.testing.assert_close(scorer.class_scores(prompt, examples()), maskless, atol=1e-5, rtol=0)
    finally:
        scorer.facts.maskless_ok = True


def test_scores_do_not_depend_on_batch_composition(tiny_lm, reviews_task):
    scorer = Scorer(tiny_lm, reviews_task)
    prompt = Prompt.from_template("Review: {text}\nSentiment: {answer}")
    together = scorer.class_scores(prompt, examples())
    alone = torch.cat([scorer.class_scores(prompt, [ex]) for ex in examples()])
    assert torch.allclose(together, alone, atol=1e-5)


def test_answer_logits_are_computed_only_where_the_answer_is_read(tiny_lm, reviews_task):
    scorer = Scorer(tiny_lm, reviews_task)
    assert scorer.facts.head is not None  # the fast path (hidden state -> LM head at read positions) is in use
    calls = []
    handle = scorer.facts.head.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    try:
        scorer.class_scores(Prompt.from_template("Review: {text}\nSentiment: {answer}"), examples())
    finally:
        handle.remove()
    assert calls == [(3, 1, tiny_lm.hidden_size)]


def test_shared_prefix_path_gives_the_plain_path_scores(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    prompt = Prompt.from_template("[T*6] {text} It was {answer}").with_tokens("t0", [40, 41, 42, 43, 44, 45])
    fast = Scorer(lm, reviews_task, share_prefix=True)
    plain = Scorer(lm, reviews_task, share_prefix=False)
    assert fast.facts.share_ok
    used = []
    original = fast._hidden_shared
    fast._hidden_shared = lambda *a, **k: used.append(1) or original(*a, **k)
    assert torch.allclose(fast.class_scores(prompt, examples()), plain.class_scores(prompt, examples()), atol=1e-5)
    assert used


def test_a_differentiated_forward_on_cpu_runs_eager_attention_with_the_same_gradient(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task)
    if lm.device.type != "cpu" or lm.model.config._attn_implementation != "sdpa":
        pytest.skip(f"eager attention for training applies to SDPA models on a CPU ({lm.device}, "
                    f"{lm.model.config._attn_implementation})")  # fmt: skip
    assert scorer.facts.eager_grad_ok
    prompt = Prompt.from_template("[P*3]Review: {text}\nSentiment:{answer}")
    seen = []
    hook = lm.model.model.layers[0].self_attn.register_forward_pre_hook(
        lambda m, a: seen.append(m.config._attn_implementation))  # fmt: skip

    def gradient(eager: bool):
        scorer.facts.eager_grad_ok = eager
        vectors = {"p0": torch.randn(3, lm.hidden_size, generator=torch.Generator().manual_seed(0)).requires_grad_()}
        loss = scorer.loss(prompt, examples(), vectors)
        loss.backward()
        return loss.detach(), vectors["p0"].grad

    try:
        (loss_e, grad_e), used_eager = gradient(True), list(seen)
        seen.clear()
        (loss_s, grad_s), used_sdpa = gradient(False), list(seen)
        seen.clear()
        with torch.no_grad():
            scorer.class_scores(prompt, examples(), {"p0": torch.zeros(3, lm.hidden_size)})
    finally:
        hook.remove()
        scorer.facts.eager_grad_ok = True
    assert set(used_eager) == {"eager"} and set(used_sdpa) == {"sdpa"} and set(seen) == {"sdpa"}  # scoring: SDPA
    assert lm.model.config._attn_implementation == "sdpa"  # restored
    assert torch.allclose(loss_e, loss_s, atol=1e-6) and torch.allclose(grad_e, grad_s, atol=1e-5)


@pytest.mark.parametrize("template", [
    "Answer with the sentiment of the review, positive or negative, as a careful reader would.\n"
    "Review: a fine film\nSentiment: positive\nReview: dull and long\nSentiment: negative\n"
    "Review: {text}\nSentiment:{answer}",
    "[P*2]Read this review and say what its writer felt. Review: {text} It was {answer}",
])  # fmt: skip
def test_any_text_prefix_common_to_the_batch_is_computed_once_with_the_plain_scores(tiny_lms, reviews_task, template):
    lm = tiny_lms["causal"]
    prompt = Prompt.from_template(template)
    vectors = {"p0": torch.randn(2, lm.hidden_size, generator=torch.Generator().manual_seed(0))} if "[P" in template else None
    fast = Scorer(lm, reviews_task, share_prefix=True)
    plain = Scorer(lm, reviews_task, share_prefix=False)
    prefixes = []
    original = fast._hidden_shared
    fast._hidden_shared = lambda encs, table, shared: prefixes.append(shared) or original(encs, table, shared)
    got = fast.class_scores(prompt, examples(), vectors=vectors)
    assert torch.allclose(got, plain.class_scores(prompt, examples(), vectors=vectors), atol=1e-5)
    layout = VectorLayout.build(prompt, vectors)
    text_front = len(fast.encoder.tokens(template.split("{text}")[0].replace("[P*2]", "")))
    assert prefixes and prefixes[0] >= text_front - 1  # the text in front of the first field, not only the vectors
    assert prefixes[0] <= min(len(fast.encoder.encode(prompt, ex.inputs, layout).ids) for ex in examples())


def test_soft_vectors_reach_the_model_and_get_gradients(tiny_lm, reviews_task):
    scorer = Scorer(tiny_lm, reviews_task)
    prompt = Prompt.from_template("[P*3] {text} It was {answer}")
    soft = {"p0": torch.randn(3, tiny_lm.hidden_size, requires_grad=True)}
    loss = scorer.loss(prompt, examples(), vectors=soft)
    loss.backward()
    assert soft["p0"].grad is not None and soft["p0"].grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_lm.model.parameters())
    other = scorer.loss(prompt, examples(), vectors={"p0": torch.randn(3, tiny_lm.hidden_size)})
    assert not torch.isclose(loss.detach(), other)


def test_fact_retrieval_scores_the_whole_vocabulary(tiny_lm, tmp_path):
    (tmp_path / "f.jsonl").write_text('{"s": "the food", "o": "great"}\n{"s": "the room", "o": "unremarkably"}\n')
    (tmp_path / "f.toml").write_text(
        'name = "f"\nkind = "fact_retrieval"\ninputs = ["s"]\nlabel = "o"\ntemplates = ["{s} was {answer} ."]\n'
        '[split_from]\npath = "{spec_dir}/f.jsonl"\nfractions = { test = 1.0 }\n'
    )
    task = parse_task_spec(tmp_path / "f.toml")
    scorer = Scorer(tiny_lm, task)
    prompt = Prompt.from_template(task.templates[0])
    facts = task.load_split("test")
    logp = scorer.vocab_logprobs(prompt, facts)
    assert logp.shape == (2, tiny_lm.vocab_size) and torch.allclose(logp.exp().sum(-1).cpu(), torch.ones(2), atol=1e-4)
    result = scorer.evaluate(prompt, facts)
    assert result.metrics["n"] == 1 and result.metrics["dropped_multi_token_answers"] == 1  # 'unremarkably' is 2 tokens
    top = int(logp[0].argmax())
    assert result.metrics["p_at_1"] == float(top == scorer.answer_token(prompt, "great"))


def test_evaluate_reports_metrics_and_per_example_predictions(tiny_lm, reviews_task):
    scorer = Scorer(tiny_lm, reviews_task, batch_size=7)
    dev = reviews_task.load_split("dev")
    result = scorer.evaluate(Prompt.from_template("Review: {text}\nSentiment:{answer}"), dev)
    m = result.metrics
    assert m["n"] == 60 and 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1
    assert sum(c["support"] for c in m["per_class"].values()) == 60
    assert sum(r["correct"] for r in result.predictions) == round(m["accuracy"] * 60)
    assert [r["source"] for r in result.predictions] == [ex.source for ex in dev]


def test_model_is_frozen_after_loading(tiny_lm):
    assert not any(p.requires_grad for p in tiny_lm.model.parameters())
    assert not tiny_lm.model.training


def test_engine_never_names_a_method():
    engine = Path(__file__).resolve().parent.parent / "promptopt" / "engine"
    out = subprocess.run(["grep", "-rniwE", "manual|autoprompt|soft|ptuning|p-tuning|multitask|continual", str(engine)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.stdout == "", out.stdout
    assert "import plugins" not in "".join(p.read_text() for p in engine.rglob("*.py"))
    assert "promptopt_plugins" not in "".join(p.read_text() for p in engine.rglob("*.py"))


def test_model_kind_is_detected_from_the_checkpoint(tiny_lms):
    assert tiny_lms["causal"].kind == ModelKind.CAUSAL and tiny_lms["masked"].kind == ModelKind.MASKED


def test_unloadable_model_path_is_a_clear_error(tmp_path):
    from promptopt.engine import load_model
    from promptopt.errors import PromptoptError

    with pytest.raises(PromptoptError, match="cannot load model"):
        load_model(str(tmp_path / "nothing-here"))


def test_the_model_cache_is_built_once_when_processes_race(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "race.py"
    script.write_text(
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from promptopt.engine.model import build_once\n"
        "target = Path(sys.argv[1])\n"
        "def build(tmp):\n"
        "    with open(target.parent / 'builds.txt', 'a') as f:\n"
        "        f.write(str(os.getpid()) + '\\n')\n"
        "    time.sleep(1.0)\n"
        "    (tmp / 'weights.bin').write_text('ok')\n"
        "out = build_once(target, build, ready=lambda t: (t / 'weights.bin').exists())\n"
        "print((out / 'weights.bin').read_text())\n"
    )  # fmt: skip
    target = tmp_path / "cache" / "model"
    procs = [subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0] and outputs == ["ok"] * 3
    assert len((tmp_path / "cache" / "builds.txt").read_text().split()) == 1  # built once; the others waited


def test_overlong_inputs_are_cut_by_the_rule_counted_and_marked(tiny_lms, reviews_task):
    from promptopt.data.prompt import Prompt
    from promptopt.data.tasks import Example
    from promptopt.engine.inputs import VectorLayout
    from promptopt.engine.scoring import Scorer

    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task, max_length=24)
    prompt = Prompt.from_template("Review: {text}\nSentiment:{answer}")
    long_text = " ".join(["great"] * 60)
    examples = [Example({"text": long_text}, "positive", "x:1"), Example({"text": "fine"}, "positive", "x:2")]
    enc = scorer.encoder.encode(prompt, examples[0].inputs, VectorLayout.build(prompt))
    assert len(enc.ids) <= 24 and enc.truncated > 0
    assert enc.ids[: len(scorer.encoder.tokens("Review:"))] == scorer.encoder.tokens("Review:")  # the template stays
    result = scorer.evaluate(prompt, examples)
    assert result.metrics["truncated_examples"] == 1
    marks = {row["source"]: row.get("truncated_tokens") for row in result.predictions}
    assert marks == {"x:1": enc.truncated, "x:2": None}


def test_label_words_that_are_the_same_tokens_for_the_model_are_refused(tiny_lms, reviews_task):
    import dataclasses

    from promptopt.data.prompt import Prompt
    from promptopt.engine.scoring import Scorer
    from promptopt.errors import PromptoptError

    lm = tiny_lms["causal"]
    # a spec cannot name one word for two labels (its parser refuses); words given otherwise (a prompt's own, or
    # found by label search) are checked by the engine at the token level, where the collision shows
    task = dataclasses.replace(reviews_task, label_words={"negative": ["negative", "positive"], "positive": ["positive"]})
    with pytest.raises(PromptoptError, match=r"label words 'positive' \(label 'negative'\) and 'positive' \(label 'positive'\) are the same tokens"):
        Scorer(lm, task).verbalizer(Prompt.from_template("Review: {text}\nSentiment:{answer}"))
