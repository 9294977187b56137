"""The logit lens at a soft position equals the model's head applied to that position's hidden state."""

from __future__ import annotations

import pytest
import torch

from promptopt.data.prompt import Prompt
from promptopt.engine.inputs import Encoder, VectorLayout
from promptopt.engine.model import ModelKind
from promptopt.interpret.lens import default_layers, final_norm, lens_logits, logit_lens, output_head

IDS = [7, 42, 99]


def direct(lm, reviews_task):
    """The prompt (its vectors the embeddings of IDS), and the hidden states computed straight from token ids."""
    weight = lm.embeddings.weight.detach()
    prompt = Prompt.from_template("[P*3] {text} It was{answer}").with_vectors({"p0": weight[IDS].clone()})
    example = reviews_task.load_split("dev")[0]
    enc = Encoder(lm).encode(prompt, example.inputs, VectorLayout.build(prompt))
    ids = list(enc.ids)
    for (pos, row), token in zip(enc.vectors, IDS):
        ids[pos] = token  # a vector equal to a token's embedding is that token
    with torch.inference_mode():
        out = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_hidden_states=True)
    return prompt, example, [pos for pos, _ in enc.vectors], out


def test_lens_at_the_last_layer_is_the_models_own_prediction_there(tiny_lm, reviews_task):
    prompt, example, positions, out = direct(tiny_lm, reviews_task)
    n_layers = len(out.hidden_states) - 1
    readings = logit_lens(tiny_lm, prompt, [example], [n_layers], k=4)
    assert [(r.segment, r.index, r.layer) for r in readings] == [("p0", i, n_layers) for i in range(3)]
    for r, pos in zip(readings, positions):
        probs = torch.softmax(out.logits[0, pos].float(), dim=-1)
        top = probs.topk(4)
        assert [t.id for t in r.top] == top.indices.tolist()
        assert [t.prob for t in r.top] == pytest.approx(top.values.tolist(), abs=1e-4)
        assert r.top[0].token == tiny_lm.tokenizer.decode([r.top[0].id])


def test_lens_at_an_inner_layer_is_the_head_after_the_final_norm(tiny_lm, reviews_task):
    prompt, example, positions, out = direct(tiny_lm, reviews_task)
    head, norm = output_head(tiny_lm), final_norm(tiny_lm)
    if tiny_lm.kind == ModelKind.CAUSAL:
        assert norm is tiny_lm.model.model.norm  # Llama: hidden states before the last are not normed yet
    else:
        assert norm is None and head is tiny_lm.model.cls  # BERT: the prediction head, transform included
    readings = logit_lens(tiny_lm, prompt, [example], [1], k=3)
    for r, pos in zip(readings, positions):
        h = out.hidden_states[1][0, pos]
        with torch.inference_mode():
            logits = head(norm(h) if norm is not None else h).float()
        assert [t.id for t in r.top] == torch.softmax(logits, -1).topk(3).indices.tolist()
        assert r.top[0].prob == pytest.approx(float(torch.softmax(logits, -1).max()), abs=1e-4)
    with torch.inference_mode():
        last = lens_logits(tiny_lm, out.hidden_states[-1][0], True, out.logits[0])
    assert torch.allclose(last, out.logits[0].float(), atol=1e-4)


def test_lens_averages_over_examples_and_picks_a_few_layers(tiny_lms, reviews_task):
    lm = tiny_lms["causal"]
    prompt, _, _, _ = direct(lm, reviews_task)
    examples = reviews_task.load_split("dev")[:3]
    readings = logit_lens(lm, prompt, examples)
    assert sorted({r.layer for r in readings}) == default_layers(2) == [1, 2]
    one = logit_lens(lm, prompt, examples[:1])
    # a causal LM reads a soft prefix before it sees the input: every example reads the same there
    assert [[t.id for t in r.top] for r in readings] == [[t.id for t in r.top] for r in one]
    assert default_layers(30) == [1, 15, 30]
