#!/bin/bash
# issue 19 measurement: soft prompt on SST-2 (selection on a holdout of train), manual template, then inspect.
cd "$(dirname "$0")/.."
P=.venv/bin/promptopt
T='Review: {sentence}\nSentiment:{answer}'
log() { echo "$(date -u +%H:%M:%S) $*" >> runs/measure.log; }
log start
$P run --method soft --task sst2 -t "$T" --max-train 256 --max-eval 100 --select-split holdout:100 --eval-split dev \
  --seed 0 --device cpu --no-progress --steps 40 --batch-size 8 --eval-every 40 --checkpoint-every 0 -o n_tokens=8 \
  --output runs/sst2-soft > runs/soft.out 2>&1
log "soft done rc=$?"
$P run --method manual --task sst2 -t "$T" --max-eval 100 --select-split holdout:100 --eval-split dev \
  --seed 0 --device cpu --no-progress --output runs/sst2-manual > runs/manual.out 2>&1
log "manual done rc=$?"
$P inspect runs/sst2-soft --device cpu --max-eval 50 --ablation mean --distill-train 16 --distill-candidates 4 \
  --eval-split dev > runs/inspect.out 2>&1
log "inspect done rc=$?"
