"""The one scoring engine every method is measured with.

Scoring contract (rank classification, as lm-evaluation-harness's ``loglikelihood``):

* in: a :class:`~promptopt.data.prompt.Prompt`, examples, and optionally vectors for vector/token segments;
* out: for classification, one log-likelihood per class: ``log sum_w P(w | prompt, example)`` over the class's label
  words, a multi-token word scoring the sum of its tokens' log-probabilities; for fact retrieval, log-probabilities
  over the whole vocabulary at the answer position.
* The space before the answer belongs to the answer (see :mod:`promptopt.engine.inputs`).
* Scoring rules (:class:`ScoringRule`, the task spec's ``scoring`` or ``--scoring``), the same for every method:
  ``loglik`` as above; ``norm_token`` and ``norm_char`` divide each label word's log-likelihood by its number of
  tokens or of characters (with the leading space; lm-evaluation-harness's ``acc_norm``) before pooling words;
  ``calibrated`` (contextual calibration, Zhao et al. 2021) subtracts from each example's class scores the class
  log-probabilities (normalised over the classes) of a content-free input, every field ``"N/A"``, scored with the
  same prompt and vectors in the same batch.

Vocabulary logits are computed only at the positions where the answer is read, never at every position. Evaluation
runs in ``inference_mode``, longest examples first (an out-of-memory error shows on the first batch) so that
batches hold examples of similar length. For a causal LM, the longest prefix of token ids and vector rows that every
example of a batch has in common (trainable vectors, an instruction, a block of demonstrations, the template's text in
front of the first field) is computed once per batch and its keys/values are shared by every example.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from dataclasses import dataclass, field

import torch

from promptopt.engine import distributed
from promptopt.engine.adapt import check_prefix, dynamic_cache, prefix_kv, seq2seq_prefix_cache
from promptopt.engine.compute import compute_counter
from promptopt.errors import PromptoptError
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example, TaskKind, TaskSpec
from promptopt.engine.inputs import (Batch, Encoded, Encoder, VectorLayout, cache_argument, collate, embed,
                                     position_offset)  # fmt: skip
from promptopt.engine.metrics import compute_metrics
from promptopt.engine.model import LoadedModel, ModelKind, capabilities, capped_head

log = logging.getLogger(__name__)

MIN_SHARED_PREFIX = 4
CONTENT_FREE = "N/A"


class ScoringRule(str, enum.Enum):
    LOGLIK = "loglik"
    NORM_TOKEN = "norm_token"
    NORM_CHAR = "norm_char"
    CALIBRATED = "calibrated"


def scoring_rule(value) -> ScoringRule:
    try:
        return ScoringRule(value or ScoringRule.LOGLIK)
    except ValueError:
        raise PromptoptError(f"scoring rule {value!r} is not one of {[r.value for r in ScoringRule]}") from None


@dataclass
class Verbalizer:
    labels: list[str]
    words: list[list[str]]
    ids: list[list[list[int]]]  # label -> word -> token ids
    chars: list[list[int]] = field(default_factory=list)  # label -> word -> characters, leading space included


@dataclass
class EvalResult:
    metrics: dict
    predictions: list[dict]
    seconds: float
    examples_per_second: float
    n: int
    #: the scoring rule (:class:`ScoringRule`) the class scores were computed with
    scoring: str = ScoringRule.LOGLIK.value

    @property
    def score(self) -> float:
        return self.metrics["score"]


@dataclass
class _ModelFacts:
    base: torch.nn.Module
    head: torch.nn.Module | None
    cache_arg: str | None
    share_ok: bool = False
    #: a right-padded causal batch scores the same without its attention mask (pads come after every real token),
    #: so attention runs as plain causal attention (the fused kernels) instead of with a padding mask
    maskless_ok: bool = False
    #: on a CPU, a forward that will be differentiated runs with transformers' eager attention instead of SDPA
    #: where both give the same logits: torch's fused CPU attention backward costs several times its forward
    #: (in bf16 it took a quarter of a training step of 20 prompt vectors on SmolLM2-135M, profiled)
    eager_grad_ok: bool = False
    checked: bool = False
    notes: list[str] = field(default_factory=list)


def _model_facts(lm: LoadedModel) -> _ModelFacts:
    facts = getattr(lm, "_scoring_facts", None)
    if facts is None:
        model = lm.model
        base = getattr(model, model.base_model_prefix, None)
        if lm.kind == ModelKind.CAUSAL:
            head = model.get_output_embeddings()
        else:
            head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        head = capped_head(head, capabilities(lm).softcap)
        cache_arg = cache_argument(base) if base is not None else None
        facts = _ModelFacts(base=base, head=head, cache_arg=cache_arg)
        lm._scoring_facts = facts
    return facts


#: the evaluation batch size when none is given: on the 2-core AVX2 CPU of 2026-12-06, batch 32 scored SST-2 dev 1.18x
#: faster than 16 in float32 and tied with 64 (``benchmarks/bench_lm_eval.py``); lower it for a large model on a small GPU
EVAL_BATCH_SIZE = 32


class Scorer:
    """Scores prompts for one task on one model. See the module docstring for the contract."""

    def __init__(
        self,
        lm: LoadedModel,
        task: TaskSpec,
        batch_size: int = EVAL_BATCH_SIZE,
        padding_side: str | None = None,
        max_length: int | None = None,
        share_prefix: bool = True,
        scoring: str | None = None,
        chat_template: bool = False,
    ):
        if padding_side not in (None, "left", "right"):
            raise PromptoptError(f"padding side {padding_side!r} is not 'left' or 'right'")
        self.lm = lm
        self.task = task
        self.scoring = scoring_rule(scoring or getattr(task, "scoring", None))
        if self.scoring != ScoringRule.LOGLIK and task.kind == TaskKind.FACT_RETRIEVAL:
            raise PromptoptError(f"scoring rule {self.scoring.value!r} applies to classification tasks; fact retrieval "
                                 "ranks the vocabulary by log-probability")  # fmt: skip
        self.batch_size = batch_size
        self.side = padding_side or "right"
        self.encoder = Encoder(lm, max_length, chat_template)
        self.share_prefix = share_prefix and lm.kind == ModelKind.CAUSAL
        self.facts = _model_facts(lm)
        self._pos_offset = position_offset(lm)
        self._verbalizers: dict = {}
        self._prefix = None  # the deep prefix of the prompt being scored (set by each public scoring call)
        self.compute = compute_counter(lm)  # every forward pass below is counted there
        if lm.kind == ModelKind.SEQ2SEQ:  # logits come from the decoder: every read goes through the seq2seq path
            self.facts.checked = True
            self._logits_at = self._seq2seq_logits_at
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
        tol = check_tolerance(self.lm.dtype)
        with torch.inference_mode():
            at = self._positions(pos)
            full = model(input_ids=ids, attention_mask=mask, **at).logits.float()
            if facts.base is not None and facts.head is not None:
                try:
                    hidden = facts.base(input_ids=ids, attention_mask=mask, **at).last_hidden_state
                    ok = torch.allclose(facts.head(hidden).float(), full, **tol)
                except Exception as e:  # an unusual architecture: fall back to full logits
                    ok = False
                    facts.notes.append(f"answer-only head unavailable: {e}")
                if not ok:
                    facts.head = None
            else:
                facts.head = None
            if facts.head is None:
                facts.notes.append("vocabulary logits computed at every position (slow path)")
            if self.lm.kind == ModelKind.CAUSAL and facts.base is not None:
                try:
                    right = torch.ones_like(ids)
                    right[1, -3:] = 0  # right padding in the second row
                    rpos = (right.cumsum(-1) - 1).clamp(min=0) + self._pos_offset
                    ref = facts.base(input_ids=ids, attention_mask=right, **self._positions(rpos)).last_hidden_state
                    got = facts.base(input_ids=ids, **self._positions(rpos)).last_hidden_state
                    real = right.bool()
                    facts.maskless_ok = torch.allclose(ref[real].float(), got[real].float(), **tol)
                except Exception as e:
                    facts.notes.append(f"attention without a padding mask unavailable: {e}")
            if self.lm.device.type == "cpu" and getattr(model.config, "_attn_implementation", None) == "sdpa":
                try:
                    with attention_implementation(model, "eager"):
                        eager = model(input_ids=ids, attention_mask=mask, **at).logits.float()
                    real = mask.bool()  # (padded rows are garbage either way); the two round differently in bf16,
                    # so the test is on the largest difference against the largest logit, not element by element
                    err, scale = (eager[real] - full[real]).abs().max(), full[real].abs().max()
                    facts.eager_grad_ok = bool(err <= tol["atol"] + tol["rtol"] * scale)
                except Exception as e:
                    facts.notes.append(f"eager attention for training unavailable: {e}")
            if self.lm.kind == ModelKind.CAUSAL and facts.head is not None and facts.cache_arg is not None:
                try:
                    ref = self._hidden_plain(_rows(ids, mask), None)
                    got = self._hidden_shared(_rows(ids, mask), None, shared=4)
                    facts.share_ok = torch.allclose(ref.float(), got.float(), **tol)
                    if not facts.share_ok:
                        err = float((ref.float() - got.float()).abs().max())
                        log.warning("%s: shared-prefix reuse switched off: it differs from the plain path by %.3g "
                                    "(tolerance %s for %s)", self.lm.name, err, tol, self.lm.dtype)  # fmt: skip
                except Exception as e:
                    facts.notes.append(f"shared-prefix reuse unavailable: {e}")
                    facts.share_ok = False
        for note in facts.notes:
            log.warning("%s: %s", self.lm.name, note)

    def _run_base(self, emb, mask, pos, cache=None):
        if self._prefix is not None:  # a deep prompt: its keys/values come first, at positions before the input's
            n = self._prefix.shape[-2]
            if cache is None or cache.get_seq_length() == 0:  # a non-empty cache already starts with them
                cache = dynamic_cache(prefix_kv(self._prefix, emb.shape[0], emb.dtype, emb.device))
            if mask is not None:
                mask = torch.cat([torch.ones((mask.shape[0], n), dtype=mask.dtype, device=mask.device), mask], dim=1)
            pos = pos + n
        kwargs = {"inputs_embeds": emb, "attention_mask": mask, **self._positions(pos)}
        if cache is not None:
            kwargs[self.facts.cache_arg] = cache
            kwargs["use_cache"] = True
        # the backward follows the forward's kernels; checkpointed layers rerun their forward in the backward pass,
        # outside this call, so they keep the model's own attention
        if self.facts.eager_grad_ok and torch.is_grad_enabled() and not self.lm.gradient_checkpointing:
            with attention_implementation(self.lm.model, "eager"):
                return self.facts.base(**kwargs)
        return self.facts.base(**kwargs)

    def _mask(self, batch: Batch) -> torch.Tensor | None:
        """The attention mask to pass: none for a right-padded causal batch where that was proven equal."""
        if self.facts.maskless_ok and self.side == "right" and self.lm.kind == ModelKind.CAUSAL:
            return None
        return batch.attention_mask

    def _no_cache(self) -> bool:
        """Whether the layers cannot write a key/value cache now: checkpointed layers with gradients on."""
        return self.lm.gradient_checkpointing and torch.is_grad_enabled()

    def _positions(self, pos) -> dict:
        """``position_ids`` for the model's forward, where it takes them (not ALiBi models, not DistilBERT < 5)."""
        return {"position_ids": pos} if capabilities(self.lm).position_ids else {}

    def _logits_at(self, encs: list[Encoded], table) -> torch.Tensor:
        """Vocabulary logits (float32) at each example's read positions: ``(B, R, V)``."""
        facts = self.facts
        if facts.head is None:
            batch = collate(encs, self.encoder.pad_id, self.side, self.lm.device, offset=self._pos_offset)
            emb = embed(self.lm, batch, table)
            logits = self.lm.model(inputs_embeds=emb, attention_mask=self._mask(batch),
                                   **self._positions(batch.position_ids)).logits  # fmt: skip
            return _gather(logits, batch.read).float()
        shared = min(_common_prefix(encs), min(min(e.read) for e in encs)) if len(encs) > 1 else 0
        if self.share_prefix and facts.share_ok and shared >= MIN_SHARED_PREFIX and len(encs) > 1 and not self._no_cache():
            hidden = self._hidden_shared(encs, table, shared)
        else:
            hidden = self._hidden_plain(encs, table)
        return facts.head(hidden).float()

    def _distinct_logits_at(self, encs: list[Encoded], table) -> torch.Tensor:
        """:meth:`_logits_at`, each distinct input computed once: for a causal LM, what a row reads depends only on
        its tokens up to its last read position, so choices that differ only in their last token (every one-token
        choice of an example) share one forward row, as lm-evaluation-harness's request grouping does."""
        if self.lm.kind != ModelKind.CAUSAL:
            return self._logits_at(encs, table)
        keys, unique, where = {}, [], []
        for e in encs:
            end = max(e.read) + 1
            key = (tuple(e.ids[:end]), tuple(e.vectors), tuple(e.read))
            if key not in keys:
                keys[key] = len(unique)
                unique.append(Encoded(ids=e.ids[:end], vectors=[(p, r) for p, r in e.vectors if p < end], read=e.read,
                                      truncated=e.truncated))  # fmt: skip
            where.append(keys[key])
        logits = self._logits_at(unique, table)
        return logits if len(unique) == len(encs) else logits[torch.tensor(where, device=logits.device)]

    def _seq2seq_logits_at(self, encs: list[Encoded], table) -> torch.Tensor:
        """Encoder-decoder: the prompt (vectors and triggers included) is the encoder's input; the logits are the
        decoder's at the read positions of its input (start token, then the answer's tokens but the last)."""
        batch = collate(encs, self.encoder.pad_id, "right", self.lm.device)
        decoder = torch.tensor([e.decoder for e in encs], dtype=torch.long, device=self.lm.device)
        emb = embed(self.lm, batch, table)
        deep = {}
        if self._prefix is not None:  # a deep prompt: keys/values in front of the decoder's input, at every layer
            kv = prefix_kv(self._prefix, emb.shape[0], emb.dtype, emb.device)
            deep = {cache_argument(self.lm.model) or "past_key_values": seq2seq_prefix_cache(kv), "use_cache": True}
        logits = self.lm.model(inputs_embeds=emb, attention_mask=batch.attention_mask, decoder_input_ids=decoder,
                               **deep).logits  # fmt: skip
        return _gather(logits, batch.read).float()

    def _hidden_plain(self, encs, table):
        batch = collate(encs, self.encoder.pad_id, self.side, self.lm.device, offset=self._pos_offset)
        out = self._run_base(embed(self.lm, batch, table), self._mask(batch), batch.position_ids)
        return _gather(out.last_hidden_state, batch.read)

    def _hidden_shared(self, encs, table, shared):
        """Run the shared prefix once (batch of one), then every example on top of its keys/values."""
        device = self.lm.device
        prefix = collate([_truncate(encs[0], shared)], self.encoder.pad_id, "right", device)
        out = self._run_base(embed(self.lm, prefix, table), prefix.attention_mask, prefix.position_ids,
                             cache=dynamic_cache(None))  # fmt: skip
        kv = _cache_tensors(getattr(out, self.facts.cache_arg, None) or getattr(out, "past_key_values", None))
        rest = collate(encs, self.encoder.pad_id, self.side, device, start=shared)
        n = len(encs)
        cache = dynamic_cache([(k.expand(n, *k.shape[1:]), v.expand(n, *v.shape[1:])) for k, v in kv])
        mask = self._mask(rest)
        if mask is not None:
            mask = torch.cat([torch.ones((n, shared), dtype=mask.dtype, device=device), mask], dim=1)
        out = self._run_base(embed(self.lm, rest, table), mask, rest.position_ids, cache=cache)
        return _gather(out.last_hidden_state, rest.read)

    def _set_prefix(self, prompt: Prompt) -> None:
        """Score with ``prompt``'s deep prefix (keys/values at every layer, see :mod:`promptopt.engine.adapt`)."""
        self._prefix = prompt.prefix
        if prompt.prefix is not None:
            check_prefix(self.lm, prompt.prefix)
            if self.facts.head is None:  # the full-logits path calls the model without the cache
                raise PromptoptError(f"{self.lm.name}: a deep prefix needs the answer-only path ({self.facts.notes})")

    # -- verbalizer ---------------------------------------------------------------------------------------------
    def verbalizer(self, prompt: Prompt) -> Verbalizer:
        words = prompt.label_words or self.task.label_words
        key = (self.encoder.answer_anchor(prompt), self.encoder.answer_prefix(prompt), tuple((k, tuple(v)) for k, v in words.items()))
        verb = self._verbalizers.get(key)
        if verb is None:
            missing = [lab for lab in self.task.label_words if lab not in words]
            if missing:
                raise PromptoptError(f"the prompt's label words have no entry for labels {missing}")
            labels = list(self.task.label_words)
            ws = [list(words[lab]) for lab in labels]
            ids = [[self.encoder.answer_ids(prompt, w) for w in wl] for wl in ws]
            seen: dict[tuple, tuple[str, str]] = {}
            for lab, wl, il in zip(labels, ws, ids):
                for w, i in zip(wl, il):
                    other = seen.setdefault(tuple(i), (lab, w))
                    if other[0] != lab:  # the same tokens score both classes alike: they cannot be told apart
                        raise PromptoptError(
                            f"label words {other[1]!r} (label {other[0]!r}) and {w!r} (label {lab!r}) are the same "
                            f"tokens {list(i)} for model {self.lm.name!r}; give the labels words that tokenize apart")  # fmt: skip
            chars = [[len(self.encoder.answer_prefix(prompt) + w) for w in wl] for wl in ws]
            verb = self._verbalizers[key] = Verbalizer(labels, ws, ids, chars)
        return verb

    def answer_token(self, prompt: Prompt, answer: str) -> int | None:
        """The single token id of a fact-retrieval answer, or None if the answer is not one token."""
        ids = self.encoder.answer_ids(prompt, answer)
        return ids[0] if len(ids) == 1 else None

    # -- differentiable scores ---------------------------------------------------------------------------------
    def class_scores(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """``(N, C)`` class log-likelihoods; differentiable with respect to ``vectors`` when grad is enabled."""
        self._set_prefix(prompt)
        layout = VectorLayout.build(prompt, vectors)
        rows = self._with_content_free(examples)

        def encode(**kwargs):
            return [self.encoder.encode(prompt, ex.inputs, layout, **kwargs) for ex in rows]

        scores = self._class_scores(self.verbalizer(prompt), encode, lambda encs: self._logits_at(encs, layout.table))
        return self._calibrate(scores.unsqueeze(0), len(examples))[0]

    def _with_content_free(self, examples: list[Example]) -> list[Example]:
        """``examples``, and for the calibrated rule the content-free input after them."""
        if self.scoring != ScoringRule.CALIBRATED:
            return list(examples)
        return [*examples, Example(inputs={f: CONTENT_FREE for f in self.task.inputs}, label="", source="content-free")]

    def _calibrate(self, scores: torch.Tensor, n: int) -> torch.Tensor:
        """``(P, rows, C)`` scores to ``(P, n, C)``: under the calibrated rule, less the content-free row's class
        log-probabilities (the last row); otherwise unchanged."""
        if self.scoring != ScoringRule.CALIBRATED:
            return scores
        return scores[:, :n] - torch.log_softmax(scores[:, n:], dim=-1)

    def choice_scores(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """``(N, K)`` multiple choice: the log-likelihood of each example's K choices as the answer (each tokenized
        as the continuation of the prompt, like a label word), under the scoring rule; differentiable as
        :meth:`class_scores`. Every example of a call must have the same number of choices."""
        counts = {len(ex.choices) for ex in examples}
        if len(counts) != 1 or 0 in counts:
            raise PromptoptError(f"multiple choice: every example of a batch needs the same number of choices, got {sorted(counts)}")
        self._set_prefix(prompt)
        layout = VectorLayout.build(prompt, vectors)
        scores = self._choice_scores(prompt, examples, layout)
        if self.scoring == ScoringRule.CALIBRATED:  # the same choices after a content-free input
            free = [Example(inputs={f: CONTENT_FREE for f in self.task.inputs}, label="0", choices=ex.choices)
                    for ex in examples]  # fmt: skip
            scores = scores - torch.log_softmax(self._choice_scores(prompt, free, layout), dim=-1)
        return scores

    def _choice_scores(self, prompt: Prompt, examples: list[Example], layout: VectorLayout) -> torch.Tensor:
        prefix = self.encoder.answer_prefix(prompt)
        rows = [(i, j, self.encoder.answer_ids(prompt, c), len(prefix + c))
                for i, ex in enumerate(examples) for j, c in enumerate(ex.choices)]  # fmt: skip
        by_length: dict[int, list] = {}
        for row in rows:
            by_length.setdefault(len(row[2]), []).append(row)
        parts, where = [], []
        for m, group in by_length.items():  # rows read the same number of positions in one pass
            if self.lm.kind != ModelKind.MASKED:
                encs = [self.encoder.encode(prompt, examples[i].inputs, layout, continuation=ids) for i, _, ids, _ in group]
            else:
                encs = [self.encoder.encode(prompt, examples[i].inputs, layout, answer_len=m) for i, _, _, _ in group]
            logp = torch.log_softmax(self._distinct_logits_at(encs, layout.table), dim=-1)
            target = torch.tensor([ids for _, _, ids, _ in group], device=logp.device)
            total = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1)
            if self.scoring == ScoringRule.NORM_TOKEN:
                total = total / m
            elif self.scoring == ScoringRule.NORM_CHAR:
                total = total / torch.tensor([chars for *_, chars in group], device=total.device, dtype=total.dtype)
            parts.append(total)
            where.extend((i, j) for i, j, _, _ in group)
        flat = torch.cat(parts)
        out = flat.new_zeros((len(examples), len(examples[0].choices)))
        index = torch.tensor([i * out.shape[1] + j for i, j in where], device=flat.device)
        return out.flatten().index_put((index,), flat).view_as(out)

    def _class_scores(self, verb: Verbalizer, encode, logits_at) -> torch.Tensor:
        """Class log-likelihoods of the rows ``encode(**kwargs)`` gives, with logits from ``logits_at(encs)``."""
        first = torch.log_softmax(logits_at(encode())[:, 0], dim=-1)  # (rows, V)
        per_label = []
        for word_ids, word_chars in zip(verb.ids, verb.chars):
            word_scores = []
            for ids, chars in zip(word_ids, word_chars):
                length = {ScoringRule.NORM_TOKEN: len(ids), ScoringRule.NORM_CHAR: chars}.get(self.scoring, 1)
                if len(ids) == 1:
                    word_scores.append(first[:, ids[0]] / length)
                    continue
                if self.lm.kind != ModelKind.MASKED:
                    encs = encode(continuation=ids)
                else:
                    encs = encode(answer_len=len(ids))
                logp = torch.log_softmax(logits_at(encs), dim=-1)  # (rows, m, V)
                target = torch.tensor(ids, device=logp.device).expand(logp.shape[0], -1)
                word_scores.append(logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1) / length)
            per_label.append(torch.logsumexp(torch.stack(word_scores, dim=-1), dim=-1))
        return torch.stack(per_label, dim=-1)

    def vocab_logprobs(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """``(N, V)`` log-probabilities over the vocabulary at the answer position (fact retrieval)."""
        self._set_prefix(prompt)
        layout = VectorLayout.build(prompt, vectors)
        encs = [self.encoder.encode(prompt, ex.inputs, layout) for ex in examples]
        return torch.log_softmax(self._logits_at(encs, layout.table)[:, 0], dim=-1)

    def targets(self, prompt: Prompt, examples: list[Example]) -> torch.Tensor:
        """Gold class indices (classification) or gold token ids (fact retrieval) for a loss."""
        if self.task.kind == TaskKind.CLASSIFICATION:
            labels = self.verbalizer(prompt).labels
            return torch.tensor([labels.index(ex.label) for ex in examples], device=self.lm.device)
        if self.task.kind == TaskKind.MULTIPLE_CHOICE:
            return torch.tensor([int(ex.label) for ex in examples], device=self.lm.device)
        ids = [self.answer_token(prompt, ex.label) for ex in examples]
        if any(i is None for i in ids):
            raise PromptoptError("a fact-retrieval answer is not a single token; filter with usable_examples()")
        return torch.tensor(ids, device=self.lm.device)

    def scores(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """Class scores, choice scores or vocabulary log-probabilities, by the task's kind."""
        if self.task.kind == TaskKind.CLASSIFICATION:
            return self.class_scores(prompt, examples, vectors)
        if self.task.kind == TaskKind.MULTIPLE_CHOICE:
            return self.choice_scores(prompt, examples, vectors)
        return self.vocab_logprobs(prompt, examples, vectors)

    def loss(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """Mean cross-entropy of the gold class (or gold answer token) under :meth:`scores`."""
        return torch.nn.functional.cross_entropy(self.scores(prompt, examples, vectors), self.targets(prompt, examples))

    # -- several prompts at once ---------------------------------------------------------------------------------
    def scores_many(self, prompts: list[Prompt], examples: list[Example], vectors=None) -> torch.Tensor:
        """``(P, N, K)``: :meth:`scores` of every prompt on every example, computed together.

        The P*N (prompt, example) rows go through the model in one forward pass (plus one per multi-token label
        word, as in :meth:`class_scores`), so re-scoring many prompts that differ in a few tokens costs a few large
        batches instead of P small ones. For a causal LM, the beginning of an example's input that all the prompts
        share (e.g. ``Review: {sentence}`` in front of the tokens that differ) is computed once per example and its
        keys/values are reused by every prompt's row. The prompts must share their label words and answer prefix
        (one verbalizer). ``vectors`` (as in :meth:`scores`) apply to every prompt; the result is differentiable with
        respect to them, and for a causal LM the part of each input in front of them is computed without a graph.
        """
        if not prompts:
            raise PromptoptError("scores_many needs at least one prompt")
        if any(p.prefix is not prompts[0].prefix for p in prompts[1:]):
            raise PromptoptError("scores_many: every prompt must share one deep prefix")
        self._set_prefix(prompts[0])
        if self.task.kind == TaskKind.MULTIPLE_CHOICE:  # every example has its own answers: one prompt at a time
            return torch.stack([self.choice_scores(p, examples, vectors) for p in prompts])
        classification = self.task.kind == TaskKind.CLASSIFICATION
        n = len(examples)
        examples = self._with_content_free(examples)
        verb = self.verbalizer(prompts[0]) if classification else None
        if classification and any(self.verbalizer(p).ids != verb.ids for p in prompts[1:]):
            raise PromptoptError("scores_many: every prompt must use the same label words and answer prefix")
        layouts, parts, base = [], [], 0
        for p in prompts:
            layout = VectorLayout.build(p, vectors)
            layouts.append((layout, base))
            if layout.table is not None:
                parts.append(layout.table)
                base += layout.table.shape[0]
        table = torch.cat(parts, dim=0) if parts else None

        def encode(**kwargs):  # rows ordered prompt-major: row p * N + n is prompt p on example n
            encs = []
            for p, (layout, offset) in zip(prompts, layouts):
                for ex in examples:
                    e = self.encoder.encode(p, ex.inputs, layout, **kwargs)
                    if offset:
                        e.vectors = [(pos, row + offset) for pos, row in e.vectors]
                    encs.append(e)
            return encs

        def logits_at(encs):
            return self._logits_per_example_prefix(encs, table, len(examples))

        if classification:
            return self._calibrate(self._class_scores(verb, encode, logits_at).view(len(prompts), len(examples), -1), n)
        return torch.log_softmax(logits_at(encode())[:, 0], dim=-1).view(len(prompts), n, -1)

    def losses(self, prompts: list[Prompt], examples: list[Example], vectors=None) -> torch.Tensor:
        """``(P,)``: :meth:`loss` of each prompt on the same examples, computed together by :meth:`scores_many`.

        Data parallel and without gradients (e.g. re-scoring search candidates), each process scores its part of
        the examples and the sums are all-reduced: every process gets the losses on all of them.
        """
        if distributed.world_size() == 1 or torch.is_grad_enabled():
            return self._losses(prompts, examples, vectors, "mean")
        mine = [examples[i] for i in distributed.shard(len(examples))]
        total = self._losses(prompts, mine, vectors, "sum") if mine else torch.zeros(len(prompts), device=self.lm.device)
        return distributed.all_reduce_sum(total.float()) / len(examples)

    def _losses(self, prompts: list[Prompt], examples: list[Example], vectors, reduction: str) -> torch.Tensor:
        scores = self.scores_many(prompts, examples, vectors)
        return torch.stack([torch.nn.functional.cross_entropy(scores[i], self.targets(p, examples), reduction=reduction)
                            for i, p in enumerate(prompts)])  # fmt: skip

    def _logits_per_example_prefix(self, encs: list[Encoded], table, n_examples: int) -> torch.Tensor:
        """:meth:`_logits_at` for rows ordered prompt-major over ``n_examples`` examples.

        For a causal LM, each example's longest prefix common to all its rows (up to the first read position, and
        up to the first vector row when the vectors need gradients) runs once; every row then runs only its own
        remainder on top of those keys/values.
        """
        groups = [encs[i::n_examples] for i in range(n_examples)]
        splits = [min(_common_prefix(g), min(min(e.read) for e in g)) for g in groups]
        needs_grad = table is not None and table.requires_grad
        if needs_grad:  # what comes before the first vector does not depend on it: no graph there
            splits = [min([s, *(p for e in g for p, _ in e.vectors)]) for s, g in zip(splits, groups)]
        facts = self.facts
        usable = self.lm.kind == ModelKind.CAUSAL and facts.head is not None and facts.share_ok and not self._no_cache()
        if not usable or min(splits) < 1 or (len(encs) == n_examples and not needs_grad):
            return self._logits_at(encs, table)  # a prefix shared by the whole batch is still computed once
        device = self.lm.device
        prefix = collate([_truncate(g[0], s) for g, s in zip(groups, splits)], self.encoder.pad_id, "left", device,
                         offset=self._pos_offset)  # fmt: skip
        out = self._run_base(embed(self.lm, prefix, table), prefix.attention_mask, prefix.position_ids,
                             cache=dynamic_cache(None))  # fmt: skip
        kv = _cache_tensors(getattr(out, self.facts.cache_arg, None) or getattr(out, "past_key_values", None))
        example = torch.arange(len(encs), device=device) % n_examples
        rest = collate([_drop_front(e, splits[i % n_examples]) for i, e in enumerate(encs)], self.encoder.pad_id,
                       "right", device, offset=self._pos_offset)  # fmt: skip
        position_ids = rest.position_ids + torch.tensor(splits, device=device)[example].unsqueeze(1)
        cache = dynamic_cache([(k.index_select(0, example), v.index_select(0, example)) for k, v in kv])
        mask = torch.cat([prefix.attention_mask.index_select(0, example), rest.attention_mask], dim=1)
        out = self._run_base(embed(self.lm, rest, table), mask, position_ids, cache=cache)
        return facts.head(_gather(out.last_hidden_state, rest.read)).float()

    # -- hidden states ------------------------------------------------------------------------------------------
    def answer_features(self, prompt: Prompt, examples: list[Example], vectors=None) -> torch.Tensor:
        """``(N, H)``: at each example's answer position, the vector the output embedding matrix multiplies.

        That is the final hidden state after any final norm or prediction-head transform, so that the answer
        logits are ``features @ W.T (+ bias)`` with ``W = model.get_output_embeddings().weight``. For probes and
        label-word search. Computed in batches of ``batch_size``; differentiable when grad is enabled.
        """
        out_emb = self.lm.model.get_output_embeddings()
        if out_emb is None:
            raise PromptoptError(f"{self.lm.name}: the model exposes no output embeddings")
        self._set_prefix(prompt)
        layout = VectorLayout.build(prompt, vectors)
        captured: list[torch.Tensor] = []
        handle = out_emb.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        rows = []
        try:
            for i in range(0, len(examples), self.batch_size):
                encs = [self.encoder.encode(prompt, ex.inputs, layout) for ex in examples[i : i + self.batch_size]]
                captured.clear()
                if self.facts.head is not None:
                    self._logits_at(encs, layout.table)
                    rows.append(captured[-1][:, 0])
                else:  # the full model computes every position: pick the read positions out
                    batch = collate(encs, self.encoder.pad_id, self.side, self.lm.device, offset=self._pos_offset)
                    self.lm.model(inputs_embeds=embed(self.lm, batch, layout.table),
                                  attention_mask=self._mask(batch), **self._positions(batch.position_ids))  # fmt: skip
                    rows.append(_gather(captured[-1], batch.read)[:, 0])
        finally:
            handle.remove()
        return torch.cat(rows, dim=0).float()

    def usable_examples(self, prompt: Prompt, examples: list[Example]) -> list[Example]:
        """Fact retrieval keeps facts whose answer is one token of this model's vocabulary (as LAMA does)."""
        if self.task.kind != TaskKind.FACT_RETRIEVAL:
            return list(examples)
        return [ex for ex in examples if self.answer_token(prompt, ex.label) is not None]

    # -- evaluation ---------------------------------------------------------------------------------------------
    def batches(self, prompt: Prompt, examples: list[Example], encoded: list[Encoded] | None = None):
        """Index batches, longest examples first, so that each batch holds examples of similar length."""
        if encoded is None:
            layout = VectorLayout.build(prompt)
            encoded = [self.encoder.encode(prompt, ex.inputs, layout) for ex in examples]
        lengths = [len(e.ids) for e in encoded]
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
        layout = VectorLayout.build(prompt)
        encoded = [self.encoder.encode(prompt, ex.inputs, layout) for ex in usable]
        # data parallel: batch b (longest first) on process b mod N, so every process gets long and short ones
        batches = list(self.batches(prompt, usable, encoded))[distributed.rank()::distributed.world_size()]
        bar = _progress(progress, sum(map(len, batches)))
        classification = self.task.kind != TaskKind.FACT_RETRIEVAL
        choice = self.task.kind == TaskKind.MULTIPLE_CHOICE
        labels = self.verbalizer(prompt).labels if classification and not choice else None
        with torch.inference_mode():
            for idx in batches:
                batch = [usable[i] for i in idx]
                scores = self.scores(prompt, batch).float().cpu()
                _check_finite(scores, batch)
                for j, i in enumerate(idx):
                    ex = usable[i]
                    if classification:
                        best = int(scores[j].argmax())
                        names = [str(k) for k in range(len(ex.choices))] if choice else labels
                        preds[i] = names[best]
                        detail = {"scores": {lab: round(float(s), 5) for lab, s in zip(names, scores[j])}}
                    else:
                        top = torch.topk(scores[j], top_k)
                        tokens = [self.encoder.tokenizer.decode([t]).strip() for t in top.indices.tolist()]
                        gold = self.answer_token(prompt, ex.label)
                        preds[i] = ex.label if int(top.indices[0]) == gold else tokens[0]
                        detail = {"top": tokens, "gold_rank": int((scores[j] > scores[j][gold]).sum()) + 1}
                    rows[i] = {"source": ex.source, "inputs": ex.inputs, "label": ex.label,
                               "prediction": preds[i], "correct": preds[i] == ex.label, **detail}  # fmt: skip
                    if encoded[i].truncated:
                        rows[i]["truncated_tokens"] = encoded[i].truncated
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        if distributed.world_size() > 1:
            mine = [(i, preds[i], rows[i]) for idx in batches for i in idx]
            for part in distributed.gather(mine):
                for i, pred, row in part:
                    preds[i], rows[i] = pred, row
        seconds = time.perf_counter() - start
        golds = [ex.label for ex in usable]
        metrics = compute_metrics(self.task, golds, preds)
        if dropped:
            metrics["dropped_multi_token_answers"] = dropped
        truncated = sum(1 for e in encoded if e.truncated)
        if truncated:
            metrics["truncated_examples"] = truncated
        return EvalResult(metrics, rows, seconds, len(usable) / max(seconds, 1e-9), len(usable), self.scoring.value)


def _check_finite(scores: torch.Tensor, batch: list[Example]) -> None:
    """Stop on NaN or infinite scores (an overflow in float16, broken weights), naming the batch's examples."""
    bad = (~torch.isfinite(scores)).flatten(1).any(-1).nonzero().flatten().tolist() if scores.numel() else []
    if bad:
        where = ", ".join(batch[i].source or f"row {i}" for i in bad[:4]) + (", ..." if len(bad) > 4 else "")
        raise PromptoptError(f"the model gave NaN or infinite scores for {len(bad)} of the {len(batch)} examples of a "
                             f"batch ({where}); try --dtype float32")  # fmt: skip


def check_tolerance(dtype: torch.dtype) -> dict:
    """How close two computations of the same logits must be, in ``dtype``, to count as equal: a few units in the
    last place of the dtype's 8 (bf16), 11 (float16) or 24 (float32) significant bits, relative to logits of size ~10."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
    if eps < 1e-6:
        return {"atol": 1e-3, "rtol": 1e-3}
    return {"atol": 32 * eps, "rtol": 8 * eps}


def _progress(progress, total):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=progress if isinstance(progress, str) else "scoring", unit="ex", leave=False)


def _gather(states: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
    """``states[b, read[b, r]]`` for every b, r: ``(B, R, H)``."""
    index = read.unsqueeze(-1).expand(-1, -1, states.shape[-1])
    return states.gather(1, index)


@contextlib.contextmanager
def attention_implementation(model: torch.nn.Module, implementation: str):
    """Run ``model`` with another of transformers' attention implementations (read from the config at every
    forward), restored afterwards."""
    configs = getattr(model, "_promptopt_attention_configs", None)
    if configs is None:
        configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")}
        model._promptopt_attention_configs = configs
    before = {k: c._attn_implementation for k, c in configs.items()}
    try:
        for c in configs.values():
            c._attn_implementation = implementation
        yield
    finally:
        for k, c in configs.items():
            c._attn_implementation = before[k]


def _rows(ids: torch.Tensor, mask: torch.Tensor) -> list[Encoded]:
    """Encoded examples from a padded id matrix (used by the start-up self-check)."""
    out = []
    for row, m in zip(ids.tolist(), mask.tolist()):
        row = [t for t, keep in zip(row, m) if keep]
        out.append(Encoded(ids=row, vectors=[], read=[len(row) - 1]))
    out[1].ids[:4] = out[0].ids[:4]
    return out


def _drop_front(enc: Encoded, n: int) -> Encoded:
    """The part of ``enc`` from position ``n`` on, positions renumbered from 0."""
    return Encoded(ids=enc.ids[n:], vectors=[(p - n, r) for p, r in enc.vectors if p >= n],
                   read=[r - n for r in enc.read])  # fmt: skip


def _common_prefix(encs: list[Encoded]) -> int:
    """How many leading positions (token id and vector row alike) every one of ``encs`` has in common."""
    first = encs[0]
    n = min(len(e.ids) for e in encs)
    for e in encs[1:]:
        k = 0
        while k < n and e.ids[k] == first.ids[k]:
            k += 1
        n = k
    rows = [dict(e.vectors) for e in encs]
    for pos in sorted(p for p in rows[0] if p < n):
        if any(r.get(pos) != rows[0][pos] for r in rows[1:]):
            return pos
    for r in rows[1:]:  # a vector row where the first encoding has a plain token
        n = min([n, *(p for p in r if p < n and p not in rows[0])])
    return n


def _truncate(enc: Encoded, n: int) -> Encoded:
    return Encoded(ids=enc.ids[:n], vectors=[(p, r) for p, r in enc.vectors if p < n], read=[n - 1])


def _cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [(k, v) for k, v in cache]


