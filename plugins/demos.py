"""In-context demonstrations: k labelled training examples, rendered with the template, in front of the input.

Each demonstration is the template filled with a training example and its class's first label word (the space
before the answer as the scorer puts it), demonstrations joined by ``separator``, the block followed by
``separator`` and then the template for the input.

Which examples (``choice``), from a seeded sample of at most ``pool`` training examples:

* ``random``: ``k`` per class (``per_class=true``, the default) or ``k`` in all, drawn at random (seeded);
* ``balanced``: ``k`` in all, split over the classes as evenly as they allow (the first classes get one more);
  with ``per_class`` it is ``random``;
* ``similar`` (KATE, Liu et al. 2022): for each input its own ``k`` nearest pool examples (per class, or in all) by
  cosine similarity of the task model's mean-pooled last hidden states over the input fields.

``random`` and ``balanced`` give one fixed block for every input: the prompt is literal text in front of the
template, so the engine computes the block once per batch (shared-prefix reuse), and ``candidates`` blocks are
drawn and the best on the selection split is kept. ``similar`` gives each input its own block, through an input
field ``demonstrations`` the run fills in for the selection split and, after the method returns, for the reported
split (:meth:`PromptOptimizer.example_inputs`; inputs only, never labels); per-input blocks are scored in the
engine's ordinary batches.

Order (``order``): ``interleave`` (classes alternate: a, b, a, b), ``grouped`` (class by class), ``random``
(seeded shuffle), ``nearest-last`` (``similar``: the most similar next to the input; otherwise as drawn).

Context limit: demonstrations take at most ``max_fraction`` of the model's positions, and a per-input block also
leaves room for its input; demonstrations that do not fit are left out, the last in the block's order first
(``nearest-last``: the least similar first), and the count left out is recorded. The input itself is never cut for a
demonstration (inputs longer than the rest are cut by the engine's rule).

The saved prompt lists the demonstrations used (``meta["demonstrations"]``: source, label, text).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

import torch

from promptopt import hookimpl
from promptopt.sdk import (
    MethodKind, ConfigError,
    Example,
    OptimizeResult,
    Prompt,
    PromptOptimizer,
    PromptoptError,
    ResumableState,
    RunContext,
    SegmentKind,
    TaskKind,
    decode_escapes,
    enum_value,
)

DEMO_FIELD = "demonstrations"


class DemoChoice(str, enum.Enum):
    RANDOM = "random"
    BALANCED = "balanced"
    SIMILAR = "similar"


class DemoOrder(str, enum.Enum):
    INTERLEAVE = "interleave"
    GROUPED = "grouped"
    RANDOM = "random"
    NEAREST_LAST = "nearest-last"


@dataclass
class DemosConfig:
    k: int = field(default=2, metadata={"help": "demonstrations per class (per_class) or in all"})
    per_class: bool = field(default=True, metadata={"help": "k per class (true) or k in all (false)"})
    choice: DemoChoice = field(default=DemoChoice.RANDOM, metadata={"help": "random, balanced or similar (KATE: nearest by the model's mean-pooled hidden states, per input)"})  # fmt: skip
    order: DemoOrder = field(default=DemoOrder.INTERLEAVE, metadata={"help": "interleave, grouped, random or nearest-last"})
    candidates: int = field(default=4, metadata={"help": "fixed blocks drawn and scored on the selection split; the best is kept (random, balanced)"})  # fmt: skip
    pool: int = field(default=512, metadata={"help": "training examples demonstrations are drawn from (seeded sample; 0 = all)"})
    separator: str = field(default="\\n\\n", metadata={"help": "text between demonstrations and before the input (\\n for a newline)"})
    max_fraction: float = field(default=0.5, metadata={"help": "demonstrations take at most this fraction of the model's positions"})

    def __post_init__(self):
        self.choice = enum_value(DemoChoice, self.choice, "DemosConfig.choice")
        self.order = enum_value(DemoOrder, self.order, "DemosConfig.order")
        for name in ("k", "candidates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DemosConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.pool < 0:
            raise ConfigError(f"DemosConfig.pool must be >= 0, got {self.pool}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ConfigError(f"DemosConfig.max_fraction must be in (0, 1], got {self.max_fraction}")


class DemosOptimizer(PromptOptimizer):
    """In-context demonstrations in front of the template: a fixed block (best of a few) or one per input."""

    name = "demos"
    description = "in-context demonstrations: k labelled training examples in front of the input (random, balanced, or similar per input)"  # fmt: skip
    kind = MethodKind.HARD
    config_class = DemosConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        cfg = self.config
        base = Prompt.from_template(run.templates[0])
        base.check_fields(run.task.inputs)
        if any(s.kind in (SegmentKind.TOKENS, SegmentKind.VECTORS) for s in base.segments):
            raise ConfigError(f"demos needs a text template (no [T] or [P] slots), got {run.templates[0]!r}")
        if DEMO_FIELD in run.task.inputs:
            raise ConfigError(f"demos: the task has an input named {DEMO_FIELD!r}, which the method uses")
        rng = random.Random(run.seed)
        pool = list(run.train)
        if not pool:
            raise PromptoptError(f"task {run.task.name!r}: demos needs training examples")
        if cfg.pool and len(pool) > cfg.pool:
            pool = rng.sample(pool, cfg.pool)
        self.demos = Demonstrations(run, base, pool, cfg)
        store = ResumableState(run.output_dir / "checkpoint" / "demos.json",
                               {"template": run.templates[0], "seed": run.seed, "pool": [ex.source for ex in pool],
                                "config": {k: str(v) for k, v in vars(cfg).items()}})  # fmt: skip
        saved = (store.load() if run.resume else None) or {"scored": [], "history_bytes": run.history_bytes()}
        run.truncate_history(saved["history_bytes"])
        scored: list[dict] = saved["scored"]
        if cfg.choice == DemoChoice.SIMILAR:
            blocks = [None]  # one per input
        else:
            blocks = [self.demos.draw(rng) for _ in range(cfg.candidates)]
        for i, chosen in enumerate(blocks):
            if i < len(scored):
                continue
            if scored and run.compute.exhausted:
                run.log({"stopped": "compute_budget", "blocks_scored": i})
                break
            prompt, used = self.demos.prompt(chosen)
            result = run.evaluate(prompt, self.demos.fill(prompt, run.select), step=i)
            run.log({"block": i, "choice": cfg.choice.value, "demonstrations": used,
                     "select": {k: v for k, v in result.metrics.items() if k != "per_class"},
                     "seconds": round(result.seconds, 3)})  # fmt: skip
            scored.append({"score": result.score, "metrics": result.metrics})
            store.save({"scored": scored, "history_bytes": run.history_bytes()})
        best = max(range(len(scored)), key=lambda i: (scored[i]["score"], -i))
        prompt, used = self.demos.prompt(blocks[best])
        self.prompt = prompt
        prompt.meta["demonstrations"] = used
        return OptimizeResult(prompt=prompt, trainable_parameters=0, select_metrics=scored[best]["metrics"])

    def example_inputs(self, run: RunContext, prompt: Prompt, inputs: list[dict]) -> list[dict]:
        return self.demos.fill_inputs(prompt, inputs)


class Demonstrations:
    """Drawing, ordering, rendering and fitting demonstrations for one run."""

    def __init__(self, run: RunContext, base: Prompt, pool: list[Example], cfg: DemosConfig):
        self.run, self.base, self.pool, self.cfg = run, base, pool, cfg
        self.encoder = run.scorer.encoder
        self.sep = decode_escapes(cfg.separator)
        self.classification = run.task.kind == TaskKind.CLASSIFICATION
        words = base.label_words or run.task.label_words
        self.labels = list(run.task.label_words) if self.classification else sorted({ex.label for ex in pool})
        self.words = {lab: words[lab][0] for lab in self.labels} if self.classification else {}
        self.by_class = {lab: [ex for ex in pool if ex.label == lab] for lab in self.labels}
        self.budget = int(cfg.max_fraction * self.encoder.max_length)
        self._features = None

    # -- choosing ---------------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """How many demonstrations of each class a block holds."""
        cfg, labels = self.cfg, [lab for lab in self.labels if self.by_class[lab]]
        if cfg.per_class:
            return {lab: min(cfg.k, len(self.by_class[lab])) for lab in labels}
        if cfg.choice != DemoChoice.BALANCED:  # k in all, any classes
            return {}
        share, extra = divmod(cfg.k, len(labels))
        return {lab: min(share + (i < extra), len(self.by_class[lab])) for i, lab in enumerate(labels)}

    def draw(self, rng: random.Random) -> list[Example]:
        """One fixed block (random or balanced), ordered."""
        counts = self.counts()
        if not counts:  # k in all, any classes
            return self.order(rng.sample(self.pool, min(self.cfg.k, len(self.pool))), rng)
        chosen = [ex for lab, n in counts.items() for ex in rng.sample(self.by_class[lab], n)]
        return self.order(chosen, rng)

    def nearest(self, inputs: dict, feature: torch.Tensor | None = None) -> list[Example]:
        """The input's own block (similar), ordered: by class count or overall, nearest first before ordering.
        ``feature``: the input's own (:meth:`features_of`), when computed already."""
        pool_features = self.features(self.pool)
        if feature is None:
            feature = self.features_of([inputs])[0]
        sims = (pool_features @ feature).tolist()
        ranked = sorted(range(len(self.pool)), key=lambda i: (-sims[i], i))
        counts = self.counts()
        if counts:
            taken, chosen = dict.fromkeys(counts, 0), []
            for i in ranked:
                lab = self.pool[i].label
                if lab in taken and taken[lab] < counts[lab]:
                    taken[lab] += 1
                    chosen.append(self.pool[i])
        else:
            chosen = [self.pool[i] for i in ranked[: self.cfg.k]]
        if self.cfg.order == DemoOrder.NEAREST_LAST:
            return chosen[::-1]
        return self.order(chosen, random.Random(self.run.seed))

    def order(self, chosen: list[Example], rng: random.Random) -> list[Example]:
        order = self.cfg.order
        if order == DemoOrder.RANDOM:
            chosen = list(chosen)
            rng.shuffle(chosen)
            return chosen
        if order == DemoOrder.GROUPED:
            return sorted(chosen, key=lambda ex: self.labels.index(ex.label))
        if order == DemoOrder.INTERLEAVE:
            queues = [[ex for ex in chosen if ex.label == lab] for lab in self.labels]
            out = []
            while any(queues):
                out += [q.pop(0) for q in queues if q]
            return out
        return list(chosen)  # nearest-last for a fixed block: as drawn

    # -- similarity ---------------------------------------------------------------------------------------------
    def features(self, examples: list[Example]) -> torch.Tensor:
        if self._features is None:
            self._features = self.features_of([ex.inputs for ex in examples])
        return self._features

    def features_of(self, inputs: list[dict]) -> torch.Tensor:
        """``(N, H)`` unit vectors: the model's last hidden states over the input fields, mean-pooled."""
        return mean_pooled(self.run.lm, ["\n".join(str(x[f]) for f in self.base.fields) for x in inputs],
                           self.run.scorer.batch_size)  # fmt: skip

    # -- rendering ----------------------------------------------------------------------------------------------
    def render(self, ex: Example) -> str:
        """The template filled with the example and its answer word (the answer's leading space as scored)."""
        parts, segs = [], self.base.segments
        for s in segs:
            if s.kind == SegmentKind.TEXT:
                parts.append(s.text)
            elif s.kind == SegmentKind.FIELD:
                parts.append(ex.inputs[s.field])
            elif s.kind == SegmentKind.ANSWER:
                if parts:
                    parts[-1] = parts[-1].rstrip(" ")
                parts.append(self.encoder.answer_prefix(self.base) + (self.words.get(ex.label, ex.label)))
        return "".join(parts)

    def block(self, chosen: list[Example], room: int) -> tuple[str, list[dict]]:
        """The block's text and what it holds, demonstrations left out from the end until it fits in ``room``."""
        chosen = list(chosen)
        while chosen:
            texts = [self.render(ex) for ex in chosen]
            text = self.sep.join(texts) + self.sep
            if len(self.encoder.tokens(text)) <= room:
                used = [{"source": ex.source, "label": ex.label, "text": t} for ex, t in zip(chosen, texts)]
                return text, used
            chosen.pop(0 if self.cfg.order == DemoOrder.NEAREST_LAST else -1)  # the least similar goes first
        return "", []

    def prompt(self, chosen: list[Example] | None) -> tuple[Prompt, list[dict]]:
        """The prompt for a fixed block, or (``None``) the per-input prompt with its ``demonstrations`` field."""
        template = self.base.template
        if chosen is None:
            p = Prompt.from_template("{" + DEMO_FIELD + "}" + template, label_words=self.base.label_words)
            return p, [{"choice": "similar", "pool": [ex.source for ex in self.pool], "k": self.cfg.k,
                        "per_class": self.cfg.per_class}]  # fmt: skip
        text, used = self.block(chosen, self.budget)
        if len(used) < len(chosen):
            self.run.log({"left_out": len(chosen) - len(used), "room_tokens": self.budget})
        escaped = text.replace("{", "{{").replace("}", "}}")
        return Prompt.from_template(escaped + template, label_words=self.base.label_words), used

    def fill_inputs(self, prompt: Prompt, inputs: list[dict]) -> list[dict]:
        """Inputs with their own ``demonstrations`` block when the prompt asks for one (similar)."""
        if DEMO_FIELD not in prompt.fields:
            return inputs
        out = []
        features = self.features_of(inputs)  # in batches
        for x, feature in zip(inputs, features):
            own = self.encoder.encode(self.base, x, _NO_VECTORS)
            room = min(self.budget, self.encoder.max_length - len(own.ids))
            out.append({**x, DEMO_FIELD: self.block(self.nearest(x, feature), room)[0]})
        return out

    def fill(self, prompt: Prompt, examples: list[Example]) -> list[Example]:
        filled = self.fill_inputs(prompt, [ex.inputs for ex in examples])
        return [Example(inputs=x, label=ex.label, source=ex.source) for x, ex in zip(filled, examples)]


class _NoVectors:
    offsets: dict = {}
    table = None


_NO_VECTORS = _NoVectors()


def mean_pooled(lm, texts: list[str], batch_size: int = 16) -> torch.Tensor:
    """``(N, H)`` unit vectors: each text's last hidden states (the model's base, no head) averaged over its tokens."""
    model = lm.model
    base = getattr(model, model.base_model_prefix, model)
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            ids = [tok(t, add_special_tokens=True)["input_ids"][:512] or [pad] for t in texts[i : i + batch_size]]
            width = max(map(len, ids))
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=lm.device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=lm.device)
            hidden = base(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
    return torch.cat(rows, dim=0)


@hookimpl
def register_optimizers(register):
    register(DemosOptimizer)
