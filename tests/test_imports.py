"""Import rules, read from the source with ``ast``: plugins import only the SDK, the engine imports no run pipeline,
suite, report or plugin, and reports import no engine."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (files, forbidden module prefixes, allowed exceptions among them)
PLUGIN_ALLOWED = ("promptopt.sdk", "promptopt.hookspecs")
RULES = {
    "plugins": (["plugins/*.py", "examples/*/*.py"], ("promptopt", "promptopt_plugins"), PLUGIN_ALLOWED),
    "engine": (["promptopt/engine/*.py"],
               ("promptopt.pipeline", "promptopt.suite", "promptopt.report", "promptopt.plugins", "promptopt_plugins"), ()),
    "report": (["promptopt/report/*.py"], ("promptopt.engine", "promptopt_plugins"), ()),
}  # fmt: skip


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``path``; ``from promptopt import x`` counts as ``promptopt.x``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(path: Path, forbidden: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    """The imports of ``path`` that break a rule, as ``file:line: module``."""
    bad = []
    for line, module in imported_modules(path):
        if module == "promptopt.hookimpl":  # `from promptopt import hookimpl`: the marker, allowed everywhere
            continue
        if any(_under(module, p) for p in forbidden) and not any(_under(module, a) for a in allowed):
            bad.append(f"{path}:{line}: {module}")
    return bad


@pytest.mark.parametrize("rule", sorted(RULES))
def test_import_rules_hold_over_the_tree(rule):
    patterns, forbidden, allowed = RULES[rule]
    files = [p for pattern in patterns for p in sorted(ROOT.glob(pattern))]
    assert files, f"rule {rule!r} matched no file"
    bad = [v for path in files for v in violations(path, forbidden, allowed)]
    assert not bad, f"{rule} import rule broken:\n" + "\n".join(bad)


@pytest.mark.parametrize("rule, source, bad_import", [
    ("plugins", "plugins/ptuning.py", "from promptopt_plugins.soft import SoftConfig"),
    ("plugins", "plugins/manual.py", "from promptopt.engine.train import fit"),
    ("engine", "promptopt/engine/scoring.py", "from promptopt.pipeline.runner import run"),
    ("report", "promptopt/report/markdown.py", "import promptopt.engine.model"),
])  # fmt: skip
def test_import_rules_flag_a_deliberate_violation_in_a_copy(tmp_path, rule, source, bad_import):
    _, forbidden, allowed = RULES[rule]
    copy = tmp_path / Path(source).name
    shutil.copy(ROOT / source, copy)
    assert violations(copy, forbidden, allowed) == []
    copy.write_text(copy.read_text(encoding="utf-8") + f"\n\ndef late():\n    {bad_import}\n", encoding="utf-8")
    flagged = violations(copy, forbidden, allowed)
    assert len(flagged) == 1 and flagged[0].startswith(f"{copy}:"), flagged
