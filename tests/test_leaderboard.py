"""Leaderboard suites on the tiny model: layout, resume, failures, method discovery, collection, the command."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from promptopt import hookimpl
from promptopt.pipeline.runner import RunOptions
from promptopt.pipeline.runner import run as api_run
from promptopt.errors import ConfigError
from promptopt.data.files import read_json
from promptopt.suite.leaderboard import (SuiteConfig, parse_seeds, read_curves, resolve_methods, run_suite,
                                   split_method_options)  # fmt: skip
from promptopt.pipeline.methods import OptimizeResult, PromptOptimizer
from promptopt.plugins import make_plugin_manager, optimizers
from promptopt.data.prompt import Prompt


class BoomOptimizer(PromptOptimizer):
    name = "boom"
    description = "fixture: always fails"

    def optimize(self, run):
        raise RuntimeError("the fixture method always fails")


@dataclass
class FixedSoftConfig:
    scale: float = field(default=1.0, metadata={"help": "multiplies the vectors"})


class FixedSoftOptimizer(PromptOptimizer):
    """Fixture: 'trains' two soft vectors (a token's embedding, scaled) and logs a three-step history."""

    name = "fixed-soft"
    description = "fixture: soft vectors copied from token embeddings"
    config_class = FixedSoftConfig
    needs_training_data = True

    def optimize(self, run):
        weight = run.lm.embeddings.weight.detach()
        prompt = Prompt.from_template("[P*2] {text} It was{answer}").with_vectors({"p0": weight[[5, 6]] * self.config.scale})
        for step in (1, 2, 3):
            run.log({"step": step, "loss": 1.0 / step})
        run.log({"step": 3, "select": run.evaluate(prompt, step=3).metrics})
        return OptimizeResult(prompt=prompt, trainable_parameters=2 * weight.shape[1])


class FixturePlugin:
    def __init__(self):
        self.started: list[tuple[str, int]] = []

    @hookimpl
    def register_optimizers(self, register):
        register(BoomOptimizer)
        register(FixedSoftOptimizer)

    @hookimpl
    def run_start(self, run):
        self.started.append((run.method, run.seed))


@pytest.fixture
def fixture_pm():
    plugin = FixturePlugin()
    pm = make_plugin_manager(extra_plugins=[plugin])
    try:
        yield pm, plugin
    finally:
        pm.unregister(plugin)


@pytest.fixture
def loader(tiny_lms):
    calls = []

    def load(name):
        calls.append(name)
        return tiny_lms["causal"]

    load.calls = calls
    return load


def suite(tmp_path, methods, seeds=(0,), **kwargs) -> SuiteConfig:
    return SuiteConfig(methods=list(methods), tasks=["tiny-reviews"], seeds=list(seeds), models=["tiny"],
                       output=str(tmp_path / "board"), run=RunOptions(max_eval=8, device="cpu", progress=False),
                       **kwargs)  # fmt: skip


def test_suite_runs_each_combination_into_its_own_run_directory_and_loads_the_model_once(tmp_path, fixture_pm, loader):
    pm, plugin = fixture_pm
    result = run_suite(suite(tmp_path, ["manual", "fixed-soft"], seeds=[0, 1]), pm=pm, load=loader)
    assert loader.calls == ["tiny"]
    assert sorted(plugin.started) == [("fixed-soft", 0), ("fixed-soft", 1), ("manual", 0), ("manual", 1)]
    root = tmp_path / "board"
    for method in ("manual", "fixed-soft"):
        for seed in (0, 1):
            assert (root / "tiny" / "tiny-reviews" / method / f"seed{seed}" / "result.json").exists()
    assert all(e.status == "ok" and not e.skipped for e in result.entries)
    assert set(result.reports) == {"md", "html", "json", "csv"} and all(p.exists() for p in result.reports.values())
    assert [e["method"] for e in read_json(root / "suite.json")["entries"]] == ["manual", "manual", "fixed-soft",
                                                                               "fixed-soft"]  # fmt: skip


def test_trained_prompts_are_inspected_and_their_curves_reach_the_report(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    result = run_suite(suite(tmp_path, ["manual", "fixed-soft"]), pm=pm, load=loader)
    runs = {r.method: r for r in result.board.runs}
    assert runs["manual"].inspection is None  # a hand-written template has nothing to project
    inspection = runs["fixed-soft"].inspection
    assert inspection["split"] == "dev" and inspection["n"] == 8
    assert [n["id"] for n in (v["nearest"][0] for v in inspection["segments"][0]["vectors"])] == [5, 6]
    assert inspection["soft_score"] == inspection["projected_score"]  # the vectors are exactly those embeddings
    assert runs["fixed-soft"].curves["loss"] == [[1, 1.0], [2, 0.5], [3, pytest.approx(1 / 3)]]
    assert "select" in runs["fixed-soft"].curves
    assert "nearest tokens per vector" in result.reports["md"].read_text()


def test_a_quick_inspection_keeps_nearest_tokens_and_the_projection_only(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    full = run_suite(suite(tmp_path / "full", ["fixed-soft"]), pm=pm, load=loader).board.runs[0].inspection
    quick = run_suite(suite(tmp_path / "quick", ["fixed-soft"], quick_inspect=True), pm=pm, load=loader).board.runs[0].inspection
    assert quick["segments"] == full["segments"] and quick["projected_score"] == full["projected_score"]
    assert full["ablations"] and full["lens"] and not quick["ablations"] and not quick["lens"]


def test_rerunning_a_suite_skips_finished_runs(tmp_path, fixture_pm, loader):
    pm, plugin = fixture_pm
    config = suite(tmp_path, ["manual", "fixed-soft"], seeds=[0, 1])
    run_suite(config, pm=pm, load=loader)
    assert len(plugin.started) == 4
    again = run_suite(config, pm=pm, load=loader)
    assert len(plugin.started) == 4, "a finished run was run again"
    # a finished run is reused only if its fingerprint (model weights included) matches: the model is loaded once
    # per suite to check, and nothing runs
    assert loader.calls == ["tiny", "tiny"]
    assert all(e.skipped and e.status == "ok" for e in again.entries)
    assert len(again.board.runs) == 4


def test_a_suite_directory_refuses_runs_with_other_settings(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    run_suite(suite(tmp_path, ["manual"]), pm=pm, load=loader)
    bigger = suite(tmp_path, ["manual"], seeds=[0, 1])
    bigger.run.max_eval = 16
    with pytest.raises(ConfigError, match="max_eval: 8 -> 16"):
        run_suite(bigger, pm=pm, load=loader)
    bigger.run.max_eval = 8  # same settings: adding a seed is fine, the finished one is reused
    assert [e.skipped for e in run_suite(bigger, pm=pm, load=loader).entries] == [True, False]


def test_an_interrupted_suite_has_already_recorded_its_settings(tmp_path, fixture_pm):
    pm, _ = fixture_pm

    def interrupted(name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite(tmp_path, ["manual"]), pm=pm, load=interrupted)
    other = suite(tmp_path, ["manual"])
    other.run.max_train = 4
    with pytest.raises(ConfigError, match="max_train: None -> 4"):
        run_suite(other, pm=pm, load=interrupted)


def test_a_failing_run_is_recorded_and_the_suite_goes_on(tmp_path, fixture_pm, loader):
    pm, plugin = fixture_pm
    result = run_suite(suite(tmp_path, ["boom", "manual"], seeds=[0, 1]), pm=pm, load=loader)
    status = {(e.method, e.seed): (e.status, e.error) for e in result.entries}
    assert status["boom", 0] == ("failed", "RuntimeError: the fixture method always fails")
    assert status["manual", 0][0] == status["manual", 1][0] == "ok"
    error = read_json(tmp_path / "board" / "tiny" / "tiny-reviews" / "boom" / "seed1" / "error.json")
    assert (error["method"], error["seed"], error["model"]) == ("boom", 1, "tiny") and "Traceback" in error["traceback"]
    assert [(f.method, f.seed) for f in result.board.failures] == [("boom", 0), ("boom", 1)]
    markdown = result.reports["md"].read_text()
    assert "## Failed runs" in markdown and "the fixture method always fails" in markdown
    run_suite(suite(tmp_path, ["boom", "manual"], seeds=[0, 1]), pm=pm, load=loader)
    assert plugin.started.count(("boom", 0)) == 2 and plugin.started.count(("manual", 0)) == 1  # failures are retried


def test_a_model_that_fails_to_load_fails_its_runs_and_the_other_models_go_on(tmp_path, fixture_pm, tiny_lms):
    pm, _ = fixture_pm

    def load(name):
        if name == "broken":
            raise OSError("no such model")
        return tiny_lms["causal"]

    config = suite(tmp_path, ["manual"], seeds=[0, 1])
    config.models = ["broken", "tiny"]
    result = run_suite(config, pm=pm, load=load)
    assert [(e.model, e.status) for e in result.entries] == [("broken", "failed")] * 2 + [("tiny", "ok")] * 2
    assert result.entries[0].error == "model 'broken' failed to load: OSError: no such model"
    assert {(f.model, f.seed) for f in result.board.failures} == {("broken", 0), ("broken", 1)}


def test_all_methods_means_every_method_the_plugin_manager_registers(fixture_pm):
    pm, _ = fixture_pm
    expected = sorted(optimizers(pm))
    assert {"boom", "fixed-soft", "manual"} <= set(expected)
    assert resolve_methods(["all"], pm) == resolve_methods([], pm) == expected


def test_an_unknown_method_is_refused_before_anything_runs(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    with pytest.raises(ConfigError, match="no method \\['nope'\\]"):
        run_suite(suite(tmp_path, ["manual", "nope"]), pm=pm, load=loader)
    assert not (tmp_path / "board").exists() and loader.calls == []


def test_method_options_go_to_the_methods_that_have_them(fixture_pm):
    pm, _ = fixture_pm
    methods = ["manual", "fixed-soft"]
    assert split_method_options({"scale": "2"}, methods, pm) == {"manual": {}, "fixed-soft": {"scale": "2"}}
    assert split_method_options({"fixed-soft.scale": "3"}, methods, pm)["fixed-soft"] == {"scale": "3"}
    with pytest.raises(ConfigError, match="none of the methods"):
        split_method_options({"nonsense": "1"}, methods, pm)
    with pytest.raises(ConfigError, match="scale"):
        split_method_options({"scale": "big"}, methods, pm)


def test_runs_made_by_promptopt_run_can_be_collected_into_the_report(tmp_path, fixture_pm, loader, tiny_lms):
    pm, _ = fixture_pm
    single = tmp_path / "single"
    api_run(RunOptions(method="manual", task="tiny-reviews", seed=7, output=str(single), max_eval=8, progress=False),
            lm=tiny_lms["causal"], pm=pm)  # fmt: skip
    result = run_suite(suite(tmp_path, ["manual"], collect=[str(single)]), pm=pm, load=loader)
    assert sorted(r.seed for r in result.board.runs) == [0, 7]
    assert result.board.rows[0].runs == 2


def test_parse_seeds_takes_a_count_or_a_list():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,5,7") == [0, 5, 7]
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("three")
    with pytest.raises(ConfigError, match="at least 1"):
        parse_seeds("0")


def test_read_curves_keeps_numeric_steps_and_skips_what_it_cannot_read(tmp_path):
    path = tmp_path / "history.jsonl"
    lines = [{"step": 1, "loss": 0.9}, {"step": 2, "loss": float("nan")}, {"step": 2, "train_loss": 0.8},
             {"template": "t", "select": {"score": 0.5}}, {"step": 4, "select_score": 0.75},
             {"step": 5, "split": "select", "metrics": {"accuracy": 0.8}}]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n{not json\n")
    assert read_curves(path) == {"loss": [[1, 0.9], [2, 0.8]], "select": [[4, 0.75], [5, 0.8]]}
    search = [{"iteration": 1, "current_loss": 0.7, "gradient_loss": 0.9}, {"select_step": 1, "select": {"score": 0.6}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in search))
    assert read_curves(path) == {"loss": [[1, 0.7]], "select": [[1, 0.6]]}
    two = [{"template": "a", "step": 1, "loss": 5.0}, {"template": "b", "step": 1, "loss": 2.0},
           {"template": "b", "step": 2, "loss": 1.0}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in two))
    assert read_curves(path) == {"loss": [[1, 2.0], [2, 1.0]]}
    path.write_text("".join(json.dumps({"step": s, "loss": float(s)}) + "\n" for s in range(1000)))
    thinned = read_curves(path, max_points=50)["loss"]
    assert len(thinned) == 50 and thinned[0] == [0, 0.0] and thinned[-1] == [999, 999.0]


def leaderboard_command(out, model_dir, *extra: str):
    """``promptopt leaderboard`` of the manual method on the tiny task and model, with ``extra`` options."""
    from click.testing import CliRunner

    from promptopt.cli import cli

    args = ["leaderboard", "--methods", "manual", "--tasks", "tiny-reviews", "--models", str(model_dir), "--output",
            str(out), "--max-eval", "8", "--device", "cpu", *extra]  # fmt: skip
    return CliRunner().invoke(cli, args)


def test_leaderboard_command_runs_the_suite_then_resumes(tmp_path, tiny_model_dirs):
    out = tmp_path / "board"
    args = (out, tiny_model_dirs["causal"], "--seeds", "2", "--steps", "5", "--title", "Tiny board")
    first = leaderboard_command(*args)
    assert first.exit_code == 0, first.output
    assert "2 ok, 0 failed" in first.output and "report (html)" in first.output
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Tiny board") and "train.steps=5" in markdown and "--seeds 2" in markdown
    second = leaderboard_command(*args)
    assert second.exit_code == 0 and second.output.count("finished before, skipped") == 2


def test_suite_config_rejects_empty_tasks_and_duplicate_seeds():
    with pytest.raises(ConfigError, match="tasks"):
        SuiteConfig(tasks=[])
    with pytest.raises(ConfigError, match="duplicates"):
        SuiteConfig(seeds=[1, 1])



def test_a_suite_over_training_sizes_runs_each_size_and_plots_data_efficiency(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    config = suite(tmp_path, ["manual", "fixed-soft"], shots=[2, 4])
    result = run_suite(config, pm=pm, load=loader)
    root = tmp_path / "board" / "tiny" / "tiny-reviews"
    for method in ("manual", "fixed-soft"):
        for shots, n_train in ((2, 4), (4, 8)):  # two labels: shots per class x 2; manual needs no training data
            conf = read_json(root / method / f"shots{shots}" / "seed0" / "config.json")
            assert conf["data"]["train"] == (n_train if method == "fixed-soft" else 0)
    assert [(e.method, e.variant) for e in result.entries] == [("manual", "shots2"), ("fixed-soft", "shots2"),
                                                               ("manual", "shots4"), ("fixed-soft", "shots4")]  # fmt: skip
    rows = {(r.method, r.variant): r for r in result.board.rows}
    assert rows["fixed-soft", "shots 4"].n_train == 8 and rows["manual", "shots 2"].ci_n == 8
    assert sorted((c.variant, c.n) for c in result.board.comparisons) == [("shots 2", 8), ("shots 4", 8)]
    page = result.reports["html"].read_text()
    assert 'aria-label="Data efficiency: tiny-reviews"' in page
    assert read_json(tmp_path / "board" / "suite.json")["config"]["shots"] == [2, 4]
    markdown = result.reports["md"].read_text()
    assert "shots=2,4" in markdown and "### Data efficiency: tiny-reviews" in markdown
    again = run_suite(suite(tmp_path, ["manual", "fixed-soft"], shots=[2, 4]), pm=pm, load=loader)
    assert all(e.skipped for e in again.entries)
    more = run_suite(suite(tmp_path, ["fixed-soft"], shots=[2, 4, 6]), pm=pm, load=loader)  # a size added
    assert [(e.variant, e.skipped) for e in more.entries] == [("shots2", True), ("shots4", True), ("shots6", False)]
    with pytest.raises(ConfigError, match="shots: '2,4,6' -> 2"):
        run_suite(suite(tmp_path, ["fixed-soft"], shots=[2]), pm=pm, load=loader)


def test_one_training_size_keeps_the_plain_layout(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    config = suite(tmp_path, ["manual"], shots=[2])
    assert config.shots == [] and config.run.shots == 2
    run_suite(config, pm=pm, load=loader)
    assert (tmp_path / "board" / "tiny" / "tiny-reviews" / "manual" / "seed0" / "result.json").exists()


def test_same_template_first_gives_every_method_the_first_template(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    result = run_suite(suite(tmp_path, ["manual", "fixed-soft"], same_template="first"), pm=pm, load=loader)
    first = "Review: {text}\nSentiment:{answer}"
    for method in ("manual", "fixed-soft"):
        conf = read_json(tmp_path / "board" / "tiny" / "tiny-reviews" / method / "seed0" / "config.json")
        assert conf["templates"] == [first]
    assert {r.method: r.templates for r in result.board.rows} == {"manual": [first], "fixed-soft": [first]}
    assert all(r.variant == "" for r in result.board.rows)
    assert read_json(tmp_path / "board" / "suite.json")["meta"]["settings"]["same_template"] == "first"


def test_same_template_each_makes_one_combination_per_template(tmp_path, fixture_pm, loader):
    pm, _ = fixture_pm
    result = run_suite(suite(tmp_path, ["manual"], same_template="each"), pm=pm, load=loader)
    assert [e.variant for e in result.entries] == ["template0", "template1", "template2"]
    assert [r.variant for r in sorted(result.board.rows, key=lambda r: r.variant)] == ["template 0", "template 1",
                                                                                       "template 2"]  # fmt: skip
    markdown = result.reports["md"].read_text()
    assert "| Variant |" in markdown and "template 2" in markdown


def test_sizes_and_template_settings_are_checked():
    from promptopt.suite.leaderboard import parse_sizes

    assert parse_sizes("4,16,64") == [4, 16, 64] and parse_sizes("16") == [16] and parse_sizes(None) == []
    with pytest.raises(ConfigError, match="--shots"):
        parse_sizes("4,x")
    with pytest.raises(ConfigError, match="--max-train"):
        parse_sizes("4,4", "--max-train")
    with pytest.raises(ConfigError, match="same_template"):
        SuiteConfig(same_template="all")


def test_leaderboard_command_takes_a_list_of_shots(tmp_path, tiny_model_dirs):
    result = leaderboard_command(tmp_path / "board", tiny_model_dirs["causal"], "--seeds", "1", "--shots", "2,4",
                                 "--same-template", "first")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "manual / shots2 / seed 0: ok" in result.output and "manual / shots4 / seed 0: ok" in result.output
    bad = leaderboard_command(tmp_path / "other", tiny_model_dirs["causal"], "--shots", "2,two")
    assert bad.exit_code == 2 and "--shots '2,two'" in bad.output
