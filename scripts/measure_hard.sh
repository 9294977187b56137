#!/usr/bin/env bash
# Issue 14 measurement: hard prompts at their best with the embedded model (SmolLM2-135M-Instruct, CPU, the default
# dtype: bf16 where native). Reported: the full SST-2 dev (872) and RTE dev (277) splits, the same examples for every
# method; prompts are chosen on a holdout of 200 training examples (the run's default when dev is reported), never
# on dev. Per task: the best manual template (chosen on the holdout), then on that template demonstrations (k = 1, 2,
# 4 per class, random and similar), instruction search, token search (AutoPrompt rule, GCG, PEZ), each with its
# documented defaults apart from the search length below. The soft prompt beside them for cost is the default run of
# scripts/measure_scoring_rules.sh (runs/scoring/TASK-soft). Resumable: a finished run (result.json) is skipped,
# an interrupted one resumed.   Table: .venv/bin/python scripts/measure_hard_table.py runs/hard > runs/hard/table.md
set -uo pipefail
cd "$(dirname "$0")/.."
P=${PROMPTOPT:-.venv/bin/promptopt}
OUT=${OUT:-runs/hard}
STEPS=${STEPS:-20}
mkdir -p "$OUT"
log() { echo "$(date -u +%H:%M:%S) $*" >> "$OUT/measure.log"; }

run() {  # run NAME TASK [promptopt run options...]   (SEED=N in the environment: another seed, NAME-sN)
  local name=$1 task=$2 seed=${SEED:-0}
  [ "$seed" != 0 ] && name="$name-s$seed"
  shift 2
  local dir="$OUT/$task-$name"
  if [ -f "$dir/result.json" ]; then log "$task-$name: done before"; return; fi
  local resume=()
  [ -d "$dir" ] && resume=(--resume)
  log "$task-$name: start"
  "$P" run --task "$task" --eval-split dev --seed "$seed" --no-progress --output "$dir" "${resume[@]}" "$@" > "$dir.out" 2>&1
  log "$task-$name: rc=$?"
}

best_template() {  # the template the manual run chose (selection on the holdout)
  .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['template'])" "$OUT/$1-manual/prompt/prompt.json"
}

log start
for task in sst2 rte; do
  run manual "$task" --method manual
  T=$(best_template "$task")
  for k in 1 2 4; do
    run "demos-random-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=random
    run "demos-similar-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=similar -o order=nearest-last
  done
  run instruct "$task" --method instruct -t "$T"
  SEARCH=(--steps "$STEPS" -o select_every=5)
  run autoprompt "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o rule=autoprompt
  run gcg "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o rule=gcg
  run pez "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o rule=pez
done
# A demonstration draw is one sample: the random draws again with seeds 1 and 2 (selection on the same holdout), so
# the table can give their mean with a t-interval over the three draws.
for task in sst2 rte; do
  T=$(best_template "$task")
  for seed in 1 2; do
    for k in 1 2 4; do
      SEED=$seed run "demos-random-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=random
    done
  done
done
.venv/bin/python scripts/measure_hard_table.py "$OUT" > "$OUT/table.md" 2>> "$OUT/measure.log"
log end
