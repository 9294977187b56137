"""The issue-15 table: for each run under a directory (scripts/measure_adapters.sh), score, trainable parameters,
compute, wall time and peak memory, read from its result.json."""

import json
import math
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/adapters")
print("| task | method | dev accuracy ± s.e. | n | trainable params | train FLOPs | budget spent | train s | eval s | peak MB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for path in sorted(root.glob("*/result.json")):
    r = json.loads(path.read_text())
    ev = r["metrics"]["eval"]
    flops = r.get("compute", {}).get("train", {}).get("flops", 0.0)
    print(f"| {r['task']} | {r['method']} | {ev['accuracy']:.4f} ± {math.sqrt(ev['accuracy'] * (1 - ev['accuracy']) / ev['n']):.4f} | {ev['n']} | {r['trainable_parameters']:,} | "
          f"{flops:.2e} | {r.get('budget_spent')} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} | "
          f"{r.get('peak_memory_mb', 0):.0f} |")
