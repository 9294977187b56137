"""A two-run leaderboard suite killed with SIGKILL at several points and run again ends as the uninterrupted suite:
the same runs, scores, vectors and history, each run finished once."""

from __future__ import annotations

import pytest
import torch
from kill_harness import history, kill_at_marker_then_resume
from safetensors.torch import load_file

from conftest import TINY_REVIEWS

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
    work = tmp_path / "w"
    work.mkdir()
    tail = [str(work), str(at), str(tiny_model_dirs["causal"]), str(TINY_REVIEWS / "task.toml")]
    full, resumed = kill_at_marker_then_resume(script, ["full", *tail], ["again", *tail], tmp_path / "stalled",
                                               tmp_path)  # fmt: skip
    assert resumed == full
    for seed in (0, 1):
        a, b = (next((work / d).glob(f"*/tiny-reviews/soft/seed{seed}")) for d in ("full", "cut"))
        va, vb = (load_file(str(x / "prompt" / "vectors.safetensors")) for x in (a, b))
        assert all(torch.equal(va[k], vb[k]) for k in va)
        assert history(a / "history.jsonl") == history(b / "history.jsonl")
