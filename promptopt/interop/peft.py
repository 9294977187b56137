"""PEFT interop: a prompt whose vectors sit in front of the input <-> a PEFT prompt-tuning adapter directory.

PEFT's prompt tuning prepends ``num_virtual_tokens`` vectors to the embedded input (``adapter_config.json`` with
``peft_type = "PROMPT_TUNING"`` and ``adapter_model.safetensors`` holding ``prompt_embeddings``). A promptopt prompt
matches that exactly when its first segment is a vector segment and the model's tokenizer puts no special token
(BOS/CLS) in front of a text: then both feed the model the same embeddings at the same positions. The rest of the
template (text, fields) has no place in a PEFT adapter; export writes it beside the adapter as
``promptopt_prompt.json`` (PEFT ignores the file) so that import can restore the whole prompt.

No pickle: only safetensors files are read or written. ``peft`` itself is not needed for either direction.
"""

from __future__ import annotations

import json
from pathlib import Path

from promptopt.errors import PromptoptError
from promptopt.data.files import atomic_path, write_json
from promptopt.data.prompt import Prompt, SegmentKind, parse_template
from promptopt.engine.inputs import special_affixes

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
SIDECAR = "promptopt_prompt.json"
DEFAULT_IMPORT_TEMPLATE = "[P*{n}]{{text}}{{answer}}"


def _model_path(name: str | None) -> str:
    from promptopt.engine.model import DEFAULT_MODEL, default_model_dir

    return str(default_model_dir()) if name in (None, DEFAULT_MODEL) else name


def _front_special_tokens(tokenizer) -> list[int]:
    return special_affixes(tokenizer)[0]


def export_peft(prompt_dir: str | Path, out_dir: str | Path, model: str | None = None) -> Path:
    """Write the saved prompt in ``prompt_dir`` as a PEFT prompt-tuning adapter in ``out_dir``.

    ``model`` (default: the model the prompt was made for) names the base model in the adapter's config and is
    checked: its tokenizer must add no token in front of a text. Raises :class:`PromptoptError` when the prompt's
    vectors are not a single segment at the very front.
    """
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer

    prompt = Prompt.load(prompt_dir)
    segments = prompt.segments
    vector_segments = prompt.segments_of(SegmentKind.VECTORS)
    if not segments or segments[0].kind != SegmentKind.VECTORS or len(vector_segments) != 1:
        raise PromptoptError(
            f"{prompt_dir}: PEFT prompt tuning holds one block of vectors in front of the input; this prompt is "
            f"{prompt.text()!r} (export needs a template such as '[P*20]Review: {{sentence}}{{answer}}')"
        )
    name = model or prompt.meta.get("model")
    path = _model_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    front = _front_special_tokens(tokenizer)
    if front:
        raise PromptoptError(
            f"model {name!r} puts {tokenizer.convert_ids_to_tokens(front)} in front of every text; PEFT would put the "
            "virtual tokens before them and promptopt after them, so the adapter would not reproduce this prompt"
        )
    config = AutoConfig.from_pretrained(path)
    seg = segments[0]
    vectors = prompt.vectors[seg.name]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / PEFT_WEIGHTS) as tmp:
        save_file({"prompt_embeddings": vectors.detach().float().contiguous()}, str(tmp))
    write_json(out / PEFT_CONFIG, {
        "peft_type": "PROMPT_TUNING",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": name if name is not None else path,
        "num_virtual_tokens": seg.n,
        "token_dim": int(vectors.shape[1]),
        "num_transformer_submodules": 1,
        "num_attention_heads": getattr(config, "num_attention_heads", None),
        "num_layers": getattr(config, "num_hidden_layers", None),
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None,
        "tokenizer_kwargs": None,
        "inference_mode": True,
        "revision": None,
        "modules_to_save": None,
        "auto_mapping": None,
    })  # fmt: skip
    write_json(out / SIDECAR, {"template": prompt.text(), "segment": seg.name, "label_words": prompt.label_words,
                               "meta": prompt.meta})  # fmt: skip
    return out


def import_peft(adapter_dir: str | Path, out_dir: str | Path, template: str | None = None) -> Path:
    """Turn a PEFT prompt-tuning adapter into a saved promptopt prompt in ``out_dir``.

    The template is ``template`` (its first segment must be ``[P*n]`` with the adapter's ``n``), else the one
    export wrote beside the adapter, else ``[P*n]{text}{answer}``.
    """
    from safetensors.torch import load_file

    adapter = Path(adapter_dir)
    config_path = adapter / PEFT_CONFIG
    if not config_path.exists():
        raise PromptoptError(f"{adapter}: not a PEFT adapter directory (no {PEFT_CONFIG})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PromptoptError(f"{config_path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if config.get("peft_type") != "PROMPT_TUNING":
        raise PromptoptError(f"{config_path}: field 'peft_type' is {config.get('peft_type')!r}; only 'PROMPT_TUNING' "
                             "adapters hold plain vectors")  # fmt: skip
    if config.get("num_transformer_submodules", 1) != 1:
        raise PromptoptError(f"{config_path}: field 'num_transformer_submodules' is "
                             f"{config['num_transformer_submodules']}; only decoder-only adapters (1) can be imported")  # fmt: skip
    weights = adapter / PEFT_WEIGHTS
    if not weights.exists():
        raise PromptoptError(f"{adapter}: no {PEFT_WEIGHTS} (pickled adapter_model.bin files are not read; re-save "
                             "the adapter with safe_serialization=True)")  # fmt: skip
    tensors = load_file(str(weights))
    if "prompt_embeddings" not in tensors:
        raise PromptoptError(f"{weights}: no 'prompt_embeddings' tensor; it holds {sorted(tensors)}")
    vectors = tensors["prompt_embeddings"].float()
    n = int(config.get("num_virtual_tokens") or vectors.shape[0])
    if vectors.shape[0] != n:
        raise PromptoptError(f"{weights}: 'prompt_embeddings' has {vectors.shape[0]} rows; num_virtual_tokens is {n}")
    sidecar = adapter / SIDECAR
    meta: dict = {}
    label_words = None
    if template is None and sidecar.exists():
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
        template, meta, label_words = saved["template"], saved.get("meta") or {}, saved.get("label_words")
    template = template or DEFAULT_IMPORT_TEMPLATE.format(n=n)
    segments = parse_template(template)
    if segments[0].kind != SegmentKind.VECTORS or segments[0].n != n or len([s for s in segments if s.kind == SegmentKind.VECTORS]) != 1:
        raise PromptoptError(f"template {template!r} must start with the adapter's [P*{n}] and have no other [P] slot")
    meta = {**meta, "imported_from": str(adapter), "model": config.get("base_model_name_or_path") or meta.get("model")}
    prompt = Prompt(segments=segments, vectors={segments[0].name: vectors}, template=template, label_words=label_words,
                    meta=meta)  # fmt: skip
    return prompt.save(out_dir)
