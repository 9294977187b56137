"""The LM-BFF few-shot protocol: k-shot task splits, suites over k-shot seeds with baseline rows, the t-interval
over seeds, ties and marks, and the findings rendered from results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY_REVIEWS
from test_report import predictions, write_run

from promptopt.cli import cli
from promptopt.data.files import read_json, write_json
from promptopt.data.tasks import parse_task_spec
from promptopt.errors import ConfigError, DataError
from promptopt.pipeline.runner import RunOptions, parse_kshot
from promptopt.report import build_leaderboard, render, render_findings, render_html, render_markdown
from promptopt.report import stats
from promptopt.report.model import MAJORITY, ZERO_SHOT
from promptopt.suite.leaderboard import SuiteConfig, collect_runs, load_board, run_suite, suite_progress

TEMPLATES = ["Review: {text}\\nSentiment:{answer}", "{text} Overall, it was{answer}"]


def write_kshot_task(directory: Path, k: int = 2, seeds=(0, 1), kshot: bool = True) -> Path:
    """A tiny-reviews spec with LM-BFF-style splits ``kshot/K-SEED/{train,dev}.jsonl`` (K per class, disjoint per
    seed) and the full tiny-reviews test set."""
    rows = [json.loads(line) for line in (TINY_REVIEWS / "train.jsonl").read_text().splitlines()]
    by_label = {lab: [r for r in rows if r["label"] == lab] for lab in ("negative", "positive")}
    for i, seed in enumerate(seeds):
        for j, split in enumerate(("train", "dev")):
            start = (2 * i + j) * k
            chosen = [r for lab in by_label for r in by_label[lab][start : start + k]]
            path = directory / "kshot" / f"{k}-{seed}" / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    spec = directory / "reviews.toml"
    body = (f'name = "reviews-kshot"\ninputs = ["text"]\ntemplates = ["{TEMPLATES[0]}", "{TEMPLATES[1]}"]\n'
            '[label_words]\nnegative = ["negative"]\npositive = ["positive"]\n'
            f'[splits.train]\npath = "{TINY_REVIEWS}/train.jsonl"\n[splits.dev]\npath = "{TINY_REVIEWS}/dev.jsonl"\n'
            f'[splits.test]\npath = "{TINY_REVIEWS}/test.jsonl"\n')  # fmt: skip
    if kshot:
        body += ('[kshot]\ntest = "test"\n[kshot.train]\npath = "{spec_dir}/kshot/{k}-{seed}/train.jsonl"\n'
                 '[kshot.dev]\npath = "{spec_dir}/kshot/{k}-{seed}/dev.jsonl"\n')  # fmt: skip
    spec.write_text(body)
    return spec


# -- task specs -------------------------------------------------------------------------------------------------


def test_with_kshot_reads_the_seeds_split_and_reports_on_the_full_test_set(tmp_path):
    spec = parse_task_spec(write_kshot_task(tmp_path))
    one = spec.with_kshot(2, 1)
    assert one.kshot_split == "2-1" and spec.kshot_split is None
    assert [len(one.load_split(s)) for s in ("train", "dev")] == [4, 4]
    assert len(one.load_split("test")) == len(spec.load_split("test")) == 60
    assert one.load_split("train")[0].inputs != spec.with_kshot(2, 0).load_split("train")[0].inputs


def test_a_missing_seed_and_a_task_without_kshot_name_the_file_and_field(tmp_path):
    spec = parse_task_spec(write_kshot_task(tmp_path))
    with pytest.raises(DataError, match=r"reviews.toml: field 'kshot.train.path': k-shot split 2-7 .* does not exist") as e:
        spec.with_kshot(2, 7)
    assert e.value.field == "kshot.train.path"
    plain = parse_task_spec(write_kshot_task(tmp_path / "plain", kshot=False))
    with pytest.raises(DataError, match="field 'kshot': task 'reviews-kshot' has no k-shot splits"):
        plain.with_kshot(2, 0)


@pytest.mark.parametrize("table, field", [
    ('[kshot]\n[kshot.train]\npath = "a/{k}.jsonl"\n[kshot.dev]\npath = "a/{k}-{seed}.jsonl"\n', "kshot.train.path"),
    ('[kshot]\ntest = "holdout"\n[kshot.train]\npath = "{k}-{seed}"\n[kshot.dev]\npath = "{k}-{seed}"\n', "kshot.test"),
    ('[kshot]\n[kshot.train]\npath = "{k}-{seed}"\n', "kshot.dev"),
    ('[kshot]\nseeds = [1]\n', "kshot"),
])  # fmt: skip
def test_a_bad_kshot_table_is_refused_naming_its_field(tmp_path, table, field):
    path = write_kshot_task(tmp_path, kshot=False)
    path.write_text(path.read_text() + table)
    with pytest.raises(DataError) as e:
        parse_task_spec(path)
    assert e.value.field == field


def test_shipped_lmbff_tasks_have_kshot_splits_on_their_full_test_sets():
    from conftest import needs_shared

    needs_shared("sst2", "k_shot_lmbff")
    from promptopt.plugins import get_task

    for name, test in (("sst2", 1821), ("rte", 277), ("sst5", 2210), ("subj", 2000)):
        spec = get_task(name).with_kshot(16, 13)
        labels = len(spec.label_words)
        assert (len(spec.load_split("train")), len(spec.load_split("dev"))) == (16 * labels, 16 * labels)
        assert len(spec.load_split("test")) == test


def test_with_kshot_a_single_seed_is_that_seed_not_a_count():
    from promptopt.suite.leaderboard import parse_seeds

    assert parse_seeds("13", listed=True) == [13] and parse_seeds("13") == list(range(13))
    assert parse_seeds("13,21", listed=True) == [13, 21]


def test_run_kshot_is_checked_and_a_task_without_splits_exits_2_naming_file_and_field():
    assert parse_kshot("16-13") == (16, 13)
    with pytest.raises(ConfigError, match="K-SEED"):
        parse_kshot("16")
    result = CliRunner().invoke(cli, ["run", "--task", "tiny-reviews", "--kshot", "16-13"])
    assert result.exit_code == 2
    assert "task.toml: field 'kshot'" in result.output and "no k-shot splits" in result.output


# -- statistics and rows ----------------------------------------------------------------------------------------


def test_t_interval_over_seeds_uses_students_t():
    low, high = stats.t_interval([0.80, 0.82, 0.84])
    half = 4.303 * 0.02 / math.sqrt(3)
    assert low == pytest.approx(0.82 - half) and high == pytest.approx(0.82 + half)
    assert stats.t_interval([0.5]) is None
    assert stats.t975(1) == 12.706 and stats.t975(1000) == pytest.approx(1.962, abs=1e-3)


def kshot_runs(root: Path, scores: dict[str, list[float]], kinds: dict[str, str], task: str = "sst2",
               seeds=(13, 21, 42)) -> None:  # fmt: skip
    """Runs of each method over the k-shot seeds, their config.json marked as k-shot runs with kind and labels."""
    for method, values in scores.items():
        for seed, score in zip(seeds, values):
            run_dir = write_run(root, task, method, seed, score, params=0 if kinds[method] == "hard" else 11520)
            conf = read_json(run_dir / "config.json")
            conf["method_kind"] = kinds[method]
            conf["data"].update({"kshot": f"16-{seed}", "train_labels": {"negative": 16, "positive": 16}, "train": 32})
            write_json(run_dir / "config.json", conf)


def test_rows_carry_kind_and_seed_interval_and_majority_and_zero_shot_baselines(tmp_path):
    root = tmp_path / "board"
    kshot_runs(root, {"manual": [0.70, 0.72, 0.74], "soft": [0.86, 0.88, 0.90]}, {"manual": "hard", "soft": "soft"})
    for i, score in enumerate([0.60, 0.66]):  # zero-shot runs of two templates (older suites ran every template)
        write_run(root, "sst2", ZERO_SHOT, 13, score, variant=f"template{i}", templates=[f"t{i}"])
    board = build_leaderboard(collect_runs([root]), baselines=True)
    rows = {r.method: r for r in board.rows}
    assert list(rows) == ["soft", "manual", ZERO_SHOT, MAJORITY]
    assert (rows["soft"].kind, rows["manual"].kind, rows[MAJORITY].kind) == ("soft", "hard", "baseline")
    assert rows["soft"].seed_low == pytest.approx(0.88 - 4.303 * 0.02 / math.sqrt(3))
    # the majority class: a tie on the balanced split goes to the first label; half of the test examples are it
    assert rows[MAJORITY].mean == 0.5 and rows[MAJORITY].runs == 3 and rows[MAJORITY].seed_low == 0.5
    assert rows[ZERO_SHOT].mean == 0.60 and rows[ZERO_SHOT].runs == 1  # the first template, never the best on test
    assert rows["soft"].best and rows["manual"].mark == "▼" and rows[MAJORITY].mark == "▼"
    text = render_markdown(board)
    assert "| sst2 | soft | soft | accuracy | **88.0 [83.0, 93.0]** ★ |" in text
    assert "| sst2 | majority | baseline |" in text and "▼ below the top" in text


def test_rows_not_significantly_apart_are_marked_as_ties(tmp_path):
    root = tmp_path / "board"
    kshot_runs(root, {"manual": [0.80, 0.81, 0.82], "soft": [0.81, 0.82, 0.83]}, {"manual": "hard", "soft": "soft"})
    rows = {r.method: r for r in build_leaderboard(collect_runs([root])).rows}
    assert rows["soft"].tied and rows["manual"].tied_with == ["soft"] and not rows["soft"].best
    assert not rows["manual"].mark


def test_a_baseline_above_every_method_is_marked_but_never_the_top(tmp_path):
    root = tmp_path / "board"
    kshot_runs(root, {"manual": [0.30, 0.31, 0.32]}, {"manual": "hard"})
    board = build_leaderboard(collect_runs([root]), baselines=True)
    rows = {r.method: r for r in board.rows}
    assert rows[MAJORITY].mark == "▲" and not rows["manual"].best and not rows[MAJORITY].best


# -- findings ---------------------------------------------------------------------------------------------------


def test_findings_are_computed_from_the_rows_and_say_where_soft_prompts_do_not_win(tmp_path):
    root = tmp_path / "board"
    kinds = {"manual": "hard", "soft": "soft", "lora": "adapter"}
    kshot_runs(root, {"manual": [0.70, 0.72, 0.74], "soft": [0.86, 0.88, 0.90], "lora": [0.9, 0.9, 0.9]}, kinds)
    kshot_runs(root, {"manual": [0.60, 0.61, 0.62], "soft": [0.60, 0.62, 0.64]}, kinds, task="rte")
    board = build_leaderboard(collect_runs([root]), title="LM-BFF", baselines=True)
    text = render_findings(board)
    rows = {(r.task, r.method): r for r in board.rows}
    assert text.startswith("# Findings: LM-BFF")
    assert "soft prompts win significantly on 1 (sst2), hard prompts win on 0, and the two tie on 1 (rte)" in text
    soft = rows["sst2", "soft"]
    assert f"scores {100 * soft.mean:.1f}% [{100 * soft.seed_low:.1f}, {100 * soft.seed_high:.1f}]" in text
    assert "a tie" in text.split("**rte**")[1] and "lora, scores 90.0%" in text
    assert "not significantly above the majority baseline" in text.split("**rte**")[1]
    assert render(board, "findings") == text
    assert "Seeds disagree" not in text


def test_findings_name_the_rows_whose_seeds_disagree(tmp_path):
    root = tmp_path / "board"
    kinds = {"manual": "hard", "soft": "soft"}
    kshot_runs(root, {"manual": [0.70, 0.72, 0.74], "soft": [0.50, 0.83, 0.80]}, kinds)  # one collapsed seed
    text = render_findings(build_leaderboard(collect_runs([root]), baselines=True))
    assert "Seeds disagree: 1 row have" not in text
    assert "Seeds disagree: 1 row has" in text and "sst2 soft 18.2 points (50.0, 83.0, 80.0)" in text
    assert "manual" not in text.split("Seeds disagree")[1].splitlines()[0]


# -- suites and the command -------------------------------------------------------------------------------------


@pytest.fixture
def causal(tiny_lms):
    return lambda name: tiny_lms["causal"]


def test_a_kshot_suite_runs_each_seed_on_its_split_and_adds_the_baselines(tmp_path, causal):
    spec = write_kshot_task(tmp_path)
    config = SuiteConfig(methods=["manual"], tasks=[str(spec)], seeds=[0, 1], models=["tiny"],
                         output=str(tmp_path / "board"), run=RunOptions(max_eval=8, device="cpu", progress=False),
                         kshot=2, baselines=True, inspect=False)  # fmt: skip
    result = run_suite(config, load=causal)
    root = tmp_path / "board" / "tiny" / "reviews-kshot"
    assert [(e.method, e.seed) for e in result.entries] == [("manual", 0), ("manual", 1), (ZERO_SHOT, 0)]
    for seed in (0, 1):
        data = read_json(root / "manual" / f"seed{seed}" / "config.json")["data"]
        assert data["kshot"] == f"2-{seed}" and data["select"] == 4 and data["train_labels"] == {"negative": 2, "positive": 2}
    zero_shot = read_json(root / ZERO_SHOT / "template0" / "seed0" / "config.json")["templates"]  # the first, alone
    assert zero_shot == [read_json(root / "manual" / "seed0" / "config.json")["templates"][0]]
    assert not (root / ZERO_SHOT / "template1").exists()
    methods = [r.method for r in result.board.rows]
    assert sorted(methods) == sorted(["manual", ZERO_SHOT, MAJORITY])
    assert {r.method: r.kind for r in result.board.rows}["manual"] == "hard"
    assert [r.method for r in load_board([tmp_path / "board"]).rows] == methods  # suite.json keeps --baselines
    # the report's own majority rows are not counted as runs
    assert "from the leaderboard's 3 finished runs" in render_findings(result.board)
    assert "summed over 3 finished runs" in render_markdown(result.board)
    with pytest.raises(ConfigError, match="kshot"):
        SuiteConfig(kshot=16, shots=[4, 16])
    # a suite read before every planned run has finished says so, in every format
    assert suite_progress([tmp_path / "board"]) == (3, 3) and "progress" not in load_board([tmp_path / "board"]).meta
    (root / "manual" / "seed1" / "result.json").unlink()
    partial = load_board([tmp_path / "board"])
    assert suite_progress([tmp_path / "board"]) == (2, 3) and "2 of the 3 planned runs" in partial.meta["progress"]
    assert "Progress: incomplete: 2 of the 3" in render_markdown(partial)
    assert "2 of the 3 planned runs" in render_findings(partial) and "2 of the 3 planned" in render_html(partial)


def test_a_planned_suite_records_its_runs_and_runs_nothing(tmp_path, causal):
    config = SuiteConfig(methods=["manual"], tasks=[str(write_kshot_task(tmp_path))], seeds=[0, 1], models=["tiny"],
                         output=str(tmp_path / "board"), run=RunOptions(max_eval=8, device="cpu", progress=False),
                         kshot=2, baselines=True, plan_only=True)  # fmt: skip
    assert run_suite(config, load=lambda name: pytest.fail("a plan loads no model")).entries == []
    assert suite_progress([tmp_path / "board"]) == (0, 3) and not list((tmp_path / "board").rglob("config.json"))


def test_a_suite_built_a_task_at_a_time_plans_and_reports_every_task(tmp_path, causal):
    specs = [write_kshot_task(tmp_path / name) for name in ("a", "b")]
    specs[1].write_text(specs[1].read_text().replace('name = "reviews-kshot"', 'name = "reviews-b"'))
    for spec in specs:  # as scripts/leaderboard_lmbff.sh does: one command per task, into the same suite
        config = SuiteConfig(methods=["manual"], tasks=[str(spec)], seeds=[0], models=["tiny"],
                             output=str(tmp_path / "board"), run=RunOptions(max_eval=8, device="cpu", progress=False),
                             kshot=2, baselines=True, inspect=False)  # fmt: skip
        run_suite(config, load=causal)
    assert read_json(tmp_path / "board" / "suite.json")["config"]["tasks"] == ["reviews-kshot", "reviews-b"]
    assert suite_progress([tmp_path / "board"]) == (4, 4)
    assert {r.task for r in load_board([tmp_path / "board"]).rows} == {"reviews-kshot", "reviews-b"}


def test_leaderboard_command_takes_kshot_and_baselines_and_report_writes_findings(tmp_path, tiny_model_dirs):
    spec = write_kshot_task(tmp_path)
    out = tmp_path / "board"
    args = ["leaderboard", "--methods", "manual", "--tasks", str(spec), "--models", str(tiny_model_dirs["causal"]),
            "--output", str(out), "--max-eval", "8", "--device", "cpu", "--kshot", "2", "--seeds", "0,1", "--baselines",
            "--no-inspect"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "3 ok, 0 failed" in result.output and "--kshot 2" in (out / "report.md").read_text()
    assert "| majority | baseline |" in (out / "report.md").read_text()
    findings = CliRunner().invoke(cli, ["report", str(out), "--format", "findings"])
    assert findings.exit_code == 0 and findings.output.startswith("# Findings")


def test_data_efficiency_is_read_per_class_when_every_point_has_one(tmp_path):
    root = tmp_path / "board"
    kshot_runs(root, {"soft": [0.70, 0.72, 0.74]}, {"soft": "soft"})  # the k-shot runs: 16 per class
    for shots, score in ((4, 0.6), (64, 0.9)):
        for seed in (13, 21, 42):
            write_run(root, "sst2", "soft", seed, score, n_train=2 * shots, variant=f"shots{shots}")
    board = build_leaderboard(collect_runs([root]))
    # the interval over seeds where the seeds differ (the 4 and 64 points score alike on every seed)
    assert "soft 60.0% at 4, 72.0% [67.0, 77.0] at 16, 90.0% at 64" in render_findings(board)
    assert "| soft | 60.0 [60.0, 60.0] | 72.0 [67.0, 77.0] | 90.0 [90.0, 90.0] |" in render_markdown(board)
    assert "training examples per class" in render_findings(board)
    assert "| Method | 4 per class | 16 per class | 64 per class |" in render_markdown(board)
    assert "training examples per class (log scale)" in render(board, "html")


def test_every_registered_method_declares_its_kind():
    from promptopt.plugins import optimizers
    from promptopt.sdk import MethodKind

    assert {name: isinstance(cls.kind, MethodKind) for name, (cls, _) in optimizers().items()} == {
        name: True for name in optimizers()}
