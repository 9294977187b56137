"""PEFT interop, both ways, for every kind of adapter PEFT has that a promptopt prompt can hold:

=====================  ==========================================  ==============================================
PEFT ``peft_type``     promptopt prompt                            ``adapter_model.safetensors``
=====================  ==========================================  ==============================================
``PROMPT_TUNING``      one block of vectors in front (``soft``)    ``prompt_embeddings`` ``(n, hidden)``
``P_TUNING``           the same, made by an encoder (``ptuning``)  ``prompt_embeddings``: the encoder's output
``PREFIX_TUNING``      a deep prefix (``Prompt.prefix``)           ``prompt_embeddings`` ``(n, layers*2*kv_dim)``
``LORA``               a low-rank model edit (``lora``)            ``base_model.model.<module>.lora_{A,B}.weight``
=====================  ==========================================  ==============================================

Input vectors match PEFT exactly when they form one block at the very front and the tokenizer puts no special
token (BOS/CLS) in front of a text: then both feed the model the same embeddings at the same positions. PEFT cannot
hold vectors anywhere else (between the fields, after the input): export refuses such a prompt and says why. A deep
prefix and LoRA go in front of (or into) every layer and have no such limit; PEFT scores a prefix's input at
positions after the prefix, as promptopt does. P-tuning is exported as PEFT saves it for inference (the encoder's
output; PEFT's inference mode loads no encoder). A causal LM's adapter is labelled ``task_type = "CAUSAL_LM"``; a
masked LM's ``"FEATURE_EXTRACTION"`` (PEFT has no masked-LM task type; that one wraps the model and returns its
outputs, the masked-LM logits included). The rest of the template (text, fields, label words) has no place in a
PEFT adapter; export writes it beside the adapter as ``promptopt_prompt.json`` (PEFT ignores the file) so that import
can restore the whole prompt.

No pickle: only safetensors files are read or written. ``peft`` itself is not needed for either direction.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from promptopt.data.files import atomic_path, write_json
from promptopt.data.prompt import Prompt, SegmentKind, parse_template
from promptopt.engine.adapt import ModelEdit
from promptopt.engine.inputs import special_affixes
from promptopt.errors import PromptoptError

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
SIDECAR = "promptopt_prompt.json"
DEFAULT_IMPORT_TEMPLATE = "[P*{n}]{{text}}{{answer}}"
DEFAULT_ADAPTER_TEMPLATE = "{text}{answer}"
PROMPT_KINDS = ("PROMPT_TUNING", "P_TUNING")
KINDS = (*PROMPT_KINDS, "PREFIX_TUNING", "LORA")
LORA_PREFIX = "base_model.model."


def _model_path(name: str | None) -> str:
    from promptopt.engine.model import DEFAULT_MODEL, default_model_dir

    return str(default_model_dir()) if name in (None, DEFAULT_MODEL) else name


def _front_special_tokens(tokenizer) -> list[int]:
    return special_affixes(tokenizer)[0]


def _task_type(config) -> str:
    archs = getattr(config, "architectures", None) or []
    masked = any(a.endswith("ForMaskedLM") for a in archs) or (not archs and not getattr(config, "is_decoder", True))
    return "FEATURE_EXTRACTION" if masked else "CAUSAL_LM"


def peft_kind(prompt: Prompt, edit: ModelEdit | None) -> str:
    """Which PEFT adapter ``prompt`` (with its model ``edit``) is, or a one-line error saying why it is none."""
    vector_segments = prompt.segments_of(SegmentKind.VECTORS)
    held = [name for name, there in (("input vectors", vector_segments), ("a deep prefix", prompt.prefix is not None),
                                     ("a model edit", edit is not None)) if there]  # fmt: skip
    if len(held) > 1:
        raise PromptoptError(f"this prompt holds {' and '.join(held)}; a PEFT adapter holds one kind")
    if edit is not None:
        if edit.replace:
            raise PromptoptError("this prompt's model edit replaces weights (fine-tuning); PEFT has no adapter for "
                                 "that (save the model instead)")  # fmt: skip
        return "LORA"
    if prompt.prefix is not None:
        return "PREFIX_TUNING"
    if not vector_segments:
        raise PromptoptError(f"this prompt ({prompt.text()!r}) has no vectors, prefix or adapter: nothing to export")
    if prompt.segments[0].kind != SegmentKind.VECTORS or len(vector_segments) != 1:
        raise PromptoptError(
            f"PEFT prompt tuning and P-tuning hold one block of vectors in front of the input, and PEFT cannot put "
            f"vectors in the middle or after it; this prompt is {prompt.text()!r} (export needs a template such as "
            "'[P*20]Review: {sentence}{answer}', e.g. soft or ptuning with -o template_rule=prefix)"
        )  # fmt: skip
    return "P_TUNING" if prompt.meta.get("encoder") else "PROMPT_TUNING"


def export_peft(prompt_dir: str | Path, out_dir: str | Path, model: str | None = None,
                peft_type: str | None = None) -> Path:  # fmt: skip
    """Write the saved prompt in ``prompt_dir`` as a PEFT adapter in ``out_dir`` (the kind by the table above).

    ``model`` (default: the model the prompt was made for) names the base model in the adapter's config and is
    checked: for input vectors its tokenizer must add no token in front of a text. ``peft_type`` overrides the kind
    where two fit (``PROMPT_TUNING`` or ``P_TUNING`` for vectors in front). Raises :class:`PromptoptError` when PEFT
    cannot hold the prompt, saying why.
    """
    from transformers import AutoConfig, AutoTokenizer

    prompt = Prompt.load(prompt_dir)
    edit = ModelEdit.load(prompt_dir)
    kind = peft_kind(prompt, edit)
    if peft_type is not None:
        peft_type = peft_type.upper()
        if peft_type != kind and not (kind in PROMPT_KINDS and peft_type in PROMPT_KINDS):
            raise PromptoptError(f"peft_type {peft_type!r} cannot hold this prompt; it is a {kind} adapter")
        kind = peft_type
    name = model or prompt.meta.get("model")
    path = _model_path(name)
    config = AutoConfig.from_pretrained(path)
    if kind in PROMPT_KINDS:
        tokenizer = AutoTokenizer.from_pretrained(path)
        front = _front_special_tokens(tokenizer)
        if front:
            raise PromptoptError(
                f"model {name!r} puts {tokenizer.convert_ids_to_tokens(front)} in front of every text; PEFT would put "
                "the virtual tokens before them and promptopt after them, so the adapter would not reproduce this prompt"
            )  # fmt: skip
    common = {"peft_type": kind, "task_type": _task_type(config), "base_model_name_or_path": name if name is not None else path,
              "revision": None, "inference_mode": True}  # fmt: skip
    if kind == "LORA":
        tensors, adapter_config = _lora_export(edit)
    else:
        tensors, adapter_config = _prompt_export(prompt, kind, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / PEFT_WEIGHTS) as tmp:
        from safetensors.torch import save_file

        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(tmp))
    write_json(out / PEFT_CONFIG, {**common, **adapter_config})
    seg = prompt.segments_of(SegmentKind.VECTORS)
    write_json(out / SIDECAR, {"template": prompt.text(), "segment": seg[0].name if seg else None,
                               "label_words": prompt.label_words, "meta": prompt.meta})  # fmt: skip
    return out


def _prompt_export(prompt: Prompt, kind: str, config) -> tuple[dict, dict]:
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    if kind == "PREFIX_TUNING":
        n_layers, _, kv_heads, n, head_dim = prompt.prefix.shape
        # PEFT's row t is (layer, key/value, head, dim) flattened for virtual token t
        rows = prompt.prefix.permute(3, 0, 1, 2, 4).reshape(n, -1)
        return {"prompt_embeddings": rows}, {
            "num_virtual_tokens": n, "token_dim": kv_heads * head_dim, "num_attention_heads": kv_heads,
            "num_layers": n_layers, "num_transformer_submodules": 1, "encoder_hidden_size": kv_heads * head_dim,
            "prefix_projection": False,
        }  # fmt: skip
    seg = prompt.segments[0]
    vectors = prompt.vectors[seg.name]
    extra = {"num_virtual_tokens": seg.n, "token_dim": int(vectors.shape[1]), "num_transformer_submodules": 1,
             "num_attention_heads": heads, "num_layers": layers}  # fmt: skip
    if kind == "P_TUNING":
        extra.update({"encoder_reparameterization_type": "MLP" if prompt.meta.get("encoder") == "mlp" else "LSTM",
                      "encoder_hidden_size": int(vectors.shape[1]), "encoder_num_layers": 2, "encoder_dropout": 0.0})  # fmt: skip
    else:
        extra.update({"prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None, "tokenizer_name_or_path": None,
                      "tokenizer_kwargs": None})  # fmt: skip
    return {"prompt_embeddings": vectors}, extra


def _lora_export(edit: ModelEdit) -> tuple[dict, dict]:
    tensors = {}
    ranks = set()
    modules = []
    for name, (b, a) in edit.low_rank.items():
        if not name.endswith(".weight"):
            raise PromptoptError(f"low-rank update of {name!r}: PEFT LoRA adapts a module's weight only")
        module = name[: -len(".weight")]
        modules.append(module)
        ranks.add(a.shape[0])
        tensors[f"{LORA_PREFIX}{module}.lora_A.weight"] = a
        tensors[f"{LORA_PREFIX}{module}.lora_B.weight"] = b  # the scale is in B: alpha = r gives PEFT's scale 1
    if len(ranks) != 1:
        raise PromptoptError(f"the low-rank updates have ranks {sorted(ranks)}; a PEFT LoRA adapter has one rank")
    r = ranks.pop()
    pattern = "|".join(re.escape(m) for m in sorted(modules))  # PEFT matches a string target in full
    return tensors, {"r": r, "lora_alpha": r, "lora_dropout": 0.0, "target_modules": f"({pattern})", "bias": "none",
                     "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "modules_to_save": None,
                     "init_lora_weights": True, "rank_pattern": {}, "alpha_pattern": {}}  # fmt: skip


def _read_adapter(adapter: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    config_path = adapter / PEFT_CONFIG
    if not config_path.exists():
        raise PromptoptError(f"{adapter}: not a PEFT adapter directory (no {PEFT_CONFIG})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PromptoptError(f"{config_path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if config.get("peft_type") not in KINDS:
        raise PromptoptError(f"{config_path}: field 'peft_type' is {config.get('peft_type')!r}; promptopt imports "
                             f"{', '.join(KINDS)}")  # fmt: skip
    if config["peft_type"] != "LORA" and config.get("num_transformer_submodules", 1) != 1:
        raise PromptoptError(f"{config_path}: field 'num_transformer_submodules' is "
                             f"{config['num_transformer_submodules']}; only decoder-only or encoder-only adapters (1) "
                             "can be imported")  # fmt: skip
    weights = adapter / PEFT_WEIGHTS
    if not weights.exists():
        raise PromptoptError(f"{adapter}: no {PEFT_WEIGHTS} (pickled adapter_model.bin files are not read; re-save "
                             "the adapter with safe_serialization=True)")  # fmt: skip
    return config, load_file(str(weights))


def import_peft(adapter_dir: str | Path, out_dir: str | Path, template: str | None = None) -> Path:
    """Turn a PEFT adapter (any kind in the table above) into a saved promptopt prompt in ``out_dir``.

    The template is ``template``, else the one export wrote beside the adapter, else ``[P*n]{text}{answer}`` for
    input vectors and ``{text}{answer}`` for a prefix or LoRA. For input vectors its first segment must be ``[P*n]``
    with the adapter's ``n`` and it may have no other ``[P]`` slot; for a prefix or LoRA it may have none.
    """
    adapter = Path(adapter_dir)
    config, tensors = _read_adapter(adapter)
    kind = config["peft_type"]
    weights = adapter / PEFT_WEIGHTS
    sidecar = adapter / SIDECAR
    meta: dict = {}
    label_words = None
    if template is None and sidecar.exists():
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
        template, meta, label_words = saved["template"], saved.get("meta") or {}, saved.get("label_words")
    meta = {**meta, "imported_from": str(adapter), "model": config.get("base_model_name_or_path") or meta.get("model")}
    edit = None
    if kind == "LORA":
        edit = _lora_import(config, tensors, weights)
        prompt = _fixed_template(template or DEFAULT_ADAPTER_TEMPLATE, kind)
    else:
        if "prompt_embeddings" not in tensors:
            raise PromptoptError(f"{weights}: no 'prompt_embeddings' tensor; it holds {sorted(tensors)}")
        rows = tensors["prompt_embeddings"].float()
        n = int(config.get("num_virtual_tokens") or rows.shape[0])
        if rows.shape[0] != n:
            raise PromptoptError(f"{weights}: 'prompt_embeddings' has {rows.shape[0]} rows; num_virtual_tokens is {n}")
        if kind == "PREFIX_TUNING":
            prompt = _fixed_template(template or DEFAULT_ADAPTER_TEMPLATE, kind)
            layers, heads = int(config["num_layers"]), int(config["num_attention_heads"])
            dim = int(config["token_dim"]) // heads
            if rows.shape[1] != layers * 2 * heads * dim:
                raise PromptoptError(f"{weights}: 'prompt_embeddings' rows have {rows.shape[1]} values; num_layers, "
                                     f"num_attention_heads and token_dim give {layers * 2 * heads * dim}")  # fmt: skip
            prompt.prefix = rows.view(n, layers, 2, heads, dim).permute(1, 2, 3, 0, 4).contiguous()
        else:
            template = template or DEFAULT_IMPORT_TEMPLATE.format(n=n)
            segments = parse_template(template)
            if segments[0].kind != SegmentKind.VECTORS or segments[0].n != n or \
                    len([s for s in segments if s.kind == SegmentKind.VECTORS]) != 1:  # fmt: skip
                raise PromptoptError(f"template {template!r} must start with the adapter's [P*{n}] and have no other "
                                     "[P] slot")  # fmt: skip
            prompt = Prompt(segments=segments, vectors={segments[0].name: rows}, template=template)
            if kind == "P_TUNING":
                meta.setdefault("encoder", str(config.get("encoder_reparameterization_type", "MLP")).lower())
    prompt.label_words, prompt.meta = label_words, meta
    prompt.save(out_dir)
    if edit is not None:
        edit.save(out_dir)
    return Path(out_dir)


def _fixed_template(template: str, kind: str) -> Prompt:
    prompt = Prompt.from_template(template)
    if prompt.segments_of(SegmentKind.VECTORS) or prompt.segments_of(SegmentKind.TOKENS):
        raise PromptoptError(f"template {template!r}: a {kind} adapter goes with a template without [P]/[T] slots")
    return prompt


def _lora_import(config: dict, tensors: dict, weights: Path) -> ModelEdit:
    for key in ("use_dora", "use_rslora"):
        if config.get(key):
            raise PromptoptError(f"{weights.parent / PEFT_CONFIG}: field {key!r} is true; promptopt imports plain LoRA")
    if config.get("bias", "none") != "none" or config.get("modules_to_save"):
        raise PromptoptError(f"{weights.parent / PEFT_CONFIG}: fields 'bias'/'modules_to_save' train more than LoRA "
                             "matrices; promptopt imports plain LoRA (bias 'none', no modules_to_save)")  # fmt: skip
    r, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    ranks, alphas = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    edit = ModelEdit()
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise PromptoptError(f"{weights}: tensor {key!r} is not a LoRA matrix (lora_A/lora_B)")
            continue
        module = key[: -len(".lora_A.weight")]
        b = tensors.get(module + ".lora_B.weight")
        if b is None:
            raise PromptoptError(f"{weights}: {key!r} has no lora_B partner")
        name = module[len(LORA_PREFIX):] if module.startswith(LORA_PREFIX) else module
        short = name.rsplit(".", 1)[-1]
        rank = int(ranks.get(name, ranks.get(short, r)))
        scale = float(alphas.get(name, alphas.get(short, alpha))) / rank
        if config.get("fan_in_fan_out"):
            raise PromptoptError(f"{weights.parent / PEFT_CONFIG}: field 'fan_in_fan_out' is true (Conv1D models); "
                                 "not supported")  # fmt: skip
        edit.low_rank[f"{name}.weight"] = (b.float() * scale, a.float())
    if not edit.low_rank:
        raise PromptoptError(f"{weights}: no LoRA matrices")
    return edit
