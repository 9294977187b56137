#!/usr/bin/env bash
# The CPU benchmarks behind the README's performance section, one after the other (run alone: each ratio compares
# two sides run in the same command, but the absolute rates, and the time-to-accuracy run, need a quiet machine).
# JSON under runs/bench/ (override with OUT=...); a finished benchmark is not run again (delete its JSON to redo it).
#   bash benchmarks/run_cpu.sh            # all
#   bash benchmarks/run_cpu.sh eval       # only the lm-evaluation-harness comparisons
#   bash benchmarks/run_cpu.sh train      # only the training steps against PEFT
#   bash benchmarks/run_cpu.sh tta        # only the soft prompt's time to accuracy with the defaults
#   bash benchmarks/run_cpu.sh compile    # only what torch.compile would change in evaluation
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bench}
mkdir -p "$OUT"
only=${1:-all}
bench() {  # name, command...
    local name=$1; shift
    [ -s "$OUT/$name.json" ] && { echo "done already: $name"; return; }
    echo "== $(date -u +%H:%M:%S) $name: $*"
    "$@" --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 || echo "FAILED: $name (see $OUT/$name.log)"
}
want() { [ "$only" = all ] || [ "$only" = "$1" ]; }
# bf16 where the CPU has native bf16 matrix units (the default dtype there), else float32 (bf16 is emulated there,
# hundreds of times slower: never the default, so not what a user gets)
DT=$($PY -c "from promptopt.engine.model import native_bf16_cpu; print('bfloat16' if native_bf16_cpu() else 'float32')")
echo "dtype of the default-dtype rows: $DT"
if want eval; then  # ours at batch 32 and 64, lm-eval at 32 and 64: the fastest of each side is reported
    if [ "$DT" = bfloat16 ]; then
        bench lm_eval_sst2_float32 $PY benchmarks/bench_lm_eval.py --task sst2 --dtype float32 --batch-size 32,64 --check-n 0
    fi
    bench lm_eval_sst2_$DT $PY benchmarks/bench_lm_eval.py --task sst2 --dtype $DT --batch-size 32,64 --defaults \
        $([ "$DT" = float32 ] && echo --check-n 0)
    # the defaults a user gets (promptopt's dtype and evaluation batch size; lm_eval --model hf: auto, batch 1)
    bench lm_eval_sst2_defaults $PY benchmarks/bench_lm_eval.py --task sst2 --only-defaults --check-n 64
    bench lm_eval_sst2_instruction_$DT $PY benchmarks/bench_lm_eval.py --task sst2 --prefix instruction --n 256 --dtype $DT --batch-size 32,64
    bench lm_eval_sst2_demos_$DT $PY benchmarks/bench_lm_eval.py --task sst2 --prefix demos --n 256 --dtype $DT --batch-size 32,64
    bench lm_eval_choice_norm_char $PY benchmarks/bench_lm_eval.py --task tiny-choice --split test --scoring norm_char --check-n 0 --repeats 1
    bench demos_shared_$DT $PY benchmarks/bench_demos.py --task sst2 --examples 256 --repeats 2 --dtype $DT
fi
if want train; then  # a fixed shape (batch 16 x 48 + 20 vectors), then real SST-2 batches (PEFT as it is used)
    if [ "$DT" = bfloat16 ]; then
        bench soft_step_bfloat16 $PY benchmarks/bench_soft_step.py --repeats 3 --peft-last-logit --dtype bfloat16
    fi
    bench soft_step_float32 $PY benchmarks/bench_soft_step.py --repeats 3 --peft-last-logit --dtype float32
    bench soft_task_$DT $PY benchmarks/bench_soft_step.py --task sst2 --steps 24 --peft-last-logit --dtype $DT
fi
if want tta && [ ! -s "$OUT/tta_soft_sst2/result.json" ]; then  # the defaults a user gets, SST-2 dev reported
    echo "== $(date -u +%H:%M:%S) tta_soft_sst2"
    rm -rf "$OUT/tta_soft_sst2"
    /usr/bin/time -v .venv/bin/promptopt run -m soft --task sst2 --eval-split dev --no-progress \
        --output "$OUT/tta_soft_sst2" > "$OUT/tta_soft_sst2.log" 2>&1 || echo "FAILED: tta (see $OUT/tta_soft_sst2.log)"
fi
if want compile; then  # eager (what runs do) against compiled modules, fresh processes, same examples
    bench compile_$DT $PY benchmarks/bench_compile.py --n 256 --dtype $DT
fi
