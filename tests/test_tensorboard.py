"""The TensorBoard plugin, built only on the run hooks, records config, steps, losses, evaluations and artifacts."""

from __future__ import annotations

import json

import pytest

import promptopt

from conftest import TINY_REVIEWS

pytest.importorskip("tensorboard", reason="TensorBoard is an optional extra: pip install 'promptopt[tensorboard]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _events(directory):
    files = sorted(p for p in directory.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {directory}"
    acc = EventAccumulator(str(files[0].parent), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_a_run_is_logged_to_tensorboard_through_the_hooks(tiny_lms, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_TENSORBOARD", "1")
    out = tmp_path / "run"
    result = promptopt.run(method="soft", task=str(TINY_REVIEWS / "task.toml"), lm=tiny_lms["causal"], output=str(out),
                           max_train=8, max_eval=4, progress=False, method_options={"n_tokens": 2},
                           train={"steps": 3, "batch_size": 4, "eval_every": 1})  # fmt: skip
    acc = _events(out / "tensorboard")
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in history if "loss" in r]
    logged = acc.Scalars("train/loss")
    assert [e.step for e in logged] == [1, 2, 3]
    assert [e.value for e in logged] == pytest.approx(losses, rel=1e-6)
    assert [e.step for e in acc.Scalars("select/score")] == [1, 2, 3]
    assert acc.Scalars("eval/accuracy")[-1].value == pytest.approx(result.metrics["eval"]["accuracy"])
    flops = [e.value for e in acc.Scalars("train/flops")]
    assert flops == sorted(flops) and flops[0] > 0
    texts = {tag: acc.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in acc.Tags()["tensors"]
             if tag.endswith("/text_summary")}  # fmt: skip
    assert '"fingerprint"' in texts["config/text_summary"]
    assert result.prompt_text in texts["prompt/text_summary"]
    assert str(out / "prompt") in texts["artifacts/text_summary"]


def test_without_the_variable_nothing_is_written(tiny_lms, tmp_path, monkeypatch):
    monkeypatch.delenv("PROMPTOPT_TENSORBOARD", raising=False)
    promptopt.run(method="manual", task=str(TINY_REVIEWS / "task.toml"), lm=tiny_lms["causal"],
                  output=str(tmp_path / "run"), max_eval=4, progress=False)  # fmt: skip
    assert not (tmp_path / "run" / "tensorboard").exists()
