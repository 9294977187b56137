"""The benchmark scripts run end to end on a tiny model: their equality checks hold and they write their JSON.
(They are measured on the real model by benchmarks/run_cpu.sh; nothing here is timed.)"""

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO


def bench(script, *args, tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *map(str, args), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_soft_step_benchmark_checks_the_losses_and_reports_the_flop_bound(tiny_model_dirs, tmp_path):
    pytest.importorskip("peft")
    got = bench("bench_soft_step.py", "--model", tiny_model_dirs["causal"], "--repeats", "1", "--no-memory",
                "--peft-last-logit", "--batch-size", "4", "--length", "6", "--virtual", "3", "--dtype", "float32",
                "--peak-n", "256", tmp_path=tmp_path)  # fmt: skip
    bound = got["flop_bound"]
    flops = bound["step_flops"]
    # sharing the virtual tokens and reading only the answer position is less arithmetic than either PEFT use
    assert flops["promptopt"] < flops["promptopt-plain"] < flops["peft-last-logit"] * 1.01 < flops["peft"]
    assert all(0 < f for f in bound["fraction_of_peak"].values())
    assert set(got["first_loss"]) == {"promptopt", "promptopt-plain", "peft", "peft-last-logit"}


def test_soft_step_benchmark_on_task_batches_compares_peft_on_the_same_batches(tiny_model_dirs, tmp_path):
    pytest.importorskip("peft")
    got = bench("bench_soft_step.py", "--model", tiny_model_dirs["causal"], "--task", "tiny-reviews", "--steps", "2",
                "--batch-size", "4", "--virtual", "3", "--dtype", "float32", "--peft-last-logit", tmp_path=tmp_path)  # fmt: skip
    assert set(got["step_seconds"]) == {"promptopt", "peft", "peft-last-logit"}
    assert got["ratio_peft_last_logit_same_batches_over_promptopt"] > 0
    bound = got["flop_bound"]["ratio_bound_peft_over_promptopt"]  # PEFT repeats the vectors per row: more arithmetic
    assert bound["promptopt"] == 1.0 and 1.0 < bound["peft-last-logit"] <= bound["peft"] * 1.01
    # the README's training table renders from that JSON (scripts/perf_table.py), in the dtype it was measured in
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "soft_task_float32.json").write_text(json.dumps(got))
    table = subprocess.run([sys.executable, str(REPO / "scripts" / "perf_table.py"), str(tmp_path / "bench")],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    row = next(line for line in table.splitlines() if line.startswith("| real tiny-reviews training batches"))
    ratio = got["ratio_peft_over_promptopt"]
    assert "| float32 |" in row and f"**{ratio:.2f}x** ({bound['peft']:.2f}x)" in row


@pytest.mark.parametrize("task", [("tiny-reviews", "--prefix", "demos"), ("tiny-choice", "--scoring", "norm_char")])
def test_lm_eval_benchmark_first_checks_both_sides_give_the_same_loglikelihoods(tiny_model_dirs, tmp_path, task):
    if importlib.util.find_spec("lm_eval") is None:
        pytest.skip("lm_eval is not installed (pip install -e '.[bench]')")
    got = bench("bench_lm_eval.py", "--model", tiny_model_dirs["causal"], "--task", task[0], "--split", "dev",
                "--check-n", "8", "--batch-size", "4", "--peer-batch-sizes", "4", "--repeats", "1", *task[1:],
                tmp_path=tmp_path)  # fmt: skip
    assert got["float32_check"]["max_abs_loglik_difference"] < 1e-4
    assert got["predictions_differing"] == 0 and (got["prefix_tokens"] > 0) == (got["prefix"] == "demos")
