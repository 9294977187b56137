"""What the model reads at each soft position: a logit lens (nostalgebraist, 2020).

The prompt is encoded exactly as the scorer encodes it (:mod:`promptopt.engine.inputs`) and run once through the
public model with ``output_hidden_states=True``. At each soft vector's position and at a few layers, the hidden
state goes through the model's own output head (after the final norm, for a causal LM whose last hidden state is
the only normed one), and the top tokens of the resulting distribution are what the model "reads" there. For the
last layer this is exactly the model's own prediction at that position (tested). Probabilities are averaged over
the examples given (for a causal LM, a soft prefix in front of the input reads the same for every example).

An encoder-decoder has no lens here: its soft vectors sit in the encoder, whose states its output head never reads
(the head reads the decoder's), so top tokens there would describe nothing the model computes. :func:`logit_lens`
refuses it; ``promptopt inspect`` skips the lens with a note and does the rest (nearest tokens, projection, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptopt.data.prompt import Prompt
from promptopt.data.tasks import Example
from promptopt.engine.inputs import Encoder, VectorLayout, collate, embed, position_offset
from promptopt.engine.model import LoadedModel, ModelKind
from promptopt.errors import PromptoptError


@dataclass
class LensToken:
    id: int
    token: str
    prob: float


@dataclass
class LensReading:
    """At ``layer`` (0 = input embeddings, ``n_layers`` = the last), the top tokens the head reads at the position of
    vector ``index`` of segment ``segment``."""

    segment: str
    index: int
    layer: int
    top: list[LensToken]


def default_layers(n_layers: int) -> list[int]:
    """A few layers: the first, the middle and the last (hidden-state indices, 0 being the embeddings)."""
    return sorted({1, max(1, n_layers // 2), n_layers})


def lens_unavailable(lm: LoadedModel) -> str | None:
    """Why the logit lens cannot read ``lm`` (None when it can)."""
    if lm.kind == ModelKind.SEQ2SEQ:
        return (f"{lm.name} is an encoder-decoder: its soft vectors are encoder inputs, and its output head reads only "
                "the decoder's states, so there is nothing for a logit lens to read at their positions")  # fmt: skip
    return None


def output_head(lm: LoadedModel):
    """The module that turns a final hidden state into vocabulary logits (a causal LM's ``lm_head``; a masked LM's
    prediction head, transform included)."""
    model = lm.model
    if lm.kind == ModelKind.CAUSAL:
        head = model.get_output_embeddings()
    else:
        head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if head is None:
        raise PromptoptError(f"{lm.name}: no output head found for the logit lens")
    return head


def final_norm(lm: LoadedModel):
    """The norm a causal LM applies after its last layer (None if it has none or it cannot be found)."""
    base = getattr(lm.model, lm.model.base_model_prefix, None)
    for name in ("norm", "ln_f", "final_layer_norm", "norm_f", "final_layernorm"):
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def hidden_states(lm: LoadedModel, prompt: Prompt, examples: list[Example], padding_side: str | None = None):
    """Run ``prompt`` on ``examples`` as the scorer builds the input; returns the model output (with every layer's
    hidden states) and the batch (``batch.vector_index`` says where each vector row sits) and the layout."""
    encoder = Encoder(lm)
    layout = VectorLayout.build(prompt)
    encs = [encoder.encode(prompt, ex.inputs, layout) for ex in examples]
    side = padding_side or ("left" if lm.kind == ModelKind.CAUSAL else "right")
    batch = collate(encs, encoder.pad_id, side, lm.device, offset=position_offset(lm))
    with torch.inference_mode():
        out = lm.model(inputs_embeds=embed(lm, batch, layout.table), attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids, output_hidden_states=True)  # fmt: skip
    return out, batch, layout


def lens_logits(lm: LoadedModel, hidden: torch.Tensor, last: bool, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Vocabulary logits (float32) the head reads from ``hidden`` (any leading shape), a hidden state of some layer.

    A causal LM's final norm is applied before the head, except on the last layer's hidden state (``last``) when it
    is already normed: the head alone then gives the model's own ``logits`` (checked when they are given)."""
    head = output_head(lm)
    norm = final_norm(lm) if lm.kind == ModelKind.CAUSAL else None
    if norm is None:
        return head(hidden).float()
    if last:
        plain = head(hidden).float()
        if logits is None or torch.allclose(plain, logits.float(), atol=1e-3, rtol=1e-3):
            return plain
    return head(norm(hidden)).float()


def logit_lens(lm: LoadedModel, prompt: Prompt, examples: list[Example], layers: list[int] | None = None, k: int = 5,
               padding_side: str | None = None) -> list[LensReading]:  # fmt: skip
    """The top ``k`` tokens read at every soft vector's position at each of ``layers`` (default
    :func:`default_layers`), probabilities averaged over ``examples``. Vectors in prompt order, then layers."""
    if not examples:
        raise PromptoptError("the logit lens needs at least one example")
    reason = lens_unavailable(lm)
    if reason:
        raise PromptoptError(f"logit lens: {reason}")
    out, batch, layout = hidden_states(lm, prompt, examples, padding_side)
    if batch.vector_index is None:
        return []
    states = out.hidden_states
    n_layers = len(states) - 1
    layers = layers or default_layers(n_layers)
    bad = [layer for layer in layers if not 0 <= layer <= n_layers]
    if bad:
        raise PromptoptError(f"logit-lens layers {bad} are not in 0..{n_layers}")
    b, p, r = batch.vector_index
    row_name = {}
    for name, start in layout.offsets.items():
        for i in range(prompt.vectors[name].shape[0]):
            row_name[start + i] = (name, i)
    tok = lm.tokenizer
    readings = []
    with torch.inference_mode():
        probs = {layer: torch.softmax(lens_logits(lm, states[layer][b, p], layer == n_layers, out.logits[b, p]),
                                      dim=-1).cpu() for layer in layers}  # fmt: skip
    b, p, r = b.cpu(), p.cpu(), r.cpu()
    for row in sorted(row_name):
        pick = r == row
        name, i = row_name[row]
        for layer in layers:
            mean = probs[layer][pick].mean(dim=0)
            top = mean.topk(min(k, mean.shape[0]))
            readings.append(LensReading(name, i, layer, [LensToken(int(t), tok.decode([int(t)]), round(float(v), 4))
                                                         for v, t in zip(top.values, top.indices)]))  # fmt: skip
    return readings
