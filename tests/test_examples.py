"""The example third-party plugins in examples/: found through their entry points, and doing what they say."""

from __future__ import annotations

import torch

import promptopt
from promptopt.data.prompt import Prompt
from promptopt.plugins import optimizers

from conftest import REPO

TASK = str(REPO / "datasets" / "tiny_reviews" / "task.toml")
ARGS = dict(task=TASK, max_train=8, max_eval=4, progress=False, seed=0,
            train={"steps": 3, "batch_size": 4, "eval_every": 0}, method_options={"n_tokens": 2})  # fmt: skip


def test_example_plugins_are_discovered_through_their_entry_points():
    found = optimizers()
    assert found["sam"][1] == "sam" and found["instructions"][1] == "instructions"


def test_sam_with_rho_zero_is_the_soft_prompt_and_with_rho_it_is_not(tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    runs = {}
    for name, method, rho in (("soft", "soft", None), ("sam0", "sam", 0.0), ("sam", "sam", 0.5)):
        options = {**ARGS["method_options"], **({"rho": rho} if rho is not None else {})}
        promptopt.run(method=method, lm=lm, output=str(tmp_path / name), **{**ARGS, "method_options": options})
        runs[name] = Prompt.load(tmp_path / name / "prompt").vectors
    assert all(torch.equal(runs["soft"][k], runs["sam0"][k]) for k in runs["soft"])
    assert not all(torch.allclose(runs["soft"][k], runs["sam"][k]) for k in runs["soft"])
