"""The README's performance tables, rendered from the JSON that ``benchmarks/run_cpu.sh`` writes (default
``runs/bench``), so that no figure is copied by hand. Missing benchmarks are left out.

    python scripts/perf_table.py runs/bench > runs/bench/tables.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


DTYPES = ("bfloat16", "float32")


def load(root: Path, name: str) -> dict | None:
    path = root / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def evaluation(root: Path) -> list[str]:
    rows = [("short template, SST-2 dev", "lm_eval_sst2_float32"),
            ("short template, SST-2 dev: the same benchmark, another run (same code and machine, the same hour)",
             "lm_eval_sst2_float32_again"),
            ("short template, SST-2 dev", "lm_eval_sst2_bfloat16")]  # fmt: skip
    for dtype in DTYPES:  # a block in front: in the default dtype of the machine measured (run_cpu.sh's choice)
        rows += [("~200-token instruction in front", f"lm_eval_sst2_instruction_{dtype}"),
                 ("4 demonstrations in front", f"lm_eval_sst2_demos_{dtype}")]  # fmt: skip
    out = ["| workload | n | dtype | promptopt ex/s (batch) | lm-eval ex/s (batch) | ratio | FLOP bound | agreement |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, name in rows:
        r = load(root, name)
        if r is None:
            continue
        fb = r.get("flop_bound") or {}
        block = f" ({r['prefix_tokens']} tokens)" if r.get("prefix_tokens") else ""
        agree = (f"accuracy {100 * r['ours_accuracy']:.2f} vs {100 * r['peer_accuracy']:.2f}, "
                 f"{r['predictions_differing']} predictions differ; float32 check "
                 f"{r['float32_check']['max_abs_loglik_difference']:.1e} on {r['float32_check']['examples']}")  # fmt: skip
        out.append(f"| {label}{block} | {r['n']} | {r['dtype']} | {r['ours_examples_per_s']:.1f} ({r['batch_size']}) | "
                   f"{r['peer_examples_per_s']:.1f} ({r['peer_batch_size']}) | **{r['ratio']:.2f}x** | "
                   f"{fb.get('ratio_bound', float('nan')):.2f}x | {agree} |")
    names = ["lm_eval_sst2_defaults"] + [f"lm_eval_sst2_{dtype}" for dtype in DTYPES]  # a defaults-only run first
    with_defaults = [r for r in map(lambda n: load(root, n), names) if r and r.get("defaults")]
    if with_defaults:
        d = with_defaults[0]["defaults"]
        out.append(f"| defaults a user gets, short template, SST-2 dev | {with_defaults[0]['n']} | "
                   f"ours {d['ours']['dtype']}, lm-eval {d['peer']['dtype']} | {d['ours']['examples_per_s']:.1f} "
                   f"({d['ours']['batch_size']}) | {d['peer']['examples_per_s']:.1f} ({d['peer']['batch_size']}) | "
                   f"**{d['ratio']:.2f}x** | | |")  # fmt: skip
    for r in filter(None, (load(root, f"demos_shared_{dtype}") for dtype in DTYPES)):
        out += ["", "| workload | n | dtype | shared prefix ex/s | same prompt, no reuse ex/s | ratio | positions computed | agreement |",
                "|---|---|---|---|---|---|---|---|",
                f"| {r['demonstrations']} demonstrations ({r['block_tokens']} tokens), SST-2 dev | {r['examples']} | "
                f"{r['dtype'].replace('torch.', '')} | {r['examples_per_second']['shared']:.1f} | "
                f"{r['examples_per_second']['plain']:.1f} | **{r['ratio_shared_over_plain']:.2f}x** | "
                f"{r['forward_positions']['shared']:,} vs {r['forward_positions']['plain']:,} | max difference "
                f"{r['max_abs_score_difference']:.1e}, same predictions: {r['same_predictions']} |"]  # fmt: skip
    return out


def _fastest_peer(runs: list[dict], variant: str, seconds_key: str) -> tuple[float, float, float, str]:
    """PEFT's fastest ``variant`` over the runs (each timed PEFT with one attention implementation): its seconds,
    ours in the same run, their ratio (within that run, both sides under the same load) and the attention."""
    best = min(runs, key=lambda r: r[seconds_key][variant])
    peer, ours = best[seconds_key][variant], best[seconds_key]["promptopt"]
    return peer, ours, peer / ours, best.get("peer_attention", "sdpa").replace("auto", "eager")


def _peer_cells(runs: list[dict], seconds_key: str, bounds: dict | None = None) -> str:
    """The row cells from ours to PEFT default's ratio: ours, then each PEFT variant at its fastest with the ratio
    (and its FLOP bound, when ``bounds`` are given)."""
    cells, ours = [], []
    for variant in ("peft-last-logit", "peft"):
        peer, own, ratio, attention = _fastest_peer(runs, variant, seconds_key)
        ours.append(own)
        bound = f" ({bounds[variant]:.2f}x)" if bounds else ""
        cells.append(f"{peer:.2f} ({attention}) | **{ratio:.2f}x**{bound}")
    mine = f"{ours[0]:.2f}" if ours[0] == ours[1] else f"{ours[0]:.2f} / {ours[1]:.2f}"
    return " | ".join([mine, *cells])


def training(root: Path) -> list[str]:
    out = ["| shape | dtype | promptopt s/step | PEFT `logits_to_keep=1` s/step (attention) | ratio (FLOP bound) | PEFT default s/step (attention) | ratio (FLOP bound) | promptopt % of matmul peak |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for dtype in ("bfloat16", "float32"):
        runs = [r for r in (load(root, f"soft_step_{dtype}"), load(root, f"soft_step_{dtype}_peer_sdpa")) if r]
        if not runs:
            continue
        r, fb = runs[0], runs[0]["flop_bound"]
        out.append(f"| batch {r['batch_size']} x {r['input_tokens']} + {r['virtual_tokens']} vectors | {dtype} | "
                   f"{_peer_cells(runs, 'median_seconds', fb['ratio_bound_peft_over_promptopt'])} | "
                   f"{100 * fb['fraction_of_peak']['promptopt']:.0f}% of {fb['matmul_peak_flops'] / 1e9:.0f} GFLOP/s |")  # fmt: skip
    for dtype in DTYPES:
        runs = [r for r in (load(root, f"soft_task_{dtype}"), load(root, f"soft_task_{dtype}_peer_sdpa")) if r]
        if not runs:
            continue
        pos = runs[0]["padded_positions"]
        out.append(f"| real {runs[0].get('task', 'sst2')} training batches ({runs[0]['steps']} steps of {runs[0]['batch_size']}; PEFT default as used: "
                   f"shuffled, padded to the longest, {pos['peft']:,} positions against our {pos['promptopt']:,}; "
                   f"`logits_to_keep` on our length-grouped batches) | {dtype} | "
                   f"{_peer_cells(runs, 'seconds_per_step', (runs[0].get('flop_bound') or {}).get('ratio_bound_peft_over_promptopt'))} | |")  # fmt: skip
    return out


def time_to_accuracy(root: Path) -> list[str]:
    run = root / "tta_soft_sst2"
    if not (run / "result.json").exists():
        return []
    r = json.loads((run / "result.json").read_text())
    log = (root / "tta_soft_sst2.log").read_text()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log)
    steps = (r.get("config") or {}).get("train", {}).get("steps")
    ev = r["metrics"]["eval"]
    dtype = (r.get("config") or {}).get("dtype") or ((r.get("meta") or {}).get("scored_with") or {}).get("dtype") or "the default"
    return [f"`promptopt run -m soft --task sst2 --eval-split dev` (the defaults: {steps} steps, dtype {dtype}): "
            f"**{100 * ev['accuracy']:.2f}%** on the {ev['n']} "
            f"dev examples (selection {100 * (r.get('select_metrics') or {}).get('accuracy', float('nan')):.1f}% on "
            f"the train holdout), wall time **{wall.group(1) if wall else '?'}** for the whole command "
            f"(optimise {r['train_seconds']:.0f} s, evaluate {r['eval_seconds']:.0f} s)."]  # fmt: skip


def main(root: str) -> None:
    root = Path(root)
    for title, lines in (("Evaluation", evaluation(root)), ("Training step", training(root)),
                         ("Time to accuracy", time_to_accuracy(root))):  # fmt: skip
        if lines:
            print(f"**{title}**\n")
            print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bench")
