"""The one scoring engine every method is measured with.

Scoring contract (rank classification, as lm-evaluation-harness's ``loglikelihood``):

* in: a :class:`~promptopt.prompt.Prompt`, examples, and optionally vectors for vector/token segments;
* out: for classification, one log-likelihood per class: ``log sum_w P(w | prompt, example)`` over the class's label
  words, a multi-token word scoring the sum of its tokens' log-probabilities; for fact retrieval, log-probabilities
  over the whole vocabulary at the answer position.
* The space before the answer belongs to the answer (see :mod:`promptopt.engine.inputs`).

Vocabulary logits are computed only at the positions where the answer is read, never at every position. Evaluation
runs in ``inference_mode``, longest examples first (an out-of-memory error shows on the first batch) so that
batches hold examples of similar length. For a causal LM, a prompt prefix that does not depend on the example
(e.g. trainable vectors in front) is computed once per batch and its keys/values are shared by every example.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from ..errors import PromptoptError
from ..prompt import Prompt
from ..tasks import Example, TaskKind, TaskSpec
from .inputs import Batch, Encoded, Encoder, VectorLayout, collate, embed, position_offset
from .metrics import compute_metrics
from .model import LoadedModel, ModelKind

log = logging.getLogger(__name__)

MIN_SHARED_PREFIX = 4


@dataclass
class Verbalizer:
    labels: list[str]
    words: list[list[str]]
    ids: list[list[list[int]]]  # label -> word -> token ids


@dataclass
class EvalResult:
    metrics: dict
    predictions: list[dict]
    seconds: float
    examples_per_second: float
    n: int

    @property
    def score(self) -> float:
        return self.metrics["score"]


@dataclass
class _ModelFacts:
    base: torch.nn.Module
    head: torch.nn.Module | None
    cache_arg: str | None
    share_ok: bool = False
    checked: bool = False
    notes: list[str] = field(default_factory=list)


def _model_facts(lm: LoadedModel) -> _ModelFacts:
    facts = getattr(lm, "_scoring_facts", None)
    if facts is None:
        import inspect

        model = lm.model
        base = getattr(model, model.base_model_prefix, None)
        if lm.kind == ModelKind.CAUSAL:
            head = model.get_output_embeddings()
        else:
            head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        params = inspect.signature(base.forward).parameters if base is not None else {}
        cache_arg = "cache" if "cache" in params else ("past_key_values" if "past_key_values" in params else None)
        facts = _ModelFacts(base=base, head=head, cache_arg=cache_arg)
        lm._scoring_facts = facts
    return facts


class Scorer:
    """Scores prompts for one task on one model. See the module docstring for the contract."""

    def __init__(
        self,
        lm: LoadedModel,
        task: TaskSpec,
        batch_size: int = 16,
        padding_side: str | None = None,
        max_length: int | None = None,
        share_prefix: bool = True,
    ):
        if padding_side not in (None, "left", "right"):
            raise PromptoptError(f"padding side {padding_side!r} is not 'left' or 'right'")
        self.lm = lm
        self.task = task
        self.batch_size = batch_size
        self.side = padding_side or ("left" if lm.kind == ModelKind.CAUSAL else "right")
        self.encoder = Encoder(lm, max_length)
        self.share_prefix = share_prefix and lm.kind == ModelKind.CAUSAL
        self.facts = _model_facts(lm)
        self._pos_offset = position_offset(lm)
        self._verbalizers: dict = {}
        self._check_fast_paths()

    # -- model plumbing ------------------------------------------------------------------------------------------
    def _check_fast_paths(self):
        """Check once per model that the answer-only head and the shared-prefix path give the full model's logits."""
        facts = self.facts
        if facts.checked:
            return
        facts.checked = True
        model = self.lm.model
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(5, max(6, min(self.lm.vocab_size, 1000)), (2, 12), generator=g).to(self.lm.device)
        mask = torch.ones_like(ids)
        mask[1, :3] = 0  # left padding in the second row
        pos = ((mask.cumsum(-1) - 1).clamp(min=0) + self._pos_offset)
        with torch.inference_mode():
            full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
            if facts.base is not None and facts.head is not None:
                try:
                    hidden = facts.base(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
                    ok = torch.allclose(facts.head(hidden).float(), full, atol=1e-3, rtol=1e-3)
                except Exception as e:  # an unusual architecture: fall back to full logits
                    ok = False
                    facts.notes.append(f"answer-only head unavailable: {e}")
                if not ok:
                    facts.head = None
            else:
                facts.head = None
            if facts.head is None:
                facts.notes.append("vocabulary logits computed at every position (slow path)")
            if self.lm.kind == ModelKind.CAUSAL and facts.head is not None and facts.cache_arg is not None:
                try:
                    ref = self._hidden_plain(_rows(ids, mask), None)
                    got = self._hidden_shared(_rows(ids, mask), None, shared=4)
                    facts.share_ok = torch.allclose(ref.float(), got.float(), atol=1e-3, rtol=1e-3)
                except Exception as e:
                    facts.notes.append(f"shared-prefix reuse unavailable: {e}")
                    facts.share_ok = False
        for note in facts.notes:
            log.info("%s: %s", self.lm.name, note)

    def _run_base(self, emb, mask, pos, cache=None):
        kwargs = {"inputs_embeds": emb, "attention_mask": mask, "position_ids": pos}
        if cache is not None:
            kwargs[self.facts.cache_arg] = cache
            kwargs["use_cache"] = True
        return self.facts.base(**kwargs)

    def _logits_at(self, encs: list[Encoded], table) -> torch.Tensor:
        """Vocabulary logits (float32) at each example's read positions: ``(B, R, V)``."""
        facts = self.facts
        if facts.head is None:
            batch = collate(encs, self.encoder.pad_id, self.side, self.lm.device, offset=self._pos_offset)
            emb = embed(self.lm, batch, table)
            logits = self.lm.model(inputs_embeds=emb, attention_mask=batch.attention_mask,
                                   position_ids=batch.position_ids).logits  # fmt: skip
            return _gather(logits, batch.read).float()
        shared = min(e.shared for e in encs)
        if self.share_prefix and facts.share_ok and shared >= MIN_SHARED_PREFIX and len(encs) > 1:
            hidden = self._hidden_shared(encs, table, shared)
        else:
            hidden = self._hidden_plain(encs, table)
        return facts.head(hidden).float()

    def _hidden_plain(self, encs, table):
        batch = collate(encs, self.encoder.pad_id, self.side, self.lm.device, offset=self._pos_offset)
        out = self._run_base(embed(self.lm, batch, table), batch.attention_mask, batch.position_ids)
        return _gather(out.last_hidden_state, batch.read)

    def _hidden_shared(self, encs, table, shared):
        """Run the shared prefix once (batch of one), then every example on top of its keys/values."""
        device = self.lm.device
        prefix = collate([_truncate(encs[0], shared)], self.encoder.pad_id, "right", device)
        out = self._run_base(embed(self.lm, prefix, table), prefix.attention_mask, prefix.position_ids,
                             cache=_new_cache(None))  # fmt: skip
        kv = _cache_tensors(getattr(out, self.facts.cache_arg, None) or getattr(out, "past_key_values", None))
        rest = collate(encs, self.encoder.pad_id, self.side, device, start=shared)
        n = len(encs)
        cache = _new_cache([(k.expand(n, *k.shape[1:]), v.expand(n, *v.shape[1:])) for k, v in kv])
        mask = torch.cat([torch.ones((n, shared), dtype=rest.attention_mask.dtype, device=device),
                          rest.attention_mask], dim=1)  # fmt: skip
        out = self._run_base(embed(self.lm, rest, table), mask, rest.position_ids, cache=cache)
        return _gather(out.last_hidden_state, rest.read)

    # -- verbalizer ---------------------------------------------------------------------------------------------
    def verbalizer(self, prompt: Prompt) -> Verbalizer:
        words = prompt.label_words or self.task.label_words
        key = (self.encoder.answer_prefix(prompt), tuple((k, tuple(v)) for k, v in words.items()))
        verb = self._verbalizers.get(key)
        if verb is None:
            missing = [lab for lab in self.task.label_words if lab not in words]
            if missing:
                raise PromptoptError(f"the prompt's label words have no entry for labels {missing}")
            labels = list(self.task.label_words)
            ws = [list(words[lab]) for lab in labels]
            ids = [[self.encoder.answer_ids(prompt, w) for w in wl] for wl in ws]
            verb = self._verbalizers[key] = Verbalizer(labels, ws, ids)
        return verb

    def answer_token(self, prompt: Prompt, answer: str) -> int | None:
        """The single token id of a fact-retrieval answer, or None if the answer is not one token."""
        ids = self.encoder.answer_ids(prompt, answer)
        return ids[0] if len(ids) == 1 else None

    # -- differentiable scores ---------------------------------------------------------------------------------
    def class_scores(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """``(N, C)`` class log-likelihoods; differentiable with respect to ``vectors`` when grad is enabled."""
        verb = self.verbalizer(prompt)
        layout = VectorLayout.build(prompt, vectors)
        enc = self.encoder
        contexts = [enc.encode(prompt, ex.inputs, layout) for ex in examples]
        first = torch.log_softmax(self._logits_at(contexts, layout.table)[:, 0], dim=-1)  # (N, V)
        per_label = []
        for word_ids in verb.ids:
            word_scores = []
            for ids in word_ids:
                if len(ids) == 1:
                    word_scores.append(first[:, ids[0]])
                    continue
                if self.lm.kind == ModelKind.CAUSAL:
                    encs = [enc.encode(prompt, ex.inputs, layout, continuation=ids) for ex in examples]
                else:
                    encs = [enc.encode(prompt, ex.inputs, layout, answer_len=len(ids)) for ex in examples]
                logp = torch.log_softmax(self._logits_at(encs, layout.table), dim=-1)  # (N, m, V)
                target = torch.tensor(ids, device=logp.device).expand(len(examples), -1)
                word_scores.append(logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1))
            per_label.append(torch.logsumexp(torch.stack(word_scores, dim=-1), dim=-1))
        return torch.stack(per_label, dim=-1)

    def vocab_logprobs(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """``(N, V)`` log-probabilities over the vocabulary at the answer position (fact retrieval)."""
        layout = VectorLayout.build(prompt, vectors)
        encs = [self.encoder.encode(prompt, ex.inputs, layout) for ex in examples]
        return torch.log_softmax(self._logits_at(encs, layout.table)[:, 0], dim=-1)

    def targets(self, prompt: Prompt, examples: list[Example]) -> torch.Tensor:
        """Gold class indices (classification) or gold token ids (fact retrieval) for a loss."""
        if self.task.kind == TaskKind.CLASSIFICATION:
            labels = self.verbalizer(prompt).labels
            return torch.tensor([labels.index(ex.label) for ex in examples], device=self.lm.device)
        ids = [self.answer_token(prompt, ex.label) for ex in examples]
        if any(i is None for i in ids):
            raise PromptoptError("a fact-retrieval answer is not a single token; filter with usable_examples()")
        return torch.tensor(ids, device=self.lm.device)

    def scores(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """Class scores or vocabulary log-probabilities, by the task's kind."""
        if self.task.kind == TaskKind.CLASSIFICATION:
            return self.class_scores(prompt, examples, vectors)
        return self.vocab_logprobs(prompt, examples, vectors)

    def loss(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """Mean cross-entropy of the gold class (or gold answer token) under :meth:`scores`."""
        return torch.nn.functional.cross_entropy(self.scores(prompt, examples, vectors), self.targets(prompt, examples))

    def usable_examples(self, prompt: Prompt, examples: list[Example]) -> list[Example]:
        """Fact retrieval keeps facts whose answer is one token of this model's vocabulary (as LAMA does)."""
        if self.task.kind == TaskKind.CLASSIFICATION:
            return list(examples)
        return [ex for ex in examples if self.answer_token(prompt, ex.label) is not None]

    # -- evaluation ---------------------------------------------------------------------------------------------
    def batches(self, prompt: Prompt, examples: list[Example]):
        """Index batches, longest examples first, so that each batch holds examples of similar length."""
        layout = VectorLayout.build(prompt)
        lengths = [len(self.encoder.encode(prompt, ex.inputs, layout).ids) for ex in examples]
        order = sorted(range(len(examples)), key=lambda i: -lengths[i])
        for i in range(0, len(order), self.batch_size):
            yield order[i : i + self.batch_size]

    def evaluate(self, prompt: Prompt, examples: list[Example], progress: bool | str = False, top_k: int = 5) -> EvalResult:
        """Score every example; metrics by the task's spec, plus per-example predictions."""
        start = time.perf_counter()
        usable = self.usable_examples(prompt, examples)
        dropped = len(examples) - len(usable)
        if not usable:
            raise PromptoptError(f"no example of task {self.task.name!r} can be scored with this model")
        preds: list = [None] * len(usable)
        rows: list = [None] * len(usable)
        batches = list(self.batches(prompt, usable))
        bar = _progress(progress, len(usable))
        classification = self.task.kind == TaskKind.CLASSIFICATION
        labels = self.verbalizer(prompt).labels if classification else None
        with torch.inference_mode():
            for idx in batches:
                batch = [usable[i] for i in idx]
                scores = self.scores(prompt, batch).float().cpu()
                for j, i in enumerate(idx):
                    ex = usable[i]
                    if classification:
                        best = int(scores[j].argmax())
                        preds[i] = labels[best]
                        detail = {"scores": {lab: round(float(s), 5) for lab, s in zip(labels, scores[j])}}
                    else:
                        top = torch.topk(scores[j], top_k)
                        tokens = [self.encoder.tokenizer.decode([t]).strip() for t in top.indices.tolist()]
                        gold = self.answer_token(prompt, ex.label)
                        preds[i] = ex.label if int(top.indices[0]) == gold else tokens[0]
                        detail = {"top": tokens, "gold_rank": int((scores[j] > scores[j][gold]).sum()) + 1}
                    rows[i] = {"source": ex.source, "inputs": ex.inputs, "label": ex.label,
                               "prediction": preds[i], "correct": preds[i] == ex.label, **detail}  # fmt: skip
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - start
        golds = [ex.label for ex in usable]
        metrics = compute_metrics(self.task, golds, preds)
        if dropped:
            metrics["dropped_multi_token_answers"] = dropped
        return EvalResult(metrics, rows, seconds, len(usable) / max(seconds, 1e-9), len(usable))


def _progress(progress, total):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=progress if isinstance(progress, str) else "scoring", unit="ex", leave=False)


def _gather(states: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
    """``states[b, read[b, r]]`` for every b, r: ``(B, R, H)``."""
    index = read.unsqueeze(-1).expand(-1, -1, states.shape[-1])
    return states.gather(1, index)


def _rows(ids: torch.Tensor, mask: torch.Tensor) -> list[Encoded]:
    """Encoded examples from a padded id matrix (used by the start-up self-check)."""
    out = []
    for row, m in zip(ids.tolist(), mask.tolist()):
        row = [t for t, keep in zip(row, m) if keep]
        out.append(Encoded(ids=row, vectors=[], read=[len(row) - 1], shared=4))
    out[1].ids[:4] = out[0].ids[:4]
    return out


def _truncate(enc: Encoded, n: int) -> Encoded:
    return Encoded(ids=enc.ids[:n], vectors=[(p, r) for p, r in enc.vectors if p < n], read=[n - 1], shared=n)


def _cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v in cache]


def _new_cache(kv):
    from transformers import DynamicCache

    if kv is None:
        return DynamicCache()
    try:
        return DynamicCache(ddp_cache_data=kv)
    except TypeError:  # older transformers
        return DynamicCache.from_legacy_cache(tuple(kv))

