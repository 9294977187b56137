"""Data parallel over 2 CPU processes (gloo, launched by torchrun from the test) gives the single-process results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_REVIEWS
import distributed_worker as worker

HERE = Path(__file__).resolve().parent


def _gloo_or_skip():
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")


def torchrun(*args, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


class Interrupt:
    def training_step(self, run, step, loss, lr):
        if step == 3:
            raise KeyboardInterrupt  # after the step-2 checkpoint

    def evaluation(self, run, step, split, metrics):
        pass


@pytest.fixture(scope="module")
def two_processes(tiny_model_dirs, tmp_path_factory):
    """What the worker computed on 2 processes, and the same computed here in one."""
    _gloo_or_skip()
    tmp = tmp_path_factory.mktemp("dist")
    lm, task, scorer = worker.setup(str(tiny_model_dirs["causal"]), str(TINY_REVIEWS / "task.toml"))
    with pytest.raises(KeyboardInterrupt):  # a single-process run stopped at step 3, to be resumed on 2 processes
        worker.train(scorer, task, tmp / "resume", hook=Interrupt())
    proc = torchrun(HERE / "distributed_worker.py", tiny_model_dirs["causal"], TINY_REVIEWS / "task.toml", tmp / "out",
                    tmp / "resume")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp / "out" / "result.json").read_text())
    return got, (lm, task, scorer, tmp)


def test_two_process_training_gives_the_single_process_vectors(two_processes):
    got, (lm, task, scorer, tmp) = two_processes
    alone = worker.train(scorer, task, tmp / "alone")
    assert got["world"] == 2
    assert torch.allclose(torch.tensor(got["values"]), alone.values["p0"], atol=1e-5, rtol=0)
    assert got["losses"] == pytest.approx([h["loss"] for h in alone.history if "loss" in h], abs=1e-5)
    assert got["best"] == pytest.approx(alone.best_metrics, abs=1e-6)
    # the vectors did move: equality is not the initialisation's
    assert not torch.allclose(alone.values["p0"], worker.initial(lm)()["p0"], atol=1e-3)


def test_checkpoint_written_alone_resumes_on_two_processes_to_the_uninterrupted_result(two_processes):
    got, (lm, task, scorer, tmp) = two_processes
    alone = worker.train(scorer, task, tmp / "alone2")
    assert got["resumed_from"] == 2
    assert torch.allclose(torch.tensor(got["resumed_values"]), alone.values["p0"], atol=1e-5, rtol=0)


def test_sharded_evaluation_and_candidate_losses_equal_the_single_process_ones(two_processes):
    got, (lm, task, scorer, tmp) = two_processes
    alone = worker.evaluate(scorer, task)
    assert got["eval"] == alone.metrics
    assert len(got["predictions"]) == 11
    assert [r["inputs"] for r in got["predictions"]] == [r["inputs"] for r in alone.predictions]
    for a, b in zip(got["predictions"], alone.predictions):
        assert a["prediction"] == b["prediction"] and a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    assert got["candidates"] == pytest.approx(worker.candidate_losses(scorer, task).tolist(), abs=1e-5)


def starts(out: Path) -> list[tuple[int, str, int]]:
    return [(int(r), d, int(x)) for r, d, x in (line.split() for line in (out / "starts.log").read_text().splitlines())]


def test_two_process_suite_killed_with_sigkill_then_relaunched_finishes_every_run_once(tiny_model_dirs, tmp_path):
    _gloo_or_skip()
    out = tmp_path / "board"
    out.mkdir()
    args = (HERE / "suite_worker.py", tiny_model_dirs["causal"], TINY_REVIEWS / "task.toml", out)
    killed = torchrun(*args, "kill")
    assert killed.returncode != 0  # rank 1 died by SIGKILL; torchrun stopped rank 0 too
    first = starts(out)
    assert (1, "seed1", 0) in first  # the run rank 1 was killed in
    assert {r for r, _, _ in first} == {0, 1}  # both processes had work: runs were shared out
    runs = {f"seed{k}": next(out.glob(f"*/tiny-reviews/soft/seed{k}")) for k in range(3)}
    finished_first = {r for r, d in runs.items() if (d / "result.json").exists()}
    assert "seed0" in finished_first and "seed1" not in finished_first
    again = torchrun(*args, "finish")
    assert again.returncode == 0, again.stderr[-3000:]
    assert all((d / "result.json").exists() for d in runs.values())
    log = starts(out)
    second = log[len(first):]
    # the killed run resumed from its checkpoint; nothing finished before ran again; nothing ran twice in a launch
    assert (1, "seed1", 1) in second
    assert not finished_first & {d for _, d, _ in second}
    assert len({d for _, d, _ in second}) == len(second)
    started_by = {}
    for r, d, _ in log:
        started_by.setdefault(d, set()).add(r)
    assert all(len(v) == 1 for v in started_by.values()), started_by
    suite = json.loads((out / "suite.json").read_text())
    assert sorted((e["seed"], e["status"]) for e in suite["entries"]) == [(0, "ok"), (1, "ok"), (2, "ok")]
    assert (out / "report.md").exists()


# -- large models: --device-map, --quantize, gradient checkpointing --------------------------------------------


def test_gradient_checkpointing_recomputes_layers_and_keeps_loss_and_gradient(tiny_model_dirs, tiny_lms, reviews_task):
    from promptopt.data.prompt import Prompt
    from promptopt.engine import Scorer, load_model

    checkpointed = load_model(str(tiny_model_dirs["causal"]), device="cpu", dtype="float32", gradient_checkpointing=True)
    assert checkpointed.gradient_checkpointing and not checkpointed.model.training
    calls = []
    layer = checkpointed.model.model.layers[0]
    layer.input_layernorm.register_forward_pre_hook(lambda *a: calls.append(1))  # first thing a (re)run does
    prompt = Prompt.from_template("[P*3]Review: {text}\nSentiment:{answer}")
    examples = reviews_task.load_split("train")[:6]
    results = []
    for lm in (tiny_lms["causal"], checkpointed):
        vectors = torch.randn(3, lm.hidden_size, generator=torch.Generator().manual_seed(0)).requires_grad_()
        scorer = Scorer(lm, reviews_task)
        calls.clear()
        loss = scorer.loss(prompt, examples, vectors={"p0": vectors})
        forward = len(calls)
        loss.backward()
        results.append((loss.detach(), vectors.grad))
    assert forward >= 1 and len(calls) == 2 * forward  # each forward of the layer runs again in the backward pass
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6, rtol=0)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6, rtol=0)


def test_device_map_auto_loads_through_accelerate_and_scores_the_same(tiny_model_dirs, tiny_lms, reviews_task,
                                                                     monkeypatch):  # fmt: skip
    from transformers import AutoModelForCausalLM

    from promptopt.data.prompt import Prompt
    from promptopt.engine import Scorer, load_model

    seen = []
    original = AutoModelForCausalLM.from_pretrained.__func__
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained",
                        classmethod(lambda cls, *a, **k: seen.append(k.get("device_map")) or original(cls, *a, **k)))
    placed = load_model(str(tiny_model_dirs["causal"]), device="cpu", dtype="float32", device_map="auto")
    assert seen == ["auto"]
    prompt = Prompt.from_template("Review: {text}\nSentiment:{answer}")
    examples = reviews_task.load_split("dev")[:6]
    ours, plain = (Scorer(lm, reviews_task).evaluate(prompt, examples) for lm in (placed, tiny_lms["causal"]))
    assert [r["scores"] for r in ours.predictions] == [r["scores"] for r in plain.predictions]


def test_quantize_and_device_map_give_one_clear_error_where_they_cannot_work(tiny_model_dirs, monkeypatch):
    import importlib.util

    from promptopt.engine import load_model
    from promptopt.errors import PromptoptError

    path = str(tiny_model_dirs["causal"])
    with pytest.raises(PromptoptError, match="--quantize '3bit' is not one of"):
        load_model(path, device="cpu", quantize="3bit")
    with pytest.raises(PromptoptError, match="--device-map 'everywhere' is not one of auto"):
        load_model(path, device="cpu", device_map="everywhere")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(PromptoptError, match="needs bitsandbytes, which is not installed: pip install bitsandbytes"):
        load_model(path, device="cpu", quantize="8bit")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(PromptoptError, match="needs a CUDA GPU"):
        load_model(path, device="cpu", quantize="4bit")
