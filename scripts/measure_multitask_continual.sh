#!/bin/bash
# The measurements behind docs/multitask_continual.md (issue 6): continual learning (progressive, sequential),
# multi-task versus single-task, and transfer versus fresh initialisation, with the default model on SST-2 -> CR ->
# SUBJ. CPU budget: 10 vectors per task, 20 steps of 8 examples per task (60 for the multi-task run), at most 64
# training and 100 evaluation examples per task. Each command's wall time is appended to $OUT/times.txt.
set -u
OUT=${1:-runs/issue6}
TASKS=sst2,cr,subj
COMMON="--max-train 64 --max-eval 100 --batch-size 8 --no-progress"
mkdir -p "$OUT"
timed() { local name=$1; shift; local start; start=$(date +%s); "$@" > "$OUT/$name.log" 2>&1
          echo "$name rc=$? wall=$(( $(date +%s) - start ))s" >> "$OUT/times.txt"; }
for s in progressive sequential; do
  timed "cl-$s" nice -n 5 promptopt continual --strategy "$s" --tasks $TASKS $COMMON --steps 20 --no-select \
      -o n_tokens=10 --output "$OUT/cl-$s" --overwrite
done
timed multitask nice -n 5 promptopt multitask --tasks $TASKS $COMMON --steps 60 --no-select -o n_tokens=10 \
    --output "$OUT/mt" --overwrite
for t in ${TASKS//,/ }; do
  timed "single-$t" nice -n 5 promptopt run --method multitask --task "$t" $COMMON --steps 20 --eval-every 0 \
      -o n_tokens=10 --output "$OUT/single/$t" --overwrite
done
timed transfer nice -n 5 promptopt leaderboard --methods soft,transfer --tasks cr --seeds 1 --max-train 64 \
    --max-eval 100 --steps 20 --batch-size 8 --eval-every 0 -o soft.n_tokens=10 \
    -o transfer.source="$OUT/single/sst2/prompt" --no-inspect --output "$OUT/transfer-cr" \
    --title "cr: soft prompt started from the sst2 prompt (transfer) vs fresh init (soft)"
promptopt report "$OUT/cl-progressive" "$OUT/cl-sequential"
promptopt report "$OUT/mt" "$OUT/single"
cat "$OUT/times.txt"
