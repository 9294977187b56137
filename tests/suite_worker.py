"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: a leaderboard suite of soft-prompt runs
shared out between the processes. Every ``run_start`` appends ``rank seedN resume`` to OUT/starts.log; with
``kill`` the process of rank 1 SIGKILLs itself at step 2 of its first run,
once rank 0 has finished its first."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from promptopt import hookimpl
from promptopt.engine import distributed, load_model
from promptopt.pipeline.runner import RunOptions
from promptopt.plugins import make_plugin_manager
from promptopt.suite.leaderboard import SuiteConfig, run_suite

model_dir, task, out, mode = sys.argv[1:5]
rank = int(os.environ["RANK"])


class Trace:
    @hookimpl
    def run_start(self, run):
        with open(Path(out) / "starts.log", "a", encoding="utf-8") as f:
            f.write(f"{rank} {Path(run.output_dir).name} {int(run.resume)}\n")

    @hookimpl
    def training_step(self, run, step, loss, lr):
        if mode == "kill" and rank == 1 and step == 2:
            deadline = time.time() + 60  # once rank 0 has finished its first run, so that one stays finished
            while not list(Path(out).glob("*/*/soft/seed0/result.json")) and time.time() < deadline:
                time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGKILL)


config = SuiteConfig(methods=["soft"], tasks=[task], seeds=[0, 1, 2], models=[model_dir], output=out, inspect=False,
                     run=RunOptions(progress=False, max_train=8, max_eval=6, method_options={}, batch_size=4,
                                    train={"steps": 3, "batch_size": 2, "eval_every": 0, "checkpoint_every": 1}),
                     method_options={"n_tokens": 2})  # fmt: skip
result = run_suite(config, pm=make_plugin_manager(allow=["soft", "tasks"], extra_plugins=[Trace()]),
                   load=lambda name: load_model(name, device="cpu", dtype="float32"))
assert distributed.launch_rank() == (rank, 2)
print("reports" if result.reports else "no reports", len(result.entries))
