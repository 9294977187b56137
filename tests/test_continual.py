"""Continual prompt learning: the metrics, frozen progressive segments, the sequential baseline, artifacts, report."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from promptopt.errors import ConfigError
from promptopt.data.prompt import Prompt
from promptopt.report.continual import render_continual
from promptopt_plugins.continual import ContinualConfig, continual_metrics, run_continual
from promptopt.sdk import TaskSetOptions, load_taskset

from tiny_tasks import write_tiny_tasks

TRAIN = {"steps": 4, "batch_size": 4, "lr": 0.1, "eval_every": 2, "checkpoint_every": 0}


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    return write_tiny_tasks(tmp_path_factory.mktemp("tasks"))


def learn(specs, lm, out, strategy, **method):
    return run_continual(TaskSetOptions(tasks=list(specs.values()), output=str(out), max_eval=6, progress=False,
                                        train=TRAIN, method_options={"strategy": strategy, "n_tokens": 3, **method}),
                         lm=lm)  # fmt: skip


def test_metrics_match_a_hand_computed_matrix():
    matrix = [[0.80, 0.55, None],
              [0.70, 0.90, 0.60],
              [0.60, 0.85, 0.75]]  # fmt: skip
    m = continual_metrics(matrix, initial=[0.5, 0.5, 0.5])
    assert m["average_accuracy"] == pytest.approx((0.60 + 0.85 + 0.75) / 3)
    assert m["bwt"] == pytest.approx(((0.60 - 0.80) + (0.85 - 0.90)) / 2)  # -0.125
    assert m["fwt"] == pytest.approx(((0.55 - 0.5) + (0.60 - 0.5)) / 2)  # 0.075
    assert m["forgetting"] == pytest.approx([0.80 - 0.60, 0.90 - 0.85])
    one = continual_metrics([[0.7]], [0.5])
    assert one["average_accuracy"] == 0.7 and one["bwt"] is None and one["fwt"] is None and one["forgetting"] == []


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match="ContinualConfig.strategy is 'replay'"):
        ContinualConfig(strategy="replay")
    with pytest.raises(ConfigError, match="ContinualConfig.init cannot be 'prompt'"):
        ContinualConfig(init="prompt")


@pytest.fixture(scope="module")
def progressive(specs, tiny_lms, tmp_path_factory):
    out = tmp_path_factory.mktemp("progressive")
    return learn(specs, tiny_lms["causal"], out, "progressive"), out


def test_progressive_training_leaves_earlier_segments_bit_identical(progressive):
    result, out = progressive
    stages = [Prompt.load(out / s["prompt"]) for s in result.summary["stages"]]
    assert [sorted(p.vectors) for p in stages] == [["s0"], ["s0", "s1"], ["s0", "s1", "s2"]]
    assert stages[2].text().startswith("[P*3:s2][P*3:s1][P*3:s0]{premise}")  # newest first, then the older ones
    assert torch.equal(stages[0].vectors["s0"], stages[1].vectors["s0"])
    assert torch.equal(stages[0].vectors["s0"], stages[2].vectors["s0"])
    assert torch.equal(stages[1].vectors["s1"], stages[2].vectors["s1"])
    assert not torch.equal(stages[1].vectors["s1"], stages[2].vectors["s2"])


def test_progressive_with_own_segments_forgets_nothing(progressive):
    summary = progressive[0].summary
    a = summary["matrix"]
    assert a[1][0] == a[0][0] and a[2][0] == a[0][0] and a[2][1] == a[1][1]
    assert summary["metrics"]["bwt"] == 0.0 and summary["complete"]


def test_matrix_covers_seen_and_next_tasks_and_its_metrics_follow_from_it(progressive):
    summary = progressive[0].summary
    evaluated = [[v is not None for v in row] for row in summary["matrix"]]
    assert evaluated == [[True, True, False], [True, True, True], [True, True, True]]
    assert len(summary["initial"]) == 3 and all(v is not None for v in summary["initial"])
    assert summary["metrics"] == continual_metrics(summary["matrix"], summary["initial"])


def test_final_prompts_rescore_to_the_last_row(progressive, specs, tiny_lms):
    summary, out = progressive[0].summary, progressive[1]
    tasks = load_taskset(TaskSetOptions(tasks=list(specs.values()), max_eval=6), tiny_lms["causal"])
    for j, task in enumerate(tasks):
        prompt = Prompt.load(out / summary["final_prompts"][task.name])
        assert task.evaluate(prompt).score == summary["matrix"][-1][j]
        assert json.loads((out / "final" / task.name / "metrics.json").read_text())["eval"]["score"] == summary["matrix"][-1][j]  # fmt: skip


def test_sequential_trains_one_prompt_on_every_task_in_turn(specs, tiny_lms, tmp_path):
    summary = learn(specs, tiny_lms["causal"], tmp_path / "seq", "sequential").summary
    stages = [Prompt.load(tmp_path / "seq" / s["prompt"]) for s in summary["stages"]]
    assert all(sorted(p.vectors) == ["p0"] for p in stages)
    assert not torch.equal(stages[0].vectors["p0"], stages[1].vectors["p0"])
    assert not torch.equal(stages[1].vectors["p0"], stages[2].vectors["p0"])
    progressive = json.loads((tmp_path / "seq" / "continual.json").read_text())
    assert progressive["strategy"] == "sequential"


def test_progressive_all_reads_earlier_tasks_with_every_segment(specs, tiny_lms, tmp_path):
    result = learn(specs, tiny_lms["causal"], tmp_path / "all", "progressive", progressive_eval="all")
    first = result.prompts["alpha"]
    assert first.text().startswith("[P*3:s2][P*3:s1][P*3:s0]Review: {text}")
    assert first.meta["segments"] == {"s2": "gamma", "s1": "beta", "s0": "alpha"}


def test_report_command_renders_the_matrix_of_continual_runs(progressive):
    from promptopt.cli import cli

    out = progressive[1]
    md = CliRunner().invoke(cli, ["report", str(out.parent)])
    assert md.exit_code == 0, md.output
    assert "after beta" in md.output and "backward transfer (BWT): +0.0" in md.output
    data = json.loads(CliRunner().invoke(cli, ["report", str(out), "--format", "json"]).output)
    assert data["runs"][0]["matrix"] == progressive[0].summary["matrix"]
    csv_text = CliRunner().invoke(cli, ["report", str(out), "--format", "csv"]).output
    lines = csv_text.splitlines()
    assert lines[0] == "run_dir,strategy,seed,after,task,score" and len(lines) == 1 + 3 + 8  # header, b, evaluated A
    assert "<table>" in render_continual([progressive[0].summary], "html")


def test_continual_command_runs_and_prints_the_matrix(specs, tiny_model_dirs, tmp_path):
    from promptopt.cli import cli

    args = ["continual", "--strategy", "sequential", "--tasks", ",".join(list(specs.values())[:2]), "--model",
            str(tiny_model_dirs["masked"]), "--output", str(tmp_path / "cl"), "--max-eval", "4", "--steps", "2",
            "--batch-size", "2", "--no-select", "--no-progress", "-o", "n_tokens=2"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "after alpha" in result.output and (tmp_path / "cl" / "continual.json").exists()
