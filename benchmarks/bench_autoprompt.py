"""AutoPrompt candidate re-scoring: candidates scored per second, batched versus one candidate per forward pass.

Both ways score the same prompts (the current trigger prompt plus ``k`` one-token variants, as in one AutoPrompt
iteration) on the same examples, in the same process, alternating, and must agree on every loss:

* batched: ``Scorer.losses(prompts, examples)``, every (prompt, example) row in one forward pass (a causal LM runs
  each example's common prefix once and every candidate's remainder on its keys/values);
* one at a time: ``Scorer.loss(prompt, examples)`` per prompt, one forward pass each (the peer).

    python benchmarks/bench_autoprompt.py                  # default model, SST-2 if present (else tiny-reviews)
    python benchmarks/bench_autoprompt.py --model DIR --task tiny-reviews --candidates 20 --repeats 5

Prints the ratio and writes a JSON record (``--output``).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from promptopt.engine import Scorer, load_model
from promptopt.data.files import write_json
from promptopt.plugins import get_task
from promptopt.data.tasks import data_root
from promptopt_plugins.autoprompt import allowed_tokens, answer_exclusions, token_id, trigger_prompts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model id or path (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--task", default=None, help="task (default: sst2 if its data is present, else tiny-reviews)")
    ap.add_argument("--template", default=None, help="template (default: the task's first, with trigger slots)")
    ap.add_argument("--triggers", type=int, default=4, help="trigger slots inserted before {answer}")
    ap.add_argument("--candidates", type=int, default=10, help="k candidates per iteration (plus the current prompt)")
    ap.add_argument("--examples", type=int, default=16, help="examples every prompt is scored on")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions of each way (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", "--out", default="bench_autoprompt.json", help="where the JSON record is written")
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bf16 on GPU, else fp32)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    task_name = args.task or ("sst2" if data_root() and (data_root() / "sst2" / "train.tsv").exists() else "tiny-reviews")
    task = get_task(task_name)
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    scorer = Scorer(lm, task)
    templates = [args.template] if args.template else task.templates
    _, prompt = trigger_prompts(templates, args.triggers, token_id(lm.tokenizer, "the"))
    rng = random.Random(args.seed)
    examples = scorer.usable_examples(prompt, task.load_split("train"))
    examples = rng.sample(examples, min(args.examples, len(examples)))
    words, ids = answer_exclusions(scorer, prompt, examples)
    allowed = allowed_tokens(lm.tokenizer, lm.vocab_size, words, ids).nonzero().flatten().tolist()
    slots = [(s.name, i) for s in prompt.segments if s.kind.value == "tokens" for i in range(s.n)]
    name, pos = slots[rng.randrange(len(slots))]
    current = list(next(s for s in prompt.segments if s.name == name).ids)
    prompts = [prompt] + [prompt.with_tokens(name, current[:pos] + [t] + current[pos + 1 :])
                          for t in rng.sample(allowed, args.candidates)]  # fmt: skip

    def batched():
        return scorer.losses(prompts, examples)

    def one_at_a_time():
        return torch.stack([scorer.loss(p, examples) for p in prompts])

    times = {"batched": [], "one_at_a_time": []}
    with torch.inference_mode():
        a, b = batched(), one_at_a_time()  # warm-up, and the agreement check
        for _ in range(args.repeats):
            for label, fn in (("batched", batched), ("one_at_a_time", one_at_a_time)):
                t0 = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t0)
    diff = float((a - b).abs().max())
    med = {k: statistics.median(v) for k, v in times.items()}
    per_second = {k: len(prompts) / v for k, v in med.items()}
    ratio = per_second["batched"] / per_second["one_at_a_time"]
    record = {
        "benchmark": "autoprompt candidate re-scoring",
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "model": lm.name, "model_kind": lm.kind.value, "task": task.name, "template": prompt.text(),
        "prompts": len(prompts), "examples": len(examples), "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
        "seconds_median": med, "seconds_all": times,
        "candidates_per_second": per_second, "ratio_batched_over_one_at_a_time": ratio,
        "max_abs_loss_difference": diff,
    }  # fmt: skip
    print(f"{lm.name} ({lm.kind.value}), task {task.name}, {len(prompts)} prompts x {len(examples)} examples")
    print(f"  one candidate per forward: {per_second['one_at_a_time']:.2f} candidates/s ({med['one_at_a_time']:.3f}s)")
    print(f"  batched:                   {per_second['batched']:.2f} candidates/s ({med['batched']:.3f}s)")
    print(f"  ratio batched / one-at-a-time: {ratio:.2f}x   (max |loss difference| {diff:.2e})")
    if diff > 1e-3:
        raise SystemExit(f"batched and one-at-a-time losses disagree by {diff}")
    if args.output:
        write_json(Path(args.output), record)
        print(f"  written: {args.output}")
    return record


if __name__ == "__main__":
    main()
