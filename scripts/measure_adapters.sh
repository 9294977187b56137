#!/bin/bash
# issue 15 measurement: soft prompt, P-tuning, deep prefix, LoRA and fine-tuning with the embedded model
# (SmolLM2-135M-Instruct, the default dtype: bf16 where native, CPU) on SST-2 and RTE, each under the same compute
# budget (--budget-flops, the selection scoring included, a cap: BUDGET) and at most STEPS optimizer steps of batch 16
# (the same schedule for every method), trained on the full train split less the 200 held out for selection (the
# run's default when dev is reported; never dev), reported on the full dev split (the same examples for every method).
# Resumable: a finished run is skipped, an interrupted one resumed.
# Output: runs/adapters/TASK-METHOD/ (each run's result.json) and runs/adapters/summary.md (scripts/adapters_table.py).
cd "$(dirname "$0")/.."
P=.venv/bin/promptopt
OUT=${OUT:-runs/adapters}
BUDGET=${BUDGET:-2.5e13}
STEPS=${STEPS:-150}
mkdir -p $OUT
log() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/measure.log; }
COMMON="--eval-split dev --seed 0 --no-progress --steps $STEPS --batch-size 16 --eval-every 50 --checkpoint-every 50
  --budget-flops $BUDGET"
declare -A ARGS=(
  [soft]="--lr 3e-2 -o n_tokens=20"
  [ptuning]="--lr 3e-2 -o n_tokens=20"
  [prefix]="--lr 1e-2 -o n_tokens=20"
  [lora]="--lr 1e-3 -o rank=8"
  [finetune]="--lr 3e-5 --checkpoint-every 0"
)
log "start budget=$BUDGET"
for task in sst2 rte; do
  for method in soft ptuning prefix lora finetune; do
    dir=$OUT/$task-$method
    if [ -f $dir/result.json ]; then log "$task $method already done"; continue; fi
    resume=""; [ -f $dir/config.json ] && resume="--resume"
    log "$task $method start $resume"
    $P run --method $method --task $task $COMMON ${ARGS[$method]} $resume --output $dir > $dir.out 2>&1
    log "$task $method done rc=$?"
  done
done
.venv/bin/python scripts/adapters_table.py $OUT > $OUT/summary.md
log "table written rc=$?"
