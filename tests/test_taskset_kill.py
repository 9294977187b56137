"""``promptopt multitask`` and ``promptopt continual`` killed with SIGKILL at several points and resumed end as the
uninterrupted run: the same per-task scores, final vectors and history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, os.path.join(sys.argv[5], "tests"))
import promptopt
from promptopt import hookimpl
from promptopt.plugins import make_plugin_manager
from promptopt.sdk import TaskSetOptions
from promptopt_plugins.continual import run_continual
from promptopt_plugins.multitask import run_multitask
from tiny_tasks import write_tiny_tasks

kind, mode, out, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
specs = write_tiny_tasks(__import__("pathlib").Path(out) / "tasks")


class Stall:
    count = 0

    @hookimpl
    def training_step(self, run, step, loss, lr):
        Stall.count += 1
        if mode == "killed" and Stall.count == at:
            open(os.path.join(out, "stalled"), "w").close()
            time.sleep(600)


def go(mode, directory):
    Stall.count = 0
    opts = TaskSetOptions(tasks=list(specs.values()), output=directory, max_eval=4, progress=False, seed=1,
                          resume=mode == "resume", method_options={"n_tokens": 2},
                          train={"steps": 6, "batch_size": 4, "eval_every": 2, "checkpoint_every": 1})
    pm = make_plugin_manager(extra_plugins=[Stall()])
    fn = run_multitask if kind == "multitask" else run_continual
    fn(opts, lm=LM, pm=pm)
    metrics = json.loads(open(os.path.join(directory, "result.json")).read())["metrics"]
    return metrics


from promptopt.engine.model import load_model
LM = load_model(sys.argv[6])
if mode == "full":
    print(json.dumps(go("full", os.path.join(out, "full"))), flush=True)
    mode = "killed"
    go("killed", os.path.join(out, "cut"))
else:
    print(json.dumps(go("resume", os.path.join(out, "cut"))))
"""


def _history(path):
    return [{k: v for k, v in json.loads(line).items() if k not in ("seconds",)}
            for line in path.read_text().splitlines()]  # fmt: skip


@pytest.mark.parametrize("kind, at", [("multitask", 2), ("multitask", 5), ("continual", 3), ("continual", 8)])
def test_killed_with_sigkill_and_resumed_equals_the_uninterrupted_run(kind, at, tiny_model_dirs, tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), kind]
    tail = [str(tmp_path), str(at), str(REPO), str(tiny_model_dirs["causal"])]
    log_out, log_err = open(tmp_path / "out.txt", "w"), open(tmp_path / "err.txt", "w")
    first = subprocess.Popen([*args, "full", *tail], stdout=log_out, stderr=log_err, text=True, env=env, cwd=REPO)
    deadline = time.time() + 240
    while not (tmp_path / "stalled").exists():
        if first.poll() is not None or time.time() > deadline:
            first.kill()
            raise AssertionError((tmp_path / "err.txt").read_text()[-3000:] or "exited without stalling")
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    log_out.close(), log_err.close()
    full = json.loads((tmp_path / "out.txt").read_text().strip().splitlines()[0])
    assert not (tmp_path / "cut" / "result.json").exists()
    second = subprocess.run([*args, "resume", *tail], capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout.strip().splitlines()[-1]) == full
    assert _history(tmp_path / "cut" / "history.jsonl") == _history(tmp_path / "full" / "history.jsonl")
