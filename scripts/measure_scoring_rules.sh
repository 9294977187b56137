#!/usr/bin/env bash
# What each scoring rule does to manual and soft accuracy on SST-2 and RTE dev (issue 12), default model, defaults
# of the run (bf16 where native). manual picks its template on a train holdout under the rule; a soft prompt trained
# once per task (loglik) is re-scored under every rule with `promptopt eval`. Resumable: finished runs are reused.
#   bash scripts/measure_scoring_rules.sh [SOFT_STEPS]     (runs/scoring/*, table in runs/scoring/table.md)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PO=${PO:-.venv/bin/promptopt}
OUT=runs/scoring
STEPS=${1:-150}
mkdir -p "$OUT"
for task in sst2 rte; do
    for rule in loglik norm_token norm_char calibrated; do
        $PO run -m manual --task $task --eval-split dev --select-split holdout:200 --scoring $rule \
            --no-progress --reuse --output "$OUT/$task-manual-$rule" > "$OUT/$task-manual-$rule.log" 2>&1 \
            || echo "FAILED $task manual $rule"
    done
    $PO run -m soft --task $task --eval-split dev --select-split holdout:200 --steps "$STEPS" \
        --no-progress --reuse --output "$OUT/$task-soft" > "$OUT/$task-soft.log" 2>&1 || echo "FAILED $task soft"
    for rule in loglik norm_token norm_char calibrated; do
        [ -s "$OUT/$task-soft-$rule.json" ] || $PO eval --prompt "$OUT/$task-soft/prompt" --task $task \
            --split dev --scoring $rule > "$OUT/$task-soft-$rule.json" 2> "$OUT/$task-soft-$rule.log"
    done
done
$PY - "$OUT" > "$OUT/table.md" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rules = ["loglik", "norm_token", "norm_char", "calibrated"]
print("| task | method | " + " | ".join(rules) + " |\n|---|---|" + "---|" * len(rules))
for task in ("sst2", "rte"):
    row = []
    for r in rules:
        f = out / f"{task}-manual-{r}" / "result.json"
        row.append(f"{100 * json.loads(f.read_text())['metrics']['eval']['accuracy']:.1f}" if f.exists() else "-")
    print(f"| {task} | manual | " + " | ".join(row) + " |")
    row = []
    for r in rules:
        f = out / f"{task}-soft-{r}.json"
        try:
            row.append(f"{100 * json.loads(f.read_text())['accuracy']:.1f}")
        except (OSError, ValueError, KeyError):
            row.append("-")
    print(f"| {task} | soft | " + " | ".join(row) + " |")
PY
cat "$OUT/table.md"
