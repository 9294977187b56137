"""One Prompt type for hard and soft prompts.

A prompt is an ordered list of segments:

* ``TEXT``: literal text;
* ``FIELD``: one input field of the example (``{sentence}``);
* ``ANSWER``: where the answer is read (``{answer}``); exactly one per prompt;
* ``TOKENS``: fixed discrete token ids (trigger slots ``[T]``, found by a search method);
* ``SOFT``: trainable vectors (``[P]``, ``[P*20]``), whose values live in ``Prompt.vectors``.

Template syntax (parsed by :func:`parse_template`)::

    "Review: {sentence}\\nSentiment:{answer}"      manual template
    "[P*20] {sentence} It was {answer}"           20 soft vectors in front
    "{premise} [P*4] {hypothesis} [P*4]{answer}"  soft vectors between and after the fields
    "{sentence} [T*4] {answer}"                   4 trigger tokens for discrete search
    "[P*10:shared][P*2:task]{sentence}{answer}"   named soft segments

``{{`` and ``}}`` write literal braces. A segment name after ``:`` is optional; unnamed segments are called
``p0, p1, ...`` (vectors) and ``t0, t1, ...`` (tokens) in order of appearance.

For a causal LM, text after ``{answer}`` is never seen by the model (it reads the answer before it) and is ignored;
for a masked LM it stays, and the answer slot becomes ``[MASK]`` tokens.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from promptopt.errors import PromptoptError, TemplateError
from promptopt.data.files import atomic_path, write_json

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT_VERSION = 1
PREFIX_FILE = "prefix.safetensors"


class SegmentKind(str, enum.Enum):
    TEXT = "text"
    FIELD = "field"
    ANSWER = "answer"
    TOKENS = "tokens"
    VECTORS = "vectors"


@dataclass(frozen=True)
class Segment:
    """One piece of a prompt. Which attributes matter depends on ``kind`` (see the module docstring)."""

    kind: SegmentKind
    text: str = ""
    field: str = ""
    name: str = ""
    n: int = 0
    ids: tuple[int, ...] | None = None

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind.value}
        if self.kind == SegmentKind.TEXT:
            out["text"] = self.text
        elif self.kind == SegmentKind.FIELD:
            out["field"] = self.field
        elif self.kind in (SegmentKind.TOKENS, SegmentKind.VECTORS):
            out["name"] = self.name
            out["n"] = self.n
            if self.ids is not None:
                out["ids"] = list(self.ids)
        return out

    @classmethod
    def from_json(cls, obj: dict) -> "Segment":
        kind = SegmentKind(obj["kind"])
        ids = obj.get("ids")
        return cls(
            kind=kind,
            text=obj.get("text", ""),
            field=obj.get("field", ""),
            name=obj.get("name", ""),
            n=int(obj.get("n", 0)),
            ids=tuple(int(i) for i in ids) if ids is not None else None,
        )


_SLOT = re.compile(r"\[(T|P)(?:\*(\d+))?(?::([A-Za-z_][A-Za-z0-9_]*))?\]")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ANSWER = "answer"


def parse_template(template: str) -> list[Segment]:
    """Parse a template string into segments. Raises :class:`TemplateError` naming the position of the fault."""
    if not isinstance(template, str) or not template:
        raise TemplateError(str(template), "a template must be a non-empty string")
    segments: list[Segment] = []
    buf: list[str] = []
    counters = {"T": 0, "P": 0}
    names: set[str] = set()

    def flush():
        if buf:
            segments.append(Segment(SegmentKind.TEXT, text="".join(buf)))
            buf.clear()

    i = 0
    while i < len(template):
        ch = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            buf.append(ch)
            i += 2
            continue
        if ch == "}":
            raise TemplateError(template, "'}' without a matching '{' (write '}}' for a literal brace)", i)
        if ch == "{":
            end = template.find("}", i + 1)
            if end < 0:
                raise TemplateError(template, "'{' is never closed (write '{{' for a literal brace)", i)
            name = template[i + 1 : end].strip()
            if not _FIELD_NAME.match(name):
                raise TemplateError(template, f"{{{name}}} is not a field name (letters, digits, '_')", i)
            flush()
            if name == ANSWER:
                segments.append(Segment(SegmentKind.ANSWER))
            else:
                segments.append(Segment(SegmentKind.FIELD, field=name))
            i = end + 1
            continue
        if ch == "[":
            m = _SLOT.match(template, i)
            if m:
                kind, count, name = m.group(1), m.group(2), m.group(3)
                n = int(count) if count is not None else 1
                if n < 1:
                    raise TemplateError(template, f"{m.group(0)} asks for {n} tokens; at least 1", i)
                if name is None:
                    name = f"{kind.lower()}{counters[kind]}"
                counters[kind] += 1
                if name in names:
                    raise TemplateError(template, f"segment name {name!r} is used twice", i)
                names.add(name)
                flush()
                seg_kind = SegmentKind.VECTORS if kind == "P" else SegmentKind.TOKENS
                segments.append(Segment(seg_kind, name=name, n=n))
                i = m.end()
                continue
        buf.append(ch)
        i += 1
    flush()
    answers = sum(s.kind == SegmentKind.ANSWER for s in segments)
    if answers != 1:
        raise TemplateError(template, f"a template needs exactly one {{answer}} slot, found {answers}")
    return segments


def decode_escapes(text: str) -> str:
    r"""Turn the two-character sequences ``\n`` and ``\t`` typed on a command line into newline and tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


@dataclass
class Prompt:
    """A prompt: segments plus the values of its soft segments and, optionally, its own label words.

    ``vectors`` maps a SOFT segment's name to a float tensor of shape ``(n, hidden_size)``. ``label_words`` overrides
    the task's verbalizer (label -> words) when set, e.g. after a label-word search. ``prefix``, when set, is a deep
    prompt (prefix tuning, P-tuning v2): per-layer keys and values in front of every input, a float tensor of shape
    ``(layers, 2, kv_heads, n, head_dim)`` (see :mod:`promptopt.engine.adapt`), saved as ``prefix.safetensors``.
    """

    segments: list[Segment]
    vectors: dict[str, "torch.Tensor"] = field(default_factory=dict)
    label_words: dict[str, list[str]] | None = None
    template: str | None = None
    meta: dict = field(default_factory=dict)
    prefix: "torch.Tensor | None" = None

    @classmethod
    def from_template(cls, template: str, **kwargs) -> "Prompt":
        return cls(segments=parse_template(template), template=template, **kwargs)

    # -- views -------------------------------------------------------------------------------------------------
    @property
    def fields(self) -> list[str]:
        return [s.field for s in self.segments if s.kind == SegmentKind.FIELD]

    def segments_of(self, kind: SegmentKind) -> list[Segment]:
        return [s for s in self.segments if s.kind == kind]

    @property
    def n_vectors(self) -> int:
        return sum(s.n for s in self.segments_of(SegmentKind.VECTORS))

    def check_fields(self, allowed: list[str]) -> None:
        """Raise a TemplateError if the prompt names an input field the task does not have."""
        for name in self.fields:
            if name not in allowed:
                raise TemplateError(
                    self.template or self.text(), f"field {{{name}}} is not an input of this task; inputs: {allowed}"
                )

    def text(self, tokenizer=None) -> str:
        """A readable rendering: soft segments as ``[P*n:name]``, token segments decoded when a tokenizer is given."""
        parts = []
        for s in self.segments:
            if s.kind == SegmentKind.TEXT:
                parts.append(s.text.replace("{", "{{").replace("}", "}}"))
            elif s.kind == SegmentKind.FIELD:
                parts.append("{" + s.field + "}")
            elif s.kind == SegmentKind.ANSWER:
                parts.append("{answer}")
            elif s.kind == SegmentKind.VECTORS:
                parts.append(f"[P*{s.n}:{s.name}]")
            elif s.ids is not None and tokenizer is not None:
                parts.append(tokenizer.decode(list(s.ids)))
            else:
                parts.append(f"[T*{s.n}:{s.name}]")
        return "".join(parts)

    # -- edits (return new prompts) --------------------------------------------------------------------------------
    def with_tokens(self, name: str, ids) -> "Prompt":
        """A copy whose TOKENS segment ``name`` holds ``ids``."""
        ids = tuple(int(i) for i in ids)
        segments = []
        found = False
        for s in self.segments:
            if s.kind == SegmentKind.TOKENS and s.name == name:
                if len(ids) != s.n:
                    raise PromptoptError(f"segment {name!r} holds {s.n} tokens, got {len(ids)}")
                s = replace(s, ids=ids)
                found = True
            segments.append(s)
        if not found:
            raise PromptoptError(f"prompt has no token segment named {name!r}")
        return replace(self, segments=segments)

    def with_vectors(self, values: dict[str, "torch.Tensor"]) -> "Prompt":
        """A copy with soft values replaced (detached, on CPU, float32) for the segments named in ``values``."""
        vectors = dict(self.vectors)
        for name, value in values.items():
            vectors[name] = value.detach().to("cpu", dtype=_float32()).clone()
        return replace(self, vectors=vectors)

    # -- artifacts -----------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``prompt.json`` (and ``vectors.safetensors`` when there are soft values) atomically. No pickle."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.vectors:
            from safetensors.torch import save_file

            with atomic_path(directory / "vectors.safetensors") as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.vectors.items()}, str(tmp))
        if self.prefix is not None:
            from safetensors.torch import save_file

            with atomic_path(directory / PREFIX_FILE) as tmp:
                save_file({"prefix": self.prefix.detach().to("cpu", _float32()).contiguous()}, str(tmp))
        write_json(
            directory / "prompt.json",
            {
                "format_version": FORMAT_VERSION,
                "template": self.template,
                "text": self.text(),
                "segments": [s.to_json() for s in self.segments],
                "label_words": self.label_words,
                "vector_segments": sorted(self.vectors),
                "meta": self.meta,
                **({"prefix": list(self.prefix.shape)} if self.prefix is not None else {}),
            },
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Prompt":
        directory = Path(directory)
        path = directory / "prompt.json"
        if not path.exists():
            raise PromptoptError(f"{directory}: not a prompt directory (no prompt.json)")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise PromptoptError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        version = obj.get("format_version")
        if version != FORMAT_VERSION:
            raise PromptoptError(f"{path}: field 'format_version' is {version!r}; this promptopt reads {FORMAT_VERSION}")
        try:
            segments = [Segment.from_json(s) for s in obj["segments"]]
        except (KeyError, ValueError, TypeError) as e:
            raise PromptoptError(f"{path}: field 'segments' is malformed ({e})") from None
        vectors = {}
        names = obj.get("vector_segments") or []
        if names:
            from safetensors.torch import load_file

            tensors_path = directory / "vectors.safetensors"
            if not tensors_path.exists():
                raise PromptoptError(f"{path}: names soft segments {names} but {tensors_path.name} is missing")
            try:
                vectors = load_file(str(tensors_path))
            except Exception as e:  # safetensors raises its own SafetensorError (or OSError) on a cut file
                raise PromptoptError(f"{tensors_path}: corrupt or truncated safetensors file ({e})") from None
            missing = [n for n in names if n not in vectors]
            if missing:
                raise PromptoptError(f"{tensors_path}: field 'vector_segments' names {missing}, not in the file")
        return cls(
            segments=segments,
            vectors=vectors,
            label_words=obj.get("label_words"),
            template=obj.get("template"),
            meta=obj.get("meta") or {},
            prefix=_load_prefix(directory, path, obj.get("prefix")),
        )


def _load_prefix(directory: Path, path: Path, shape):
    if shape is None:
        return None
    from safetensors.torch import load_file

    tensors_path = directory / PREFIX_FILE
    if not tensors_path.exists():
        raise PromptoptError(f"{path}: field 'prefix' names a deep prefix but {PREFIX_FILE} is missing")
    try:
        prefix = load_file(str(tensors_path)).get("prefix")
    except Exception as e:  # safetensors raises its own SafetensorError (or OSError) on a cut file
        raise PromptoptError(f"{tensors_path}: corrupt or truncated safetensors file ({e})") from None
    if prefix is None or list(prefix.shape) != list(shape):
        raise PromptoptError(f"{tensors_path}: no 'prefix' tensor of shape {shape} (field 'prefix' of {path.name})")
    return prefix


def _float32():
    import torch

    return torch.float32
