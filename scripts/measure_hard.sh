#!/usr/bin/env bash
# Issue 14 measurement: hard prompts at their best with the embedded model (SmolLM2-135M-Instruct, CPU, bf16).
# SST-2 dev and RTE dev are reported (a fixed sample of --max-eval examples, the same for every method); prompts are
# chosen on a holdout of train (never on dev). Per task: best manual template, then on that template demos (k = 1, 2,
# 4 per class, random and similar), instruction search, token search (AutoPrompt rule, GCG, PEZ), and a soft prompt
# for the cost comparison. Resumable: a finished run (result.json) is skipped, an interrupted one resumed.
# Summary: .venv/bin/python scripts/measure_hard_table.py runs/hard > runs/hard/table.md
# To measure with another checkout's engine (e.g. one whose scorer shares any common token prefix), put its
# package first: PYTHONPATH=/path/to/tree scripts/measure_hard.sh (the run's config.json records the environment).
set -uo pipefail
cd "$(dirname "$0")/.."
P=${PROMPTOPT:-.venv/bin/promptopt}
OUT=${OUT:-runs/hard}
mkdir -p "$OUT"
log() { echo "$(date -u +%H:%M:%S) $*" >> "$OUT/measure.log"; }

# task, max-eval, holdout size
declare -A EVAL=([sst2]=100 [rte]=60)
declare -A HOLD=([sst2]=64 [rte]=48)

run() {  # run NAME TASK [promptopt run options...]
  local name=$1 task=$2
  shift 2
  local dir="$OUT/$task-$name"
  if [ -f "$dir/result.json" ]; then log "$task-$name: done before"; return; fi
  local resume=()
  [ -d "$dir" ] && resume=(--resume)
  log "$task-$name: start"
  "$P" run --task "$task" --max-train 512 --max-eval "${EVAL[$task]}" --select-split "holdout:${HOLD[$task]}" \
    --eval-split dev --seed 0 --dtype bfloat16 --no-progress --output "$dir" "${resume[@]}" "$@" \
    > "$dir.out" 2>&1
  log "$task-$name: rc=$?"
}

best_template() {  # the template the manual run chose (selection on the holdout)
  .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['template'])" "$OUT/$1-manual/prompt/prompt.json"
}

log start
# most informative first (the machine is shared and slow): SST-2 one of each kind, then the rest, then RTE
for task in sst2 rte; do
  run manual "$task" --method manual
  T=$(best_template "$task")
  SEARCH=(--steps 6 --batch-size 8 -o n_triggers=3 -o select_every=3)
  for k in 1 2; do
    run "demos-random-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=random -o candidates=1
  done
  run instruct "$task" --method instruct -t "$T" -o candidates=3 -o rounds=1 -o keep=1 -o per_round=2
  run demos-similar-k2 "$task" --method demos -t "$T" -o k=2 -o choice=similar -o order=nearest-last
  run gcg "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o candidates=8 -o rule=gcg -o swaps=16 -o confirm=1
  run pez "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o rule=pez -o confirm=0
  run demos-random-k4 "$task" --method demos -t "$T" -o k=4 -o choice=random -o candidates=1
  run autoprompt "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o candidates=8 -o rule=autoprompt -o confirm=0
  for k in 1 4; do
    run "demos-similar-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=similar -o order=nearest-last
  done
  run soft "$task" --method soft -t "$T" --steps 40 --batch-size 8 --eval-every 20 -o n_tokens=8
done
.venv/bin/python scripts/measure_hard_table.py runs/hard > runs/hard/table.md
# To measure with another checkout's engine (e.g. one whose scorer shares any common token prefix), put its
# package first: PYTHONPATH=/path/to/tree scripts/measure_hard.sh (the run's config.json records the environment).
set -uo pipefail
cd "$(dirname "$0")/.."
P=${PROMPTOPT:-.venv/bin/promptopt}
OUT=${OUT:-runs/hard}
mkdir -p "$OUT"
log() { echo "$(date -u +%H:%M:%S) $*" >> "$OUT/measure.log"; }

# task, max-eval, holdout size
declare -A EVAL=([sst2]=100 [rte]=60)
declare -A HOLD=([sst2]=64 [rte]=48)

run() {  # run NAME TASK [promptopt run options...]
  local name=$1 task=$2
  shift 2
  local dir="$OUT/$task-$name"
  if [ -f "$dir/result.json" ]; then log "$task-$name: done before"; return; fi
  local resume=()
  [ -d "$dir" ] && resume=(--resume)
  log "$task-$name: start"
  "$P" run --task "$task" --max-train 512 --max-eval "${EVAL[$task]}" --select-split "holdout:${HOLD[$task]}" \
    --eval-split dev --seed 0 --dtype bfloat16 --no-progress --output "$dir" "${resume[@]}" "$@" \
    > "$dir.out" 2>&1
  log "$task-$name: rc=$?"
}

best_template() {  # the template the manual run chose (selection on the holdout)
  .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['template'])" "$OUT/$1-manual/prompt/prompt.json"
}

log start
# most informative first (the machine is shared and slow): SST-2, demonstrations, then the searches, then RTE
for task in sst2 rte; do
  run manual "$task" --method manual
  T=$(best_template "$task")
  for k in 1 2 4; do
    run "demos-random-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=random -o candidates=1
  done
  run instruct "$task" --method instruct -t "$T" -o candidates=3 -o rounds=1 -o keep=1 -o per_round=2
  SEARCH=(--steps 6 --batch-size 8 -o n_triggers=3 -o select_every=3)
  run gcg "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o candidates=8 -o rule=gcg -o swaps=16 -o confirm=1
  run autoprompt "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o candidates=8 -o rule=autoprompt -o confirm=0
  run pez "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o rule=pez -o confirm=0
  for k in 1 2 4; do
    run "demos-similar-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=similar -o order=nearest-last
  done
  run soft "$task" --method soft -t "$T" --steps 40 --batch-size 8 --eval-every 20 -o n_tokens=8
done
.venv/bin/python scripts/measure_hard_table.py runs/hard > runs/hard/table.md
set -uo pipefail
cd "$(dirname "$0")/.."
P=${PROMPTOPT:-.venv/bin/promptopt}
OUT=${OUT:-runs/hard}
mkdir -p "$OUT"
log() { echo "$(date -u +%H:%M:%S) $*" >> "$OUT/measure.log"; }

# task, max-eval, holdout size
declare -A EVAL=([sst2]=100 [rte]=60)
declare -A HOLD=([sst2]=64 [rte]=48)

run() {  # run NAME TASK [promptopt run options...]
  local name=$1 task=$2
  shift 2
  local dir="$OUT/$task-$name"
  if [ -f "$dir/result.json" ]; then log "$task-$name: done before"; return; fi
  local resume=()
  [ -d "$dir" ] && resume=(--resume)
  log "$task-$name: start"
  "$P" run --task "$task" --max-train 512 --max-eval "${EVAL[$task]}" --select-split "holdout:${HOLD[$task]}" \
    --eval-split dev --seed 0 --dtype bfloat16 --no-progress --output "$dir" "${resume[@]}" "$@" \
    > "$dir.out" 2>&1
  log "$task-$name: rc=$?"
}

best_template() {  # the template the manual run chose (selection on the holdout)
  .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['template'])" "$OUT/$1-manual/prompt/prompt.json"
}

log start
for task in sst2 rte; do
  run manual "$task" --method manual
done
for task in sst2 rte; do
  T=$(best_template "$task")
  run instruct "$task" --method instruct -t "$T" -o candidates=4 -o rounds=1 -o keep=2 -o per_round=1
  SEARCH=(--steps 6 --batch-size 8 -o n_triggers=3 -o select_every=3)
  run autoprompt "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o candidates=8 -o rule=autoprompt -o confirm=0
  run gcg "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o candidates=8 -o rule=gcg -o swaps=16 -o confirm=1
  run pez "$task" --method autoprompt -t "$T" "${SEARCH[@]}" -o rule=pez -o confirm=0
done
for k in 1 2 4; do
  for task in sst2 rte; do
    T=$(best_template "$task")
    run "demos-random-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=random -o candidates=2
    run "demos-similar-k$k" "$task" --method demos -t "$T" -o k=$k -o choice=similar -o order=nearest-last
  done
done
for task in sst2 rte; do
  T=$(best_template "$task")
  run soft "$task" --method soft -t "$T" --steps 40 --batch-size 8 --eval-every 20 -o n_tokens=8
done
.venv/bin/python scripts/measure_hard_table.py "$OUT" > "$OUT/table.md" 2>> "$OUT/measure.log"
log end
