"""P-tuning (Liu et al., 2021): a prompt encoder produces the virtual tokens, interleaved with fixed anchor text.

The virtual tokens are the template's ``[P]`` slots; the template's own text stays as fixed anchors between them
(e.g. ``[P*10]Review: {sentence}[P*10]\\nSentiment:{answer}``). Templates are chosen as for soft prompts (see
:mod:`promptopt.pipeline.vectors`), with ``template_rule=around`` by default. A trainable table of inputs (one row per
virtual token, across all slots in order, initialised by ``init`` like a soft prompt) goes through the encoder:

* ``lstm``: a bidirectional LSTM (``lstm_layers`` layers, ``encoder_hidden/2`` units per direction), then a
  two-layer MLP back to the model's hidden size (the paper's encoder);
* ``mlp``: the two-layer MLP alone.

With ``residual=true`` (the default) the encoder output is added to its input table, ``out = x + MLP(LSTM(x))``,
and the MLP's last layer starts at zero (residual reparameterisation, Razdaibiedina et al., 2023): training starts
exactly from the initialisation (a text init means something, as for soft prompts), and the vectors stay on the
scale of the embeddings. Without it (``residual=false``, the paper's encoder) the output is ``MLP(LSTM(x))``, which
starts at an arbitrary point of small norm. The encoder's weights train at ``encoder_lr_scale`` times the run's
learning rate, the input table at the full rate (P-tuning's defaults: lr 3e-2, scale 0.01): an MLP trained at a
soft prompt's learning rate drives the outputs to norms in the thousands (measured: 439-3,499 against ~3 for
vocabulary embeddings).

Only the encoder trains, with the shared loop. Afterwards its output is stored in the prompt artifact as plain soft
vectors, so inference needs no encoder; the encoder itself is saved to ``RUN/encoder/`` (``encoder.safetensors``
and ``encoder.json``), from which ``init_encoder`` can start a later run. Resuming an interrupted run restores it
from the training checkpoint.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from promptopt import hookimpl
from promptopt.sdk import (
    MethodKind, ConfigError,
    OptimizeResult,
    Prompt,
    PromptOptimizer,
    PromptoptError,
    RunContext,
    SegmentKind,
    SoftPromptInit,
    TemplateRule,
    atomic_path,
    check_common,
    enum_value,
    initial_rows,
    soft_templates,
    train_templates,
    write_json,
)


class PromptEncoderKind(str, enum.Enum):
    LSTM = "lstm"
    MLP = "mlp"


@dataclass
class PTuningConfig:
    n_tokens: int = field(default=20, metadata={"help": "virtual tokens in the template built by template_rule (templates with [P] slots set their own)"})  # fmt: skip
    template_rule: TemplateRule = field(default=TemplateRule.AROUND, metadata={"help": "where the virtual tokens go when no template has [P] slots: prefix or around (front and after the last input field)"})  # fmt: skip
    encoder: PromptEncoderKind = field(default=PromptEncoderKind.LSTM, metadata={"help": "prompt encoder: lstm (bidirectional LSTM + MLP) or mlp"})  # fmt: skip
    encoder_hidden: int = field(default=0, metadata={"help": "encoder width (0 = the model's hidden size)"})
    lstm_layers: int = field(default=2, metadata={"help": "LSTM layers (encoder=lstm)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout inside the encoder while training"})
    init: SoftPromptInit = field(default=SoftPromptInit.VOCAB, metadata={"help": "initial encoder inputs: random, vocab, text or labels"})  # fmt: skip
    init_text: str = field(default="", metadata={"help": "text whose token embeddings initialise the encoder inputs (init=text)"})  # fmt: skip
    init_range: float = field(default=0.5, metadata={"help": "half-width of the uniform range (init=random)"})
    vocab_top: int = field(default=5000, metadata={"help": "sample from this many most frequent tokens (init=vocab, labels)"})  # fmt: skip
    init_encoder: str = field(default="", metadata={"help": "encoder directory of an earlier run (RUN/encoder) to start from"})  # fmt: skip
    residual: bool = field(default=True, metadata={"help": "output = input table + MLP(...), last layer zero at start (false: the paper's plain encoder)"})  # fmt: skip
    encoder_lr_scale: float = field(default=0.01, metadata={"help": "the encoder weights' learning rate as a fraction of --lr (the input table trains at --lr)"})  # fmt: skip

    def __post_init__(self):
        check_common(self)
        self.encoder = enum_value(PromptEncoderKind, self.encoder, "PTuningConfig.encoder")
        if self.init == SoftPromptInit.PROMPT:
            raise ConfigError("PTuningConfig.init cannot be 'prompt'; use init_encoder to start from a saved encoder")
        if self.encoder_hidden < 0 or self.encoder_hidden % 2:
            raise ConfigError(f"PTuningConfig.encoder_hidden must be 0 or a positive even number, got {self.encoder_hidden}")  # fmt: skip
        if self.lstm_layers < 1:
            raise ConfigError(f"PTuningConfig.lstm_layers must be >= 1, got {self.lstm_layers}")
        if self.encoder_lr_scale <= 0:
            raise ConfigError(f"PTuningConfig.encoder_lr_scale must be > 0, got {self.encoder_lr_scale}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"PTuningConfig.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class EncoderSpec:
    """Everything needed to rebuild an encoder (written as ``encoder.json``)."""

    kind: str
    segments: list[list]  # [[name, n], ...] in template order
    hidden_size: int
    encoder_hidden: int
    lstm_layers: int
    dropout: float
    residual: bool = False  # encoders saved before the option existed were plain
    encoder_lr_scale: float = 1.0


class PromptEncoder(torch.nn.Module):
    """Virtual-token inputs -> (LSTM) -> MLP -> one ``(n, hidden)`` tensor per soft segment."""

    def __init__(self, spec: EncoderSpec, inputs: torch.Tensor | None = None):
        super().__init__()
        self.spec = spec
        total = sum(n for _, n in spec.segments)
        width = spec.encoder_hidden
        self.inputs = torch.nn.Parameter(inputs.clone() if inputs is not None else torch.randn(total, spec.hidden_size))
        if spec.kind == PromptEncoderKind.LSTM.value:
            self.lstm = torch.nn.LSTM(spec.hidden_size, width // 2, num_layers=spec.lstm_layers, bidirectional=True,
                                      batch_first=True, dropout=spec.dropout if spec.lstm_layers > 1 else 0.0)  # fmt: skip
            mlp_in = width
        else:
            self.lstm = None
            mlp_in = spec.hidden_size
        self.mlp = torch.nn.Sequential(torch.nn.Linear(mlp_in, width), torch.nn.ReLU(), torch.nn.Dropout(spec.dropout),
                                       torch.nn.Linear(width, spec.hidden_size))  # fmt: skip
        if spec.residual:
            torch.nn.init.zeros_(self.mlp[-1].weight)
            torch.nn.init.zeros_(self.mlp[-1].bias)

    def optimizer_groups(self) -> list[dict]:
        """The input table at the run's learning rate, the encoder weights at ``encoder_lr_scale`` times it."""
        rest = [p for name, p in self.named_parameters() if name != "inputs"]
        return [{"params": [self.inputs]}, {"params": rest, "lr_scale": self.spec.encoder_lr_scale}]

    def forward(self) -> dict[str, torch.Tensor]:
        x = self.inputs
        if self.lstm is not None:
            x = self.lstm(x.unsqueeze(0))[0].squeeze(0)
        out = self.mlp(x)
        if self.spec.residual:
            out = self.inputs + out
        names = [name for name, _ in self.spec.segments]
        return dict(zip(names, out.split([n for _, n in self.spec.segments])))


def save_encoder(encoder: PromptEncoder, directory: Path) -> Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "encoder.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, str(tmp))
    write_json(directory / "encoder.json", asdict(encoder.spec))
    return directory


def load_encoder(directory: Path) -> PromptEncoder:
    from safetensors.torch import load_file

    path = directory / "encoder.json"
    if not path.exists():
        raise PromptoptError(f"{directory}: not a P-tuning encoder directory (no encoder.json)")
    try:
        spec = EncoderSpec(**json.loads(path.read_text(encoding="utf-8")))
    except (TypeError, json.JSONDecodeError) as e:
        raise PromptoptError(f"{path}: malformed encoder spec ({e})") from None
    encoder = PromptEncoder(spec)
    encoder.load_state_dict(load_file(str(directory / "encoder.safetensors")))
    return encoder


class PTuningOptimizer(PromptOptimizer):
    """Trains a prompt encoder whose output fills the template's ``[P]`` slots; the model stays frozen."""

    name = "ptuning"
    description = "P-tuning: an LSTM/MLP prompt encoder produces virtual tokens between fixed anchor text"
    kind = MethodKind.SOFT
    config_class = PTuningConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        config = self.config
        templates = soft_templates(run.templates, config.n_tokens, config.template_rule)
        prompt, result, encoder = train_templates(run, templates, lambda p: self.make_encoder(run, p))
        save_encoder(encoder, run.output_dir / "encoder")
        prompt.meta.update({"encoder": config.encoder.value, "encoder_dir": "encoder"})
        return OptimizeResult(prompt=prompt, trainable_parameters=result.trainable_parameters,
                              select_metrics=result.best_metrics, extra={"best_step": result.best_step})  # fmt: skip

    def make_encoder(self, run: RunContext, prompt: Prompt) -> PromptEncoder:
        config = self.config
        segs = prompt.segments_of(SegmentKind.VECTORS)
        if not segs:
            raise PromptoptError(f"template {prompt.template!r} has no [P] slot to train")
        spec = EncoderSpec(kind=config.encoder.value, segments=[[s.name, s.n] for s in segs], hidden_size=run.lm.hidden_size,
                           encoder_hidden=config.encoder_hidden or run.lm.hidden_size, lstm_layers=config.lstm_layers,
                           dropout=config.dropout, residual=config.residual,
                           encoder_lr_scale=config.encoder_lr_scale)  # fmt: skip
        if config.init_encoder:
            encoder = load_encoder(Path(config.init_encoder))
            encoder.spec.encoder_lr_scale = config.encoder_lr_scale
            if encoder.spec.segments != spec.segments or encoder.spec.hidden_size != spec.hidden_size:
                raise ConfigError(f"init_encoder {config.init_encoder}: it encodes {encoder.spec.segments} at hidden size "
                                  f"{encoder.spec.hidden_size}; this prompt needs {spec.segments} at {spec.hidden_size}")  # fmt: skip
            return encoder
        generator = torch.Generator().manual_seed(run.seed)
        inputs = initial_rows(config, run, prompt, sum(s.n for s in segs), generator)
        torch.manual_seed(run.seed)  # the encoder's own weights
        return PromptEncoder(spec, inputs)


@hookimpl
def register_optimizers(register):
    register(PTuningOptimizer)
