"""The issue-15 table: for each run under a directory (scripts/measure_adapters.sh), score, trainable parameters,
compute, wall time and peak memory, read from its result.json; and each method against the soft prompt of its task
on the same examples (exact McNemar test on the per-example predictions, predictions.jsonl)."""

import json
import math
import sys
from pathlib import Path

from promptopt.report.stats import mcnemar_exact

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/adapters")


def correct(run_dir: Path) -> dict[str, bool]:
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return {r["id"]: bool(r["correct"]) for r in rows if r.get("split") == "eval"}


print("| task | method | dev accuracy ± s.e. | n | vs soft (McNemar p) | trainable params | train FLOPs | budget spent "
      "| steps | train s | eval s | peak MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(root.glob("*/result.json")):
    r = json.loads(path.read_text())
    ev = r["metrics"]["eval"]
    flops = r.get("compute", {}).get("train", {}).get("flops", 0.0)
    soft = path.parent.parent / f"{r['task']}-soft"
    versus = ""
    if r["method"] != "soft" and (soft / "predictions.jsonl").exists():
        a, b = correct(path.parent), correct(soft)
        only_a = sum(a[i] and not b[i] for i in a if i in b)
        only_b = sum(b[i] and not a[i] for i in a if i in b)
        versus = f"{100 * (ev['accuracy'] - json.loads((soft / 'result.json').read_text())['metrics']['eval']['accuracy']):+.1f} (p={mcnemar_exact(only_a, only_b):.3f})"
    steps = sum(1 for line in (path.parent / "history.jsonl").read_text().splitlines() if '"train_step"' in line)
    print(f"| {r['task']} | {r['method']} | {100 * ev['accuracy']:.1f} ± {100 * math.sqrt(ev['accuracy'] * (1 - ev['accuracy']) / ev['n']):.1f} "
          f"| {ev['n']} | {versus} | {r['trainable_parameters']:,} | {flops:.2e} | {r.get('budget_spent')} | {steps} "
          f"| {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} | {r.get('peak_memory_mb', 0):.0f} |")
