#!/usr/bin/env bash
# Real-model crash check: a soft-prompt run on SST-2 with the embedded model, SIGKILLed part-way and resumed, must end
# with the uninterrupted run's vectors, metrics and history. One thread per process, so float sums are identical.
set -euo pipefail
cd "$(dirname "$0")/.."
P=${PROMPTOPT:-.venv/bin/promptopt}
export OMP_NUM_THREADS=1
OUT=runs/kill_check
rm -rf "$OUT"; mkdir -p "$OUT"
ARGS=(run --method soft --task sst2 --max-train 64 --max-eval 64 --select-split holdout:64 --eval-split dev --seed 0
      --steps 16 --batch-size 8 --eval-every 4 --checkpoint-every 2 -o n_tokens=4 --no-progress)
"$P" "${ARGS[@]}" --output "$OUT/full" > "$OUT/full.log" 2>&1
"$P" "${ARGS[@]}" --output "$OUT/cut" > "$OUT/cut.log" 2>&1 &
pid=$!
until [ -f "$OUT/cut/history.jsonl" ] && [ "$(grep -c '"train_step"' "$OUT/cut/history.jsonl")" -ge 9 ]; do sleep 0.2; done
kill -9 "$pid"; wait "$pid" || true
echo "killed after $(grep -c '"train_step"' "$OUT/cut/history.jsonl") logged steps"
"$P" "${ARGS[@]}" --output "$OUT/cut" --resume > "$OUT/resume.log" 2>&1
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
out = Path(sys.argv[1])
a, b = (load_file(str(out / d / "prompt" / "vectors.safetensors")) for d in ("full", "cut"))
same_vectors = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
ma, mb = (json.loads((out / d / "metrics.json").read_text()) for d in ("full", "cut"))
def hist(d):
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in (out / d / "history.jsonl").read_text().splitlines()]
print(json.dumps({"same_vectors": same_vectors, "same_metrics": ma == mb, "same_history": hist("full") == hist("cut"),
                  "eval_accuracy": ma["eval"]["accuracy"], "history_records": len(hist("full"))}))
PY
