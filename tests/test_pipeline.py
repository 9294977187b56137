"""One run pipeline for every kind of run: single-task, multi-task and continual runs call the same hooks, write
``config.json`` with a fingerprint, refuse a resume with other settings naming the field, and leave ``error.json``
(no ``result.json``) when they fail."""

from __future__ import annotations

import json

import pytest

import promptopt
from promptopt.data.files import read_json
from promptopt.errors import ConfigError, PromptoptError
from promptopt.plugins import make_plugin_manager
from promptopt.sdk import RunResult, RunSession, TaskSetOptions
from promptopt_plugins.continual import run_continual
from promptopt_plugins.multitask import run_multitask

from conftest import REPO
from tiny_tasks import write_tiny_tasks

TRAIN = {"steps": 4, "batch_size": 4, "eval_every": 2, "checkpoint_every": 2}


@pytest.fixture()
def specs(tmp_path):
    return write_tiny_tasks(tmp_path / "tasks")


class Recorder:
    """Records every logging hook call: (hook, split or None), and what the context and the result held."""

    def __init__(self, fail_at_step: int | None = None):
        self.events: list[tuple[str, str | None]] = []
        self.tasks: list[list[str]] = []
        self.saw_eval: list[bool] = []
        self.results: list[RunResult] = []
        self.fail_at_step = fail_at_step
        self.promptopt_strict_hooks = True  # a failed check in a hook fails the test

    @promptopt.hookimpl
    def run_start(self, run):
        self.events.append(("run_start", None))
        self.tasks.append([t.name for t in run.tasks])
        # what the training code gets holds no evaluation examples, and its specs refuse to load that split
        self.saw_eval.append(any("eval" in t.data for t in run.tasks) or "eval" in run.data)
        for t in run.tasks:
            with pytest.raises(PromptoptError, match="reported split"):
                t.spec.load_split("test")

    @promptopt.hookimpl
    def training_step(self, run, step, loss, lr):
        self.events.append(("training_step", None))
        if step == self.fail_at_step:
            raise RuntimeError("stopped by the test")

    @promptopt.hookimpl
    def evaluation(self, run, step, split, metrics):
        self.events.append(("evaluation", split))

    @promptopt.hookimpl
    def run_end(self, run, result):
        self.events.append(("run_end", None))
        self.results.append(result)


def options(specs, out, **kwargs):
    return TaskSetOptions(tasks=list(specs.values()), output=str(out), max_eval=4, progress=False,
                          **{"train": TRAIN, "method_options": {"n_tokens": 2}, **kwargs})  # fmt: skip


def check_order(events, names):
    kinds = [e for e, _ in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert kinds.count("run_start") == 1 and kinds.count("run_end") == 1
    steps = [i for i, e in enumerate(kinds) if e == "training_step"]
    selects = [i for i, (e, s) in enumerate(events) if e == "evaluation" and s == "select"]
    finals = [i for i, (e, s) in enumerate(events) if e == "evaluation" and s.startswith("eval/")]
    assert steps and selects and steps[0] < selects[0]
    assert [events[i][1] for i in finals] == [f"eval/{n}" for n in names]
    assert steps[-1] < finals[0] and finals[-1] < len(events) - 1


@pytest.mark.parametrize("kind", ["multitask", "continual"])
def test_runs_over_several_tasks_call_the_run_hooks_in_order(kind, specs, tiny_lms, tmp_path):
    recorder = Recorder()
    pm = make_plugin_manager(extra_plugins=[recorder])
    out = tmp_path / kind
    opts = options(specs, out, method_options={"n_tokens": 2})
    run_multitask(opts, lm=tiny_lms["causal"], pm=pm) if kind == "multitask" else run_continual(
        opts, lm=tiny_lms["causal"], pm=pm)  # fmt: skip
    names = ["alpha", "beta", "gamma"]
    check_order(recorder.events, names)
    assert recorder.tasks == [names] and recorder.saw_eval == [False]
    result = recorder.results[0]
    assert result.status == "ok" and result.method == kind and result.task == "alpha+beta+gamma"
    assert RunResult.load(out).to_json() == result.to_json() and not (out / "error.json").exists()
    assert set(result.metrics["tasks"]) == set(names)
    config = read_json(out / "config.json")
    assert config["fingerprint"]["task_order"] == names and config["fingerprint"]["method"] == kind
    assert set(config["fingerprint"]["tasks"]["beta"]) == {"label_words", "template", "data"}


def test_a_single_task_run_calls_the_same_hooks(tiny_lms, tmp_path):
    recorder = Recorder()
    result = promptopt.run(method="soft", task=str(REPO / "datasets/tiny_reviews/task.toml"), lm=tiny_lms["causal"],
                           output=str(tmp_path / "r"), max_train=8, max_eval=4, progress=False,
                           pm=make_plugin_manager(extra_plugins=[recorder]), train=TRAIN,
                           method_options={"n_tokens": 2})  # fmt: skip
    kinds = [e for e, _ in recorder.events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and "training_step" in kinds
    assert recorder.events[-2] == ("evaluation", "eval") and recorder.tasks == [[]] and recorder.saw_eval == [False]
    assert recorder.results[0] is result


def test_a_failing_multitask_run_leaves_error_json_and_resumes_only_with_the_same_settings(specs, tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    out = tmp_path / "run"
    recorder = Recorder(fail_at_step=3)
    with pytest.raises(RuntimeError, match="stopped by the test"):
        run_multitask(options(specs, out), lm=lm, pm=make_plugin_manager(extra_plugins=[recorder]))
    assert (out / "error.json").exists() and not (out / "result.json").exists()
    assert "stopped by the test" in json.loads((out / "error.json").read_text())["error"]
    assert recorder.results[0].status == "failed" and recorder.events[-1] == ("run_end", None)
    # another template for one task: refused, naming the field
    changed = options(specs, out, resume=True, templates={"beta": "{sentence} yes or no?{answer}"})
    with pytest.raises(ConfigError, match=r"cannot resume: field tasks\.beta\.template was"):
        run_multitask(changed, lm=lm)
    with pytest.raises(ConfigError, match=r"cannot resume: field seed was 0 and is now 1"):
        run_multitask(options(specs, out, resume=True, seed=1), lm=lm)
    # the same settings: it continues from the checkpoint and ends as an uninterrupted run does
    resumed = run_multitask(options(specs, out, resume=True), lm=lm)
    assert (out / "result.json").exists()
    whole = run_multitask(options(specs, tmp_path / "whole"), lm=lm)
    assert resumed.summary["metrics"] == whole.summary["metrics"]
    assert resumed.summary["best_step"] == whole.summary["best_step"]


def test_a_finished_run_directory_is_kept_and_reused_by_fingerprint(tmp_path):
    session = RunSession(tmp_path / "r")
    assert session.check({"seed": 0}) is None
    session.write_config({"method": "x"})
    (tmp_path / "r" / "result.json").write_text(json.dumps(RunResult("x", "t", "m", 0).to_json()))
    with pytest.raises(PromptoptError, match="--overwrite"):
        RunSession(tmp_path / "r")
    assert RunSession(tmp_path / "r", reuse=True).check({"seed": 0}).reused
    again = RunSession(tmp_path / "r", reuse=True)
    assert again.check({"seed": 1}) is None and not (tmp_path / "r" / "result.json").exists()


def test_a_continual_run_finished_before_result_json_existed_is_kept(specs, tiny_lms, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "continual.json").write_text(json.dumps({"complete": True}))
    with pytest.raises(PromptoptError, match="holds a finished run"):
        run_continual(options(specs, out), lm=tiny_lms["causal"])


class FailAtGlobalStep:
    promptopt_strict_hooks = True

    def __init__(self, at: int):
        self.at, self.count = at, 0

    @promptopt.hookimpl
    def training_step(self, run, step, loss, lr):
        self.count += 1
        if self.count == self.at:
            raise RuntimeError("interrupted by the test")


def test_an_interrupted_continual_run_resumes_its_stages_and_ends_as_an_uninterrupted_run(specs, tiny_lms, tmp_path):
    import torch

    from promptopt.data.prompt import Prompt

    lm = tiny_lms["causal"]
    full = run_continual(options(specs, tmp_path / "full"), lm=lm)
    pm = make_plugin_manager(extra_plugins=[FailAtGlobalStep(at=TRAIN["steps"] + 2)])  # in the second stage
    with pytest.raises(RuntimeError, match="interrupted by the test"):
        run_continual(options(specs, tmp_path / "cut"), lm=lm, pm=pm)
    assert (tmp_path / "cut" / "error.json").exists() and not (tmp_path / "cut" / "result.json").exists()
    with pytest.raises(ConfigError, match=r"cannot resume: field seed was 0 and is now 1"):
        run_continual(options(specs, tmp_path / "cut", resume=True, seed=1), lm=lm)
    resumed = run_continual(options(specs, tmp_path / "cut", resume=True), lm=lm)
    for key in ("initial", "matrix", "metrics"):
        assert resumed.summary[key] == full.summary[key], key
    for name in full.prompts:
        a, b = (Prompt.load(tmp_path / d / "final" / name / "prompt").vectors for d in ("full", "cut"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def history(d):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (tmp_path / d / "history.jsonl").read_text().splitlines()]  # fmt: skip

    assert history("cut") == history("full")  # the interrupted stage's records are not there twice
