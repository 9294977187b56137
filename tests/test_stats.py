"""Paired statistics: each number recomputed here by hand from its documented algorithm, on fixed predictions."""

from __future__ import annotations

import json
import math
import random

import pytest

from promptopt.data.files import write_json
from promptopt.report import build_leaderboard, render_html, render_markdown
from promptopt.report.stats import (accuracy, bootstrap_ci, bootstrap_p, holm, macro_f1_over, mcnemar_exact,
                                    paired_bootstrap, resample_indices)  # fmt: skip
from promptopt.suite.leaderboard import collect_runs

# a fixed prediction file: 20 examples, method A right on 15, B right on 11; A-only right: 6, B-only right: 2
GOLDS = ["pos", "neg"] * 10
A_RIGHT = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
B_RIGHT = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0]


def _preds(right: list[int]) -> list[str]:
    return [g if r else ("neg" if g == "pos" else "pos") for g, r in zip(GOLDS, right)]


def _write(root, method: str, right: list[int], seed: int = 0, task: str = "t", n_ids: int | None = None):
    run_dir = root / "m" / task / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    preds = _preds(right)
    rows = [{"split": "eval", "id": f"dev.jsonl:{k}", "label": g, "prediction": p, "correct": g == p}
            for k, (g, p) in enumerate(zip(GOLDS, preds))][:n_ids]  # fmt: skip
    rows.append({"split": "select", "id": "dev.jsonl:0", "label": "pos", "prediction": "neg"})  # not eval: ignored
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    score = sum(right[: n_ids or len(right)]) / len(rows[:-1])
    write_json(run_dir / "result.json", {"method": method, "task": task, "model": "m", "seed": seed,
                                         "metrics": {"eval": {"n": len(rows) - 1, "accuracy": score, "score": score}}})
    return run_dir


def _quantile(values, q):  # numpy's default (linear) percentile, written out
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def test_bootstrap_interval_of_a_fixed_prediction_file_equals_the_hand_computed_one(tmp_path):
    _write(tmp_path, "a", A_RIGHT)
    row = build_leaderboard(collect_runs([tmp_path])).rows[0]
    rng = random.Random(0)
    by_hand = []
    for _ in range(1000):
        idx = rng.choices(range(20), k=20)
        by_hand.append(sum(A_RIGHT[i] for i in idx) / 20)
    assert (row.ci_low, row.ci_high, row.ci_n) == (pytest.approx(_quantile(by_hand, 0.025)),
                                                   pytest.approx(_quantile(by_hand, 0.975)), 20)  # fmt: skip
    assert bootstrap_ci(GOLDS, _preds(A_RIGHT), accuracy) == (row.ci_low, row.ci_high)
    assert row.ci_low < 0.75 < row.ci_high


def test_bootstrap_interval_on_three_resamples_by_hand():
    idx = resample_indices(4, 3, seed=7)
    rng = random.Random(7)
    assert idx == [rng.choices(range(4), k=4) for _ in range(3)]
    golds, preds = ["a", "b", "a", "b"], ["a", "b", "b", "a"]  # examples 0 and 1 right
    values = sorted(sum(i < 2 for i in r) / 4 for r in idx)
    low, high = bootstrap_ci(golds, preds, accuracy, n_resamples=3, seed=7, level=0.5)
    assert low == pytest.approx(values[0] + 0.5 * (values[1] - values[0]))  # position 0.25 * 2
    assert high == pytest.approx(values[1] + 0.5 * (values[2] - values[1]))  # position 0.75 * 2
    assert bootstrap_ci(["a"] * 5, ["a"] * 5, accuracy) == (1.0, 1.0)


def test_mcnemar_exact_p_equals_the_binomial_tail_by_hand():
    assert mcnemar_exact(6, 2) == pytest.approx(2 * (1 + 8 + 28) / 2**8)  # P(X <= 2), X ~ Bin(8, 1/2)
    assert mcnemar_exact(3, 0) == pytest.approx(0.25)
    assert mcnemar_exact(2, 6) == mcnemar_exact(6, 2)
    assert mcnemar_exact(2, 2) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(300, 200) < 1e-5  # large counts stay exact integers, no overflow


def test_board_comparison_uses_mcnemar_on_the_discordant_counts_of_the_file(tmp_path):
    _write(tmp_path, "a", A_RIGHT)
    _write(tmp_path, "b", B_RIGHT)
    board = build_leaderboard(collect_runs([tmp_path]))
    (c,) = board.comparisons
    assert (c.a, c.b, c.n, c.seeds, c.discordant_a, c.discordant_b) == ("a", "b", 20, 1, 6, 2)
    assert c.test == "McNemar exact" and c.p == pytest.approx(2 * 37 / 256) and c.p_holm == c.p
    assert c.diff == pytest.approx(0.2)
    rng, diffs = random.Random(0), []
    for _ in range(1000):
        idx = rng.choices(range(20), k=20)
        diffs.append(sum(A_RIGHT[i] - B_RIGHT[i] for i in idx) / 20)
    assert (c.low, c.high) == (pytest.approx(_quantile(diffs, 0.025)), pytest.approx(_quantile(diffs, 0.975)))
    assert [(r.method, r.best, r.tied_with) for r in board.rows] == [("a", False, ["b"]), ("b", False, ["a"])]
    assert "McNemar exact (b=6, c=2)" in render_markdown(board)


def test_comparisons_use_only_the_example_ids_both_methods_have(tmp_path):
    _write(tmp_path, "a", A_RIGHT)
    _write(tmp_path, "b", B_RIGHT, n_ids=12)
    (c,) = build_leaderboard(collect_runs([tmp_path])).comparisons
    assert c.n == 12 and (c.discordant_a, c.discordant_b) == (3, 0)


def test_seeds_are_paired_by_seed_and_their_discordant_counts_averaged(tmp_path):
    _write(tmp_path, "a", A_RIGHT, seed=0)
    _write(tmp_path, "a", A_RIGHT, seed=1)
    _write(tmp_path, "b", B_RIGHT, seed=0)
    _write(tmp_path, "b", A_RIGHT, seed=1)  # agrees with a everywhere: no discordant example
    (c,) = build_leaderboard(collect_runs([tmp_path])).comparisons
    assert (c.seeds, c.discordant_a, c.discordant_b) == (2, 3, 1)  # (6 + 0) / 2, (2 + 0) / 2
    assert c.p == pytest.approx(mcnemar_exact(3, 1))


def test_holm_on_a_known_vector():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1, monotone
    assert holm([]) == []


def test_paired_bootstrap_of_identical_predictions_is_zero_with_p_one():
    preds = _preds(A_RIGHT)
    assert paired_bootstrap(GOLDS, preds, preds, accuracy) == (0.0, 0.0, 0.0, 1.0)
    diff, low, high, p = paired_bootstrap(GOLDS, _preds(A_RIGHT), _preds(B_RIGHT), accuracy)
    assert diff == pytest.approx(0.2) and low <= diff <= high and 0 < p <= 1
    assert bootstrap_p([0.1] * 99) == pytest.approx(2 / 100)  # never 0 from a finite number of resamples


def test_macro_f1_counts_every_label_like_the_engine():
    from sklearn.metrics import f1_score

    golds, preds = ["a", "a", "b", "c"], ["a", "b", "b", "b"]
    expected = f1_score(golds, preds, labels=["a", "b", "c"], average="macro", zero_division=0)
    assert macro_f1_over(["a", "b", "c"])(golds, preds) == pytest.approx(expected)


def _clear_or_close(root, a_right: int, b_right: int, n: int = 200):
    for method, right in (("a", a_right), ("b", b_right)):
        run_dir = root / "m" / "t" / method / "seed0"
        run_dir.mkdir(parents=True)
        order = list(range(n))
        random.Random(method).shuffle(order)
        ok = set(order[:right])
        rows = [{"split": "eval", "id": f"x:{k}", "label": "pos", "prediction": "pos" if k in ok else "neg"}
                for k in range(n)]  # fmt: skip
        (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_json(run_dir / "result.json", {"method": method, "task": "t", "model": "m", "seed": 0,
                                             "metrics": {"eval": {"n": n, "accuracy": right / n, "score": right / n}}})
    return build_leaderboard(collect_runs([root]))


def test_a_clear_winner_is_marked_best_and_a_difference_within_noise_is_tied(tmp_path):
    clear = _clear_or_close(tmp_path / "clear", 190, 100)  # 95% vs 50% on 200 examples
    assert [(r.method, r.best, r.tied) for r in clear.rows] == [("a", True, False), ("b", False, False)]
    assert clear.comparisons[0].p_holm < 1e-6
    assert "★" in render_markdown(clear) and "| best |" in render_markdown(clear)
    close = _clear_or_close(tmp_path / "close", 144, 140)  # 72% vs 70%
    assert [(r.method, r.best, r.tied_with) for r in close.rows] == [("a", False, ["b"]), ("b", False, ["a"])]
    assert "tied with b" in render_markdown(close) and "★" not in render_markdown(close).split("★ best")[0]
    assert render_html(clear).count('class="errbar"') == 2  # one error bar per bar of the score chart


def test_seeds_scored_on_different_examples_give_an_interval_on_the_shared_ones(tmp_path):
    _write(tmp_path, "a", A_RIGHT, seed=0)
    _write(tmp_path, "a", A_RIGHT, seed=1, n_ids=12)
    board = build_leaderboard(collect_runs([tmp_path]))
    assert board.rows[0].ci_n == 12 and board.rows[0].n_eval == 20
    assert "(CI on n=12)" in render_markdown(board)
