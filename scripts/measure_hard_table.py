"""Table of the issue-14 measurement (scripts/measure_hard.sh): every finished run's reported score with its
standard error, selection score, compute (estimated FLOPs of the method and of the evaluation) and wall time,
read from each run's result.json. Usage: python scripts/measure_hard_table.py runs/hard"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from promptopt.report.stats import mcnemar_exact, t_interval


def rows(root: Path):
    for path in sorted(root.glob("*/result.json")):
        r = json.loads(path.read_text())
        if r.get("status") != "ok":
            continue
        ev = r["metrics"]["eval"]
        acc, n = ev["accuracy"], ev["n"]
        yield {"run": path.parent.name, "task": r["task"], "eval": acc, "se": math.sqrt(acc * (1 - acc) / n), "n": n,
               "select": (r.get("select_metrics") or {}).get("accuracy"),
               "train_pflop": r["compute"]["train"]["flops"] / 1e15, "eval_pflop": r["compute"]["eval"]["flops"] / 1e15,
               "train_s": r["train_seconds"], "eval_s": r["eval_seconds"], "prompt": r["prompt_text"]}  # fmt: skip


def correct(run_dir: Path) -> dict[str, bool]:
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    return {r["id"]: bool(r["correct"]) for r in rows}


def mcnemar(a: dict[str, bool], b: dict[str, bool]) -> tuple[int, int, float]:
    """(examples only a gets right, only b gets right, exact two-sided McNemar p) on the examples both scored."""
    common = sorted(set(a) & set(b))
    only_a = sum(a[i] and not b[i] for i in common)
    only_b = sum(b[i] and not a[i] for i in common)
    return only_a, only_b, mcnemar_exact(only_a, only_b)


def main(root: str) -> None:
    table = list(rows(Path(root)))
    print("| run | dev accuracy ± s.e. (n) | selection | method PFLOP | eval PFLOP | method s | eval s |")
    print("|---|---|---|---|---|---|---|")
    for t in table:
        sel = f"{t['select']:.3f}" if t["select"] is not None else "-"
        print(f"| {t['run']} | {t['eval']:.3f} ± {t['se']:.3f} ({t['n']}) | {sel} | {t['train_pflop']:.3f} | "
              f"{t['eval_pflop']:.3f} | {t['train_s']:.0f} | {t['eval_s']:.0f} |")
    for task in sorted({t["task"] for t in table}):
        mine = [t for t in table if t["task"] == task]
        manual = next((t for t in mine if t["run"].endswith("-manual")), None)
        hard = [t for t in mine if not t["run"].endswith(("-manual", "-soft")) and not re.search(r"-s\d+$", t["run"])]
        if manual and hard:
            print(f"\n{task}, each method against the best manual template ({manual['eval']:.3f}) on the same dev "
                  "examples (exact McNemar test):\n")
            base = correct(Path(root) / manual["run"])
            for t in sorted(hard, key=lambda t: -t["eval"]):
                only_m, only_h, p = mcnemar(base, correct(Path(root) / t["run"]))
                print(f"- {t['run']}: {100 * (t['eval'] - manual['eval']):+.1f} points "
                      f"(right only with it {only_h}, only with manual {only_m}; p = {p:.3f})")

    draws(table)


def draws(table) -> None:
    """Runs repeated at other seeds (NAME-sN beside NAME, seed 0): mean and 95% t-interval over the draws."""
    groups: dict[str, list] = {}
    for t in table:
        groups.setdefault(re.sub(r"-s\d+$", "", t["run"]), []).append(t)
    repeated = {k: v for k, v in groups.items() if len(v) > 1}
    if not repeated:
        return
    print("\nRepeated draws (seed 0 and the NAME-sN runs; selection on each seed's own holdout), dev accuracy:\n")
    print("| run | draws | each | mean ± 95% t-interval |")
    print("|---|---|---|---|")
    for name, runs in sorted(repeated.items()):
        accs = [100 * t["eval"] for t in runs]
        low, high = t_interval(accs)
        print(f"| {name} | {len(accs)} | {', '.join(f'{a:.1f}' for a in accs)} | {(low + high) / 2:.1f} ± {(high - low) / 2:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
