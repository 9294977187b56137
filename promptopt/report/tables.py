"""The leaderboard as CSV (one line per row) and as versioned JSON (rows and runs; see :mod:`.model`)."""

from __future__ import annotations

import csv
import io
import json

from .model import Leaderboard

CSV_COLUMNS = ["model", "task", "method", "metric", "mean", "std", "best", "seeds_ok", "seeds_run", "eval_n",
               "trainable_parameters", "train_seconds", "eval_examples_per_second", "peak_memory_mb"]  # fmt: skip


def render_csv(board: Leaderboard) -> str:
    """One line per (model, task, method); scores as fractions, empty cells where there is no value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in board.rows:
        writer.writerow([r.model, r.task, r.method, r.metric, _num(r.mean), _num(r.std), int(r.best), r.ok, r.runs,
                         r.n_eval, r.trainable_parameters, _num(r.train_seconds), _num(r.eval_examples_per_second),
                         _num(r.peak_memory_mb)])  # fmt: skip
    return out.getvalue()


def _num(value) -> str:
    return "" if value is None else repr(round(float(value), 6))


def render_json(board: Leaderboard) -> str:
    """The leaderboard's JSON form, with ``schema`` and ``schema_version``; :func:`load_json` reads it back."""
    return json.dumps(board.to_json(), indent=2, ensure_ascii=False) + "\n"


def load_json(text: str) -> Leaderboard:
    return Leaderboard.from_json(json.loads(text))
