"""Soft-prompt building blocks every trainable method shares: where the vectors go, what they start as, and the
per-template training through the shared loop :func:`promptopt.engine.train.fit`.

Which templates are trained (:func:`soft_templates`): the run's templates that contain ``[P...]`` slots (each is
trained, the best on the selection split wins); if none does, one is built from the run's first template (the first
``--template``, else the task's first) by ``template_rule``:

* ``prefix``: ``[P*N]`` in front of the template, e.g. ``[P*20]Review: {sentence}\\nSentiment:{answer}``;
* ``around``: ``N - N//2`` vectors in front and ``N//2`` right after the last input field, e.g.
  ``[P*10]Review: {sentence}[P*10]\\nSentiment:{answer}`` (the template's own text stays as fixed anchors).

Initialisations (``init``, :func:`initial_rows` / :func:`initial_values`), applied to all soft rows of the prompt in
order of appearance:

* ``random``: uniform in ``[-init_range, init_range]``;
* ``vocab``: embeddings of tokens drawn from the ``vocab_top`` (5,000) most frequent tokens. No frequency table
  ships with a model, so the proxy is the ``vocab_top`` lowest token ids that are not special or added tokens
  (nor ``[...]``/``<...>`` placeholders): a BPE vocabulary numbers its merges in the order they were learned,
  which is the order of frequency in the tokenizer's training corpus;
* ``text``: the embeddings of ``init_text``'s tokens, repeated to fill the rows (and cut to length);
* ``labels``: row ``i < C`` is the mean embedding of class ``i``'s label words (every token of every word, tokenized
  as the answer is), the remaining rows as ``vocab``;
* ``prompt``: the vectors of a saved prompt directory (``init_prompt``), matched by segment name and size, or by
  size alone when both prompts have a single soft segment (transfer).

Public through :mod:`promptopt.sdk`.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from promptopt.data.prompt import Prompt, Segment, SegmentKind, parse_template
from promptopt.engine.inputs import special_token_ids
from promptopt.engine.train import FitResult, PromptVectors, fit
from promptopt.errors import ConfigError, PromptoptError, enum_value
from promptopt.pipeline.methods import OptimizeResult, RunContext

log = logging.getLogger(__name__)


class SoftPromptInit(str, enum.Enum):
    RANDOM = "random"
    VOCAB = "vocab"
    TEXT = "text"
    LABELS = "labels"
    PROMPT = "prompt"


class TemplateRule(str, enum.Enum):
    PREFIX = "prefix"
    AROUND = "around"


@dataclass
class SoftPromptConfig:
    """The options of a soft prompt: how many vectors, where (when no template has ``[P]`` slots), how they start."""

    n_tokens: int = field(default=20, metadata={"help": "soft vectors in the template built by template_rule (templates with [P] slots set their own)"})  # fmt: skip
    template_rule: TemplateRule = field(default=TemplateRule.PREFIX, metadata={"help": "where the soft vectors go when no template has [P] slots: prefix (in front) or around (front and after the last input field)"})  # fmt: skip
    init: SoftPromptInit = field(default=SoftPromptInit.VOCAB, metadata={"help": "initial values: random, vocab, text, labels or prompt"})  # fmt: skip
    init_text: str = field(default="", metadata={"help": "text whose token embeddings initialise the vectors (init=text)"})  # fmt: skip
    init_prompt: str = field(default="", metadata={"help": "saved prompt directory to start from (init=prompt)"})
    init_range: float = field(default=0.5, metadata={"help": "half-width of the uniform range (init=random)"})
    vocab_top: int = field(default=5000, metadata={"help": "sample from this many most frequent tokens (init=vocab, labels)"})  # fmt: skip

    def __post_init__(self):
        check_common(self)
        if self.init == SoftPromptInit.PROMPT and not self.init_prompt:
            raise ConfigError(f"{type(self).__name__}.init_prompt must name a saved prompt directory when init=prompt")


def check_common(config) -> None:
    """Validate the options soft prompts and P-tuning share (``n_tokens``, ``template_rule``, ``init*``)."""
    name = type(config).__name__
    config.template_rule = enum_value(TemplateRule, config.template_rule, f"{name}.template_rule")
    config.init = enum_value(SoftPromptInit, config.init, f"{name}.init")
    if config.n_tokens < 1:
        raise ConfigError(f"{name}.n_tokens must be >= 1, got {config.n_tokens}")
    if config.init == SoftPromptInit.TEXT and not config.init_text:
        raise ConfigError(f"{name}.init_text must be a non-empty text when init=text")
    if config.init_range <= 0:
        raise ConfigError(f"{name}.init_range must be > 0, got {config.init_range}")
    if config.vocab_top < 1:
        raise ConfigError(f"{name}.vocab_top must be >= 1, got {config.vocab_top}")


# -- templates ---------------------------------------------------------------------------------------------------


def has_soft(template: str) -> bool:
    """Whether ``template`` has a ``[P]`` slot."""
    return any(s.kind == SegmentKind.VECTORS for s in parse_template(template))


def build_template(template: str, n: int, rule: TemplateRule) -> str:
    """The template with ``n`` soft vectors placed by ``rule`` (see the module docstring)."""
    segments = parse_template(template)
    after = n // 2 if rule == TemplateRule.AROUND else 0
    out = [Segment(SegmentKind.VECTORS, name="p0", n=n - after)]
    last_field = max((i for i, s in enumerate(segments) if s.kind == SegmentKind.FIELD), default=None)
    for i, seg in enumerate(segments):
        out.append(seg)
        if after and i == last_field:
            out.append(Segment(SegmentKind.VECTORS, name="p1", n=after))
    return Prompt(segments=out).text()


def soft_templates(templates: list[str], n: int, rule: TemplateRule) -> list[str]:
    """The run's templates with ``[P]`` slots, else one built from its first template."""
    if not templates:
        raise PromptoptError("no template to train: the task has none and no --template was given")
    given = [t for t in templates if has_soft(t)]
    return given or [build_template(templates[0], n, rule)]


# -- initialisation ---------------------------------------------------------------------------------------------


def frequent_token_ids(tokenizer, k: int, vocab_rows: int) -> list[int]:
    """The ``k`` lowest ids that are ordinary tokens: the frequency proxy described in the module docstring."""
    special = special_token_ids(tokenizer)
    placeholder = re.compile(r"^(\[.*\]|<.*>)$")
    out = []
    for i in range(min(len(tokenizer), vocab_rows)):
        if i in special:
            continue
        token = tokenizer.convert_ids_to_tokens(i)
        if token is None or placeholder.match(token):
            continue
        out.append(i)
        if len(out) == k:
            break
    if not out:
        raise PromptoptError("the tokenizer has no ordinary token to initialise soft vectors from")
    return out


def initial_rows(config, run: RunContext, prompt: Prompt, n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, hidden)`` float32 starting values by ``config.init`` (every init but ``prompt``)."""
    lm = run.lm
    weight = lm.embeddings.weight.detach().to("cpu", torch.float32)
    init = config.init
    if init == SoftPromptInit.RANDOM:
        return (torch.rand(n, lm.hidden_size, generator=generator) * 2 - 1) * config.init_range
    if init == SoftPromptInit.TEXT:
        ids = lm.tokenizer(config.init_text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ConfigError(f"init_text {config.init_text!r} tokenizes to nothing")
        ids = (ids * (n // len(ids) + 1))[:n]
        return weight[ids].clone()
    pool = torch.tensor(frequent_token_ids(lm.tokenizer, config.vocab_top, weight.shape[0]))
    rows = weight[pool[torch.randint(len(pool), (n,), generator=generator)]].clone()
    if init == SoftPromptInit.LABELS:
        verb = run.scorer.verbalizer(prompt)
        for i, word_ids in enumerate(verb.ids[:n]):
            ids = [t for ids in word_ids for t in ids]
            rows[i] = weight[ids].mean(dim=0)
    return rows


def initial_values(config, run: RunContext, prompt: Prompt) -> dict[str, torch.Tensor]:
    """Starting values of every soft segment of ``prompt``, by ``config.init``."""
    segs = prompt.segments_of(SegmentKind.VECTORS)
    if not segs:
        raise PromptoptError(f"template {prompt.template!r} has no [P] slot to train")
    if config.init == SoftPromptInit.PROMPT:
        return transfer_values(Path(config.init_prompt), segs, run.lm.hidden_size)
    generator = torch.Generator().manual_seed(run.seed)
    rows = initial_rows(config, run, prompt, sum(s.n for s in segs), generator)
    return dict(zip([s.name for s in segs], rows.split([s.n for s in segs])))


def transfer_values(directory: Path, segs: list[Segment], hidden: int) -> dict[str, torch.Tensor]:
    """Values for ``segs`` from the saved prompt in ``directory``: by segment name and shape, or the only one."""
    source = Prompt.load(directory)
    saved = {s.name: source.vectors[s.name] for s in source.segments_of(SegmentKind.VECTORS) if s.name in source.vectors}
    out = {}
    for seg in segs:
        value = saved.get(seg.name)
        if value is None and len(segs) == 1 and len(saved) == 1:
            value = next(iter(saved.values()))
        if value is None or tuple(value.shape) != (seg.n, hidden):
            have = {k: tuple(v.shape) for k, v in saved.items()}
            raise ConfigError(
                f"init_prompt {directory}: no soft segment fits {seg.name!r} of shape {(seg.n, hidden)}; it has {have}"
            )
        out[seg.name] = value.to(torch.float32).clone()
    return out


# -- training (soft prompts, P-tuning, third-party methods) -------------------------------------------------------------------------


def train_templates(
    run: RunContext, templates: list[str], make_params: Callable[[Prompt], torch.nn.Module]
) -> tuple[Prompt, FitResult, torch.nn.Module]:
    """Train each template's prompt parameters with the shared loop; the best on the selection split wins."""
    best = None
    for i, template in enumerate(templates):
        if best is not None and run.compute.exhausted:
            log.info("compute budget spent: templates %d-%d not trained", i + 1, len(templates))
            break
        prompt = Prompt.from_template(template)
        prompt.check_fields(run.task.inputs)
        params = make_params(prompt)
        label = f"template {i + 1}/{len(templates)}" if len(templates) > 1 else "training"
        result = fit(
            params, run.scorer.usable_examples(prompt, run.train), run.train_config, scorer=run.scorer, prompt=prompt,
            select=run.select, checkpoint_dir=run.output_dir / "checkpoint" / f"template{i}", resume=run.resume,
            seed=run.seed, hook=run.hook, run=run, log_fn=lambda r, t=template: run.log({"template": t, **r}),
            progress=label if run.progress else False,
        )  # fmt: skip
        trained = prompt.with_vectors(result.values)
        trained.meta.update({"best_step": result.best_step, "steps": result.steps})
        score = result.best_metrics.get("score")
        if best is None or (score is not None and score > best[1].best_metrics.get("score", float("-inf"))):
            best = (trained, result, params)
    return best


def train_soft_prompt(run: RunContext, config) -> OptimizeResult:
    """The ``soft`` method: train plain vectors in the run's soft templates (:func:`soft_templates`), started by
    ``config`` (a :class:`SoftPromptConfig`), with the shared loop; the best template on the selection split wins."""
    templates = soft_templates(run.templates, config.n_tokens, config.template_rule)
    prompt, result, _ = train_templates(run, templates, lambda p: PromptVectors(initial_values(config, run, p)))
    prompt.meta["init"] = config.init.value
    return OptimizeResult(prompt=prompt, trainable_parameters=result.trainable_parameters,
                          select_metrics=result.best_metrics, extra={"best_step": result.best_step})  # fmt: skip
