#!/usr/bin/env bash
# A small real suite for the protocol's report: SST-2 with the embedded model, three methods, two training-set
# sizes (8 and 32 examples per class: the data-efficiency plot), two seeds; selection on dev, the reported split is
# test (150 examples, the same for every method and seed). Resumable: run it again and finished runs with the same
# fingerprint are reused (a run made with other settings runs again).
# Then: .venv/bin/python scripts/render_report_png.py runs/protocol/all/report.html runs/protocol/report.png
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPTOPT=${PROMPTOPT:-.venv/bin/promptopt}
"$PROMPTOPT" leaderboard --methods manual,soft,autoprompt --tasks sst2 --seeds 2 --shots 8,32 \
  --select-split dev --eval-split test --max-eval 150 --dtype bfloat16 \
  --steps 30 --batch-size 8 --eval-every 10 -o soft.n_tokens=10 -o autoprompt.iterations=8 \
  --title "SST-2, SmolLM2-135M (bf16, CPU): protocol check" \
  --note "budget: soft 30 steps x 8 examples; AutoPrompt 8 iterations; manual scores the task's 4 templates" \
  --output runs/protocol/all --no-inspect
