"""The conformance matrix as a table (issue 12): runs tests/test_conformance.py and tests/test_seq2seq.py and prints,
per model family, which checks pass. A check is a test function parametrised by family; a cell is "pass", "FAIL" or
"-" (not run for that family).   .venv/bin/python scripts/conformance_matrix.py > runs/conformance.md"""

import re
import subprocess
import sys
from collections import defaultdict

CHECKS = {  # test function -> column title
    "test_class_scores_equal_transformers_on_the_jointly_tokenized_string": "scores = transformers (1e-5), left = right",
    "test_a_text_only_prompt_gives_the_tokens_of_the_filled_in_string": "text-only prompt = tokens of the string",
    "test_a_soft_prompt_trains_one_step_and_moves": "soft prompt trains one step",
    "test_a_trigger_search_runs_one_iteration": "trigger search, one iteration",
    "test_capabilities_are_detected": "capabilities detected",
}
out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                      "tests/test_conformance.py", "tests/test_seq2seq.py"], capture_output=True, text=True)
cells = defaultdict(dict)
seq2seq = {"pass": 0, "fail": 0}
for line in out.stdout.splitlines():
    m = re.match(r"(PASSED|FAILED|ERROR) tests/(test_\w+)\.py::(\w+)(?:\[([^\]]+)\])?", line)
    if not m:
        continue
    status, module, test, param = m.groups()
    ok = status == "PASSED"
    if module == "test_seq2seq":
        seq2seq["pass" if ok else "fail"] += 1
    elif test in CHECKS and param:
        family = param.rsplit("-", 2)[0] if test == "test_capabilities_are_detected" else param
        cells[family][test] = "pass" if ok and cells[family].get(test, "pass") == "pass" else "FAIL"
print("| family | " + " | ".join(CHECKS.values()) + " |")
print("|---|" + "---|" * len(CHECKS))
for family in sorted(cells):
    print(f"| {family} | " + " | ".join(cells[family].get(t, "-") for t in CHECKS) + " |")
print(f"\nEncoder-decoder (T5) suite, tests/test_seq2seq.py: {seq2seq['pass']} passed, {seq2seq['fail']} failed.")
print(out.stdout.strip().splitlines()[-1])
sys.exit(out.returncode)
