"""The leaderboard as CSV (one line per row) and as versioned JSON (rows, runs, comparisons; see :mod:`.model`)."""

from __future__ import annotations

import csv
import io
import json

from .model import Leaderboard

CSV_COLUMNS = ["model", "task", "variant", "method", "metric", "mean", "ci_low", "ci_high", "ci_n", "std", "best",
               "tied_with", "seeds_ok", "seeds_run", "eval_n", "n_train", "shots", "max_train", "template",
               "trainable_parameters", "train_flops", "train_seconds", "eval_flops", "eval_examples_per_second",
               "peak_memory_mb", "kind", "seed_low", "seed_high", "mark"]  # fmt: skip


def render_csv(board: Leaderboard) -> str:
    """One line per (model, task, variant, method); scores as fractions, empty cells where there is no value.
    ``tied_with`` lists the methods a row is tied with (``;``-separated); ``template`` is empty unless every seed
    used the same one."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in board.rows:
        writer.writerow([r.model, r.task, r.variant, r.method, r.metric, _num(r.mean), _num(r.ci_low), _num(r.ci_high),
                         r.ci_n, _num(r.std), int(r.best), ";".join(r.tied_with), r.ok, r.runs, r.n_eval,
                         _num(r.n_train), _opt(r.shots), _opt(r.max_train),
                         r.templates[0] if len(r.templates) == 1 else "", r.trainable_parameters, _flops(r.train_flops),
                         _num(r.train_seconds), _flops(r.eval_flops), _num(r.eval_examples_per_second),
                         _num(r.peak_memory_mb), r.kind, _num(r.seed_low), _num(r.seed_high), r.mark])  # fmt: skip
    return out.getvalue()


def _opt(value) -> str:
    return "" if value is None else str(value)


def _flops(value) -> str:
    return "" if value is None else f"{float(value):.6g}"


def _num(value) -> str:
    return "" if value is None else repr(round(float(value), 6))


def render_json(board: Leaderboard) -> str:
    """The leaderboard's JSON form, with ``schema`` and ``schema_version``; :func:`load_json` reads it back."""
    return json.dumps(board.to_json(), indent=2, ensure_ascii=False) + "\n"


def load_json(text: str) -> Leaderboard:
    return Leaderboard.from_json(json.loads(text))
