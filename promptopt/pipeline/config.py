"""Dataclass configs: parse ``key=value`` options into them, and build help text from their field metadata."""

from __future__ import annotations

import dataclasses
import json
import enum
import typing
from typing import Any

from promptopt.errors import ConfigError


def field_help(cls) -> list[tuple[str, str, Any, str]]:
    """(name, type name, default, help) for each field of a config dataclass."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # fmt: skip
        if isinstance(default, enum.Enum):
            default = default.value
        out.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return out


def _type_name(tp) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "|".join(m.value for m in tp)
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def convert(cls, name: str, raw: Any):
    """Convert one raw (string or JSON) value to the type of field ``name``; ConfigError names the field."""
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ConfigError(f"{cls.__name__} has no option {name!r}; options: {[f.name for f in dataclasses.fields(cls)]}")
    return _convert(hints[name], raw, f"{cls.__name__}.{name}")


def _convert(tp, raw, where):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, raw, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {raw!r}")
    if origin in (list, tuple):
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        inner = args[0] if args else str
        return [_convert(inner, x.strip() if isinstance(x, str) else x, where) for x in items if x != ""]
    if origin is dict:
        if isinstance(raw, dict):
            return raw
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(raw)
        except ValueError:
            raise ConfigError(f"{where}: {raw!r} is not one of {[m.value for m in tp]}") from None
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        s = str(raw).lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: {raw!r} is not a boolean (true/false)")
    if tp in (int, float):
        try:
            return tp(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {raw!r} is not a{'n' if tp is int else ''} {tp.__name__}") from None
    if tp is str:
        return str(raw)
    return raw


def build(cls, options: dict[str, Any] | None = None):
    """Instantiate ``cls`` from raw options; unknown keys and bad values raise ConfigError."""
    kwargs = {k.replace("-", "_"): convert(cls, k.replace("-", "_"), v) for k, v in (options or {}).items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{cls.__name__}: {e}") from None


def parse_pairs(pairs) -> dict[str, str]:
    """``["lr=0.1", "init=text"]`` -> dict; a pair without ``=`` is an error."""
    out = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"option {pair!r} must be KEY=VALUE")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


def to_dict(config) -> dict:
    return {
        f.name: (getattr(config, f.name).value if isinstance(getattr(config, f.name), enum.Enum) else getattr(config, f.name))
        for f in dataclasses.fields(config)
    }


def fingerprint_dict(config) -> dict:
    """:func:`to_dict` of a config dataclass without the fields marked ``metadata={"resume_free": True}`` (those
    may change when a run is resumed), as plain JSON values."""
    free = {f.name for f in dataclasses.fields(config) if f.metadata.get("resume_free")}
    return {k: v for k, v in json.loads(json.dumps(to_dict(config), default=str)).items() if k not in free}


def click_options(cls, names: list[str] | None = None, exclude: tuple[str, ...] = ()):
    """A decorator adding one ``click`` option per field of the dataclass ``cls`` (or only ``names``), built from the
    field's type, default and metadata, so that a command's flags and help cannot drift from the config:

    * ``help`` is the help text; ``flag`` overrides the flag name (default ``--field-name``), ``short`` adds a short
      flag (``-m``), ``choices`` makes a :class:`click.Choice`;
    * a bool field is a flag: ``--name`` when it defaults to False, ``--no-name`` (setting it to False) when it
      defaults to True;
    * a list field is a repeatable option; dict fields are skipped (commands give them their own syntax).

    The values reach the command as keyword arguments named after the fields; :func:`from_click` turns them back
    into field values (inverting ``--no-name`` flags).
    """
    import click

    hints = typing.get_type_hints(cls)
    chosen = [f for f in dataclasses.fields(cls) if (names is None or f.name in names) and f.name not in exclude]
    if names is not None:
        chosen.sort(key=lambda f: names.index(f.name))

    def decorate(func):
        for f in reversed(chosen):
            tp, meta = hints[f.name], f.metadata
            default = f.default if f.default is not dataclasses.MISSING else None
            origin = typing.get_origin(tp)
            if origin is dict or tp is dict:
                continue
            help_text = meta.get("help", "")
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            decls = [d for d in (meta.get("short"), flag) if d]
            if tp is bool:
                if default:
                    decls = ["--no-" + f.name.replace("_", "-")]
                    func = click.option(*decls, f"no_{f.name}", is_flag=True,
                                        help=meta.get("no_help") or f"turn off: {help_text}")(func)  # fmt: skip
                else:
                    func = click.option(*decls, f.name, is_flag=True, help=help_text)(func)
                continue
            kwargs: dict = {"help": help_text}
            if origin in (list, tuple):
                kwargs.update(multiple=True)
            else:
                inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
                base = inner[0] if isinstance(inner[0], type) else str
                kwargs["type"] = click.Choice(meta["choices"]) if "choices" in meta else (
                    base if base in (int, float, str) else str)  # fmt: skip
                kwargs["default"] = default
                kwargs["show_default"] = default is not None
            func = click.option(*decls, f.name, **kwargs)(func)
        return func

    return decorate


def from_click(cls, values: dict) -> dict:
    """Field values from the keyword arguments of a command decorated by :func:`click_options`: ``no_x`` flags
    become ``x=False`` (absent: the field's default), repeatable options lists; unknown keys are left out."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key.startswith("no_") and key[3:] in known and known[key[3:]].type in (bool, "bool"):
            out[key[3:]] = not value
        elif key in known:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def train_flags(func):
    """A decorator adding one ``--flag`` per :class:`~promptopt.engine.train.TrainConfig` field (value ``None``
    when not given, named ``train_<field>``), help from the field's metadata."""
    import click

    from promptopt.engine.train import TrainConfig

    for name, type_name, default, help_text in reversed(field_help(TrainConfig)):
        func = click.option("--" + name.replace("_", "-"), f"train_{name}", default=None, metavar=type_name.upper(),
                            help=f"[training] {help_text} (default {default})")(func)  # fmt: skip
    return func
