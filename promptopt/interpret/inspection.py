"""Read a trained prompt: what its soft vectors are close to, what the model reads at them, which of them matter, and
how much a readable version of it keeps.

For each soft vector: its norm and its nearest vocabulary tokens by cosine similarity with the model's input
embeddings (top 5), and a logit lens (:mod:`promptopt.interpret.lens`): the top tokens the model's own head reads
from the hidden state at that position, at a few layers. The *projected* prompt replaces every soft vector by its
nearest token; re-scoring both on the same examples (the run's selection split, dev by default) shows how faithful
the readable version is. Per-vector ablation (:mod:`promptopt.interpret.ablation`) ranks the vectors by the score
they carry; distillation (:mod:`promptopt.interpret.distill`) searches word tokens from the projection towards the
soft prompt's predictions and reports a readable prompt that never scores below the projection; a self-description
probe (anecdotal) and, optionally, a waywardness check (:mod:`promptopt.interpret.wayward`, it retrains) complete
it. Hard segments are listed with their text and token ids.

Schema version 2 adds ``ablations``, ``lens``, ``readable``, ``self_description``, ``wayward``, ``eval_*`` and
``notes``; version-1 records (written before) are still read, with those empty.

    from promptopt.interpret.inspection import inspect_run
    print(render_text(inspect_run("runs/sst2-soft-s0")))
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from promptopt.data.files import read_json, write_json
from promptopt.data.prompt import Prompt, Segment, SegmentKind
from promptopt.data.tasks import Example, TaskKind
from promptopt.engine.model import LoadedModel, load_model
from promptopt.engine.scoring import EVAL_BATCH_SIZE, Scorer
from promptopt.errors import ConfigError, PromptoptError
from promptopt.interpret.ablation import ABLATIONS, VectorAblation, ablate_vectors, ranking
from promptopt.interpret.distill import Readable, distill, readable_prompt, self_description
from promptopt.interpret.lens import LensReading, LensToken, lens_unavailable, logit_lens
from promptopt.interpret.wayward import DEFAULT_TEXT, Wayward, waywardness

INSPECT_SCHEMA = "promptopt.interpret.inspection"
INSPECT_SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
INSPECT_FILE = "inspect.json"


@dataclass
class NearestToken:
    id: int
    token: str
    cosine: float


@dataclass
class VectorReport:
    index: int
    norm: float
    nearest: list[NearestToken]


@dataclass
class SegmentReport:
    """One segment: ``kind`` as in :class:`~promptopt.data.prompt.SegmentKind`; ``ids``/``tokens`` for text (tokenized on
    its own) and token segments; ``vectors`` for soft (vector) segments."""

    kind: str
    name: str = ""
    text: str = ""
    ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    vectors: list[VectorReport] = field(default_factory=list)


@dataclass
class InspectOptions:
    """What an inspection does beyond nearest tokens and the projection (each step can be switched off)."""

    ablate: bool = field(default=True, metadata={"help": "per-vector ablation, re-scored"})
    ablation_modes: tuple[str, ...] = field(default=ABLATIONS, metadata={"help": "remove and/or mean"})
    lens: bool = field(default=True, metadata={"help": "logit lens at each soft position"})
    lens_layers: list[int] | None = field(default=None, metadata={"help": "lens layers (default first, middle, last)"})
    lens_examples: int = field(default=4, metadata={"help": "examples the lens averages over"})
    distill: bool = field(default=True, metadata={"help": "readable prompt by word-token search from the projection"})
    distill_steps: int | None = field(default=None, metadata={"help": "positions tried (default: each once)"})
    distill_candidates: int = field(default=8, metadata={"help": "candidate tokens scored per step"})
    distill_train: int = field(default=64, metadata={"help": "training examples distilled on"})
    describe: bool = field(default=True, metadata={"help": "self-description probe (causal LMs; anecdotal)"})
    wayward: bool = field(default=False, metadata={"help": "waywardness check (retrains the prompt)"})
    wayward_text: str = field(default=DEFAULT_TEXT, metadata={"help": "the unrelated text the vectors are pulled to"})
    wayward_lambda: float = field(default=1.0, metadata={"help": "weight of the pull"})
    wayward_steps: int | None = field(default=None, metadata={"help": "training steps (default: the run's)"})
    eval_split: str | None = field(default=None, metadata={"help": "also score soft, projected and readable here"})

    def __post_init__(self):
        self.ablation_modes = tuple(self.ablation_modes)
        bad = [m for m in self.ablation_modes if m not in ABLATIONS]
        if bad or not self.ablation_modes:
            raise PromptoptError(f"InspectOptions.ablation_modes {list(self.ablation_modes)}: "
                                 f"use some of {list(ABLATIONS)}")  # fmt: skip
        for name in ("lens_examples", "distill_candidates", "distill_train"):
            if getattr(self, name) < 1:
                raise PromptoptError(f"InspectOptions.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("distill_steps", "wayward_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise PromptoptError(f"InspectOptions.{name} must be >= 0, got {getattr(self, name)}")
        if self.wayward_lambda < 0:
            raise PromptoptError(f"InspectOptions.wayward_lambda must be >= 0, got {self.wayward_lambda}")


@dataclass
class Inspection:
    """What ``promptopt inspect`` found. Scores are the task's metric (fractions); None for a hard prompt, which is
    not re-scored. ``ablations`` and the ``readable`` prompt are scored on ``split``; ``eval_scores`` (soft,
    projected, readable) on ``eval_split``."""

    prompt_text: str
    model: str
    segments: list[SegmentReport]
    embedding_norm_mean: float
    projected_text: str | None = None
    task: str | None = None
    method: str | None = None
    seed: int | None = None
    split: str | None = None
    n: int = 0
    metric: str | None = None
    soft_score: float | None = None
    projected_score: float | None = None
    ablations: list[VectorAblation] = field(default_factory=list)
    lens: list[LensReading] = field(default_factory=list)
    lens_n: int = 0
    readable: Readable | None = None
    self_description: str | None = None
    wayward: Wayward | None = None
    eval_split: str | None = None
    eval_n: int = 0
    eval_scores: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema: str = INSPECT_SCHEMA
    schema_version: int = INSPECT_SCHEMA_VERSION

    @property
    def has_soft(self) -> bool:
        return any(s.vectors for s in self.segments)

    @property
    def gap(self) -> float | None:
        """Soft score minus projected score (how much the readable version loses)."""
        if self.soft_score is None or self.projected_score is None:
            return None
        return self.soft_score - self.projected_score

    @property
    def readable_gap(self) -> float | None:
        """Soft score minus the distilled readable prompt's score, on the selection examples."""
        if self.soft_score is None or self.readable is None:
            return None
        return self.soft_score - self.readable.score

    def ranking(self, mode: str | None = None) -> list[VectorAblation]:
        """Ablations of ``mode`` (default the first recorded), largest drop first."""
        return ranking(self.ablations, mode)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "Inspection":
        """Read a record written by :meth:`to_json` (schema version 2) or by an older promptopt (version 1)."""
        if obj.get("schema") != INSPECT_SCHEMA or obj.get("schema_version") not in READABLE_VERSIONS:
            raise PromptoptError(f"not a promptopt inspection (schema {obj.get('schema')!r} version "
                                 f"{obj.get('schema_version')!r}; expected {INSPECT_SCHEMA!r} {READABLE_VERSIONS})")  # fmt: skip
        segments = [SegmentReport(**{**s, "vectors": [VectorReport(v["index"], v["norm"],
                                                                    [NearestToken(**n) for n in v["nearest"]])
                                                      for v in s.get("vectors", [])]})
                    for s in obj["segments"]]  # fmt: skip
        lens = [LensReading(r["segment"], r["index"], r["layer"], [LensToken(**t) for t in r["top"]])
                for r in obj.get("lens") or []]  # fmt: skip
        readable = Readable(**obj["readable"]) if obj.get("readable") else None
        wayward = Wayward(**obj["wayward"]) if obj.get("wayward") else None
        ablations = [VectorAblation(**a) for a in obj.get("ablations") or []]
        return cls(**{**obj, "segments": segments, "ablations": ablations, "lens": lens, "readable": readable,
                      "wayward": wayward})  # fmt: skip


def nearest_tokens(vectors: torch.Tensor, embeddings: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities ``(n, k)`` and token ids ``(n, k)`` of the ``k`` embedding rows nearest each vector."""
    v = torch.nn.functional.normalize(vectors.float().to(embeddings.device), dim=-1)
    e = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    top = (v @ e.T).topk(min(k, e.shape[0]), dim=-1)
    return top.values.cpu(), top.indices.cpu()


def project(prompt: Prompt, lm: LoadedModel) -> Prompt:
    """A copy of ``prompt`` where each soft segment becomes a token segment holding each vector's nearest token."""
    weight = lm.embeddings.weight.detach()
    segments = []
    for seg in prompt.segments:
        if seg.kind == SegmentKind.VECTORS:
            _, ids = nearest_tokens(_values(prompt, seg), weight, 1)
            seg = Segment(SegmentKind.TOKENS, name=seg.name, n=seg.n, ids=tuple(ids[:, 0].tolist()))
        segments.append(seg)
    names = {s.name for s in prompt.segments_of(SegmentKind.VECTORS)}
    vectors = {k: v for k, v in prompt.vectors.items() if k not in names}
    return replace(prompt, segments=segments, vectors=vectors, template=None)


def _values(prompt: Prompt, seg: Segment) -> torch.Tensor:
    value = prompt.vectors.get(seg.name)
    if value is None:
        raise PromptoptError(f"soft segment {seg.name!r} has no values (an untrained prompt?)")
    return value


def _segment_report(seg: Segment, prompt: Prompt, lm: LoadedModel, top_k: int) -> SegmentReport:
    tok = lm.tokenizer
    if seg.kind == SegmentKind.TEXT:
        ids = tok(seg.text, add_special_tokens=False)["input_ids"]
        return SegmentReport("text", text=seg.text, ids=ids, tokens=[tok.decode([i]) for i in ids])
    if seg.kind == SegmentKind.FIELD:
        return SegmentReport("field", name=seg.field)
    if seg.kind == SegmentKind.ANSWER:
        return SegmentReport("answer")
    if seg.kind == SegmentKind.TOKENS:
        ids = list(seg.ids or [])
        return SegmentReport("tokens", name=seg.name, text=tok.decode(ids) if ids else "", ids=ids,
                             tokens=[tok.decode([i]) for i in ids])  # fmt: skip
    values = _values(prompt, seg)
    cos, ids = nearest_tokens(values, lm.embeddings.weight.detach(), top_k)
    norms = values.float().norm(dim=-1).tolist()
    vectors = [VectorReport(i, round(norms[i], 4), [NearestToken(int(t), tok.decode([int(t)]), round(float(c), 4))
                                                    for c, t in zip(cos[i], ids[i])])
               for i in range(values.shape[0])]  # fmt: skip
    return SegmentReport("vectors", name=seg.name, vectors=vectors)


def inspect_prompt(prompt: Prompt, lm: LoadedModel, scorer: Scorer | None = None, examples: list[Example] | None = None,
                   split: str | None = None, top_k: int = 5, options: InspectOptions | None = None,
                   train: list[Example] | None = None, train_config=None, seed: int = 0,
                   eval_examples: list[Example] | None = None, eval_split: str | None = None) -> Inspection:  # fmt: skip
    """Inspect ``prompt``; with a scorer and examples, a soft prompt and its projection are both scored on them, and
    ``options`` (default :class:`InspectOptions`) say what else is done: ablation and the readable prompt are
    scored on ``examples``; distillation and the waywardness check train on ``train`` (the latter with the
    :class:`~promptopt.engine.train.TrainConfig` ``train_config``); ``eval_examples`` are scored as well."""
    options = options or InspectOptions(ablate=False, lens=False, distill=False, describe=False)
    with torch.no_grad():
        weight = lm.embeddings.weight.detach()
        out = Inspection(
            prompt_text=prompt.text(lm.tokenizer), model=lm.name,
            segments=[_segment_report(s, prompt, lm, top_k) for s in prompt.segments],
            embedding_norm_mean=round(float(weight.float().norm(dim=-1).mean()), 4),
        )  # fmt: skip
        if not out.has_soft:
            return out
        projected = project(prompt, lm)
        out.projected_text = projected.text(lm.tokenizer)
        if options.describe:
            out.self_description = self_description(lm, prompt)
    if options.lens and examples and lens_unavailable(lm):
        out.notes.append(f"logit lens skipped: {lens_unavailable(lm)}")
    elif options.lens and examples:
        lens_on = examples[: options.lens_examples]
        out.lens = logit_lens(lm, prompt, lens_on, options.lens_layers, k=top_k,
                              padding_side=scorer.side if scorer is not None else None)  # fmt: skip
        out.lens_n = len(lens_on)
    if scorer is None or not examples:
        return out
    soft = scorer.evaluate(prompt, examples)
    hard = scorer.evaluate(projected, examples)
    out.split, out.n, out.metric = split, soft.n, scorer.task.metric.value
    out.soft_score, out.projected_score = float(soft.score), float(hard.score)
    if options.ablate:
        out.ablations = ablate_vectors(prompt, lm, scorer, examples, options.ablation_modes, intact=out.soft_score)
    readable = projected
    if options.distill:
        if scorer.task.kind != TaskKind.CLASSIFICATION:
            out.notes.append("distillation skipped: it needs a classification task")
        elif not train:
            out.notes.append("distillation skipped: no training examples")
        else:
            train_on = train[: options.distill_train]
            out.readable = distill(prompt, projected, lm, scorer, train_on, examples, options.distill_steps,
                                   options.distill_candidates, projected_score=out.projected_score)  # fmt: skip
            readable = readable_prompt(projected, out.readable)
    if options.wayward:
        if not train or train_config is None:
            out.notes.append("waywardness check skipped: no training examples or training options")
        else:
            from dataclasses import replace as _replace

            config = train_config
            if options.wayward_steps is not None:
                config = _replace(train_config, steps=options.wayward_steps)
            out.wayward = waywardness(prompt, lm, scorer, train, examples, config, options.wayward_text,
                                      options.wayward_lambda, seed=seed, soft_score=out.soft_score)  # fmt: skip
    if eval_examples:
        out.eval_split, out.eval_n = eval_split, len(eval_examples)
        out.eval_scores = {"soft": float(scorer.evaluate(prompt, eval_examples).score),
                           "projected": float(scorer.evaluate(projected, eval_examples).score)}  # fmt: skip
        if out.readable is not None:
            out.eval_scores["readable"] = float(scorer.evaluate(readable, eval_examples).score)
    return out


def training_examples(task, config: dict, n: int | None = None) -> list[Example]:
    """Up to ``n`` training examples of a run, never one of its held-out selection examples (``holdout:N``), sampled
    with the run's seed; empty when the task has no train split."""
    from promptopt.pipeline.runner import RunOptions, prepare_data, sample

    if "train" not in task.available_splits:
        return []
    data = config.get("data") or {}
    seed = int(config.get("seed", 0))
    select = str(data.get("select_split") or "")
    if select.startswith("holdout:"):  # the held-out examples are the selection split: leave them out
        opts = RunOptions(seed=seed, select_split=select, eval_split=task.available_splits[0])
        train = prepare_data(task, opts, needs_train=True)[0]["train"]
    else:
        train = task.load_split("train")
    return sample(train, n, seed, "inspect-train")


def eval_examples(task, config: dict, split: str) -> list[Example]:
    """The examples of ``split``; for the run's own evaluation split, the very sample it was evaluated on."""
    from promptopt.pipeline.runner import sample

    if split not in task.available_splits:
        raise PromptoptError(f"split {split!r} is not in task {task.name!r}; it has {task.available_splits}")
    data = config.get("data") or {}
    n = data.get("eval") if split == data.get("eval_split") and isinstance(data.get("eval"), int) else None
    return sample(task.load_split(split), n, int(config.get("seed", 0)), "eval")


def rescoring_examples(task, config: dict, split: str | None = None, max_eval: int | None = None) -> tuple[str, list[Example]]:
    """The examples a run's prompt is re-scored on: ``split`` (default: the run's selection split as recorded in its
    config, else dev), subsampled as the run subsampled its selection split (same seed, same size), so that with the
    defaults they are the very examples the run chose its prompt on."""
    from promptopt.pipeline.runner import RunOptions, prepare_data, sample

    seed = int(config.get("seed", 0))
    data = config.get("data") or {}
    n = max_eval
    if n is None:
        n = next((data[k] for k in ("select_n", "select") if isinstance(data.get(k), int)), None)
    split = split or data.get("select_split") or ("dev" if "dev" in task.available_splits else "select")
    if split in task.available_splits:
        return split, sample(task.load_split(split), n, seed, "select")
    if split == "select" or split.startswith("holdout:"):
        opts = RunOptions(seed=seed, max_eval=n, select_split=None if split == "select" else split)
        chosen, _ = prepare_data(task, opts, needs_train=False)
        return split, chosen["select"]
    raise PromptoptError(f"split {split!r} is not in task {task.name!r}; it has {task.available_splits} or holdout:N")


def inspect_run(run_dir: str | Path, lm: LoadedModel | None = None, split: str | None = None,
                max_eval: int | None = None, top_k: int = 5, batch_size: int = EVAL_BATCH_SIZE, device: str | None = None,
                pm=None, write: bool = True, options: InspectOptions | None = None) -> Inspection:  # fmt: skip
    """Inspect the prompt of a run directory (``prompt/`` and ``config.json``) and, with ``write``, save the result
    as ``inspect.json`` there (the report reads it), and the readable prompt, if distilled, as ``readable_prompt/``
    (a hard prompt directory: ``promptopt eval`` scores it like any other)."""
    from promptopt.engine.train import TrainConfig
    from promptopt.pipeline import config as cfg
    from promptopt.plugins import get_task

    options = options or InspectOptions()
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise PromptoptError(f"{run_dir}: not a run directory (no config.json)")
    try:
        config = read_json(config_path)
    except json.JSONDecodeError as e:
        raise PromptoptError(f"{config_path}:{e.lineno}: not valid JSON: {e.msg}") from None
    prompt = Prompt.load(run_dir / "prompt")
    lm = lm or load_model(config.get("model"), device=device, kind=config.get("model_kind"))
    scorer = examples = train = train_config = evals = None
    eval_split = options.eval_split
    seed = int(config.get("seed", 0))
    if prompt.segments_of(SegmentKind.VECTORS):
        task = get_task(config.get("task_spec") or config["task"], pm)
        reported = (config.get("data") or {}).get("eval_split")
        if split is not None and split == reported and (options.distill or options.wayward):
            raise ConfigError(f"--split {split} is the run's reported split: the readable prompt is chosen (and the "
                              "waywardness check compared) on the re-scoring split, so it must be another one; "
                              f"use --eval-split {split} to score the prompts there")  # fmt: skip
        split, examples = rescoring_examples(task, config, split, max_eval)
        scorer = Scorer(lm, task, batch_size=batch_size, padding_side=config.get("padding_side"))
        if options.distill or options.wayward:
            run_train = (config.get("data") or {}).get("train")  # the check retrains on as many as the run did
            n = max(options.distill_train, run_train if isinstance(run_train, int) else 0) if options.wayward else None
            train = training_examples(task, config, n or options.distill_train)
        if options.wayward:
            train_config = cfg.build(TrainConfig, {**(config.get("train") or {}), "checkpoint_every": 0})
        if eval_split:
            evals = eval_examples(task, config, eval_split)
    out = inspect_prompt(prompt, lm, scorer, examples, split, top_k, options, train=train, train_config=train_config,
                         seed=seed, eval_examples=evals, eval_split=eval_split)  # fmt: skip
    out.task, out.method, out.seed = config.get("task"), config.get("method"), config.get("seed")
    if write:
        if out.readable is not None:
            readable = readable_prompt(project(prompt, lm), out.readable)
            readable.meta = {**prompt.meta, "readable_from": "distillation" if out.readable.accepted else "projection"}
            readable.save(run_dir / "readable_prompt")
        write_json(run_dir / INSPECT_FILE, out.to_json())
    return out


def render_text(ins: Inspection) -> str:
    """A readable account of an inspection, for the terminal."""
    lines = [f"prompt:     {ins.prompt_text!r}", f"model:      {ins.model}"]
    lens: dict[tuple[str, int], list[LensReading]] = {}
    for r in ins.lens:
        lens.setdefault((r.segment, r.index), []).append(r)
    drops = {(a.segment, a.index, a.mode): a.drop for a in ins.ablations}
    for seg in ins.segments:
        if seg.kind == "text":
            lines.append(f"text        {seg.text!r} = ids {seg.ids}")
        elif seg.kind == "tokens":
            lines.append(f"tokens {seg.name}: {seg.text!r} = ids {seg.ids}")
        elif seg.kind == "vectors":
            lines.append(f"vectors {seg.name}: {len(seg.vectors)} vectors (token embeddings: mean norm "
                         f"{ins.embedding_norm_mean:.2f}); nearest tokens by cosine:")  # fmt: skip
            for v in seg.vectors:
                near = "  ".join(f"{n.token!r} {n.cosine:.2f}" for n in v.nearest)
                ablated = "".join(f"  drop ({mode}) {100 * drops[seg.name, v.index, mode]:+.1f}"
                                  for mode in ("remove", "mean") if (seg.name, v.index, mode) in drops)  # fmt: skip
                lines.append(f"  [{v.index:>3}] norm {v.norm:6.2f}   {near}{ablated}")
                for r in lens.get((seg.name, v.index), []):
                    read = "  ".join(f"{t.token!r} {t.prob:.3f}" for t in r.top)
                    lines.append(f"        lens L{r.layer:<3} {read}")
    if ins.projected_text is not None:
        lines.append(f"projected:  {ins.projected_text!r}")
    if ins.soft_score is not None:
        lines.append(f"{ins.metric} on {ins.split} (n={ins.n}): soft {100 * ins.soft_score:.1f}%, projected "
                     f"{100 * ins.projected_score:.1f}%, gap {100 * ins.gap:.1f} points")  # fmt: skip
    if ins.ablations:
        for mode in dict.fromkeys(a.mode for a in ins.ablations):
            top = ins.ranking(mode)[:5]
            lines.append(f"ablation ({mode}), largest drops in points: "
                         + ", ".join(f"{a.segment}[{a.index}] {100 * a.drop:+.1f}" for a in top))  # fmt: skip
    if ins.readable is not None:
        r = ins.readable
        how = (f"distilled: {r.swaps} swaps in {r.steps} steps" if r.accepted
               else "the search did not beat the projection, which is kept")  # fmt: skip
        lines.append(f"readable:   {r.text!r} ({how}; agrees with the soft prompt on {100 * r.agreement:.0f}% of "
                     f"{r.train_n} training examples, the projection on {100 * r.projected_agreement:.0f}%)")  # fmt: skip
        lines.append(f"readable {ins.metric} on {ins.split}: {100 * r.score:.1f}% (soft {100 * ins.soft_score:.1f}%, "
                     f"remaining gap {100 * ins.readable_gap:.1f} points)")  # fmt: skip
    if ins.eval_scores:
        lines.append(f"{ins.metric} on {ins.eval_split} (n={ins.eval_n}): "
                     + ", ".join(f"{k} {100 * v:.1f}%" for k, v in ins.eval_scores.items()))  # fmt: skip
    if ins.self_description is not None:
        lines.append(f"self-description (anecdotal): [vectors] means:{ins.self_description!r}")
    if ins.wayward is not None:
        w = ins.wayward
        lines.append(f"waywardness (lambda {w.lam}, {w.steps} steps): soft {100 * w.soft_score:.1f}%, pulled to the "
                     f"text {100 * w.wayward_score:.1f}%; projects to {w.projected_text!r}")  # fmt: skip
        lines.append(f"  {w.sentence}")
    lines += [f"note: {n}" for n in ins.notes]
    return "\n".join(lines)
