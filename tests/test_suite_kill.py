"""A two-run leaderboard suite killed with SIGKILL at several points and run again ends as the uninterrupted suite:
the same runs, scores, vectors and history, each run finished once."""

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
from promptopt import hookimpl
from promptopt.pipeline.runner import RunOptions
from promptopt.plugins import make_plugin_manager
from promptopt.suite.leaderboard import SuiteConfig, run_suite

mode, out, at, model, task = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]


class Stall:
    count = 0

    @hookimpl
    def training_step(self, run, step, loss, lr):
        Stall.count += 1
        if mode == "killed" and Stall.count == at:
            open(os.path.join(os.path.dirname(out), "stalled"), "w").close()
            time.sleep(600)


def go(directory):
    Stall.count = 0
    config = SuiteConfig(methods=["soft"], tasks=[task], seeds=[0, 1], models=[model], output=directory,
                         inspect=False, run=RunOptions(progress=False, max_train=8, max_eval=4,
                                                       method_options={}, train={"steps": 4, "batch_size": 4,
                                                       "eval_every": 2, "checkpoint_every": 1}),
                         method_options={"n_tokens": 2})
    suite = run_suite(config, pm=make_plugin_manager(extra_plugins=[Stall()]))
    return sorted([r.method, r.seed, r.score] for r in suite.board.runs)


if mode == "full":
    print(json.dumps(go(out + "/full")), flush=True)
    mode = "killed"
    go(out + "/cut")
else:
    print(json.dumps(go(out + "/cut")))
"""


@pytest.mark.parametrize("at", [3, 6])  # in the first run's training, in the second's
def test_a_suite_killed_and_run_again_equals_the_uninterrupted_suite(at, tiny_model_dirs, tmp_path):
    script = tmp_path / "suite.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    work = tmp_path / "w"
    work.mkdir()
    tail = [str(work), str(at), str(tiny_model_dirs["causal"]), str(TINY_REVIEWS / "task.toml")]
    log_out, log_err = open(tmp_path / "out.txt", "w"), open(tmp_path / "err.txt", "w")
    first = subprocess.Popen([sys.executable, str(script), "full", *tail], stdout=log_out, stderr=log_err, env=env,
                             cwd=REPO)  # fmt: skip
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
    second = subprocess.run([sys.executable, str(script), "again", *tail], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=240)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout.strip().splitlines()[-1]) == full
    for seed in (0, 1):
        a, b = (next((work / d).glob(f"*/tiny-reviews/soft/seed{seed}")) for d in ("full", "cut"))
        va, vb = (load_file(str(x / "prompt" / "vectors.safetensors")) for x in (a, b))
        assert all(torch.equal(va[k], vb[k]) for k in va)
        ha, hb = ([{k: v for k, v in json.loads(line).items() if k != "seconds"}
                   for line in (x / "history.jsonl").read_text().splitlines()] for x in (a, b))  # fmt: skip
        assert ha == hb
