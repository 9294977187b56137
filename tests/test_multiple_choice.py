"""Multiple-choice tasks: per-example choices from a field, scored as continuations under every scoring rule."""

import dataclasses
import json

import pytest
import torch

import promptopt
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import parse_task_spec
from promptopt.engine import Scorer
from promptopt.errors import DataError
from promptopt.plugins import get_task

from conftest import REPO

TASK = str(REPO / "datasets" / "tiny_choice" / "task.toml")
PROMPT = "Question: {question}\nAnswer:{answer}"


@pytest.fixture(scope="module")
def choice_task():
    return get_task(TASK)


def direct(lm, context: str, continuation: str) -> float:
    """log P(continuation | context) with transformers on the jointly tokenized string."""
    tok = lm.tokenizer
    enc = tok(context + continuation, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    answer = [k for k, (s, e) in enumerate(offsets) if e > len(context) and ids[k] not in tok.all_special_ids]
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids[: answer[-1] + 1]])).logits.float(), -1)[0]
    return sum(float(logp[k - 1, ids[k]]) for k in answer)


def test_choice_scores_are_the_log_likelihoods_of_each_examples_choices(tiny_lms, choice_task):
    lm = tiny_lms["causal"]
    examples = choice_task.load_split("dev")[:4]
    got = Scorer(lm, choice_task, scoring="loglik").choice_scores(Prompt.from_template(PROMPT), examples)
    want = torch.tensor([[direct(lm, f"Question: {ex.inputs['question']}\nAnswer:", " " + c) for c in ex.choices]
                         for ex in examples])  # fmt: skip
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    norm = Scorer(lm, choice_task).choice_scores(Prompt.from_template(PROMPT), examples)  # the spec says norm_char
    chars = torch.tensor([[len(" " + c) for c in ex.choices] for ex in examples], dtype=torch.float32)
    torch.testing.assert_close(norm, want / chars, atol=1e-5, rtol=0)


def test_choices_that_differ_only_in_their_last_token_share_one_forward_row(tiny_lms, choice_task):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, choice_task, scoring="loglik")
    prompt = Prompt.from_template(PROMPT)
    single = [w for w in ("A", "B", "C", "D", "yes", "no", "the", "a") if len(scorer.encoder.answer_ids(prompt, w)) == 1][:3]
    if len(single) < 3:
        pytest.skip(f"the tiny tokenizer has fewer than 3 one-token words among the candidates: {single}")
    examples = [dataclasses.replace(ex, choices=single) for ex in choice_task.load_split("dev")[:4]]
    rows = []
    hook = scorer.facts.head.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        got = scorer.choice_scores(prompt, examples)
    finally:
        hook.remove()
    assert sum(rows) == len(examples)  # one row per example, not one per (example, choice)
    want = torch.tensor([[direct(lm, f"Question: {ex.inputs['question']}\nAnswer:", " " + c) for c in ex.choices]
                         for ex in examples])  # fmt: skip
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_evaluation_predicts_the_best_choice_and_every_rule_runs(tiny_lms, choice_task, kind):
    lm = tiny_lms[kind]
    dev = choice_task.load_split("dev")
    for rule in ("loglik", "norm_token", "norm_char", "calibrated"):
        scorer = Scorer(lm, choice_task, scoring=rule, batch_size=3)
        result = scorer.evaluate(Prompt.from_template(PROMPT), dev)
        scores = scorer.choice_scores(Prompt.from_template(PROMPT), dev)
        assert [r["prediction"] for r in result.predictions] == [str(int(s.argmax())) for s in scores]
        assert result.metrics["accuracy"] == sum(r["correct"] for r in result.predictions) / len(dev)
        assert result.scoring == rule
        assert set(result.predictions[0]["scores"]) == {"0", "1", "2"}


@pytest.mark.parametrize("method", ["manual", "soft", "autoprompt"])
def test_methods_run_on_a_multiple_choice_task(tiny_lms, tmp_path, method):
    result = promptopt.run(method=method, task=TASK, output=str(tmp_path / "run"), lm=tiny_lms["causal"], seed=0,
                           train={"steps": 2, "batch_size": 4, "checkpoint_every": 0}, max_train=8, max_eval=6,
                           method_options={"iterations": 1, "candidates": 2} if method == "autoprompt" else {},
                           progress=False)  # fmt: skip
    assert result.status == "ok" and result.metrics["eval"]["n"] == 6
    assert json.loads((tmp_path / "run" / "config.json").read_text())["scoring"] == "norm_char"


def test_a_label_that_is_no_choice_is_refused_naming_the_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"question": "q?", "choices": ["a", "b"], "label": 0}\n'
                                      '{"question": "q?", "choices": ["a", "b"], "label": "c"}\n')  # fmt: skip
    spec = (REPO / "datasets" / "tiny_choice" / "task.toml").read_text()
    spec = spec.replace("{spec_dir}/train.jsonl", str(tmp_path / "d.jsonl"))
    (tmp_path / "task.toml").write_text(spec)
    task = parse_task_spec(tmp_path / "task.toml")
    with pytest.raises(DataError, match=r"d.jsonl.*2.*label"):
        task.load_split("train")
    with pytest.raises(DataError, match="label_words"):
        (tmp_path / "bad.toml").write_text(spec + '\n[label_words]\na = ["x"]\nb = ["y"]\n')
        parse_task_spec(tmp_path / "bad.toml")
