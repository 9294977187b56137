"""``promptopt multitask`` and ``promptopt continual`` killed with SIGKILL at several points and resumed end as the
uninterrupted run: the same per-task scores, final vectors and history."""

from __future__ import annotations

import pytest
from kill_harness import history, kill_at_marker_then_resume

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


@pytest.mark.parametrize("kind, at", [("multitask", 2), ("multitask", 5), ("continual", 3), ("continual", 8)])
def test_killed_with_sigkill_and_resumed_equals_the_uninterrupted_run(kind, at, tiny_model_dirs, tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(SCRIPT)
    tail = [str(tmp_path), str(at), str(REPO), str(tiny_model_dirs["causal"])]
    full, resumed = kill_at_marker_then_resume(script, [kind, "full", *tail], [kind, "resume", *tail],
                                               tmp_path / "stalled", tmp_path, killed=tmp_path / "cut")  # fmt: skip
    assert resumed == full
    assert history(tmp_path / "cut" / "history.jsonl") == history(tmp_path / "full" / "history.jsonl")
