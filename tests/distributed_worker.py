"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: the same computations as the test does in
one process, data parallel; the main process writes what it got to OUT/result.json."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from promptopt.data.files import write_json
from promptopt.engine import Scorer, distributed, load_model
from promptopt.engine.train import PromptVectors, TrainConfig, fit
from promptopt.plugins import get_task
from promptopt.data.prompt import Prompt

TEMPLATE = "[P*4]Review: {text}\nSentiment:{answer}"
CONFIG = dict(steps=4, batch_size=5, lr=0.05, eval_every=2, checkpoint_every=2, group_by_length=2)


def setup(model_dir: str, task_path: str):
    lm = load_model(model_dir, device="cpu", dtype="float32")
    task = get_task(task_path)
    return lm, task, Scorer(lm, task, batch_size=3)


def initial(lm) -> PromptVectors:
    return PromptVectors({"p0": torch.randn(4, lm.hidden_size, generator=torch.Generator().manual_seed(0))})


def train(scorer, task, checkpoint_dir, resume=False, hook=None):
    return fit(initial(scorer.lm), task.load_split("train")[:23], TrainConfig(**CONFIG), scorer=scorer,
               prompt=Prompt.from_template(TEMPLATE), select=task.load_split("dev")[:7], checkpoint_dir=checkpoint_dir,
               resume=resume, seed=3, hook=hook)  # fmt: skip


def evaluate(scorer, task):
    return scorer.evaluate(Prompt.from_template("Review: {text}\nSentiment:{answer}"), task.load_split("test")[:11])


def candidate_losses(scorer, task):
    prompts = [Prompt.from_template(t) for t in ("Review: {text}\nSentiment:{answer}", "{text} It was{answer}",
                                                 "{text}\nSentiment:{answer}")]  # fmt: skip
    with torch.inference_mode():
        return scorer.losses(prompts, task.load_split("train")[:7])


def main(model_dir: str, task_path: str, out: str, resume_dir: str) -> None:
    assert distributed.init() and distributed.world_size() == 2
    lm, task, scorer = setup(model_dir, task_path)
    fresh = train(scorer, task, Path(out) / "ckpt")
    resumed = train(scorer, task, resume_dir, resume=True)
    ev = evaluate(scorer, task)
    write_json(Path(out) / "result.json", {
        "world": distributed.world_size(), "values": fresh.values["p0"].tolist(),
        "losses": [h["loss"] for h in fresh.history if "loss" in h], "best": fresh.best_metrics,
        "resumed_from": resumed.resumed_from, "resumed_values": resumed.values["p0"].tolist(),
        "eval": ev.metrics, "predictions": ev.predictions, "candidates": candidate_losses(scorer, task).tolist(),
    })  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
