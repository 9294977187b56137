#!/bin/bash
# issue 15 measurement: soft prompt, P-tuning, deep prefix, LoRA and fine-tuning with the embedded model
# (SmolLM2-135M-Instruct, float32, CPU) on SST-2 and RTE, each under the same compute budget (--budget-flops, the
# selection scoring included), trained on 64 training examples, prompts/adapters chosen on 32 examples held out of
# train (never on dev), reported on a seeded sample of 48 dev examples (--max-eval; the same for every method: the
# shared 2-core machine ran at ~5 GFLOP/s when this was written, too slow for the full dev splits within the hour). Resumable: a finished run is skipped, an interrupted one resumed.
# Output: runs/adapters/TASK-METHOD/ (each run's result.json) and runs/adapters/summary.md (scripts/adapters_table.py).
cd "$(dirname "$0")/.."
P=.venv/bin/promptopt
OUT=runs/adapters
BUDGET=${BUDGET:-5e11}
mkdir -p $OUT
log() { echo "$(date -u +%H:%M:%S) $*" >> $OUT/measure.log; }
COMMON="--max-train 64 --max-eval ${MAX_EVAL:-48} --select-split holdout:32 --eval-split dev --seed 0 --device cpu --dtype float32 --no-progress
  --steps 400 --batch-size 8 --eval-every 4 --checkpoint-every 4 --budget-flops $BUDGET"
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
    nice -n 10 $P run --method $method --task $task $COMMON ${ARGS[$method]} $resume --output $dir > $dir.out 2>&1
    log "$task $method done rc=$?"
  done
done
.venv/bin/python scripts/adapters_table.py $OUT > $OUT/summary.md
log "table written rc=$?"
