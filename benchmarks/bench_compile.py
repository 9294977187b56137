"""Does ``torch.compile`` pay for evaluation on this CPU? promptopt's scorer, eager against compiled, same examples.

The engine runs the model eagerly. This measures what compiling would buy on the short-template SST-2 workload of
``bench_lm_eval.py`` (the task's first template, rank classification over the label words, batch 64), each
variant in a fresh process so that one's compiled code cannot serve another:

* ``eager``: the model as loaded (what every run does);
* ``parts``: the elementwise-heavy modules compiled (each layer's MLP and its two norms, and the final norm;
  ``dynamic=True``), the attention and its key/value cache left eager: SiLU x up and the RMSNorm arithmetic fuse;
* ``layers``: each whole decoder layer compiled (``dynamic=True``; the key/value cache breaks the graph).

Each variant gets a fresh, empty compile cache (``TORCHINDUCTOR_CACHE_DIR``), so no earlier run's compiled code is
reused. For each: the seconds spent compiling (the first pass over the examples, timed from the scorer's
construction, whose checks run the model first, less eager's first pass), the examples
per second (the median of ``--repeats`` passes after it), and the largest difference of the class scores against ``eager`` (float32 on both
sides unless ``--dtype``); the variant is refused (not timed) if its predictions differ. JSON out.

    python benchmarks/bench_compile.py --n 256 --out runs/bench/compile_float32.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("eager", "parts", "layers")


def compile_variant(model: torch.nn.Module, variant: str) -> None:
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = 64  # every layer is its own module: room for all of them
    base = model.model
    for layer in base.layers:
        if variant == "layers":
            layer.compile(dynamic=True)
        elif variant == "parts":
            for part in (layer.mlp, layer.input_layernorm, layer.post_attention_layernorm):
                part.compile(dynamic=True)
    if variant == "parts":
        base.norm.compile(dynamic=True)


def one(args) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_lm_eval import model_folder, ours

    from promptopt.engine import load_model
    from promptopt.plugins import get_task

    torch.manual_seed(0)
    lm = load_model(model_folder(args.model), dtype=args.dtype)
    task = get_task(args.task)
    examples = task.load_split(args.split)[: args.n]
    template = task.templates[0]
    if args.variant != "eager":
        compile_variant(lm.model, args.variant)
    start = time.perf_counter()  # the scorer's checks run the model once it is built: compiling starts there
    ours(lm, task, template, examples, args.batch_size)
    first_s = time.perf_counter() - start
    timed = []
    for _ in range(args.repeats):  # the median of several passes: one pass varies by a tenth from run to run
        scores, seconds = ours(lm, task, template, examples, args.batch_size)
        timed.append(seconds)
    seconds = statistics.median(timed)
    return {"variant": args.variant, "first_pass_seconds": first_s, "seconds": seconds,
            "examples_per_s": len(examples) / seconds, "scores": scores.tolist()}  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes after the first (the median is reported)")
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # a child process: one variant
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(one(args)))
        return
    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("variant", "out") and v is not None]
        with tempfile.TemporaryDirectory() as cache:  # a fresh compile cache: its cost is counted, never reused
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": cache}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode:
            raise SystemExit(f"{variant} failed:\n{out.stderr[-2000:]}")
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{variant}: first pass {results[variant]['first_pass_seconds']:.1f} s, "
              f"{results[variant]['examples_per_s']:.2f} ex/s", flush=True)
    ref = torch.tensor(results["eager"]["scores"])
    eager_first = results["eager"]["first_pass_seconds"]
    report = {"benchmark": "torch.compile on the scorer", "task": args.task, "split": args.split, "n": args.n,
              "batch_size": args.batch_size, "dtype": args.dtype, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.platform(), "variants": {}}  # fmt: skip
    for variant, r in results.items():
        got = torch.tensor(r["scores"])
        same = bool((got.argmax(-1) == ref.argmax(-1)).all())
        report["variants"][variant] = {
            "examples_per_s": r["examples_per_s"] if same else None,
            "speedup_over_eager": results["eager"]["seconds"] / r["seconds"] if same else None,
            "compile_seconds": max(0.0, r["first_pass_seconds"] - eager_first),
            "max_abs_score_difference": float((got - ref).abs().max()), "same_predictions": same}  # fmt: skip
        v = report["variants"][variant]
        print(f"{variant}: speedup {v['speedup_over_eager']}, compile ~{v['compile_seconds']:.0f} s, "
              f"max difference {v['max_abs_score_difference']:.1e}, same predictions {same}")
    if args.out:
        from promptopt.data.files import write_json

        write_json(args.out, report)


if __name__ == "__main__":
    main()
