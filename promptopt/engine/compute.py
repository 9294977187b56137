"""What the engine spends: token positions run forward and backward through the model, turned into FLOPs.

Every forward pass of a loaded model, whatever the method and whatever path the scorer takes (answer-only head,
shared-prefix key/value reuse, full logits, a training step), is counted by two forward hooks that
:func:`compute_counter` installs once per model:

* on the model body (``model.<base_model_prefix>``): the positions of its input, ``batch x length`` as run
  (padding included: it is computed), and, when the backward pass will run through the call (its output is part of
  a graph: the input embeddings need a gradient, as with trained vectors or a token search, or the keys/values it
  attends to do, as with a shared prefix of trained vectors), the same number of backward positions;
* on the output embedding (the vocabulary head): the positions it projects (``batch x reads``), likewise forward and
  backward.

The estimate is the usual one: ``2 x N_body x positions`` for the body and ``2 x N_head x positions`` for the head,
forward and backward alike (the model is frozen: only the input gradient is computed, which costs about a forward
pass), where ``N_body`` counts the body's parameters outside embedding tables (a lookup is not a multiply) and
``N_head`` the head's. Budgets (``--budget-flops``) compare :attr:`ComputeCounter.flops` with a limit set by the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

KEYS = ("forward_positions", "backward_positions", "head_positions", "head_backward_positions")


@dataclass
class Compute:
    """Counted positions and the FLOP estimate they give (see the module docstring)."""

    forward_positions: int = 0
    backward_positions: int = 0
    head_positions: int = 0
    head_backward_positions: int = 0
    flops: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


class ComputeCounter:
    """Running totals for one model; :meth:`snapshot` and :meth:`since` measure a phase, ``limit`` caps a run."""

    def __init__(self, body_parameters: int, head_parameters: int):
        self.body_parameters = body_parameters
        self.head_parameters = head_parameters
        self.totals = Compute()
        #: FLOPs at which the current budget is spent (None: no budget)
        self.limit: float | None = None

    def add(self, positions: int, backward: bool, head: bool) -> None:
        t = self.totals
        if head:
            t.head_positions += positions
            t.head_backward_positions += positions if backward else 0
            t.flops += 2.0 * self.head_parameters * positions * (2 if backward else 1)
        else:
            t.forward_positions += positions
            t.backward_positions += positions if backward else 0
            t.flops += 2.0 * self.body_parameters * positions * (2 if backward else 1)

    @property
    def flops(self) -> float:
        return self.totals.flops

    def snapshot(self) -> Compute:
        return Compute(**asdict(self.totals))

    def since(self, before: Compute) -> Compute:
        """What was spent after ``before`` (a :meth:`snapshot`)."""
        now = asdict(self.totals)
        return Compute(**{k: now[k] - getattr(before, k) for k in now})

    @property
    def exhausted(self) -> bool:
        """Whether the budget set through ``limit`` is spent."""
        return self.limit is not None and self.totals.flops >= self.limit


def _needs_backward(output) -> bool:
    """Whether the backward pass will run through this call: its output is part of a graph (the input embeddings
    require a gradient, or keys/values it attends to do, as with a shared prefix of trained vectors)."""
    if not torch.is_grad_enabled():
        return False
    tensor = output if isinstance(output, torch.Tensor) else getattr(output, "last_hidden_state", None)
    if tensor is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        tensor = output[0]
    return bool(tensor is not None and tensor.requires_grad)


def compute_counter(lm) -> ComputeCounter:
    """The counter of a :class:`~promptopt.engine.model.LoadedModel`, its hooks installed on first use."""
    counter = getattr(lm, "_compute", None)
    if counter is not None:
        return counter
    model = lm.model
    body = getattr(model, model.base_model_prefix, None) or model
    head = model.get_output_embeddings()
    lookups = {id(p) for m in body.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters(recurse=False)}
    body_n = sum(p.numel() for p in body.parameters() if id(p) not in lookups)
    head_n = sum(p.numel() for p in head.parameters()) if head is not None else 0
    counter = ComputeCounter(body_n, head_n)

    def on_body(module, args, kwargs, output):
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = kwargs.get("input_ids", args[0] if args else None)
        if x is not None:
            counter.add(int(x.shape[0]) * int(x.shape[1]), _needs_backward(output), head=False)

    def on_head(module, args, output):
        counter.add(int(args[0][..., 0].numel()), _needs_backward(output), head=True)

    body.register_forward_hook(on_body, with_kwargs=True)
    if head is not None:
        head.register_forward_hook(on_head)
    lm._compute = counter
    return counter
