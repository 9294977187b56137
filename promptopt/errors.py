"""Errors a user can act on: each names where the problem is (file, line, field) and what is allowed."""

from __future__ import annotations


class PromptoptError(Exception):
    """Base for every error promptopt raises on bad input. The CLI prints these without a traceback."""


class TemplateError(PromptoptError):
    """A template string cannot be parsed, or does not fit the task."""

    def __init__(self, template: str, message: str, position: int | None = None):
        self.template = template
        self.position = position
        where = f" at character {position}" if position is not None else ""
        super().__init__(f"bad template{where}: {message} (template: {template!r})")


class DataError(PromptoptError):
    """A task file or a data row is wrong. Names the file, the line and the field."""

    def __init__(self, path, message: str, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        where = self.path
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")


class ConfigError(PromptoptError):
    """A method or run option has a bad value. Names the option and the allowed values."""


def enum_value(cls, value, where: str):
    """``cls(value)`` for an enum, or a :class:`ConfigError` naming ``where`` and the allowed values.

    The one place option strings become enum members (method configs, the training loop, report formats)."""
    try:
        return cls(value)
    except ValueError:
        raise ConfigError(f"{where} is {value!r}; one of {[m.value for m in cls]}") from None
