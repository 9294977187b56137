"""P-tuning: the prompt encoder, the artifact that needs no encoder, the saved encoder, resume with dropout."""

from __future__ import annotations

import pytest
import torch

import promptopt
from promptopt import hookimpl
from promptopt.errors import ConfigError
from promptopt.plugins import make_plugin_manager
from promptopt.data.prompt import Prompt
from promptopt_plugins.ptuning import EncoderSpec, PromptEncoder, PTuningConfig, load_encoder

from conftest import TINY_REVIEWS

TASK = str(TINY_REVIEWS / "task.toml")


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_encoder_gives_one_tensor_per_segment_and_gradients_reach_it(kind):
    spec = EncoderSpec(kind=kind, segments=[["p0", 3], ["p1", 2]], hidden_size=8, encoder_hidden=6, lstm_layers=2,
                       dropout=0.0)  # fmt: skip
    encoder = PromptEncoder(spec)
    out = encoder()
    assert {k: tuple(v.shape) for k, v in out.items()} == {"p0": (3, 8), "p1": (2, 8)}
    (out["p0"].sum() + out["p1"].sum()).backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert (encoder.lstm is not None) == (kind == "lstm")


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match="PTuningConfig.encoder is 'gru'"):
        PTuningConfig(encoder="gru")
    with pytest.raises(ConfigError, match="PTuningConfig.encoder_hidden"):
        PTuningConfig(encoder_hidden=7)
    with pytest.raises(ConfigError, match="PTuningConfig.init cannot be 'prompt'"):
        PTuningConfig(init="prompt")


def run_ptuning(lm, out, pm=None, **kwargs):
    options = dict(method="ptuning", task=TASK, lm=lm, max_train=16, max_eval=12, progress=False,
                   output=str(out), train={"steps": 6, "batch_size": 4, "lr": 0.01, "eval_every": 2, "checkpoint_every": 1},
                   method_options={"n_tokens": 4})  # fmt: skip
    options.update(kwargs)
    return promptopt.run(pm=pm, **options) if pm is not None else promptopt.run(**options)


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_artifact_holds_the_encoder_output_and_needs_no_encoder(kind, tiny_lms, tiny_model_dirs, tmp_path):
    result = run_ptuning(tiny_lms[kind], tmp_path / "run", method_options={"n_tokens": 4, "encoder": "mlp"})
    prompt = Prompt.load(tmp_path / "run" / "prompt")
    assert prompt.text() == "[P*2:p0]Review: {text}[P*2:p1]\nSentiment:{answer}"  # default rule: around the input
    encoder = load_encoder(tmp_path / "run" / "encoder")
    encoder.eval()
    with torch.no_grad():
        produced = encoder()
    assert all(torch.equal(produced[k], prompt.vectors[k]) for k in ("p0", "p1"))
    assert result.trainable_parameters == sum(p.numel() for p in encoder.parameters())
    again = promptopt.evaluate_prompt(tmp_path / "run" / "prompt", TASK, split="test", model=str(tiny_model_dirs[kind]),
                                      max_eval=12, progress=False)  # fmt: skip
    assert again.metrics["accuracy"] == result.metrics["eval"]["accuracy"]


class Crash:
    """A plugin that interrupts training after a given step (before that step's checkpoint)."""

    def __init__(self, step):
        self.step = step

    @hookimpl
    def training_step(self, run, step, loss, lr):
        if step == self.step:
            raise KeyboardInterrupt


def test_resume_with_encoder_dropout_reaches_the_uninterrupted_prompt(tiny_lms, tmp_path):
    options = {"n_tokens": 4, "encoder": "lstm", "dropout": 0.2, "encoder_hidden": 16}
    full = run_ptuning(tiny_lms["causal"], tmp_path / "full", method_options=options)
    with pytest.raises(KeyboardInterrupt):
        run_ptuning(tiny_lms["causal"], tmp_path / "cut", pm=make_plugin_manager(extra_plugins=[Crash(4)]),
                    method_options=options)  # fmt: skip
    resumed = run_ptuning(tiny_lms["causal"], tmp_path / "cut", method_options=options, resume=True)
    a, b = (Prompt.load(tmp_path / d / "prompt").vectors for d in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.select_metrics == full.select_metrics and resumed.metrics == full.metrics


def test_init_encoder_starts_from_a_saved_encoder(tiny_lms, tmp_path):
    run_ptuning(tiny_lms["causal"], tmp_path / "first", method_options={"n_tokens": 4, "encoder": "mlp"})
    saved = load_encoder(tmp_path / "first" / "encoder")
    second = run_ptuning(tiny_lms["causal"], tmp_path / "second", train={"steps": 1, "lr": 1e-9, "eval_every": 0},
                         method_options={"n_tokens": 4, "encoder": "mlp", "init_encoder": str(tmp_path / "first" / "encoder")})  # fmt: skip
    continued = load_encoder(tmp_path / "second" / "encoder")
    assert all(torch.allclose(saved.state_dict()[k], v, atol=1e-6) for k, v in continued.state_dict().items())
    assert second.trainable_parameters == sum(p.numel() for p in saved.parameters())
    with pytest.raises(ConfigError, match="init_encoder"):
        run_ptuning(tiny_lms["causal"], tmp_path / "third",
                    method_options={"n_tokens": 6, "encoder": "mlp", "init_encoder": str(tmp_path / "first" / "encoder")})  # fmt: skip


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_residual_encoder_starts_at_its_input_table_and_plain_one_does_not(kind):
    spec = EncoderSpec(kind=kind, segments=[["p0", 3], ["p1", 2]], hidden_size=8, encoder_hidden=6, lstm_layers=1,
                       dropout=0.0, residual=True, encoder_lr_scale=0.1)  # fmt: skip
    table = torch.randn(5, 8)
    out = PromptEncoder(spec, table)()
    assert torch.equal(torch.cat([out["p0"], out["p1"]]), table)
    spec.residual = False
    plain = PromptEncoder(spec, table)()
    assert not torch.allclose(torch.cat([plain["p0"], plain["p1"]]), table)


def test_encoder_weights_train_at_the_scaled_learning_rate():
    spec = EncoderSpec(kind="mlp", segments=[["p0", 2]], hidden_size=8, encoder_hidden=6, lstm_layers=1, dropout=0.0,
                       residual=True, encoder_lr_scale=0.25)  # fmt: skip
    groups = PromptEncoder(spec, torch.randn(2, 8)).optimizer_groups()
    assert [len(g["params"]) for g in groups] == [1, 4] and groups[0].get("lr_scale", 1.0) == 1.0
    assert groups[1]["lr_scale"] == 0.25
