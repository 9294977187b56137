"""What a method may change besides the prompt's input: the model's weights (an adapter) or its keys/values (a deep
prefix), applied only while the run scores and removed afterwards, so that the model a suite shares stays
bit-identical for the next run.

* :class:`ModelEdit`: new values for some of the model's parameters, each either a replacement (``replace``)
  or a low-rank update ``W + B @ A`` (``low_rank``, any scale folded into ``B``).
  :meth:`ModelEdit.applied` puts them in place for the duration of a ``with`` block: the model's own parameter
  objects are set aside (not modified) and put back afterwards. A saved prompt directory holds the edit as
  ``model_edit.safetensors``; the run writes it and ``promptopt eval`` applies it.
* :func:`swapped_parameters`: the mechanism underneath, also what a training method uses to run the model with
  trainable tensors in place of some of its parameters (the model's parameters stay frozen and untouched).
* Deep prefixes are per-layer keys and values in front of every input, a
  ``(layers, 2, kv_heads, n, head_dim)`` tensor held by :attr:`promptopt.data.prompt.Prompt.prefix`;
  :func:`prefix_shape` gives that shape for a model and :func:`prefix_kv` the per-layer pairs for a batch. An
  encoder-decoder's prefix sits in its decoder's self-attention (the layers that take a key/value cache; its encoder
  takes none), in front of the decoder's input at every decoder layer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from promptopt.data.files import atomic_path
from promptopt.errors import PromptoptError

EDIT_FILE = "model_edit.safetensors"


def _owners(model: torch.nn.Module) -> dict[int, list[tuple[torch.nn.Module, str]]]:
    """Every (module, attribute) holding each parameter object (tied weights have several)."""
    out: dict[int, list] = {}
    for module in model.modules():
        for attr, p in module._parameters.items():
            if p is not None:
                out.setdefault(id(p), []).append((module, attr))
    return out


@contextlib.contextmanager
def swapped_parameters(model: torch.nn.Module, values: dict[str, torch.Tensor]):
    """Run ``model`` with ``values`` (parameter name -> tensor) in place of those parameters inside the block.

    The parameters are set aside, not written to, and restored on exit (also on error): afterwards the model is
    the same objects with the same bits. The tensors are used as given (a view of a trainable tensor carries its
    gradient)."""
    params = dict(model.named_parameters())
    unknown = [name for name in values if name not in params]
    if unknown:
        raise PromptoptError(f"the model has no parameter {unknown[0]!r} (an adapter made for another model?)")
    owners = _owners(model)
    swapped = []
    try:
        for name, value in values.items():
            original = params[name]
            if tuple(value.shape) != tuple(original.shape):
                raise PromptoptError(f"parameter {name!r} has shape {tuple(original.shape)}; the adapter gives "
                                     f"{tuple(value.shape)}")  # fmt: skip
            value = value.to(device=original.device, dtype=original.dtype)
            for module, attr in owners[id(original)]:
                del module._parameters[attr]
                setattr(module, attr, value if not isinstance(value, torch.nn.Parameter) else value.view_as(value))
                swapped.append((module, attr, original))
        yield
    finally:
        for module, attr, original in reversed(swapped):
            if attr in module.__dict__:
                del module.__dict__[attr]
            module._parameters[attr] = original


@dataclass
class ModelEdit:
    """New values for some of the model's parameters (see the module docstring). Tensors are float32 on CPU."""

    replace: dict[str, torch.Tensor] = field(default_factory=dict)
    #: parameter name -> (B, A): the parameter becomes ``W + B @ A`` while applied
    low_rank: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """How many values the edit holds."""
        return sum(v.numel() for v in self.replace.values()) + sum(b.numel() + a.numel() for b, a in self.low_rank.values())

    def values(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The parameter values while applied."""
        params = dict(model.named_parameters())
        out = dict(self.replace)
        for name, (b, a) in self.low_rank.items():
            if name not in params:
                raise PromptoptError(f"the model has no parameter {name!r} (an adapter made for another model?)")
            w = params[name].detach()
            out[name] = (w.float() + b.to(w.device).float() @ a.to(w.device).float()).to(w.dtype)
        return out

    @contextlib.contextmanager
    def applied(self, lm):
        """The model as the edit changes it, inside the block; untouched before and after."""
        with torch.no_grad():
            values = self.values(lm.model)
        with swapped_parameters(lm.model, values):
            yield

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        tensors = {f"replace/{k}": v for k, v in self.replace.items()}
        for name, (b, a) in self.low_rank.items():
            tensors[f"low_rank_b/{name}"], tensors[f"low_rank_a/{name}"] = b, a
        path = Path(directory) / EDIT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}, str(tmp))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ModelEdit | None":
        """The edit saved in a prompt directory, or None when it holds none."""
        from safetensors.torch import load_file

        path = Path(directory) / EDIT_FILE
        if not path.exists():
            return None
        try:
            tensors = load_file(str(path))
        except Exception as e:  # safetensors raises its own error type on a cut file
            raise PromptoptError(f"{path}: corrupt or truncated safetensors file ({e})") from None
        edit = cls()
        for key, value in tensors.items():
            kind, _, name = key.partition("/")
            if kind == "replace":
                edit.replace[name] = value
            elif kind == "low_rank_b":
                edit.low_rank[name] = (value, tensors.get(f"low_rank_a/{name}"))
            elif kind != "low_rank_a":
                raise PromptoptError(f"{path}: tensor {key!r} is not replace/, low_rank_a/ or low_rank_b/")
        if any(a is None for _, a in edit.low_rank.values()):
            raise PromptoptError(f"{path}: a low_rank_b/ tensor has no low_rank_a/ partner")
        return edit


def applied(lm, edit: ModelEdit | None):
    """``edit.applied(lm)``, or a block that changes nothing when there is no edit."""
    return edit.applied(lm) if edit is not None else contextlib.nullcontext()


# -- deep prefixes ------------------------------------------------------------------------------------------------


def _seq2seq(lm) -> bool:
    return bool(getattr(lm.model.config, "is_encoder_decoder", False))


def prefix_shape(lm, n: int) -> tuple[int, int, int, int, int]:
    """``(layers, 2, kv_heads, n, head_dim)``: the shape of an ``n``-position deep prefix for ``lm`` (an
    encoder-decoder's: its decoder's layers)."""
    config = lm.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    if _seq2seq(lm):  # T5 names them num_decoder_layers, BART decoder_layers / decoder_attention_heads
        layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None) or layers
        heads = getattr(config, "decoder_attention_heads", None) or heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or getattr(config, "d_kv", None) or config.hidden_size // heads
    return (layers, 2, kv_heads, n, head_dim)


def check_prefix(lm, prefix: torch.Tensor, where: str = "the prompt") -> None:
    want = prefix_shape(lm, prefix.shape[-2])
    if tuple(prefix.shape) != want:
        raise PromptoptError(f"{where}: its deep prefix has shape {tuple(prefix.shape)}; model {lm.name!r} needs "
                             f"(layers, 2, kv_heads, n, head_dim) = {want}")  # fmt: skip


def prefix_kv(prefix: torch.Tensor, batch: int, dtype, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer ``(keys, values)``, each ``(batch, kv_heads, n, head_dim)``, of a deep prefix."""
    prefix = prefix.to(device=device, dtype=dtype)
    return [(layer[0].unsqueeze(0).expand(batch, -1, -1, -1), layer[1].unsqueeze(0).expand(batch, -1, -1, -1))
            for layer in prefix]  # fmt: skip


def dynamic_cache(kv: list[tuple[torch.Tensor, torch.Tensor]] | None):
    """A transformers ``DynamicCache`` holding ``kv`` (keys and values per layer), empty for ``None``."""
    from transformers import DynamicCache

    if kv is None:
        return DynamicCache()
    try:
        return DynamicCache(ddp_cache_data=kv)
    except TypeError:  # older transformers
        return DynamicCache.from_legacy_cache(tuple(kv))


def seq2seq_prefix_cache(kv: list[tuple[torch.Tensor, torch.Tensor]] | None):
    """An encoder-decoder's cache holding ``kv`` (per decoder layer) in its self-attention part and nothing yet in
    its cross-attention part (the decoder computes that from the encoder's output)."""
    from transformers import EncoderDecoderCache

    return EncoderDecoderCache(dynamic_cache(kv), dynamic_cache(None))


def model_kv(lm, embeds: torch.Tensor) -> torch.Tensor:
    """The keys/values the model itself computes at every layer for the input vectors ``embeds`` ``(n, hidden)``
    at positions ``0..n-1``, as a deep prefix ``(layers, 2, kv_heads, n, head_dim)`` (differentiable in ``embeds``).
    An encoder-decoder: its decoder's self-attention keys/values with ``embeds`` as the decoder's input and as the
    encoder's (as if the same tokens stood in front on both sides)."""
    from transformers import DynamicCache

    from promptopt.engine.inputs import cache_argument, position_offset

    model = lm.model
    n = embeds.shape[0]
    x = embeds.unsqueeze(0).to(lm.embeddings.weight.dtype)
    ones = torch.ones((1, n), dtype=torch.long, device=lm.device)
    if _seq2seq(lm):
        decoder = model.get_decoder()
        arg = cache_argument(decoder) or "past_key_values"
        cache = seq2seq_prefix_cache(None)
        source = model.get_encoder()(inputs_embeds=x, attention_mask=ones).last_hidden_state
        out = decoder(inputs_embeds=x, encoder_hidden_states=source, encoder_attention_mask=ones, **{arg: cache},
                      use_cache=True)  # fmt: skip
        cache = (getattr(out, arg, None) or getattr(out, "past_key_values", None) or cache).self_attention_cache
        layers = prefix_shape(lm, n)[0]
    else:
        base = getattr(model, model.base_model_prefix, None) or model
        arg = cache_argument(base)
        if arg is None:
            raise PromptoptError(f"{lm.name}: the model takes no key/value cache, so it cannot hold a deep prefix")
        pos = torch.arange(n, device=lm.device).unsqueeze(0) + position_offset(lm)
        cache = DynamicCache()
        out = base(inputs_embeds=x, position_ids=pos, attention_mask=ones, **{arg: cache}, use_cache=True)
        cache = getattr(out, arg, None) or getattr(out, "past_key_values", None) or cache
        layers = model.config.num_hidden_layers
    if hasattr(cache, "layers"):
        pairs = [(layer.keys, layer.values) for layer in cache.layers]
    else:
        pairs = list(zip(cache.key_cache, cache.value_cache))
    if len(pairs) != layers:
        raise PromptoptError(f"{lm.name}: its cache holds {len(pairs)} layers, not {layers}")
    return torch.stack([torch.stack([k[0], v[0]]) for k, v in pairs]).float()
