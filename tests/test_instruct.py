"""Instruction search: a planted task (one proposed instruction makes the tiny model right) is solved, every
candidate is in the history, the same seed gives the same candidates, a masked model without proposer scores the seed
instructions only, and a local proposer by path is used."""

from __future__ import annotations

import json

import pytest
import torch

import promptopt
from promptopt.engine import Scorer, load_model
from promptopt.errors import ConfigError
from promptopt.plugins import get_task
from promptopt.data.prompt import Prompt
from promptopt_plugins.instruct import InstructConfig, candidate_prompt, clean_instruction

from conftest import TINY_REVIEWS

TASK = str(TINY_REVIEWS / "task.toml")
TEMPLATE = "Review: {text}\nSentiment:{answer}"
OPTIONS = {"candidates": 4, "rounds": 1, "keep": 2, "per_round": 2, "max_new_tokens": 12}


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def search(lm, task, out, **kwargs):
    return promptopt.run(method="instruct", task=str(task), lm=lm, output=str(out), seed=4, templates=[TEMPLATE],
                         max_train=16, progress=False, **kwargs)  # fmt: skip


def planted_model(path, scorer_task, instruction, select):
    """A fresh copy of the tiny model whose " positive" logit is moved so that, under ``instruction``, the selection
    examples' class margins straddle zero (its answers then depend on the input)."""
    lm = load_model(str(path), device="cpu", dtype="float32")
    scorer = Scorer(lm, scorer_task)
    prompt = candidate_prompt(instruction, TEMPLATE)
    features = scorer.answer_features(prompt, select)
    margins = torch.tensor([p["scores"]["positive"] - p["scores"]["negative"]
                            for p in scorer.evaluate(prompt, select).predictions])  # fmt: skip
    mean = features.mean(0)
    first = scorer.encoder.answer_ids(prompt, "positive")[0]
    with torch.no_grad():
        lm.model.get_output_embeddings().weight[first] -= float(margins.median()) * mean / mean.dot(mean)
    return lm, Scorer(lm, scorer_task)


def test_search_on_a_planted_task_finds_the_one_instruction_that_makes_the_model_right(tiny_lms, tiny_model_dirs,
                                                                                      tmp_path):  # fmt: skip
    """Selection labels are a model's own answers under one proposed instruction (the proposer, a separate local
    model, and the training examples it is shown stay as they are, so round 0 proposes the same candidates): the
    search must end with a prompt that gets every selection example right, where the template alone does not."""
    proposer = {**OPTIONS, "proposer": str(tiny_model_dirs["causal"])}
    first = search(tiny_lms["causal"], TASK, tmp_path / "first", method_options=proposer, max_eval=24)
    assert first.status == "ok"
    proposed = [h["instruction"] for h in history(tmp_path / "first") if h.get("origin") == "proposed"]
    task = get_task(TASK)
    select = task.load_split("dev")[:24]
    for planted in proposed:
        lm, scorer = planted_model(tiny_model_dirs["causal"], task, planted, select)

        def answers(instruction):
            return [p["prediction"] for p in scorer.evaluate(candidate_prompt(instruction, TEMPLATE), select).predictions]

        labels = answers(planted)
        if answers("") != labels and len(set(labels)) == 2:
            break
    else:
        pytest.fail("no proposed instruction changes the tiny model's answers")
    rows = {"train": [json.loads(x) for x in (TINY_REVIEWS / "train.jsonl").read_text().splitlines()],
            "dev": [{"text": ex.inputs["text"], "label": lab} for ex, lab in zip(select, labels)]}
    rows["test"] = rows["dev"]
    for split, split_rows in rows.items():
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    spec = tmp_path / "planted.toml"
    spec.write_text((TINY_REVIEWS / "task.toml").read_text().replace('name = "tiny-reviews"', 'name = "planted"')
                    .replace("{spec_dir}", str(tmp_path)))  # fmt: skip
    found = search(lm, spec, tmp_path / "planted", method_options=proposer)
    records = [h for h in history(tmp_path / "planted") if "instruction" in h]
    assert [h["instruction"] for h in records if h["origin"] == "proposed"] == proposed
    assert next(h for h in records if h["instruction"] == "")["select"]["accuracy"] < 1.0
    assert found.select_metrics["accuracy"] == 1.0 and found.metrics["eval"]["accuracy"] == 1.0


def test_every_candidate_and_its_score_is_in_the_history_and_the_same_seed_gives_the_same(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    a = search(lm, TASK, tmp_path / "a", method_options=OPTIONS, max_eval=8)
    b = search(lm, TASK, tmp_path / "b", method_options=OPTIONS, max_eval=8)
    ha, hb = ([{k: v for k, v in h.items() if k != "seconds"} for h in history(tmp_path / r)] for r in ("a", "b"))
    assert ha == hb and a.prompt_text == b.prompt_text
    records = [h for h in ha if "instruction" in h]
    assert [h["candidate"] for h in records] == list(range(len(records))) and len(records) >= 3
    assert {h["origin"] for h in records} >= {"seed", "proposed"} and all("score" in h["select"] for h in records)
    assert len({h["instruction"] for h in records}) == len(records)  # duplicates scored once
    assert {h["round"] for h in records} <= {0, 1}
    best = max(records, key=lambda h: (h["score"], -h["candidate"]))
    saved = Prompt.load(tmp_path / "a" / "prompt")
    assert saved.meta["instruction"] == best["instruction"] and a.select_metrics["score"] == best["score"]


def test_a_masked_model_without_proposer_scores_the_seed_instructions_and_a_local_proposer_writes(tiny_lms,
                                                                                                   tiny_model_dirs,
                                                                                                   tmp_path):  # fmt: skip
    masked = tiny_lms["masked"]
    seeds = {"seed_instructions": ["Label the review.", "Classify it."]}
    result = promptopt.run(method="instruct", task=TASK, lm=masked, output=str(tmp_path / "m"), max_train=8,
                           max_eval=8, progress=False, method_options={**OPTIONS, **seeds})  # fmt: skip
    rows = history(tmp_path / "m")
    assert [h["instruction"] for h in rows if "instruction" in h] == ["Label the review.", "Classify it."]
    assert any(h.get("proposer", "x") is None for h in rows) and result.status == "ok"
    local = promptopt.run(method="instruct", task=TASK, lm=masked, output=str(tmp_path / "p"), max_train=8,
                          max_eval=8, progress=False,
                          method_options={**OPTIONS, "proposer": str(tiny_model_dirs["causal"])})  # fmt: skip
    assert local.status == "ok"
    assert any(h.get("origin") == "proposed" for h in history(tmp_path / "p"))


def test_generated_text_becomes_one_sentence_and_bad_options_name_the_field():
    assert clean_instruction("\n  classify the   review as good or bad. Then more\nsecond line") == (
        "Classify the review as good or bad.")
    assert clean_instruction("say yes") == "Say yes." and clean_instruction(" \n ") == ""
    assert candidate_prompt("Use {braces}.", TEMPLATE).template == "Use {{braces}}.\n" + TEMPLATE
    with pytest.raises(ConfigError, match="InstructConfig.keep must be >= 1, got 0"):
        InstructConfig(keep=0)
    with pytest.raises(ConfigError, match="InstructConfig.temperature must be >= 0"):
        InstructConfig(temperature=-1)
