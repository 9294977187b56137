"""Built-in tasks: every spec file in the checkout's ``datasets/`` folder (shipped as ``promptopt_tasks``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from promptopt import hookimpl


def spec_dir() -> Path | None:
    here = Path(__file__).resolve().parent.parent / "datasets"
    if here.is_dir():
        return here
    spec = importlib.util.find_spec("promptopt_tasks")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return None


@hookimpl
def register_tasks(register):
    root = spec_dir()
    if root is None:
        return
    for path in sorted(root.rglob("*.toml")):
        register(path)
