"""Resumable state for any method: a JSON file written atomically, tagged with a fingerprint of the settings it
belongs to, and refused (naming the first field that differs) when a resumed run has other settings.

    state = ResumableState(run.output_dir / "checkpoint" / "search.json", {"config": ..., "seed": run.seed})
    saved = state.load() if run.resume else None      # None when there is nothing to resume
    ...
    state.save({"iteration": it, "tokens": ...})      # every few iterations

The shared training loop keeps tensors in safetensors (:mod:`promptopt.engine.train`); a search's state (token ids,
counters, RNG state, best prompt so far) is plain JSON and belongs here. :func:`first_difference` is the comparison
the run pipeline uses for a run's fingerprint too.
"""

from __future__ import annotations

import json
from pathlib import Path

from promptopt.data.files import read_json, write_json
from promptopt.errors import ConfigError, PromptoptError

STATE_VERSION = 1


def first_difference(saved, now, prefix: str = "") -> str | None:
    """The first field (dotted path, keys in sorted order) where two fingerprints differ, described; None if equal."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now), key=str):
            inner = first_difference(saved.get(key), now.get(key), f"{prefix}{key}.")
            if inner is not None:
                return inner
        return None
    if _plain(saved) == _plain(now):
        return None
    return f"field {prefix.rstrip('.') or '(all)'} was {_short(saved)} and is now {_short(now)}"


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class ResumableState:
    """One method's resumable state at ``path``, valid only for ``fingerprint`` (JSON-able)."""

    def __init__(self, path: str | Path, fingerprint: dict):
        self.path, self.fingerprint = Path(path), fingerprint

    def load(self) -> dict | None:
        """The saved state, or None when there is none; a state made with other settings is refused."""
        if not self.path.exists():
            return None
        try:
            saved = read_json(self.path)
        except (OSError, json.JSONDecodeError) as e:
            raise PromptoptError(f"{self.path}: not a readable resumable state ({e}); delete it to start afresh") from None
        if not isinstance(saved, dict) or "fingerprint" not in saved or "state" not in saved:
            raise PromptoptError(f"{self.path}: not a promptopt resumable state (no 'fingerprint'/'state')")
        reason = first_difference(saved["fingerprint"], self.fingerprint)
        if reason is not None:
            raise ConfigError(f"{self.path}: cannot resume: {reason}; resume with the same options, or start a new run")
        return saved["state"]

    def save(self, state: dict) -> None:
        """Write ``state`` (JSON-able) atomically with the fingerprint."""
        write_json(self.path, {"version": STATE_VERSION, "fingerprint": self.fingerprint, "state": state})
