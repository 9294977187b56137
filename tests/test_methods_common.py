"""The common suite every registered method gets for free (PEFT's PeftCommonTester idea)."""

import hashlib

import pytest
import torch

import promptopt
from promptopt.plugins import optimizers
from promptopt.data.prompt import Prompt

from conftest import REPO

TASK = str(REPO / "datasets" / "tiny_reviews" / "task.toml")
METHODS = sorted(optimizers())
SMALL = dict(train={"steps": 2, "eval_every": 1, "batch_size": 4, "checkpoint_every": 0}, max_train=8, max_eval=8,
             progress=False)  # fmt: skip


def fingerprint(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(params=METHODS)
def method(request):
    return request.param


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_method_runs_end_to_end_and_leaves_the_model_untouched(method, kind, tiny_lms, tmp_path):
    lm = tiny_lms[kind]
    before = fingerprint(lm.model)
    result = promptopt.run(method=method, task=TASK, output=str(tmp_path / "run"), lm=lm, seed=1, **SMALL)
    assert result.status == "ok"
    assert fingerprint(lm.model) == before
    assert not any(p.requires_grad for p in lm.model.parameters())
    assert result.metrics["eval"]["n"] == 8 and 0.0 <= result.metrics["eval"]["accuracy"] <= 1.0
    assert result.trainable_parameters >= 0 and result.train_seconds > 0
    for name in ("config.json", "metrics.json", "predictions.jsonl", "result.json", "prompt/prompt.json"):
        assert (tmp_path / "run" / name).exists(), name


def test_saved_prompt_rescored_by_the_engine_gives_the_reported_metrics(method, tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    result = promptopt.run(method=method, task=TASK, output=str(tmp_path / "run"), lm=lm, seed=2, **SMALL)
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    rescored = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", lm=lm, max_eval=8,
                                         progress=False)  # fmt: skip
    assert rescored.metrics["accuracy"] == result.metrics["eval"]["accuracy"]
    assert prompt.meta["method"] == method


def test_same_seed_gives_the_same_prompt_and_metrics(method, tiny_lms, tmp_path):
    lm = tiny_lms["masked"]
    a = promptopt.run(method=method, task=TASK, output=str(tmp_path / "a"), lm=lm, seed=3, **SMALL)
    b = promptopt.run(method=method, task=TASK, output=str(tmp_path / "b"), lm=lm, seed=3, **SMALL)
    assert a.prompt_text == b.prompt_text and a.metrics["eval"] == b.metrics["eval"]
    pa, pb = Prompt.load(tmp_path / "a" / "prompt"), Prompt.load(tmp_path / "b" / "prompt")
    assert pa.vectors.keys() == pb.vectors.keys()
    assert all(torch.equal(pa.vectors[k], pb.vectors[k]) for k in pa.vectors)


def test_method_declares_a_documented_config(method):
    from promptopt.pipeline.config import field_help

    cls, _ = optimizers()[method]
    assert cls.name == method and cls.description
    for name, _type, _default, help_text in field_help(cls.config_class):
        assert help_text, f"{method}: option {name} has no help text"


class HookOrder:
    def __init__(self):
        self.calls = []

    @promptopt.hookimpl
    def run_start(self, run):
        self.calls.append(("run_start", None))

    @promptopt.hookimpl
    def training_step(self, run, step, loss, lr):
        self.calls.append(("training_step", step))

    @promptopt.hookimpl
    def evaluation(self, run, step, split, metrics):
        self.calls.append(("evaluation", split))

    @promptopt.hookimpl
    def run_end(self, run, result):
        self.calls.append(("run_end", result.status))


def test_run_hooks_are_called_in_order(method, tiny_lms, tmp_path):
    from promptopt.plugins import make_plugin_manager

    order = HookOrder()
    promptopt.run(method=method, task=TASK, output=str(tmp_path / "run"), lm=tiny_lms["causal"], seed=0,
                  pm=make_plugin_manager(extra_plugins=[order]), **SMALL)  # fmt: skip
    names = [name for name, _ in order.calls]
    assert names[0] == "run_start" and names[-1] == "run_end" and order.calls[-1][1] == "ok"
    assert names.count("run_start") == names.count("run_end") == 1
    assert order.calls[-2] == ("evaluation", "eval") and names.count("evaluation") >= 1  # the reported split, last
    assert all(split != "eval" for name, split in order.calls[:-2] if name == "evaluation")
    steps = [s for name, s in order.calls if name == "training_step"]
    # steps count from 1, one by one (a method that trains several templates starts again at 1 for each)
    assert not steps or (steps[0] == 1 and all(b in (a + 1, 1) for a, b in zip(steps, steps[1:])))


KILL_SCRIPT = r"""
import json, os, sys, time
import torch
import promptopt
from promptopt import hookimpl
from promptopt.plugins import make_plugin_manager
from promptopt.data.prompt import Prompt

method, mode, out, model, task = sys.argv[1:6]


class StallAtThirdEvent:
    # Stall (to be SIGKILLed) at the third training step or selection scoring of the killed run.
    events = 0

    def hit(self):
        StallAtThirdEvent.events += 1
        if mode == "killed" and StallAtThirdEvent.events == 3:
            open(os.path.join(out, "stalled"), "w").close()
            time.sleep(600)

    @hookimpl
    def training_step(self, run, step, loss, lr):
        self.hit()

    @hookimpl
    def evaluation(self, run, step, split, metrics):
        if split == "select":
            self.hit()


def run(mode, out):
    StallAtThirdEvent.events = 0
    result = promptopt.run(method=method, task=task, model=model, output=out, seed=1, progress=False,
                           resume=mode == "resume", max_train=8, max_eval=8,
                           train={"steps": 4, "eval_every": 1, "batch_size": 4, "checkpoint_every": 1},
                           pm=make_plugin_manager(extra_plugins=[StallAtThirdEvent()]))
    prompt = Prompt.load(os.path.join(out, "prompt"))
    return {"text": result.prompt_text, "eval": result.metrics["eval"], "select": result.select_metrics,
            "vectors": {k: v.tolist() for k, v in prompt.vectors.items()}}


if mode == "full":  # the uninterrupted run, then (same process) the run that is killed part-way
    print(json.dumps(run("full", out + "/full")), flush=True)
    mode = "killed"
    run("killed", out + "/cut")
else:
    print(json.dumps(run("resume", out + "/cut")))
"""


def test_killed_with_sigkill_and_resumed_equals_the_uninterrupted_run(method, tiny_model_dirs, tmp_path):
    from kill_harness import history, kill_at_marker_then_resume

    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    tail = [str(tmp_path), str(tiny_model_dirs["causal"]), TASK]
    full, resumed = kill_at_marker_then_resume(script, [method, "full", *tail], [method, "resume", *tail],
                                               tmp_path / "stalled", tmp_path, killed=tmp_path / "cut")  # fmt: skip
    assert resumed == full
    assert history(tmp_path / "cut" / "history.jsonl") == history(tmp_path / "full" / "history.jsonl")
