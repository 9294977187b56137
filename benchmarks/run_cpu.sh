#!/usr/bin/env bash
# The CPU benchmarks behind the README's performance table, one after the other (run alone: each ratio compares two
# sides run in the same command, but the absolute rates need a quiet machine). JSON under runs/bench/; a finished
# benchmark is not run again (delete its JSON to redo it).
#   bash benchmarks/run_cpu.sh            # all
#   bash benchmarks/run_cpu.sh eval       # only the lm-evaluation-harness comparisons
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=runs/bench
mkdir -p "$OUT"
only=${1:-all}
bench() {  # name, command...
    local name=$1; shift
    [ -s "$OUT/$name.json" ] && { echo "done already: $name"; return; }
    echo "== $name: $*"
    "$@" --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 || echo "FAILED: $name (see $OUT/$name.log)"
}
if [ "$only" = all ] || [ "$only" = eval ]; then
    bench lm_eval_sst2_float32 $PY benchmarks/bench_lm_eval.py --task sst2 --dtype float32
    bench lm_eval_sst2_bfloat16 $PY benchmarks/bench_lm_eval.py --task sst2 --dtype bfloat16 --defaults
    bench lm_eval_sst2_instruction_float32 $PY benchmarks/bench_lm_eval.py --task sst2 --prefix instruction --n 256 --dtype float32
    bench lm_eval_sst2_demos_bfloat16 $PY benchmarks/bench_lm_eval.py --task sst2 --prefix demos --n 256 --dtype bfloat16
fi
if [ "$only" = all ] || [ "$only" = train ]; then
    bench soft_step_float32 $PY benchmarks/bench_soft_step.py --repeats 3 --peft-last-logit --dtype float32
    bench soft_step_bfloat16 $PY benchmarks/bench_soft_step.py --repeats 3 --peft-last-logit --dtype bfloat16
fi
