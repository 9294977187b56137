"""The run directory's lifecycle, one for every kind of run: ``promptopt run`` (one task), ``promptopt multitask``
and ``promptopt continual`` (several tasks) all go through :class:`RunSession`::

    session = RunSession(out, overwrite=..., resume=..., reuse=...)   # prepare the directory
    if (done := session.check(fingerprint)) is not None:               # reuse a finished run with this fingerprint
        return done                                                    # (--resume with another one is refused)
    resolved = session.write_config(resolved)                          # config.json, the fingerprint in it
    with session.running(ctx, result):                                 # run_start, peak memory
        ...                                                            # fill ``result`` in
    # on success: result.json, then run_end; on failure: error.json, run_end, the exception re-raised

So every run has the same hooks, ``config.json`` with a fingerprint, ``error.json`` or ``result.json`` (last, only
when finished) and the same resume and reuse rules.
"""

from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from pathlib import Path

from promptopt.data.files import read_json, write_json
from promptopt.data.state import first_difference
from promptopt.errors import ConfigError
from promptopt.pipeline.results import PeakMemory, RunResult, prepare_output

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
CONFIG_FILE = "config.json"


def differs(saved: dict | None, now: dict) -> str | None:
    """Why a saved run's fingerprint does not match this one (None: it does)."""
    if saved is None:
        return "the directory has no fingerprint (made by an older promptopt)"
    return first_difference(saved, now)


class RunSession:
    """One run directory from start to ``result.json`` (see the module docstring).

    ``resume`` continues an interrupted run (refused if its fingerprint differs), ``reuse`` returns a finished run
    with the same fingerprint as it is (another fingerprint: it is run again), ``overwrite`` replaces a finished run.
    """

    def __init__(self, output: str | Path, *, overwrite: bool = False, resume: bool = False, reuse: bool = False):
        out = Path(output)
        self.resume, self.reuse = resume, reuse
        self.finished = (out / RESULT_FILE).exists()
        self.out = prepare_output(out, RESULT_FILE, overwrite or reuse, resume or (reuse and self.finished))
        self.fingerprint: dict | None = None

    def saved_fingerprint(self) -> dict | None:
        path = self.out / CONFIG_FILE
        return read_json(path).get("fingerprint") if path.exists() else None

    def check(self, fingerprint: dict) -> RunResult | None:
        """Compare ``fingerprint`` with the directory's: returns the finished run when it may be reused as it is;
        raises :class:`ConfigError` naming the first differing field when a resumed run's differs."""
        self.fingerprint = fingerprint
        if self.reuse and self.finished:
            reason = differs(self.saved_fingerprint(), fingerprint)
            if reason is None:
                result = RunResult.load(self.out)
                result.reused = True
                return result
            log.warning("%s: running again: its finished run was made with other settings (%s)", self.out, reason)
            self.out = prepare_output(self.out, RESULT_FILE, overwrite=True)
            self.finished = False
        elif self.resume and (self.out / CONFIG_FILE).exists():
            reason = differs(self.saved_fingerprint(), fingerprint)
            if reason is not None:
                raise ConfigError(f"{self.out}: cannot resume: {reason}; resume with the same settings, or start a new "
                                  "run (--overwrite or another --output)")  # fmt: skip
        return None

    def write_config(self, resolved: dict) -> dict:
        """Write ``config.json`` (``resolved`` with the fingerprint given to :meth:`check`); returns what it wrote."""
        if self.fingerprint is not None:
            resolved = {**resolved, "fingerprint": self.fingerprint}
        write_json(self.out / CONFIG_FILE, resolved)
        return resolved

    @contextmanager
    def running(self, ctx, result: RunResult, hook=None):
        """Around the work of the run: ``run_start``, then the body under :class:`PeakMemory` (its peak goes in
        ``result.peak_memory_mb``). On success ``result.json`` is written and ``run_end`` called; on failure
        ``error.json`` is written, ``run_end`` called with ``result.status == "failed"``, and the exception raised."""
        hook = hook if hook is not None else ctx.hook
        hook.run_start(run=ctx)
        try:
            with PeakMemory(ctx.lm.device) as memory:
                yield memory
            result.peak_memory_mb = memory.mb
        except Exception as e:
            result.status = "failed"
            result.error = f"{type(e).__name__}: {e}"
            write_json(self.out / ERROR_FILE, {"error": result.error, "traceback": traceback.format_exc()})
            hook.run_end(run=ctx, result=result)
            raise
        write_json(self.out / RESULT_FILE, result.to_json())
        hook.run_end(run=ctx, result=result)
