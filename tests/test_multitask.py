"""Multi-task prompt tuning: the mixture, which parameters a task's step moves, the per-task artifacts, transfer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

import promptopt
from promptopt.engine.train import TrainConfig, fit
from promptopt.errors import ConfigError, TemplateError
from promptopt.suite.leaderboard import load_board
from promptopt.data.prompt import Prompt
from promptopt_plugins.multitask import (
    Composition,
    Mixture,
    MultitaskConfig,
    TaskBatch,
    batch_loss,
    build_params,
    mixture_batches,
    mixture_weights,
    run_multitask,
    task_prompt,
)
from promptopt.sdk import TaskSetOptions, initial_values, load_taskset
from promptopt_plugins.soft import SoftConfig

from tiny_tasks import write_tiny_tasks

STEP = {"steps": 1, "batch_size": 4, "checkpoint_every": 0, "eval_every": 0, "lr": 0.05, "max_grad_norm": 0}


@pytest.fixture()
def specs(tmp_path):
    return write_tiny_tasks(tmp_path / "tasks")


def taskset(specs, lm, **kwargs):
    return load_taskset(TaskSetOptions(tasks=list(specs.values()), **kwargs), lm)


def test_mixture_weights_are_proportional_or_temperature_scaled():
    assert mixture_weights([300, 100], Mixture.PROPORTIONAL) == pytest.approx([0.75, 0.25])
    assert mixture_weights([400, 100], Mixture.TEMPERATURE, temperature=2.0) == pytest.approx([2 / 3, 1 / 3])
    assert mixture_weights([400, 100], Mixture.TEMPERATURE, temperature=1.0) == pytest.approx([0.8, 0.2])


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match="MultitaskConfig.composition is 'product'"):
        MultitaskConfig(composition="product")
    with pytest.raises(ConfigError, match="MultitaskConfig.temperature"):
        MultitaskConfig(temperature=0)
    with pytest.raises(ConfigError, match="MultitaskConfig.init_prompt"):
        MultitaskConfig(init="prompt")


def test_mixture_batches_hold_one_task_each_follow_the_weights_and_the_seed(specs, tiny_lms):
    tasks = taskset(specs, tiny_lms["causal"])
    a = mixture_batches(tasks, [0.6, 0.3, 0.1], 300, 4, seed=5)
    assert a == mixture_batches(tasks, [0.6, 0.3, 0.1], 300, 4, seed=5)
    assert a != mixture_batches(tasks, [0.6, 0.3, 0.1], 300, 4, seed=6)
    for batch in a:
        assert len(batch.examples) == 4 and all(ex in tasks[batch.task].train for ex in batch.examples)
    counts = [sum(b.task == k for b in a) for k in range(3)]
    assert counts[0] > counts[1] > counts[2] > 0
    first = [b for b in a if b.task == 0][:6]  # a task's batches walk through its whole training set first
    assert len({ex.source for b in first for ex in b.examples}) == 24


@pytest.mark.parametrize("composition", [c.value for c in Composition])
def test_every_task_starts_from_the_shared_prompt(composition, specs, tiny_lms):
    lm = tiny_lms["causal"]
    config = MultitaskConfig(n_tokens=5, composition=composition, rank=2, task_tokens=3, factor_noise=0.0)
    params = build_params(config, lm, taskset(specs, lm), seed=0)
    for value in params().values():
        assert value.shape == (config.rows, lm.hidden_size)
        assert torch.allclose(value[:5], params.shared, atol=1e-6)


@pytest.mark.parametrize("composition", [c.value for c in Composition])
def test_a_step_on_one_task_changes_the_shared_prompt_and_that_tasks_part_only(composition, specs, tiny_lms):
    lm = tiny_lms["causal"]
    tasks = taskset(specs, lm)
    config = MultitaskConfig(n_tokens=4, composition=composition, rank=2, task_tokens=2)
    params = build_params(config, lm, tasks, seed=0)
    before = {k: v.detach().clone() for k, v in params.named_parameters()}
    item = TaskBatch(1, tuple(tasks[1].train[:4]))
    prompts = [task_prompt(t, config.rows) for t in tasks]
    fit(params, [item], TrainConfig(**STEP), loss_fn=batch_loss(tasks, prompts), frozen=lm.model)
    after = dict(params.named_parameters())
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    own = {k for k, p in params.named_parameters() if any(p is q for q in params.task_parameters(1))}
    if composition == Composition.ADDITIVE.value:
        # U V^T with V = 0 gives U no gradient on the first step; V (and through it the product) moves
        own = {k for k in own if k.startswith("v.")}
    assert moved == {"shared"} | own and own


def test_multitask_run_trains_every_part_and_its_exported_prompts_rescore_to_the_reported_metrics(specs, tiny_lms,
                                                                                                  tmp_path):  # fmt: skip
    lm = tiny_lms["causal"]
    out = tmp_path / "run"
    result = run_multitask(TaskSetOptions(tasks=list(specs.values()), output=str(out), max_eval=8, progress=False,
                                          train={"steps": 12, "batch_size": 4, "eval_every": 6, "checkpoint_every": 0},
                                          method_options={"n_tokens": 4, "rank": 1}), lm=lm)  # fmt: skip
    summary = result.summary
    assert summary["tasks"] == ["alpha", "beta", "gamma"] and (out / "multitask.json").exists()
    assert sum(m["training_batches"] for m in summary["metrics"].values()) == 12
    from safetensors.torch import load_file

    trained = load_file(str(out / "multitask.safetensors"))
    start = build_params(MultitaskConfig(n_tokens=4, rank=1), lm, taskset(specs, lm, max_eval=8), seed=0).state_dict()
    for name, value in trained.items():
        k = int(name.split(".")[1]) if "." in name else None
        if k is None or summary["metrics"][summary["tasks"][k]]["training_batches"]:
            assert not torch.equal(value, start[name]), f"{name} did not train"
    for name, task_result in result.results.items():
        run_dir = out / "tasks" / name
        prompt = Prompt.load(run_dir / "prompt")
        assert prompt.text().startswith("[P*4:p0]") and prompt.meta["task"] == name
        assert torch.equal(prompt.vectors["p0"], trained_prompt(trained, summary["tasks"].index(name)))
        task = next(t for t in taskset(specs, lm, max_eval=8) if t.name == name)
        assert task.evaluate(prompt).metrics["accuracy"] == task_result.metrics["eval"]["accuracy"]
        assert summary["metrics"][name]["eval"]["accuracy"] == task_result.metrics["eval"]["accuracy"]
    board = load_board([out])
    label = "multitask:alpha+beta+gamma"
    # each task's row (the whole run's result.json at the top is a summary over tasks, not a row)
    rows = sorted((r.task, r.method) for r in board.runs)
    assert rows == [("alpha", label), ("beta", label), ("gamma", label)]
    whole = promptopt.sdk.RunResult.load(out)
    assert whole.metrics["eval"]["score"] == pytest.approx(summary["mean_eval_score"])
    assert whole.metrics["tasks"] == {name: m["eval"] for name, m in summary["metrics"].items()}


def trained_prompt(state: dict, k: int) -> torch.Tensor:
    return state["shared"] * (state[f"u.{k}"] @ state[f"v.{k}"].T)


def test_multitask_prompts_initialise_soft_and_transfer_prompts_of_other_tasks(specs, tiny_lms, tmp_path):
    lm = tiny_lms["causal"]
    out = tmp_path / "run"
    run_multitask(tasks=list(specs.values())[:2], output=str(out), max_eval=4, progress=False, select=False,
                  train={"steps": 2, "batch_size": 2, "checkpoint_every": 0},
                  method_options={"n_tokens": 3, "composition": "concat", "task_tokens": 2}, lm=lm)  # fmt: skip
    source = Prompt.load(out / "tasks" / "beta" / "prompt")
    tasks = taskset(specs, lm)
    fake = SimpleNamespace(lm=lm, scorer=tasks[2].scorer, seed=0)
    target = Prompt.from_template("[P*5]" + tasks[2].template)  # a new task, the source's size
    values = initial_values(SoftConfig(init="prompt", init_prompt=str(out / "tasks" / "beta" / "prompt")), fake, target)
    assert torch.equal(values["p0"], source.vectors["p0"])
    config = MultitaskConfig(n_tokens=5, init="prompt", init_prompt=str(out / "tasks" / "beta" / "prompt"))
    assert torch.equal(build_params(config, lm, tasks, seed=0).shared, source.vectors["p0"])
    # the transfer method starts from the multitask run's shared prompt (lr 0: it stays there)
    shared = Prompt.load(out / "shared" / "prompt").vectors["p0"]
    result = promptopt.run(method="transfer", task=specs["gamma"], lm=lm, output=str(tmp_path / "transfer"),
                           max_eval=4, progress=False, method_options={"source": str(out)},
                           train={"steps": 1, "batch_size": 2, "lr": 0.0, "checkpoint_every": 0})  # fmt: skip
    moved = Prompt.load(tmp_path / "transfer" / "prompt")
    assert result.method == "transfer" and moved.text().startswith("[P*3:p0]{premise}")
    assert torch.equal(moved.vectors["p0"], shared) and moved.meta["transfer_from"].endswith("shared/prompt")
    with pytest.raises(ConfigError, match="not a prompt directory"):
        promptopt.run(method="transfer", task=specs["gamma"], lm=lm, output=str(tmp_path / "bad"), max_eval=4,
                      progress=False, method_options={"source": str(tmp_path)}, train={"steps": 1})  # fmt: skip


def test_multitask_command_writes_the_run(specs, tiny_model_dirs, tmp_path):
    from promptopt.cli import cli

    out = tmp_path / "cli"
    args = ["multitask", "--tasks", ",".join(list(specs.values())[:2]), "--model", str(tiny_model_dirs["masked"]),
            "--output", str(out), "--max-eval", "4", "--steps", "2", "--batch-size", "2", "--no-select",
            "--no-progress", "-o", "composition=additive", "-o", "mixture=proportional"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "alpha" in result.output and (out / "tasks" / "beta" / "result.json").exists()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_task_templates_must_leave_the_soft_vectors_to_the_method(specs, tiny_lms):
    with pytest.raises(ConfigError, match="has \\[P\\] slots"):
        taskset(specs, tiny_lms["causal"], templates={"alpha": "[P*3]{text}{answer}"})
    with pytest.raises(TemplateError, match="not an input"):
        taskset(specs, tiny_lms["causal"], templates={"beta": "{text}{answer}"})
    with pytest.raises(ConfigError, match="not in --tasks"):
        taskset(specs, tiny_lms["causal"], templates={"delta": "{text}{answer}"})
