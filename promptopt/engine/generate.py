"""Generation with a saved prompt: the prompt's context (everything before ``{answer}``), then new tokens.

The context is encoded exactly as the scorer encodes it (vectors, token segments, the space before the answer
left to the answer), so the first generated token is the one whose probability the scorer reads. Decoding is greedy,
or sampling with ``temperature > 0`` (seeded). With ``use_cache`` (the default) each new token runs on the keys and
values of the context and the tokens before it; without, the whole sequence is recomputed at every step. Both give
the same tokens (tested).

An encoder-decoder: the prompt (everything but ``{answer}``, as the scorer encodes it) is the encoder's input, run
once; the decoder starts from its start token, where the scorer reads the answer's first token, and writes the
new tokens (a deep prefix in front of the decoder's input at every layer, as in scoring).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptopt.engine.inputs import Encoder, VectorLayout, cache_argument, collate, embed, position_offset
from promptopt.engine.model import LoadedModel, ModelKind
from promptopt.errors import PromptoptError
from promptopt.data.prompt import Prompt


@dataclass
class Generation:
    """Generated ``text`` and token ``ids``; ``logits`` (float32, one ``(V,)`` row per generated token)."""

    text: str
    ids: list[int]
    logits: list[torch.Tensor]


def fill_inputs(prompt: Prompt, text: str | None, fields: dict[str, str] | None = None) -> dict[str, str]:
    """Input fields for ``prompt``: ``fields``, plus ``text`` for the one field not given (error if ambiguous)."""
    inputs = dict(fields or {})
    missing = [f for f in prompt.fields if f not in inputs]
    if text is not None:
        if len(missing) != 1:
            raise PromptoptError(f"the prompt's fields are {prompt.fields}; give each missing one as NAME=VALUE "
                                 f"(missing: {missing})")  # fmt: skip
        inputs[missing[0]] = text
    elif missing:
        raise PromptoptError(f"no value for the prompt's fields {missing}")
    return inputs


def generate(lm: LoadedModel, prompt: Prompt, inputs: dict[str, str], max_new_tokens: int = 32,
             use_cache: bool = True, temperature: float = 0.0, seed: int = 0,
             stop_at_eos: bool = True) -> Generation:  # fmt: skip
    """Continue the prompt's context for ``inputs`` by up to ``max_new_tokens`` tokens (causal LMs and
    encoder-decoders; a masked LM cannot generate)."""
    if lm.kind == ModelKind.MASKED:
        raise PromptoptError(f"{lm.name} is a masked LM; generation needs a causal LM or an encoder-decoder")
    if max_new_tokens < 1:
        raise PromptoptError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    encoder = Encoder(lm)
    layout = VectorLayout.build(prompt)
    enc = encoder.encode(prompt, inputs, layout)
    if lm.kind == ModelKind.CAUSAL:
        enc.ids = enc.ids[: enc.read[0] + 1]  # the context ends where the answer is read
    batch = collate([enc], encoder.pad_id, "right", lm.device, offset=position_offset(lm))
    context = embed(lm, batch, layout.table)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eos = lm.tokenizer.eos_token_id
    ids: list[int] = []
    rows: list[torch.Tensor] = []
    with torch.inference_mode():
        steps = (_causal_steps(lm, prompt, context, ids, use_cache) if lm.kind == ModelKind.CAUSAL
                 else _seq2seq_steps(lm, prompt, context, batch.attention_mask, enc.decoder, ids, use_cache))  # fmt: skip
        for _ in range(max_new_tokens):
            logits = next(steps)
            rows.append(logits)
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator))
            else:
                token = int(logits.argmax())
            ids.append(token)
            if stop_at_eos and token == eos:
                break
    shown = ids[:-1] if stop_at_eos and ids and ids[-1] == eos else ids
    return Generation(text=lm.tokenizer.decode(shown), ids=ids, logits=rows)


def _causal_steps(lm: LoadedModel, prompt: Prompt, context: torch.Tensor, ids: list[int], use_cache: bool):
    """Yields the next token's logits (float32, CPU) after the context and ``ids`` (appended to by the caller)."""
    model = lm.model
    cache_arg = cache_argument(model) or "past_key_values"
    deep = 0 if prompt.prefix is None else prompt.prefix.shape[-2]  # a deep prompt's keys/values come first
    cache = None
    step = 0
    while True:
        if step == 0 or not use_cache:
            new = lm.embeddings(torch.tensor([ids], dtype=torch.long, device=lm.device)) if ids else None
            emb = context if new is None else torch.cat([context, new.to(context.dtype)], dim=1)
            length = emb.shape[1] + deep
            pos = torch.arange(deep, length, device=lm.device).unsqueeze(0) + position_offset(lm)
            first = {cache_arg: _prefix_cache(prompt.prefix, emb)} if deep else {}
            out = model(inputs_embeds=emb, attention_mask=torch.ones((1, length), dtype=torch.long, device=lm.device),
                        position_ids=pos, use_cache=use_cache or bool(deep), **first)  # fmt: skip
        else:
            length += 1
            pos = torch.tensor([[length - 1 + position_offset(lm)]], device=lm.device)
            out = model(input_ids=torch.tensor([[ids[-1]]], device=lm.device), **{cache_arg: cache},
                        attention_mask=torch.ones((1, length), dtype=torch.long, device=lm.device),
                        position_ids=pos, use_cache=True)  # fmt: skip
        cache = (getattr(out, cache_arg, None) or getattr(out, "past_key_values", None)) if use_cache else None
        step += 1
        yield out.logits[0, -1].float().cpu()


def _seq2seq_steps(lm: LoadedModel, prompt: Prompt, context: torch.Tensor, mask: torch.Tensor, start: list[int],
                   ids: list[int], use_cache: bool):  # fmt: skip
    """As :func:`_causal_steps` for an encoder-decoder: the encoder runs once on the context; the decoder on its
    start token and ``ids`` (with ``use_cache``, only the newest token on the cache of those before it)."""
    from transformers.modeling_outputs import BaseModelOutput

    from promptopt.engine.adapt import prefix_kv, seq2seq_prefix_cache

    model = lm.model
    cache_arg = cache_argument(model) or "past_key_values"
    source = BaseModelOutput(last_hidden_state=model.get_encoder()(inputs_embeds=context, attention_mask=mask).last_hidden_state)

    def fresh():
        kv = None if prompt.prefix is None else prefix_kv(prompt.prefix, 1, context.dtype, context.device)
        return seq2seq_prefix_cache(kv)

    cache = None
    while True:
        if cache is None or not use_cache:
            cache = fresh()
            decoder = torch.tensor([[*start, *ids]], dtype=torch.long, device=lm.device)
        else:
            decoder = torch.tensor([[ids[-1]]], dtype=torch.long, device=lm.device)
        out = model(encoder_outputs=source, attention_mask=mask, decoder_input_ids=decoder, **{cache_arg: cache},
                    use_cache=True)  # fmt: skip
        yield out.logits[0, -1].float().cpu()


def _prefix_cache(prefix: torch.Tensor, emb: torch.Tensor):
    from promptopt.engine.adapt import dynamic_cache, prefix_kv

    return dynamic_cache(prefix_kv(prefix, 1, emb.dtype, emb.device))
