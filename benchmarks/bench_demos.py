"""Evaluation throughput with a block of in-context demonstrations: shared-prefix reuse versus none.

The same prompt (``--k`` demonstrations from the training split, rendered by the ``demos`` method, in front of the
template) is scored on the same examples, in the same process, alternating, by two scorers that differ only in
``share_prefix``; both must give the same class scores first (the check is reported):

* shared: ``Scorer(share_prefix=True)``, the engine computes the prefix common to a batch (the block) once per batch
  and runs every example on its keys/values;
* plain (the peer): ``Scorer(share_prefix=False)``, every example's whole sequence is computed.

    python benchmarks/bench_demos.py                  # default model, SST-2 dev if present (else tiny-reviews)
    python benchmarks/bench_demos.py --model DIR --task tiny-reviews --examples 32 --repeats 3

Besides wall time (which a loaded machine distorts), the positions the model computed on each side are counted by
the engine's compute counter. Both sides use the model's dtype (``--dtype``, reported). In float32 the scores must agree to 1e-3 with the same
predictions (else it stops); in bf16/fp16 the difference is reported (the prefix computed apart rounds differently).
Prints the ratio and writes a JSON record (``--output``).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from promptopt.data.files import write_json
from promptopt.data.prompt import Prompt
from promptopt.data.tasks import data_root
from promptopt.engine import Scorer, load_model
from promptopt.plugins import get_task
from promptopt_plugins.demos import Demonstrations, DemosConfig


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model id or path (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--task", default=None, help="task (default: sst2 if its data is present, else tiny-reviews)")
    ap.add_argument("--template", default=None, help="template (default: the task's first)")
    ap.add_argument("--k", type=int, default=4, help="demonstrations in the block (in all, balanced over the classes)")
    ap.add_argument("--split", default="dev", help="split whose examples are scored")
    ap.add_argument("--examples", type=int, default=64, help="examples scored")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions of each way (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", "--out", default="bench_demos.json", help="where the JSON record is written")
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bf16 on GPU, else fp32)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    task_name = args.task or ("sst2" if data_root() and (data_root() / "sst2" / "train.tsv").exists() else "tiny-reviews")
    task = get_task(task_name)
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    shared = Scorer(lm, task, batch_size=args.batch_size, share_prefix=True)
    plain = Scorer(lm, task, batch_size=args.batch_size, share_prefix=False)
    rng = random.Random(args.seed)
    template = args.template or task.templates[0]
    run = types.SimpleNamespace(scorer=shared, task=task, lm=lm, seed=args.seed, log=lambda record: None)
    pool = rng.sample(task.load_split("train"), min(512, len(task.load_split("train"))))
    demos = Demonstrations(run, Prompt.from_template(template), pool,
                           DemosConfig(k=args.k, per_class=False, choice="balanced"))  # fmt: skip
    prompt, used = demos.prompt(demos.draw(rng))
    examples = rng.sample(task.load_split(args.split), min(args.examples, len(task.load_split(args.split))))

    times = {"shared": [], "plain": []}
    positions = {}
    before = shared.compute.snapshot()
    a = shared.evaluate(prompt, examples)  # warm-up, and the agreement check
    positions["shared"], before = shared.compute.since(before).forward_positions, shared.compute.snapshot()
    b = plain.evaluate(prompt, examples)
    positions["plain"] = plain.compute.since(before).forward_positions
    diff = max(abs(x - y) for ra, rb in zip(a.predictions, b.predictions)
               for x, y in zip(ra["scores"].values(), rb["scores"].values()))  # fmt: skip
    same_predictions = [r["prediction"] for r in a.predictions] == [r["prediction"] for r in b.predictions]
    for _ in range(args.repeats):
        for label, scorer in (("shared", shared), ("plain", plain)):
            t0 = time.perf_counter()
            scorer.evaluate(prompt, examples)
            times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    per_second = {k: len(examples) / v for k, v in med.items()}
    ratio = per_second["shared"] / per_second["plain"]
    block_tokens = len(shared.encoder.tokens("\n\n".join(u["text"] for u in used)))
    record = {
        "benchmark": "evaluation with a demonstration block: shared-prefix reuse vs none",
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "model": lm.name, "model_kind": lm.kind.value, "dtype": str(lm.dtype), "task": task.name,
        "split": args.split, "examples": len(examples), "batch_size": args.batch_size, "demonstrations": len(used),
        "block_tokens": block_tokens, "template": prompt.template, "repeats": args.repeats,
        "peer": "Scorer(share_prefix=False), same model, dtype, batch size and batches",
        "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
        "seconds_median": med, "seconds_all": times, "examples_per_second": per_second,
        "ratio_shared_over_plain": ratio, "max_abs_score_difference": diff, "same_predictions": same_predictions,
        "forward_positions": positions, "positions_ratio_plain_over_shared": positions["plain"] / positions["shared"],
    }  # fmt: skip
    print(f"{lm.name} ({lm.kind.value}, {lm.dtype}), task {task.name}/{args.split}, {len(examples)} examples, "
          f"{len(used)} demonstrations ({block_tokens} tokens)")  # fmt: skip
    print(f"  scores agree: max |difference| {diff:.2e}, same predictions: {same_predictions}")
    print(f"  plain (no reuse): {per_second['plain']:.2f} examples/s ({med['plain']:.3f}s)")
    print(f"  shared prefix:    {per_second['shared']:.2f} examples/s ({med['shared']:.3f}s)")
    print(f"  ratio shared / plain: {ratio:.2f}x; positions the model computed: {positions['plain']} plain, "
          f"{positions['shared']} shared ({positions['plain'] / positions['shared']:.2f}x fewer)")
    if lm.dtype == torch.float32 and (diff > 1e-3 or not same_predictions):
        raise SystemExit(f"shared and plain scores disagree by {diff} (same predictions: {same_predictions})")
    if lm.dtype != torch.float32:  # bf16/fp16: the prefix computed apart rounds differently; check in float32
        print(f"  note: in {lm.dtype} the two ways differ by rounding; run --dtype float32 for the exact check")
    if args.output:
        write_json(Path(args.output), record)
        print(f"  written: {args.output}")
    return record


if __name__ == "__main__":
    main()
