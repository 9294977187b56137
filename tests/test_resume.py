"""A soft-prompt run killed with SIGKILL part-way and resumed ends with the uninterrupted run's prompt and metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, TINY_REVIEWS

SCRIPT = r"""
import json, os, sys, time
import promptopt
from promptopt import hookimpl
from promptopt.plugins import make_plugin_manager

mode, out, model, task = sys.argv[1:5]


class StallAtStep5:
    # Step 5's update is applied, but its checkpoint is not written yet: the kill loses it.
    @hookimpl
    def training_step(self, run, step, loss, lr):
        if mode == "killed" and step == 5:
            open(os.path.join(out, "stalled"), "w").close()
            time.sleep(600)


result = promptopt.run(method="soft", task=task, model=model, output=out, max_train=24, max_eval=16, seed=3,
                       progress=False, resume=mode == "resume", method_options={"n_tokens": 4, "init": "random"},
                       train={"steps": 8, "batch_size": 4, "lr": 0.05, "warmup_steps": 2, "eval_every": 2,
                              "checkpoint_every": 1},
                       pm=make_plugin_manager(extra_plugins=[StallAtStep5()]))
print(json.dumps({"eval": result.metrics["eval"]["accuracy"], "select": result.select_metrics}))
"""


def launch(script, mode, out, model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every process: identical float sums
    return subprocess.Popen([sys.executable, str(script), mode, str(out), str(model_dir), str(TINY_REVIEWS / "task.toml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)  # fmt: skip


def finish(proc):
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def kill_when_stalled(proc, marker) -> None:
    """SIGKILL ``proc`` once it has written ``marker`` (it then waits, mid-run, to be killed)."""
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:] if proc.poll() else "timeout"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_run_killed_with_sigkill_and_resumed_matches_the_uninterrupted_run(tiny_model_dirs, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    model = tiny_model_dirs["causal"]
    full = finish(launch(script, "full", tmp_path / "full", model))

    kill_when_stalled(launch(script, "killed", tmp_path / "cut", model), tmp_path / "cut" / "stalled")
    checkpoint = tmp_path / "cut" / "checkpoint" / "template0" / "checkpoint.safetensors"
    from promptopt.engine.train import read_checkpoint

    assert read_checkpoint(checkpoint)[0]["state"]["step"] == 4
    assert not (tmp_path / "cut" / "result.json").exists()

    resumed = finish(launch(script, "resume", tmp_path / "cut", model))
    assert resumed == full
    a, b = (load_file(str(tmp_path / d / "prompt" / "vectors.safetensors")) for d in ("full", "cut"))
    assert torch.equal(a["p0"], b["p0"])
    history = [json.loads(line) for line in (tmp_path / "cut" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if "loss" in r] == [1, 2, 3, 4, 5, 6, 7, 8]  # killed before logging step 5


AUTOPROMPT_SCRIPT = r"""
import json, os, sys, time
import promptopt
from promptopt import hookimpl
from promptopt.plugins import make_plugin_manager
from promptopt.data.prompt import Prompt

mode, out, model, task = sys.argv[1:5]
steps = []


class Watch:
    @hookimpl
    def training_step(self, run, step, loss, lr):
        steps.append(step)

    # The first selection scored from iteration 4 on: that iteration is logged, but the checkpoint holds the one
    # before, so the kill loses it, and its history record must not be left behind twice.
    @hookimpl
    def evaluation(self, run, step, split, metrics):
        if mode == "killed" and step >= 4 and split == "select":
            with open(os.path.join(out, "stalled"), "w") as f:
                f.write(str(step))
            time.sleep(600)


result = promptopt.run(method="autoprompt", task=task, model=model, output=out, max_train=16, max_eval=8, seed=3,
                       progress=False, resume=mode == "resume", train={"steps": 8, "batch_size": 4},
                       method_options={"candidates": 6, "select_every": 1, "n_triggers": 3},
                       pm=make_plugin_manager(extra_plugins=[Watch()]))
prompt = Prompt.load(os.path.join(out, "prompt"))
print(json.dumps({"steps": steps, "tokens": {s.name: list(s.ids) for s in prompt.segments if s.ids is not None},
                  "select": result.select_metrics, "eval": result.metrics["eval"]["accuracy"],
                  "search": {k: v for k, v in prompt.meta["search"].items() if k != "seconds"}}))
"""


@pytest.mark.slow
def test_autoprompt_search_killed_with_sigkill_and_resumed_matches_the_uninterrupted_run(tiny_model_dirs, tmp_path):
    script = tmp_path / "search.py"
    script.write_text(AUTOPROMPT_SCRIPT)
    model = tiny_model_dirs["causal"]
    full = finish(launch(script, "full", tmp_path / "full", model))
    assert full["steps"] == [1, 2, 3, 4, 5, 6, 7, 8] and full["search"]["iterations"] == 8

    kill_when_stalled(launch(script, "killed", tmp_path / "cut", model), tmp_path / "cut" / "stalled")
    stalled = int((tmp_path / "cut" / "stalled").read_text())
    checkpoint = json.loads((tmp_path / "cut" / "checkpoint" / "autoprompt.json").read_text())
    assert checkpoint["state"]["iterations"] == stalled - 1
    assert not (tmp_path / "cut" / "result.json").exists()

    resumed = finish(launch(script, "resume", tmp_path / "cut", model))
    assert resumed["steps"] == list(range(stalled, 9))  # continued, not started again
    assert {k: v for k, v in resumed.items() if k != "steps"} == {k: v for k, v in full.items() if k != "steps"}

    def trace(run):
        rows = [json.loads(line) for line in (tmp_path / run / "history.jsonl").read_text().splitlines()]
        return [(r["kind"], r["step"], r["prompt"]) for r in rows]

    assert trace("cut") == trace("full")  # iteration 6's record, written before the kill, is not there twice
