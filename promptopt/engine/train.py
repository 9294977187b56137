"""The training loop shared by every trainable method (configuration here; the loop itself: see ``fit``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import ConfigError


class OptimizerName(str, enum.Enum):
    ADAMW = "adamw"
    ADAFACTOR = "adafactor"


class Schedule(str, enum.Enum):
    CONSTANT = "constant"
    LINEAR = "linear"
    COSINE = "cosine"


@dataclass
class TrainConfig:
    """Options of the shared training loop. Each is also a ``promptopt run`` flag (``--steps``, ``--lr``, ...)."""

    steps: int = field(default=300, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "training examples per step (before accumulation)"})
    grad_accum: int = field(default=1, metadata={"help": "batches accumulated into one optimizer step"})
    lr: float = field(default=3e-2, metadata={"help": "peak learning rate"})
    optimizer: OptimizerName = field(default=OptimizerName.ADAMW, metadata={"help": "adamw or adafactor"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    schedule: Schedule = field(default=Schedule.LINEAR, metadata={"help": "learning-rate schedule after warm-up"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    eval_every: int = field(default=50, metadata={"help": "evaluate on the selection split every N steps (0 = only at the end)"})
    patience: int = field(default=0, metadata={"help": "stop after N evaluations without improvement (0 = never)"})
    checkpoint_every: int = field(default=50, metadata={"help": "write a resumable checkpoint every N steps (0 = off)"})

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "patience", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        self.optimizer = OptimizerName(self.optimizer)
        self.schedule = Schedule(self.schedule)
