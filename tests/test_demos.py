"""In-context demonstrations: seeded and balanced selection, order, nearest neighbours, the context-limit rule, the
shared-prefix path on a demonstration block, and per-input blocks through a whole run."""

from __future__ import annotations

import json
import random
import types
from collections import Counter

import pytest
import torch

import promptopt
from promptopt.engine import Scorer
from promptopt.errors import ConfigError
from promptopt.data.prompt import Prompt
from promptopt_plugins.demos import DEMO_FIELD, Demonstrations, DemosConfig

from conftest import TINY_REVIEWS

TASK = str(TINY_REVIEWS / "task.toml")
TEMPLATE = "Review: {text}\nSentiment:{answer}"


def demonstrations(lm, task, max_length=None, **options) -> Demonstrations:
    scorer = Scorer(lm, task, max_length=max_length)
    logged = []
    run = types.SimpleNamespace(scorer=scorer, task=task, lm=lm, seed=0, log=logged.append)
    demos = Demonstrations(run, Prompt.from_template(TEMPLATE), task.load_split("train")[:40], DemosConfig(**options))
    demos.logged = logged
    return demos


def test_random_per_class_draws_k_of_each_class_and_the_same_seed_draws_the_same(tiny_lms, reviews_task):
    demos = demonstrations(tiny_lms["causal"], reviews_task, k=2)
    a, b, c = (demos.draw(random.Random(s)) for s in (0, 0, 1))
    assert Counter(ex.label for ex in a) == {"negative": 2, "positive": 2}
    assert [ex.source for ex in a] == [ex.source for ex in b] and [ex.source for ex in a] != [ex.source for ex in c]
    assert [ex.label for ex in a] in (["negative", "positive"] * 2, ["positive", "negative"] * 2)  # interleaved


def test_balanced_k_in_all_splits_evenly_over_the_classes_and_grouped_order_keeps_classes_together(tiny_lms,
                                                                                                    reviews_task):  # fmt: skip
    demos = demonstrations(tiny_lms["causal"], reviews_task, k=5, per_class=False, choice="balanced", order="grouped")
    for seed in range(5):
        block = demos.draw(random.Random(seed))
        labels = [ex.label for ex in block]
        assert Counter(labels) == {"negative": 3, "positive": 2}  # the first class gets the extra one
        assert labels == sorted(labels, key=["negative", "positive"].index)
    random_any = demonstrations(tiny_lms["causal"], reviews_task, k=5, per_class=False)
    assert len(random_any.draw(random.Random(0))) == 5


def test_similar_takes_the_nearest_pool_examples_per_class_with_the_nearest_next_to_the_input(tiny_lms, reviews_task):
    demos = demonstrations(tiny_lms["causal"], reviews_task, k=1, choice="similar", order="nearest-last")
    target = demos.pool[7]
    block = demos.nearest(target.inputs)
    assert block[-1].source == target.source  # itself: cosine similarity 1
    assert Counter(ex.label for ex in block) == {"negative": 1, "positive": 1}
    features = demos.features(demos.pool)
    assert torch.allclose(features.norm(dim=-1), torch.ones(len(demos.pool)), atol=1e-5)
    other = next(ex for ex in demos.pool if ex.label != target.label)
    sims = features @ demos.features_of([target.inputs])[0]
    same_class = [i for i, ex in enumerate(demos.pool) if ex.label == other.label]
    best_other = max(same_class, key=lambda i: float(sims[i]))
    assert block[0].source == demos.pool[best_other].source


def test_a_demonstration_is_the_template_filled_with_its_answer_word(tiny_lms, reviews_task):
    demos = demonstrations(tiny_lms["causal"], reviews_task)
    ex = demos.pool[0]
    assert demos.render(ex) == f"Review: {ex.inputs['text']}\nSentiment: {ex.label}"
    prompt, used = demos.prompt([ex, demos.pool[1]])
    assert prompt.template.endswith("\n\n" + TEMPLATE) and [u["source"] for u in used] == [ex.source, demos.pool[1].source]


def test_demonstrations_that_do_not_fit_are_left_out_from_the_end_and_inputs_keep_their_room(tiny_lms, reviews_task):
    demos = demonstrations(tiny_lms["causal"], reviews_task, k=4, max_length=120, max_fraction=0.5)
    chosen = demos.draw(random.Random(0))
    text, used = demos.block(chosen, demos.budget)
    assert 0 < len(used) < len(chosen) and [u["source"] for u in used] == [ex.source for ex in chosen[: len(used)]]
    assert len(demos.encoder.tokens(text)) <= 60
    _, prompt_used = demos.prompt(chosen)
    assert demos.logged == [{"left_out": len(chosen) - len(used), "room_tokens": 60}] and prompt_used == used
    per_input = demonstrations(tiny_lms["causal"], reviews_task, k=4, max_length=120, max_fraction=1.0,
                               choice="similar")  # fmt: skip
    prompt, _ = per_input.prompt(None)
    for ex in per_input.pool[:5]:
        filled = per_input.fill(prompt, [ex])[0]
        enc = per_input.encoder.encode(prompt, filled.inputs, _layout(prompt))
        assert len(enc.ids) <= 120 and enc.truncated == 0  # the demonstrations made room; the input is whole


def _layout(prompt):
    from promptopt.engine.inputs import VectorLayout

    return VectorLayout.build(prompt)


def test_shared_prefix_path_gives_the_same_scores_as_the_unshared_path_for_a_demonstration_block(tiny_lms, reviews_task,
                                                                                                  monkeypatch):  # fmt: skip
    from promptopt.engine.scoring import _common_prefix

    lm = tiny_lms["causal"]
    demos = demonstrations(lm, reviews_task, k=2)
    prompt, used = demos.prompt(demos.draw(random.Random(0)))
    examples = reviews_task.load_split("dev")[:12]
    shared, plain = Scorer(lm, reviews_task, share_prefix=True), Scorer(lm, reviews_task, share_prefix=False)
    encs = [shared.encoder.encode(prompt, ex.inputs, _layout(prompt)) for ex in examples]
    block_tokens = len(shared.encoder.tokens("\n\n".join(u["text"] for u in used)))
    assert _common_prefix(encs) >= block_tokens  # the block is a token prefix every example shares
    calls = []
    real = Scorer._hidden_shared

    def counted(self, encs, table, n_shared):
        calls.append(n_shared)
        return real(self, encs, table, n_shared)

    monkeypatch.setattr(Scorer, "_hidden_shared", counted)
    a, b = shared.class_scores(prompt, examples), plain.class_scores(prompt, examples)
    assert calls and min(calls) >= block_tokens  # the shared side computed the block once, the plain side never
    assert torch.allclose(a, b, atol=1e-4)
    ra, rb = shared.evaluate(prompt, examples), plain.evaluate(prompt, examples)
    flat = [[s for r in res.predictions for s in r["scores"].values()] for res in (ra, rb)]
    assert flat[0] == pytest.approx(flat[1], abs=1e-3) and ra.metrics == rb.metrics


def test_per_input_demonstrations_fill_the_reported_split_and_the_saved_prompt_lists_the_block(tiny_lms, tmp_path):
    result = promptopt.run(method="demos", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"), seed=0,
                           max_train=16, max_eval=8, progress=False,
                           method_options={"choice": "similar", "k": 1})  # fmt: skip
    assert result.status == "ok"
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["inputs"][DEMO_FIELD].count("Sentiment:") == 2 for r in rows)
    saved = Prompt.load(tmp_path / "run" / "prompt")
    assert DEMO_FIELD in saved.fields and len(saved.meta["demonstrations"][0]["pool"]) == 16
    fixed = promptopt.run(method="demos", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "fixed"), seed=0,
                          max_train=16, max_eval=8, progress=False, method_options={"k": 1, "candidates": 2})  # fmt: skip
    used = Prompt.load(tmp_path / "fixed" / "prompt").meta["demonstrations"]
    assert len(used) == 2 and all(u["text"] in fixed.prompt_text for u in used)
    history = [json.loads(line) for line in (tmp_path / "fixed" / "history.jsonl").read_text().splitlines()]
    assert [h["block"] for h in history if "block" in h] == [0, 1]
    from promptopt.suite.leaderboard import collect_runs

    shown = {r.run_dir.split("/")[-1]: r.prompt_text for r in collect_runs([tmp_path])}
    named = ", ".join(f"{u['source']} ({u['label']})" for u in used)
    assert shown["fixed"] == f"[demonstrations: {named}] " + TEMPLATE
    assert shown["run"] == "[demonstrations per input: similar, k=1 per class, from 16 training examples]" + TEMPLATE


def test_bad_options_and_templates_are_refused_naming_the_field(tiny_lms, tmp_path):
    with pytest.raises(ConfigError, match=r"DemosConfig.choice is 'nearest'; one of \['random', 'balanced', 'similar'\]"):
        DemosConfig(choice="nearest")
    with pytest.raises(ConfigError, match="DemosConfig.max_fraction must be in"):
        DemosConfig(max_fraction=0)
    with pytest.raises(ConfigError, match=r"demos needs a text template \(no \[T\] or \[P\] slots\)"):
        promptopt.run(method="demos", task=TASK, lm=tiny_lms["causal"], output=str(tmp_path / "run"),
                      templates=["[P*2]{text}{answer}"], max_train=8, max_eval=8, progress=False)  # fmt: skip
