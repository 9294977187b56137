"""Generation with a saved prompt: the prompt's context (everything before ``{answer}``), then new tokens.

The context is encoded exactly as the scorer encodes it (vectors, token segments, the space before the answer
left to the answer), so the first generated token is the one whose probability the scorer reads. Decoding is greedy,
or sampling with ``temperature > 0`` (seeded). With ``use_cache`` (the default) each new token runs on the keys and
values of the context and the tokens before it; without, the whole sequence is recomputed at every step. Both give
the same tokens (tested).
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
    """Continue the prompt's context for ``inputs`` by up to ``max_new_tokens`` tokens (causal LMs only)."""
    if lm.kind != ModelKind.CAUSAL:
        raise PromptoptError(f"{lm.name} is a masked LM; generation needs a causal LM")
    if max_new_tokens < 1:
        raise PromptoptError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    encoder = Encoder(lm)
    layout = VectorLayout.build(prompt)
    enc = encoder.encode(prompt, inputs, layout)
    enc.ids = enc.ids[: enc.read[0] + 1]  # the context ends where the answer is read
    batch = collate([enc], encoder.pad_id, "right", lm.device, offset=position_offset(lm))
    context = embed(lm, batch, layout.table)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eos = lm.tokenizer.eos_token_id
    ids: list[int] = []
    rows: list[torch.Tensor] = []
    model = lm.model
    cache_arg = cache_argument(model) or "past_key_values"
    deep = 0 if prompt.prefix is None else prompt.prefix.shape[-2]  # a deep prompt's keys/values come first
    with torch.inference_mode():
        cache = None
        for step in range(max_new_tokens):
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
            logits = out.logits[0, -1].float().cpu()
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


def _prefix_cache(prefix: torch.Tensor, emb: torch.Tensor):
    from transformers import DynamicCache

    from promptopt.engine.adapt import prefix_kv

    kv = prefix_kv(prefix, 1, emb.dtype, emb.device)
    try:
        return DynamicCache(ddp_cache_data=kv)
    except TypeError:  # older transformers
        return DynamicCache.from_legacy_cache(tuple(kv))
