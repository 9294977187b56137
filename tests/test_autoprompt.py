"""AutoPrompt: trigger search on tiny causal and masked models, batched candidate scoring, filters, label search,
and the hard-prompt artifact (token ids authoritative)."""

from __future__ import annotations

import json
import types

import pytest
import torch

import promptopt
from promptopt.engine import Scorer, load_model
from promptopt.errors import ConfigError
from promptopt.plugins import get_task
from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.data.tasks import Example
from promptopt.pipeline.verbalizer import choose_words, keep_better
from promptopt_plugins.autoprompt import (
    AutoPromptConfig,
    allowed_tokens,
    answer_exclusions,
    search_label_words,
    token_id,
    trigger_prompts,
)

from conftest import TINY_REVIEWS

TASK = str(TINY_REVIEWS / "task.toml")
TEXTS = ["great food and a lovely view", "the battery died after a day", "not bad at all, really", "it works"]
# objects that are one token in both tiny vocabularies
FACTS = [("Paris", "film"), ("Rome", "book"), ("Berlin", "game"), ("Madrid", "phone"), ("Lisbon", "room"),
         ("Vienna", "day"), ("Athens", "film"), ("Dublin", "book"), ("Oslo", "game"), ("Bern", "phone")]  # fmt: skip


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def constant_label_task(tmp_path, label="positive"):
    """tiny-reviews texts, every one labelled ``label``: a prompt that always says ``label`` solves it."""
    rows = [{"text": json.loads(line)["text"], "label": label}
            for line in (TINY_REVIEWS / "train.jsonl").read_text().splitlines()[:24]]  # fmt: skip
    for split in ("train", "dev", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    spec = tmp_path / "task.toml"
    spec.write_text('name = "always"\ninputs = ["text"]\nlabel = "label"\ntemplates = ["{text}{answer}"]\n'
                    '[label_words]\nnegative = ["negative"]\npositive = ["positive"]\n'
                    + "".join(f'[splits.{s}]\npath = "{{spec_dir}}/{s}.jsonl"\n' for s in ("train", "dev", "test")))  # fmt: skip
    return spec


def fact_task(tmp_path):
    rows = [{"sub_label": s, "obj_label": o} for s, o in FACTS]
    write_jsonl(tmp_path / "facts.jsonl", rows)
    spec = tmp_path / "facts.toml"
    spec.write_text('name = "capitals"\nkind = "fact_retrieval"\ninputs = ["sub_label"]\nlabel = "obj_label"\n'
                    'templates = ["{sub_label} is the capital of {answer} ."]\n'
                    '[split_from]\npath = "{spec_dir}/facts.jsonl"\nseed = 0\n'
                    'fractions = { train = 0.4, dev = 0.2, test = 0.4 }\n')  # fmt: skip
    return spec


def residual_only(model_dir):
    """The tiny causal Llama with every attention output and MLP output zeroed: the final hidden state at a
    position is the (normed) embedding of the token there, so the answer depends on the last token alone."""
    lm = load_model(str(model_dir), device="cpu", dtype="float32")
    with torch.no_grad():
        for layer in lm.model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return lm


def one_token(tokenizer, text):
    (i,) = tokenizer(text, add_special_tokens=False)["input_ids"]
    return i


# -- the search ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["causal", "masked"])
@pytest.mark.parametrize("task_kind", ["classification", "fact_retrieval"])
def test_search_runs_and_saves_a_hard_prompt_on_both_model_kinds(tiny_lms, tmp_path, kind, task_kind):
    lm = tiny_lms[kind]
    task = TASK if task_kind == "classification" else str(fact_task(tmp_path))
    result = promptopt.run(method="autoprompt", task=task, lm=lm, output=str(tmp_path / "run"), train={"steps": 3},
                           max_train=8, max_eval=8, progress=False, method_options={"candidates": 4})  # fmt: skip
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    (segment,) = prompt.segments_of(SegmentKind.TOKENS)
    assert segment.n == 4 and len(segment.ids) == 4
    assert prompt.meta["search"]["iterations"] == 3 and prompt.meta["search"]["candidates_scored"] == 12
    assert "[T" not in result.prompt_text and prompt.meta["text"] == result.prompt_text
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if h.get("kind") == "search_iteration"] == [1, 2, 3]


@pytest.mark.parametrize("rule", ["autoprompt", "gcg"])
def test_search_finds_the_planted_trigger_and_lowers_the_training_loss(tiny_model_dirs, tmp_path, rule):
    """Only one token can make the residual-only model say "positive": the search must find it from "the"."""
    lm = residual_only(tiny_model_dirs["causal"])
    tok = lm.tokenizer
    pos, neg, planted = (one_token(tok, w) for w in (" positive", " negative", " game"))
    u = torch.nn.functional.normalize(torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(0)), dim=0)
    with torch.no_grad():
        emb, head = lm.embeddings.weight, lm.model.get_output_embeddings().weight
        emb -= torch.outer(emb @ u, u)  # no token but the planted one has any component along u
        emb[planted] = 0.05 * u
        head[pos], head[neg] = 3 * u, -3 * u
    spec = constant_label_task(tmp_path)
    task = get_task(str(spec))
    scorer = Scorer(lm, task)
    train = task.load_split("train")
    _, start = trigger_prompts(["{text}[T]{answer}"], 1, token_id(tok, "the"))
    before = float(scorer.loss(start, train))
    result = promptopt.run(method="autoprompt", task=str(spec), lm=lm, templates=["{text}[T]{answer}"],
                           output=str(tmp_path / "run"), progress=False, train={"steps": 2, "batch_size": 8},
                           method_options={"candidates": 3, "select_every": 1, "rule": rule})  # fmt: skip
    found = Prompt.load(tmp_path / "run" / "prompt")
    after = float(scorer.loss(found, train))
    assert abs(before - torch.log(torch.tensor(2.0)).item()) < 1e-4  # "the" leaves both labels equally likely
    assert found.segments_of(SegmentKind.TOKENS)[0].ids == (planted,)
    assert after < 1e-3 and result.metrics["eval"]["accuracy"] == 1.0


@pytest.mark.parametrize("confirm, accepted", [(0, 1), (1, 0)])
def test_a_candidate_that_wins_only_on_its_own_batch_is_not_kept_with_confirm(tiny_lms, tmp_path, monkeypatch,
                                                                              confirm, accepted):  # fmt: skip
    from promptopt_plugins import autoprompt

    calls = []

    def losses(self, prompts, examples):  # candidate 1 wins the re-scoring batch, loses the confirmation batch
        calls.append(len(prompts))
        if len(calls) % 2 == 1:
            return torch.tensor([0.5] + [0.4 if k == 0 else 0.9 for k in range(len(prompts) - 1)])
        return torch.tensor([0.5, 0.6])

    monkeypatch.setattr(autoprompt._Search, "_losses", losses)
    promptopt.run(method="autoprompt", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"), max_train=8,
                  max_eval=8, progress=False, train={"steps": 1},
                  method_options={"candidates": 3, "confirm": confirm, "select_every": 0})  # fmt: skip
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    step = next(h for h in history if h.get("kind") == "search_iteration")
    assert step["accepted"] == bool(accepted) and calls[0] == 4
    assert ("confirm_losses" in step) == bool(confirm) and calls[1:] == ([2] if confirm else [])
    search = Prompt.load(tmp_path / "run" / "prompt").meta["search"]
    assert search["accepted"] == accepted


@pytest.mark.parametrize("position", ["random", "round-robin"])
def test_iterations_and_time_budget_bound_the_search(tiny_lms, tmp_path, position):
    opts = {"iterations": 100, "time_budget": 1e-9, "position": position}
    result = promptopt.run(method="autoprompt", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"),
                           max_train=8, max_eval=8, progress=False, method_options=opts)  # fmt: skip
    search = Prompt.load(tmp_path / "run" / "prompt").meta["search"]
    assert search["stopped"] == "time_budget" and search["iterations"] == 0
    assert result.status == "ok"


def test_search_state_is_checkpointed_as_json_and_resumed_only_with_the_same_options(tiny_lms, tmp_path):
    args = dict(method="autoprompt", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"), max_train=8,
                max_eval=8, progress=False, train={"steps": 2})  # fmt: skip
    first = promptopt.run(**args, method_options={"candidates": 2})
    saved = json.loads((tmp_path / "run" / "checkpoint" / "autoprompt.json").read_text())
    assert saved["fingerprint"]["seed"] == 0 and saved["version"] == 1
    state = saved["state"]
    assert state["iterations"] == 2 and len(state["rng"][1]) == 625 and state["tokens"].keys() == {"t0"}
    with pytest.raises(ConfigError, match="cannot resume: field method_config.candidates was 2 and is now 3"):
        promptopt.run(**args, method_options={"candidates": 3}, resume=True)
    again = promptopt.run(**args, method_options={"candidates": 2, "time_budget": 60}, resume=True)
    assert again.prompt_text == first.prompt_text and again.select_metrics == first.select_metrics
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if h.get("kind") == "search_iteration"] == [1, 2]  # nothing searched again


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match="AutoPromptConfig.position is 'sideways'; one of \\['random', 'round-robin'\\]"):
        AutoPromptConfig(position="sideways")
    with pytest.raises(ConfigError, match="AutoPromptConfig.candidates"):
        AutoPromptConfig(candidates=0)
    with pytest.raises(ConfigError, match="AutoPromptConfig.batch_size"):
        AutoPromptConfig(batch_size=0)
    with pytest.raises(ConfigError, match="AutoPromptConfig.time_budget"):
        AutoPromptConfig(time_budget=-1)
    with pytest.raises(ConfigError, match="AutoPromptConfig.checkpoint_every must be >= 0"):
        AutoPromptConfig(checkpoint_every=-1)


def test_init_token_must_be_one_token(tiny_lms):
    tok = tiny_lms["masked"].tokenizer
    assert token_id(tok, "[MASK]") == tok.mask_token_id
    with pytest.raises(ConfigError, match="AutoPromptConfig.init_token"):
        token_id(tok, "unremarkably dreadful")
    causal = tiny_lms["causal"].tokenizer
    assert token_id(causal, "the") == one_token(causal, " the")  # a word takes its leading space
    assert token_id(causal, "\\n") == one_token(causal, "\n")  # typed as backslash-n on a command line


def test_trigger_slots_go_before_the_answer_unless_a_template_has_them():
    base, prompt = trigger_prompts(["Review: {text}\nSentiment: {answer}"], 3, 7)
    assert prompt.text() == "Review: {text}\nSentiment:[T*3:t0]{answer}" and base.text() == "Review: {text}\nSentiment: {answer}"
    assert prompt.segments_of(SegmentKind.TOKENS)[0].ids == (7, 7, 7)
    _, given = trigger_prompts(["{text}{answer}", "[T*2] {text} [T]{answer}"], 3, 7)
    assert [s.n for s in given.segments_of(SegmentKind.TOKENS)] == [2, 1]
    _, started = trigger_prompts(["[T*2] {text} [T]{answer}"], 3, [5, 6, 7])  # one id per slot, in order
    assert [s.ids for s in started.segments_of(SegmentKind.TOKENS)] == [(5, 6), (7,)]
    with pytest.raises(ConfigError, match="init_text gives 2 tokens for 3 trigger slots"):
        trigger_prompts(["[T*2] {text} [T]{answer}"], 3, [5, 6])


# -- batched candidate scoring (engine: Scorer.scores_many / losses) ------------------------------------------------


@pytest.mark.parametrize("kind", ["causal", "masked"])
@pytest.mark.parametrize("template", ["Review: {text} [T*3] Sentiment:{answer}", "[T*3] {text} It was{answer}"])
def test_many_prompts_scored_together_equal_one_at_a_time(tiny_lms, reviews_task, kind, template):
    lm = tiny_lms[kind]
    words = {"negative": ["negative", "unremarkably dreadful"], "positive": ["positive"]}  # one multi-token word
    scorer = Scorer(lm, reviews_task)
    examples = [Example(inputs={"text": t}, label=lab) for t, lab in zip(TEXTS, ["positive", "negative"] * 2)]
    ids = lm.tokenizer(" the good bad", add_special_tokens=False)["input_ids"]
    prompt = Prompt.from_template(template, label_words=words)
    prompts = [prompt.with_tokens("t0", [ids[i % 3], ids[(i + 1) % 3], ids[0]]) for i in range(4)]
    with torch.inference_mode():
        together = scorer.scores_many(prompts, examples)
        alone = torch.stack([scorer.scores(p, examples) for p in prompts])
        losses = scorer.losses(prompts, examples)
    assert together.shape == (4, 4, 2)
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(losses, torch.stack([scorer.loss(p, examples) for p in prompts]), atol=1e-5)


def test_fact_retrieval_prompts_scored_together_equal_one_at_a_time(tiny_lms, tmp_path):
    task = get_task(str(fact_task(tmp_path)))
    for lm in tiny_lms.values():
        scorer = Scorer(lm, task)
        prompt = Prompt.from_template("{sub_label} is [T*2] of {answer} .")
        ids = lm.tokenizer(" the capital", add_special_tokens=False)["input_ids"]
        prompts = [prompt.with_tokens("t0", [a, b]) for a in ids[:2] for b in ids[:2]]
        examples = [Example(inputs={"sub_label": s}, label=o) for s, o in FACTS[:3]]
        with torch.inference_mode():
            together = scorer.scores_many(prompts, examples)
            alone = torch.stack([scorer.scores(p, examples) for p in prompts])
        assert together.shape == (4, 3, lm.vocab_size)
        assert torch.allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_trigger_gradients_through_batched_scoring_equal_the_plain_ones(tiny_lms, reviews_task, kind):
    lm = tiny_lms[kind]
    scorer = Scorer(lm, reviews_task)
    examples = [Example(inputs={"text": t}, label=lab) for t, lab in zip(TEXTS, ["positive", "negative"] * 2)]
    prompt = Prompt.from_template("Review: {text} [T*3] Sentiment:{answer}").with_tokens("t0", [40, 41, 42])
    grads = []
    for loss_of in (lambda v: scorer.loss(prompt, examples, vectors=v),
                    lambda v: scorer.losses([prompt], examples, vectors=v)[0]):  # fmt: skip
        vectors = {"t0": lm.embeddings.weight[[40, 41, 42]].detach().clone().requires_grad_()}
        loss_of(vectors).backward()
        grads.append(vectors["t0"].grad)
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_causal_rows_reuse_each_examples_common_prefix(tiny_lms, reviews_task, monkeypatch):
    """Two passes: each example's shared beginning once (one row per example), then every prompt's remainder."""
    scorer = Scorer(tiny_lms["causal"], reviews_task)
    calls = []
    real = scorer._run_base
    monkeypatch.setattr(scorer, "_run_base", lambda emb, *a, **k: calls.append(emb.shape[:2]) or real(emb, *a, **k))
    examples = [Example(inputs={"text": t}, label="positive") for t in TEXTS]
    prompt = Prompt.from_template("Review: {text} [T*2] Sentiment:{answer}")
    prompts = [prompt.with_tokens("t0", [i, i + 1]) for i in range(100, 105)]
    with torch.inference_mode():
        scorer.scores_many(prompts, examples)
    (prefix_rows, prefix_len), (rest_rows, rest_len) = calls
    assert prefix_rows == len(examples) and rest_rows == len(examples) * len(prompts)
    assert rest_len <= 2 + len(scorer.encoder.tokens(" Sentiment:"))  # only the triggers and what follows


# -- filters ---------------------------------------------------------------------------------------------------


def test_filters_drop_special_label_nonword_and_excluded_tokens(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    tok = lm.tokenizer
    scorer = Scorer(lm, reviews_task)
    _, prompt = trigger_prompts(reviews_task.templates, 2, token_id(tok, "the"))
    words, ids = answer_exclusions(scorer, prompt, [])
    allowed = allowed_tokens(tok, lm.vocab_size, words + ["Great"], ids)
    assert not allowed[tok.eos_token_id] and not allowed[tok.pad_token_id]
    assert not allowed[one_token(tok, " positive")] and not allowed[one_token(tok, " negative")]
    assert not allowed[one_token(tok, " great")]  # excluded by the user, case-insensitively
    assert not allowed[one_token(tok, ",")] and not allowed[one_token(tok, "\n")]
    assert not allowed[tok.convert_tokens_to_ids("Ġ")]  # a bare space
    assert allowed[one_token(tok, " the")] and allowed[one_token(tok, " terrible")]
    assert not allowed_tokens(tok, lm.vocab_size + 5)[lm.vocab_size :].any()  # rows past the vocabulary


def test_fact_retrieval_filter_drops_the_training_answers(tiny_lms, tmp_path):
    lm = tiny_lms["masked"]
    task = get_task(str(fact_task(tmp_path)))
    scorer = Scorer(lm, task)
    prompt = Prompt.from_template("{sub_label} [T] {answer} .").with_tokens("t0", [token_id(lm.tokenizer, "the")])
    train = scorer.usable_examples(prompt, task.load_split("train"))
    words, ids = answer_exclusions(scorer, prompt, train)
    assert train and ids == {scorer.answer_token(prompt, ex.label) for ex in train}
    assert set(words) == {ex.label for ex in train}


# -- label-word search -------------------------------------------------------------------------------------------


def planted_label_words(tiny_model_dirs, reviews_task):
    """Residual-only model: the answer-position feature is the last input token's; the output embeddings of
    " great" and " terrible" are set to point along the "yes" and "no" features. Returns (scorer, prompt, examples)."""
    lm = residual_only(tiny_model_dirs["causal"])
    tok = lm.tokenizer
    scorer = Scorer(lm, reviews_task)
    prompt = Prompt.from_template("{text}{answer}")
    examples = [Example(inputs={"text": f"{t} yes"}, label="positive") for t in TEXTS]
    examples += [Example(inputs={"text": f"{t} no"}, label="negative") for t in TEXTS]
    with torch.inference_mode():
        features = scorer.answer_features(prompt, examples)
    yes, no = features[0], features[len(TEXTS)]
    assert not torch.allclose(yes, no)
    with torch.no_grad():
        head = lm.model.get_output_embeddings().weight
        head[one_token(tok, " great")] = 10 * yes / yes.norm()
        head[one_token(tok, " terrible")] = 10 * no / no.norm()
    return scorer, prompt, examples


def test_label_search_finds_the_words_planted_in_the_output_embeddings(tiny_model_dirs, reviews_task):
    scorer, prompt, examples = planted_label_words(tiny_model_dirs, reviews_task)
    words = search_label_words(scorer, prompt, examples, k=2)
    assert set(words) == {"negative", "positive"}
    assert words["positive"][0] == "great" and words["negative"][0] == "terrible"
    assert all(len(ws) == 2 for ws in words.values())
    assert not set(words["positive"]) & set(words["negative"])


def test_label_search_with_candidates_chooses_the_planted_words_by_accuracy(tiny_model_dirs, reviews_task):
    """The words are proposed (classifier and model likelihood), then chosen by how well they classify."""
    scorer, prompt, examples = planted_label_words(tiny_model_dirs, reviews_task)
    words = search_label_words(scorer, prompt, examples, k=2, candidates=5)
    assert words["positive"][0] == "great" and words["negative"][0] == "terrible"
    assert all(1 <= len(ws) <= 2 for ws in words.values())  # a second word only if it classifies better


def test_choose_words_picks_the_combination_that_classifies_best():
    # 4 examples (classes 0, 0, 1, 1) over a vocabulary of 6; token 0 is likelier everywhere (the naive pick for
    # both), tokens 2 (class 0) and 4 (class 1) separate the classes, token 5 adds nothing
    logp = torch.log_softmax(torch.tensor([[5.0, 0, 3, 0, 1, 0], [5.0, 0, 3, 0, 1, 0],
                                           [5.0, 0, 1, 0, 3, 0], [5.0, 0, 1, 0, 3, 0]]), dim=-1)  # fmt: skip
    y = torch.tensor([0, 0, 1, 1])
    assert choose_words(logp, y, [[0, 2, 5], [0, 4, 5]], k=1) == [[2], [4]]
    assert choose_words(logp, y, [[0, 2, 5], [0, 4, 5]], k=3) == [[2], [4]]  # nothing else improves accuracy or loss


def test_keep_better_keeps_the_given_words_when_the_found_ones_score_worse():
    class FakeScorer:
        def evaluate(self, prompt, examples):
            return types.SimpleNamespace(metrics={"score": 0.9 if prompt.label_words["a"] == ["good"] else 0.6})

    prompt = Prompt.from_template("{text}{answer}")
    given, found = {"a": ["good"], "b": ["bad"]}, {"a": ["x"], "b": ["y"]}
    assert keep_better(FakeScorer(), prompt, ["ex"], found, given) == (given, {"select_score": {"found": 0.6, "given": 0.9}, "kept": "given"})
    assert keep_better(FakeScorer(), prompt, ["ex"], given, found)[0] == given


def test_answer_features_times_output_embeddings_give_the_answer_logits(tiny_lms, reviews_task):
    for lm in tiny_lms.values():
        scorer = Scorer(lm, reviews_task, batch_size=2)
        examples = [Example(inputs={"text": t}, label="positive") for t in TEXTS]
        prompt = Prompt.from_template("Review: {text} It was{answer} .")
        out = lm.model.get_output_embeddings()
        with torch.inference_mode():
            feats = scorer.answer_features(prompt, examples)
            logits = feats @ out.weight.T + (out.bias if out.bias is not None else 0)
            want = scorer.vocab_logprobs(prompt, examples)
        assert feats.shape == (len(TEXTS), out.weight.shape[1])
        assert torch.allclose(torch.log_softmax(logits, -1), want, atol=1e-4)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_label_search_option_puts_its_words_in_the_saved_prompt(tiny_lms, tmp_path, kind):
    opts = {"label_search": True, "label_k": 2, "n_triggers": 0, "label_candidates": 0}
    promptopt.run(method="autoprompt", task=TASK, lm=tiny_lms[kind], output=str(tmp_path / "run"), max_train=16,
                  max_eval=8, progress=False, method_options=opts)  # fmt: skip
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    record = next(r for r in map(json.loads, open(tmp_path / "run" / "history.jsonl")) if "found" in r)
    assert all(len(ws) == 2 for ws in record["found"].values())
    assert record["kept"] == ("found" if record["select_score"]["found"] >= record["select_score"]["given"] else "given")
    assert prompt.label_words == record["label_words"]
    assert record["label_words"] == (record["found"] if record["kept"] == "found" else {"negative": ["negative"], "positive": ["positive"]})
    scorer = Scorer(tiny_lms[kind], get_task(TASK))
    assert scorer.verbalizer(prompt).words == [prompt.label_words["negative"], prompt.label_words["positive"]]


# -- run-level label search (promptopt run --label-search), for any method -------------------------------------


def yes_no_task(tmp_path, splits=("train", "dev", "test")):
    """Texts ending in " yes" are positive, in " no" negative: for the residual-only model the answer feature is
    that last token's, so which words score well is decided by the output embeddings alone."""
    rows = [{"text": f"{t} yes", "label": "positive"} for t in TEXTS] + [{"text": f"{t} no", "label": "negative"} for t in TEXTS]
    for split in splits:
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    spec = tmp_path / "yesno.toml"
    spec.write_text('name = "yesno"\ninputs = ["text"]\nlabel = "label"\ntemplates = ["{text}{answer}"]\n'
                    '[label_words]\nnegative = ["negative"]\npositive = ["positive"]\n'
                    + "".join(f'[splits.{s}]\npath = "{{spec_dir}}/{s}.jsonl"\n' for s in splits))  # fmt: skip
    return spec


def planted_label_model(model_dir):
    """Residual-only model whose output embeddings make " great"/" terrible" the best words for the yes/no
    features, and the task's own words " positive"/" negative" the wrong way round (accuracy 0 with them)."""
    lm = residual_only(model_dir)
    tok = lm.tokenizer
    prompt = Prompt.from_template("{text}{answer}")
    scorer = Scorer(lm, get_task(TASK))
    with torch.inference_mode():
        yes, no = scorer.answer_features(prompt, [Example(inputs={"text": f"{TEXTS[0]} {w}"}, label="positive")
                                                  for w in ("yes", "no")])  # fmt: skip
    yes, no = yes / yes.norm(), no / no.norm()
    with torch.no_grad():
        head = lm.model.get_output_embeddings().weight
        head[one_token(tok, " great")], head[one_token(tok, " terrible")] = 10 * yes, 10 * no
        head[one_token(tok, " negative")], head[one_token(tok, " positive")] = 5 * yes, 5 * no
    return lm


def test_run_level_label_search_gives_its_words_to_the_method_and_the_evaluation(tiny_model_dirs, tmp_path):
    lm = planted_label_model(tiny_model_dirs["causal"])
    spec = yes_no_task(tmp_path)
    plain = promptopt.run(method="manual", task=str(spec), lm=lm, output=str(tmp_path / "plain"), progress=False)
    assert plain.metrics["eval"]["accuracy"] == 0.0  # the task's own words point the wrong way
    result = promptopt.run(method="manual", task=str(spec), lm=lm, output=str(tmp_path / "run"), progress=False,
                           label_search=True, label_k=1, seed=5)  # fmt: skip
    want = {"negative": ["terrible"], "positive": ["great"]}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["label_words"] == want
    assert config["label_search"]["k"] == 1 and config["label_search"]["fitted_on"] == 2 * len(TEXTS)
    assert config["label_search"]["task_label_words"] == {"negative": ["negative"], "positive": ["positive"]}
    assert "label_words" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert history[0]["label_words"] == want
    # the selection (by the method) and the evaluation both scored with the found words
    assert result.select_metrics["accuracy"] == 1.0 and result.metrics["eval"]["accuracy"] == 1.0
    saved = Prompt.load(tmp_path / "run" / "prompt")
    assert saved.label_words == want
    rescored = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", str(spec), split="test", lm=lm, progress=False)
    assert rescored.metrics["accuracy"] == 1.0


def test_run_level_label_search_is_seeded_and_works_for_a_searching_method(tiny_lms, tmp_path):
    opts = dict(task=TASK, lm=tiny_lms["masked"], max_train=16, max_eval=8, progress=False, label_search=True,
                label_k=2, label_examples=8, train={"steps": 1}, method_options={"candidates": 2})  # fmt: skip
    words = []
    for name in ("a", "b"):
        promptopt.run(method="autoprompt", output=str(tmp_path / name), seed=1, **opts)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["label_search"]["fitted_on"] == 8
        assert Prompt.load(tmp_path / name / "prompt").label_words == config["label_words"]
        words.append((config["label_words"], config["label_search"]["found"]))
    assert words[0] == words[1] and all(1 <= len(ws) <= 2 for ws in words[0][1].values())


def test_run_level_label_search_refuses_fact_retrieval_and_tasks_without_training_data(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    with pytest.raises(ConfigError, match="--label-search needs a classification task; task 'capitals' is fact_retrieval"):
        promptopt.run(method="manual", task=str(fact_task(tmp_path)), lm=lm, output=str(tmp_path / "f"),
                      progress=False, label_search=True)  # fmt: skip
    spec = yes_no_task(tmp_path, splits=("dev", "test"))
    with pytest.raises(ConfigError, match="--label-search fits on the training split; task 'yesno' has none"):
        promptopt.run(method="manual", task=str(spec), lm=lm, output=str(tmp_path / "t"), progress=False,
                      label_search=True)  # fmt: skip
    assert promptopt.run(method="manual", task=str(spec), lm=lm, output=str(tmp_path / "t"), progress=False).status == "ok"


# -- the artifact ----------------------------------------------------------------------------------------------


def test_saved_ids_are_authoritative_even_when_the_text_tokenizes_differently(tiny_lms, reviews_task, tmp_path):
    lm = tiny_lms["causal"]
    tok = lm.tokenizer
    ids = [tok.convert_tokens_to_ids("Ġ"), tok.convert_tokens_to_ids("a")]
    text = tok.decode(ids)
    assert tok(text, add_special_tokens=False)["input_ids"] != ids  # " a" is one token when re-tokenized
    prompt = Prompt.from_template("Review: {text}[T*2]{answer}").with_tokens("t0", ids)
    prompt.save(tmp_path / "p")
    loaded = Prompt.load(tmp_path / "p")
    assert loaded.segments_of(SegmentKind.TOKENS)[0].ids == tuple(ids)
    scorer = Scorer(lm, reviews_task)
    examples = reviews_task.load_split("dev")[:4]
    assert torch.equal(scorer.scores(loaded, examples), scorer.scores(prompt, examples))
    retyped = Prompt.from_template("Review: {text}" + text + "{answer}")
    assert not torch.allclose(scorer.scores(retyped, examples), scorer.scores(prompt, examples))


def _search_history(run_dir):
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [h for h in rows if h.get("kind") == "search_iteration"]


def test_gcg_step_scores_swaps_at_several_positions_together_and_never_accepts_a_worse_one(tiny_lms, tmp_path,
                                                                                          monkeypatch):  # fmt: skip
    from promptopt_plugins import autoprompt

    calls = []
    real = autoprompt._Search._losses

    def losses(self, prompts, examples):
        out = real(self, prompts, examples)
        calls.append(([p.segments_of(SegmentKind.TOKENS)[0].ids for p in prompts], out))
        return out

    monkeypatch.setattr(autoprompt._Search, "_losses", losses)
    promptopt.run(method="autoprompt", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"), max_train=8,
                  max_eval=8, progress=False, train={"steps": 4, "batch_size": 4},
                  method_options={"rule": "gcg", "candidates": 4, "swaps": 8, "n_triggers": 3, "confirm": 0,
                                  "select_every": 0})  # fmt: skip
    steps = _search_history(tmp_path / "run")
    assert len(steps) == len(calls) == 4  # one batched forward per iteration (confirm=0)
    positions = set()
    for k, ((ids, loss), step) in enumerate(zip(calls, steps)):
        current, swaps = ids[0], ids[1:]
        assert len(swaps) > 1 and len(set(swaps)) == len(swaps)
        for cand in swaps:
            diff = [i for i in range(3) if cand[i] != current[i]]
            assert len(diff) == 1
            positions.add(diff[0])
        after = calls[k + 1][0][0] if k + 1 < len(calls) else None
        if step["accepted"]:
            assert float(loss[1:].min()) < float(loss[0])
            assert after in (None, swaps[int(torch.argmin(loss[1:]))])
        else:
            assert float(loss[1:].min()) >= float(loss[0]) and after in (None, current)
    assert len(positions) > 1


def test_gcg_keeps_the_current_prompt_when_every_swap_scores_worse_on_its_batch(tiny_lms, tmp_path, monkeypatch):
    from promptopt_plugins import autoprompt

    monkeypatch.setattr(autoprompt._Search, "_losses",
                        lambda self, prompts, examples: torch.tensor([0.5] + [0.5 + 1e-6] * (len(prompts) - 1)))
    promptopt.run(method="autoprompt", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"), max_train=8,
                  max_eval=8, progress=False, train={"steps": 3},
                  method_options={"rule": "gcg", "confirm": 0, "select_every": 0, "n_triggers": 2})  # fmt: skip
    steps = _search_history(tmp_path / "run")
    assert [s["accepted"] for s in steps] == [False] * 3 and all(s["candidates"] > 1 for s in steps)
    found = Prompt.load(tmp_path / "run" / "prompt")
    assert found.meta["search"]["accepted"] == 0
    assert found.segments_of(SegmentKind.TOKENS)[0].ids == (token_id(tiny_lms["causal"].tokenizer, "the"),) * 2


def test_pez_moves_continuous_vectors_and_scores_their_nearest_allowed_tokens(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    promptopt.run(method="autoprompt", task=TASK, lm=lm, output=str(tmp_path / "run"), max_train=8, max_eval=8,
                  progress=False, train={"steps": 3, "batch_size": 4},
                  method_options={"rule": "pez", "pez_lr": 0.5, "n_triggers": 2, "confirm": 0})  # fmt: skip
    state = json.loads((tmp_path / "run" / "checkpoint" / "autoprompt.json").read_text())["state"]
    x = torch.tensor(state["pez"]["x"]["t0"])
    start = lm.embeddings.weight[[token_id(lm.tokenizer, "the")] * 2].float()
    assert x.shape == start.shape and state["pez"]["t"] == 3 and not torch.allclose(x, start)
    steps = _search_history(tmp_path / "run")
    assert len(steps) == 3 and all(s["rule"] == "pez" for s in steps)
    found = Prompt.load(tmp_path / "run" / "prompt")
    ids = found.segments_of(SegmentKind.TOKENS)[0].ids
    allowed = allowed_tokens(lm.tokenizer, lm.embeddings.weight.shape[0], ["negative", "positive"], set(), True)
    assert all(bool(allowed[i]) for i in ids)


@pytest.mark.parametrize("rule", ["gcg", "pez"])
def test_gcg_and_pez_searches_interrupted_and_resumed_end_as_the_uninterrupted_one(tiny_lms, tmp_path, monkeypatch,
                                                                                  rule):  # fmt: skip
    from kill_harness import history
    from promptopt_plugins import autoprompt

    args = dict(method="autoprompt", task=TASK, lm=tiny_lms["causal"], max_train=8, max_eval=8, progress=False,
                train={"steps": 4, "batch_size": 4},
                method_options={"rule": rule, "n_triggers": 2, "select_every": 1, "swaps": 6})  # fmt: skip
    full = promptopt.run(**args, output=str(tmp_path / "full"))
    real = autoprompt._Search._iterate

    def crash_at_third(self, it, batch_size, accumulation):
        if it == 3:
            raise KeyboardInterrupt("interrupted")
        return real(self, it, batch_size, accumulation)

    monkeypatch.setattr(autoprompt._Search, "_iterate", crash_at_third)
    with pytest.raises(KeyboardInterrupt):
        promptopt.run(**args, output=str(tmp_path / "cut"))
    monkeypatch.setattr(autoprompt._Search, "_iterate", real)
    resumed = promptopt.run(**args, output=str(tmp_path / "cut"), resume=True)
    assert resumed.prompt_text == full.prompt_text and resumed.metrics["eval"] == full.metrics["eval"]
    assert history(tmp_path / "cut" / "history.jsonl") == history(tmp_path / "full" / "history.jsonl")
