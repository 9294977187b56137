"""Scoring rules: log-likelihood, length-normalised per token and per character, contextual calibration."""

import json

import pytest
import torch

import promptopt
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example, parse_task_spec
from promptopt.engine import Scorer
from promptopt.engine.scoring import scoring_rule
from promptopt.errors import DataError, PromptoptError

from conftest import TINY_REVIEWS

TEXTS = ["great food and a lovely view", "the battery died after a day", "not bad at all, really"]
PROMPT = "Review: {text}\nSentiment: {answer}"
WORDS = {"negative": ["unremarkably dreadful"], "positive": ["positive"]}  # one multi-token word


def examples():
    return [Example(inputs={"text": t}, label=lab) for t, lab in zip(TEXTS, ["positive", "negative", "positive"])]


def scores(lm, task, rule, prompt=PROMPT):
    return Scorer(lm, task, scoring=rule).class_scores(Prompt.from_template(prompt, label_words=WORDS), examples())


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_length_normalised_rules_divide_each_word_by_its_tokens_or_characters(tiny_lms, reviews_task, kind):
    lm = tiny_lms[kind]
    plain = scores(lm, reviews_task, "loglik")
    ids = Scorer(lm, reviews_task).verbalizer(Prompt.from_template(PROMPT, label_words=WORDS)).ids
    assert len(ids[0][0]) > 1
    tokens = torch.tensor([len(ids[0][0]), len(ids[1][0])], dtype=torch.float32)
    chars = torch.tensor([len(" unremarkably dreadful"), len(" positive")], dtype=torch.float32)
    torch.testing.assert_close(scores(lm, reviews_task, "norm_token"), plain / tokens)
    torch.testing.assert_close(scores(lm, reviews_task, "norm_char"), plain / chars)


def test_calibration_subtracts_the_content_free_class_log_probabilities(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    plain = Scorer(lm, reviews_task).class_scores(Prompt.from_template(PROMPT), examples())
    free = Scorer(lm, reviews_task).class_scores(Prompt.from_template(PROMPT), [Example({"text": "N/A"}, "positive")])
    got = Scorer(lm, reviews_task, scoring="calibrated").class_scores(Prompt.from_template(PROMPT), examples())
    torch.testing.assert_close(got, plain - torch.log_softmax(free, dim=-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("rule", ["loglik", "norm_token", "norm_char", "calibrated"])
def test_scores_many_applies_the_same_rule(tiny_lms, reviews_task, rule):
    lm = tiny_lms["causal"]
    scorer = Scorer(lm, reviews_task, scoring=rule)
    prompts = [Prompt.from_template(t, label_words=WORDS) for t in (PROMPT, "{text} It was {answer}")]
    many = scorer.scores_many(prompts, examples())
    for p, got in zip(prompts, many):
        torch.testing.assert_close(got, scorer.class_scores(p, examples()), atol=1e-5, rtol=0)


def test_an_unknown_rule_is_refused_naming_the_field(tmp_path):
    spec = (TINY_REVIEWS / "task.toml").read_text().replace('metric = "accuracy"', 'metric = "accuracy"\nscoring = "best"')
    path = tmp_path / "task.toml"
    path.write_text(spec.replace("{spec_dir}", str(TINY_REVIEWS)))
    with pytest.raises(DataError, match="scoring"):
        parse_task_spec(path)
    with pytest.raises(PromptoptError, match="not one of"):
        scoring_rule("best")


def test_a_run_scores_with_the_chosen_rule_and_records_it(tiny_lms, tmp_path):
    task = str(TINY_REVIEWS / "task.toml")
    small = dict(train={"steps": 1, "batch_size": 4, "checkpoint_every": 0}, max_train=4, max_eval=6, progress=False)
    plain = promptopt.run(method="manual", task=task, output=str(tmp_path / "a"), lm=tiny_lms["causal"], **small)
    calib = promptopt.run(method="manual", task=task, output=str(tmp_path / "b"), lm=tiny_lms["causal"],
                          scoring="calibrated", **small)  # fmt: skip
    assert json.loads((tmp_path / "b" / "config.json").read_text())["scoring"] == "calibrated"
    assert json.loads((tmp_path / "a" / "config.json").read_text())["scoring"] == "loglik"
    rows = [json.loads(line) for line in (tmp_path / "b" / "predictions.jsonl").read_text().splitlines()]
    rows_plain = [json.loads(line) for line in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    assert rows[0]["scores"] != rows_plain[0]["scores"] and plain.status == calib.status == "ok"
