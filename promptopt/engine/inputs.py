"""Turn (prompt, example) into model inputs.

Text and input fields that stand next to each other are tokenized together, as one string, so a text-only prompt
gives exactly the tokens the tokenizer gives for the filled-in text. VECTORS segments (and TOKENS segments whose
vectors are supplied, e.g. for gradients) become rows of ``inputs_embeds``; the rest are token ids.

Where the answer is read:

* causal LM: the logits at the last token before ``{answer}`` predict the answer's first token; a multi-token answer
  is appended as a continuation and read one position at a time. Text after ``{answer}`` is dropped.
* masked LM: ``{answer}`` becomes ``answer_len`` mask tokens, read where they are; text after it stays.

The space before the answer belongs to the answer (as in lm-evaluation-harness): trailing spaces of the text before
``{answer}`` are removed from the context and the answer is ``" " + word``, except after a newline.

Joint tokenization: an example's text runs (the text between vectors, trigger tokens and the answer) are tokenized
as one string, the string a reader sees, and each run's tokens are recovered from the tokenizer's character offsets;
the answer's tokens are those of the continuation of the text in front of it (lm-evaluation-harness's
``_encode_pair``), never of the word tokenized alone. This is what makes SentencePiece-style tokenizers (Llama-2,
Mistral, Gemma, T5, XLM-R), which mark a word boundary with ``▁``, score the string the user reads: tokenized
alone, ``" positive"`` would gain a second boundary marker. Where a token straddles a boundary (or whitespace
there belongs to no token), the runs on either side are tokenized apart, as before; a tokenizer without offsets
(a slow one) tokenizes every run apart.
"""

from __future__ import annotations

import bisect
from dataclasses import replace, dataclass

import torch

from promptopt.errors import PromptoptError
from promptopt.data.prompt import Prompt, Segment, SegmentKind
from promptopt.engine.model import LoadedModel, ModelKind, capabilities


@dataclass
class VectorLayout:
    """Where each vector segment's rows sit in one flat table of shape ``(rows, hidden)``."""

    offsets: dict[str, int]
    table: torch.Tensor | None

    @classmethod
    def build(cls, prompt: Prompt, override: dict[str, torch.Tensor] | None = None) -> "VectorLayout":
        override = override or {}
        offsets: dict[str, int] = {}
        parts = []
        row = 0
        for seg in prompt.segments:
            if seg.kind == SegmentKind.VECTORS or (seg.kind == SegmentKind.TOKENS and seg.name in override):
                value = override.get(seg.name)
                if value is None:
                    value = prompt.vectors.get(seg.name)
                if value is None:
                    raise PromptoptError(
                        f"vector segment {seg.name!r} has no values: train it with a trainable method or load a saved prompt"
                    )
                if value.shape[0] != seg.n:
                    raise PromptoptError(f"vector segment {seg.name!r} holds {seg.n} vectors, got {tuple(value.shape)}")
                offsets[seg.name] = row
                parts.append(value)
                row += seg.n
        return cls(offsets, torch.cat(parts, dim=0) if parts else None)


@dataclass
class Encoded:
    """One model input: token ids (placeholders where vectors go), vector rows, and positions to read."""

    ids: list[int]
    vectors: list[tuple[int, int]]  # (position, row of the VectorLayout table)
    read: list[int]  # positions whose output logits are read
    truncated: int = 0  # input tokens cut to fit the model's positions (see Encoder.encode)
    decoder: list[int] | None = None  # encoder-decoder: the decoder's input ids (``read`` indexes them)


class Encoder:
    def __init__(self, lm: LoadedModel, max_length: int | None = None, chat_template: bool = False):
        self.lm = lm
        tok = lm.tokenizer
        self.tokenizer = tok
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.max_length = min(max_length or model_positions(lm), model_positions(lm))
        self.bos, self.eos = special_affixes(tok)
        if lm.kind == ModelKind.CAUSAL:
            self.eos = []  # nothing after the answer is seen by a causal LM
        self._cache: dict = {}
        self._offsets = bool(getattr(tok, "is_fast", False))
        self.chat = chat_turn(lm) if chat_template else None
        if self.chat is not None and tok.bos_token and self.chat[0].startswith(tok.bos_token):
            self.bos = []  # the template writes its own

    def wrap(self, prompt: Prompt) -> Prompt:
        """With a chat template: the prompt as the user's turn, ``{answer}`` where the assistant's turn starts."""
        if self.chat is None:
            return prompt
        head, tail = self.chat
        segs = list(prompt.segments)
        i = next(i for i, s in enumerate(segs) if s.kind == SegmentKind.ANSWER)
        before = segs[:i]
        if before and before[-1].kind == SegmentKind.TEXT:
            before[-1] = replace(before[-1], text=before[-1].text.rstrip())
        text = SegmentKind.TEXT
        return replace(prompt, segments=[Segment(text, text=head), *before, Segment(text, text=tail), segs[i]])

    def tokens(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(self._cache) < 100_000:
                self._cache[text] = ids
        return ids

    def split(self, texts: tuple[str, ...]) -> list[list[int]]:
        """The tokens of ``"".join(texts)``, split into each text's own tokens by character offsets (see the module
        docstring); texts whose boundary no token boundary matches are tokenized apart."""
        if len(texts) <= 1 or not self._offsets:
            return [self.tokens(t) for t in texts]
        key = ("split", texts)
        out = self._cache.get(key)
        if out is not None:
            return out
        out = self._split(texts)
        if len(self._cache) < 100_000:
            self._cache[key] = out
        return out

    def _split(self, texts: tuple[str, ...]) -> list[list[int]]:
        ends, pos = [], 0
        for t in texts:
            pos += len(t)
            ends.append(pos)
        enc = self.tokenizer("".join(texts), add_special_tokens=False, return_offsets_mapping=True)
        out: list[list[int]] = [[] for _ in texts]
        covered = [0] * len(texts)  # how far tokens reach into each text
        for tid, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
            i = min(bisect.bisect_right(ends, (e - 1) if e > s else s), len(texts) - 1)
            if i > 0 and s < ends[i - 1]:  # the token begins in an earlier text
                return self._split_at(texts, bisect.bisect_right(ends, s))
            out[i].append(tid)
            covered[i] = e
        for i in range(len(texts) - 1):
            # characters at the end of a text that no token claims (trimmed or dropped whitespace): ambiguous
            if max(covered[i], ends[i - 1] if i else 0) < ends[i]:
                return self._split_at(texts, i)
        return out

    def _split_at(self, texts: tuple[str, ...], i: int) -> list[list[int]]:
        """Tokenize ``texts[: i + 1]`` and ``texts[i + 1 :]`` apart (each still jointly)."""
        i = min(i, len(texts) - 2)
        return self.split(texts[: i + 1]) + self.split(texts[i + 1 :])

    def answer_prefix(self, prompt: Prompt) -> str:
        """The text the answer is tokenized with in front: a space, or nothing after a newline."""
        segs = self.wrap(prompt).segments
        i = next(i for i, s in enumerate(segs) if s.kind == SegmentKind.ANSWER)
        if i > 0 and segs[i - 1].kind == SegmentKind.TEXT:
            stripped = segs[i - 1].text.rstrip(" ")
            if stripped.endswith(("\n", "\t")):
                return ""
        return " "

    def answer_anchor(self, prompt: Prompt) -> str:
        """The text the answer is tokenized as a continuation of: the template text just before ``{answer}`` (its
        trailing spaces belong to the answer), or a stand-in letter where a field or a vector stands there."""
        segs = self.wrap(prompt).segments
        i = next(i for i, s in enumerate(segs) if s.kind == SegmentKind.ANSWER)
        text = segs[i - 1].text.rstrip(" ") if i > 0 and segs[i - 1].kind == SegmentKind.TEXT else ""
        return text or "x"

    def answer_ids(self, prompt: Prompt, word: str) -> list[int]:
        """The tokens of ``word`` as the answer: the continuation of :meth:`answer_anchor`, tokenized jointly."""
        ids = self.split((self.answer_anchor(prompt), self.answer_prefix(prompt) + word))[1]
        if not ids:
            raise PromptoptError(f"answer word {word!r} tokenizes to nothing")
        return ids

    def encode(
        self,
        prompt: Prompt,
        inputs: dict[str, str],
        layout: VectorLayout,
        answer_len: int = 1,
        continuation: list[int] | tuple = (),
    ) -> Encoded:
        """Encode one example. The truncation rule, when the whole would exceed ``max_length`` positions: the
        longest input field loses tokens from its end (its beginning is kept; the template, vectors and answer are
        never cut), again for the next longest if needed; ``Encoded.truncated`` counts the tokens cut."""
        inputs = dict(inputs)
        prompt = self.wrap(prompt)
        cut = 0
        for _ in range(8):
            enc = self._encode(prompt, inputs, layout, answer_len, continuation)
            overflow = len(enc.ids) - self.max_length
            if overflow <= 0:
                return replace(enc, truncated=cut) if cut else enc
            longest = max(prompt.fields or [None], key=lambda f: len(inputs.get(f, "")) if f else 0)
            if longest is None:
                break
            toks = self.tokens(inputs[longest])
            keep = max(0, len(toks) - overflow - 1)
            if keep == 0 and not toks:
                break
            cut += len(toks) - keep
            inputs[longest] = self.tokenizer.decode(toks[:keep])
        raise PromptoptError(f"prompt is longer than the model's {self.max_length} positions even with empty inputs")

    def _encode(self, prompt, inputs, layout, answer_len, continuation) -> Encoded:
        causal = self.lm.kind == ModelKind.CAUSAL
        parts: list[tuple] = []  # ("run", text, has_field) | ("tokens", ids) | ("vectors", first row, n) | ("answer",)
        run: list[str] = []
        has_field = False

        def end_run(strip_trailing=False):
            nonlocal has_field
            text = "".join(run)
            parts.append(("run", text.rstrip(" ") if strip_trailing else text, has_field))
            run.clear()
            has_field = False

        for seg in prompt.segments:
            kind = seg.kind
            if kind == SegmentKind.TEXT:
                run.append(seg.text)
            elif kind == SegmentKind.FIELD:
                try:
                    run.append(inputs[seg.field])
                except KeyError:
                    raise PromptoptError(f"the prompt uses {{{seg.field}}} but the example has {sorted(inputs)}") from None
                has_field = True
            elif kind == SegmentKind.ANSWER:
                end_run(strip_trailing=True)
                parts.append(("answer",))
                if causal:
                    break
            elif kind == SegmentKind.TOKENS and seg.name not in layout.offsets:
                end_run()
                if seg.ids is None:
                    raise PromptoptError(
                        f"token segment {seg.name!r} has no token ids: run a token-search method or load a saved prompt"
                    )
                parts.append(("tokens", list(seg.ids)))
            else:  # VECTORS, or TOKENS given as vectors
                end_run()
                parts.append(("vectors", layout.offsets[seg.name], seg.n))
        else:
            end_run()
        runs = [p for p in parts if p[0] == "run"]
        # the runs before the first one holding a field do not depend on the example: tokenized on their own
        first = next((i for i, p in enumerate(runs) if p[2]), len(runs))
        tokens = iter(self.split(tuple(p[1] for p in runs[:first])) + self.split(tuple(p[1] for p in runs[first:])))

        ids: list[int] = list(self.bos)
        vectors: list[tuple[int, int]] = []
        read: list[int] = []
        for part in parts:
            if part[0] == "run":
                ids.extend(next(tokens))
            elif part[0] == "tokens":
                ids.extend(part[1])
            elif part[0] == "vectors":
                for k in range(part[2]):
                    vectors.append((len(ids), part[1] + k))
                    ids.append(self.pad_id)
            elif self.lm.kind == ModelKind.SEQ2SEQ:  # the answer is the decoder's: nothing in the encoder input
                continue
            elif causal:
                if not ids:
                    raise PromptoptError("a causal LM needs some context before {answer}")
                start = len(ids) - 1
                ids.extend(continuation[:-1])
                read.extend(range(start, start + max(1, len(continuation))))
            else:
                read.extend(range(len(ids), len(ids) + answer_len))
                ids.extend([self.tokenizer.mask_token_id] * answer_len)
        ids.extend(self.eos)
        decoder = None
        if self.lm.kind == ModelKind.SEQ2SEQ:
            decoder = [decoder_start(self.lm, self.pad_id), *continuation[:-1]]
            read = list(range(max(1, len(continuation))))
        return Encoded(ids=ids, vectors=vectors, read=read, decoder=decoder)


def decoder_start(lm: LoadedModel, pad_id: int) -> int:
    """The token an encoder-decoder's decoder starts from: its config's, else its generation config's, else the
    padding token (T5's convention)."""
    for config in (lm.model.config, getattr(lm.model, "generation_config", None)):
        start = getattr(config, "decoder_start_token_id", None) if config is not None else None
        if start is not None:
            return int(start)
    return pad_id


def chat_turn(lm: LoadedModel) -> tuple[str, str]:
    """The text the tokenizer's chat template writes before and after a user message, the assistant's turn
    opened (``add_generation_prompt``)."""
    tok = lm.tokenizer
    if lm.kind != ModelKind.CAUSAL or not getattr(tok, "chat_template", None):
        raise PromptoptError(f"--chat-template: {lm.name} has no chat template (a causal LM's tokenizer needs one)")
    marker = "\x00PROMPT\x00"
    text = tok.apply_chat_template([{"role": "user", "content": marker}], tokenize=False, add_generation_prompt=True)
    if text.count(marker) != 1:
        raise PromptoptError(f"--chat-template: the chat template of {lm.name} does not write the message once")
    head, tail = text.split(marker)
    return head, tail


def special_token_ids(tokenizer) -> set[int]:
    """Ids of the tokenizer's special and added tokens (never a prompt token, a label word or an initialiser)."""
    return set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})


def cache_argument(module: torch.nn.Module) -> str | None:
    """The name under which this model's ``forward`` takes a key/value cache (transformers renamed
    ``past_key_values`` to ``cache``), or None when it takes none."""
    import inspect

    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else ("past_key_values" if "past_key_values" in params else None)


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text (BOS/CLS, EOS/SEP), found empirically."""
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain) :])
    return [], []


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    vector_index: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  # batch idx, position, table row
    read: torch.Tensor  # (B, R) positions to read


def model_positions(lm: LoadedModel) -> int:
    """How many positions an input may have: the position table's size less its offset (RoBERTa's 514 rows hold
    512 positions); 2048 where the model declares no limit (rotary, ALiBi)."""
    config = lm.model.config
    size = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return size - position_offset(lm) if size else 2048


def position_offset(lm: LoadedModel) -> int:
    """RoBERTa-family models number positions from ``pad_token_id + 1``; everyone else from 0."""
    return capabilities(lm).position_offset

def collate(
    encs: list[Encoded], pad_id: int, side: str, device, start: int = 0, offset: int = 0
) -> Batch:
    """Pad encoded examples (from position ``start`` on) to one batch; position ids continue from ``start``."""
    lengths = [len(e.ids) - start for e in encs]
    width = max(lengths)
    n_read = len(encs[0].read)
    if any(len(e.read) != n_read for e in encs):
        raise ValueError("every example of a batch must read the same number of positions")
    ids = torch.full((len(encs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encs), width), dtype=torch.long)
    read = torch.empty((len(encs), n_read), dtype=torch.long)
    sb, sp, sr = [], [], []
    for b, (e, n) in enumerate(zip(encs, lengths)):
        shift = width - n if side == "left" else 0
        ids[b, shift : shift + n] = torch.tensor(e.ids[start:], dtype=torch.long)
        mask[b, shift : shift + n] = 1
        read[b] = torch.tensor([r - start + shift for r in e.read], dtype=torch.long)
        for pos, row in e.vectors:
            if pos >= start:
                sb.append(b)
                sp.append(pos - start + shift)
                sr.append(row)
    positions = (mask.cumsum(-1) - 1).clamp(min=0) + start + offset
    vector_index = None
    if sb:
        vector_index = tuple(torch.tensor(x, dtype=torch.long, device=device) for x in (sb, sp, sr))
    return Batch(ids.to(device), mask.to(device), positions.to(device), vector_index, read.to(device))


def embed(lm: LoadedModel, batch: Batch, table: torch.Tensor | None) -> torch.Tensor:
    """``inputs_embeds`` for a batch: token embeddings with the trainable rows written in (gradients reach ``table``)."""
    emb = lm.embeddings(batch.input_ids)
    if batch.vector_index is not None:
        b, p, r = batch.vector_index
        emb = emb.index_put((b, p), table[r.to(table.device)].to(device=emb.device, dtype=emb.dtype))
    return emb
