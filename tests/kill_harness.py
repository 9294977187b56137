"""Kill-and-resume tests share this: a script run once as "full" (the uninterrupted run, then in the same process
a run that stalls at a chosen point and writes a marker file), SIGKILLed at the marker, then run again to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO


def kill_at_marker_then_resume(script: Path, full_args: list[str], resume_args: list[str], marker: Path,
                               logs: Path, killed: Path | None = None, timeout: float = 240) -> tuple[dict, dict]:  # fmt: skip
    """Run ``script full_args`` until it writes ``marker``, SIGKILL it (the killed run's directory ``killed``, if
    given, must then hold no ``result.json``), then run ``script resume_args`` to the end. Returns the JSON of the first process's first stdout line (the uninterrupted run) and of the second's last
    line (the resumed run). One thread per process, so both compute identical float sums; output goes to files in
    ``logs`` (a pipe could fill up and stall the process before it reaches the marker)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(logs / "out.txt", "w") as out, open(logs / "err.txt", "w") as err:
        first = subprocess.Popen([sys.executable, str(script), *full_args], stdout=out, stderr=err, text=True,
                                 env=env, cwd=REPO)  # fmt: skip
        deadline = time.time() + timeout
        while not marker.exists():
            if first.poll() is not None or time.time() > deadline:
                first.kill()
                raise AssertionError((logs / "err.txt").read_text()[-3000:] or "exited without stalling")
            time.sleep(0.1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    full = json.loads((logs / "out.txt").read_text().strip().splitlines()[0])
    assert killed is None or not (killed / "result.json").exists(), f"{killed} finished before it was killed"
    second = subprocess.run([sys.executable, str(script), *resume_args], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=timeout)  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    return full, json.loads(second.stdout.strip().splitlines()[-1])


def history(path: Path) -> list[dict]:
    """A run's ``history.jsonl`` without timings (none if the file is absent), to compare two runs' records."""
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [{k: v for k, v in r.items() if k not in ("seconds", "elapsed_seconds")} for r in rows]
