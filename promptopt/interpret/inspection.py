"""Read a trained prompt: what its soft vectors are close to, and how much a readable version of it loses.

For each soft vector: its norm and its nearest vocabulary tokens by cosine similarity with the model's input
embeddings (top 5). The *projected* prompt replaces every soft vector by its nearest token; re-scoring both on the
same examples (the run's selection split, dev by default) shows how faithful the readable version is. Hard segments
are listed with their text and token ids.

    from promptopt.interpret.inspection import inspect_run
    print(render_text(inspect_run("runs/sst2-soft-s0")))
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from promptopt.engine.model import LoadedModel, load_model
from promptopt.engine.scoring import Scorer
from promptopt.errors import PromptoptError
from promptopt.data.files import read_json, write_json
from promptopt.data.prompt import Prompt, Segment, SegmentKind
from promptopt.data.tasks import Example

INSPECT_SCHEMA = "promptopt.interpret.inspection"
INSPECT_SCHEMA_VERSION = 1
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
class Inspection:
    """What ``promptopt inspect`` found. Scores are the task's metric (fractions); None for a hard prompt, which is
    not re-scored."""

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

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "Inspection":
        if obj.get("schema") != INSPECT_SCHEMA or obj.get("schema_version") != INSPECT_SCHEMA_VERSION:
            raise PromptoptError(f"not a promptopt inspection (schema {obj.get('schema')!r} version "
                                 f"{obj.get('schema_version')!r}; expected {INSPECT_SCHEMA!r} {INSPECT_SCHEMA_VERSION})")  # fmt: skip
        segments = [SegmentReport(**{**s, "vectors": [VectorReport(v["index"], v["norm"],
                                                                    [NearestToken(**n) for n in v["nearest"]])
                                                      for v in s.get("vectors", [])]})
                    for s in obj["segments"]]  # fmt: skip
        return cls(**{**obj, "segments": segments})


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
                   split: str | None = None, top_k: int = 5) -> Inspection:  # fmt: skip
    """Inspect ``prompt``; with a scorer and examples, a soft prompt and its projection are both scored on them."""
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
    if scorer is not None and examples:
        soft = scorer.evaluate(prompt, examples)
        hard = scorer.evaluate(projected, examples)
        out.split, out.n, out.metric = split, soft.n, scorer.task.metric.value
        out.soft_score, out.projected_score = float(soft.score), float(hard.score)
    return out


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
                max_eval: int | None = None, top_k: int = 5, batch_size: int = 16, device: str | None = None,
                pm=None, write: bool = True) -> Inspection:  # fmt: skip
    """Inspect the prompt of a run directory (``prompt/`` and ``config.json``) and, with ``write``, save the result
    as ``inspect.json`` there (the report reads it)."""
    from promptopt.plugins import get_task

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
    scorer = examples = None
    if prompt.segments_of(SegmentKind.VECTORS):
        task = get_task(config.get("task_spec") or config["task"], pm)
        split, examples = rescoring_examples(task, config, split, max_eval)
        scorer = Scorer(lm, task, batch_size=batch_size, padding_side=config.get("padding_side"))
    out = inspect_prompt(prompt, lm, scorer, examples, split, top_k)
    out.task, out.method, out.seed = config.get("task"), config.get("method"), config.get("seed")
    if write:
        write_json(run_dir / INSPECT_FILE, out.to_json())
    return out


def render_text(ins: Inspection) -> str:
    """A readable account of an inspection, for the terminal."""
    lines = [f"prompt:     {ins.prompt_text!r}", f"model:      {ins.model}"]
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
                lines.append(f"  [{v.index:>3}] norm {v.norm:6.2f}   {near}")
    if ins.projected_text is not None:
        lines.append(f"projected:  {ins.projected_text!r}")
    if ins.soft_score is not None:
        lines.append(f"{ins.metric} on {ins.split} (n={ins.n}): soft {100 * ins.soft_score:.1f}%, projected "
                     f"{100 * ins.projected_score:.1f}%, gap {100 * ins.gap:.1f} points")  # fmt: skip
    return "\n".join(lines)
