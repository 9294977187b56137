"""Evaluation throughput: promptopt's Scorer against a plain transformers loop, same model, data and batch size.

The peer is how a loglikelihood harness scores rank classification: one sequence per (example, label word),
context + word, batched and right-padded, full vocabulary logits at every position, log-softmax, sum over the word's
tokens. Both compute the same numbers (checked here); the script prints examples/second for each, the ratio, and
writes JSON.

    python benchmarks/bench_scoring.py --n 128 --batch-size 16 --out bench_scoring.json
    python benchmarks/bench_scoring.py --model tests-tiny-dir --task datasets/tiny_reviews/task.toml   # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def plain_loop(lm, texts, words, batch_size):
    tok = lm.tokenizer
    seqs = []
    for text in texts:
        ctx = tok(text, add_special_tokens=True)["input_ids"]
        for w in words:
            cont = tok(" " + w, add_special_tokens=False)["input_ids"]
            seqs.append((ctx, cont))
    out = []
    pad = tok.pad_token_id or 0
    with torch.inference_mode():
        for i in range(0, len(seqs), batch_size):
            chunk = seqs[i : i + batch_size]
            width = max(len(c) + len(w) for c, w in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, (c, w) in enumerate(chunk):
                ids[b, : len(c) + len(w)] = torch.tensor(c + w)
                mask[b, : len(c) + len(w)] = 1
            logp = torch.log_softmax(lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits.float(), -1)
            for b, (c, w) in enumerate(chunk):
                out.append(sum(float(logp[b, len(c) - 1 + k, t]) for k, t in enumerate(w)))
    return torch.tensor(out).view(len(texts), len(words))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from promptopt.engine import Scorer, load_model
    from promptopt.plugins import get_task
    from promptopt.data.prompt import Prompt

    lm = load_model(args.model, dtype=args.dtype)
    task = get_task(args.task)
    examples = task.load_split(args.split)[: args.n]
    template = task.templates[0]
    prompt = Prompt.from_template(template)
    field = task.inputs[0]
    context = template.split("{answer}")[0]
    texts = [context.replace("{" + field + "}", ex.inputs[field]) for ex in examples]
    words = [task.label_words[lab][0] for lab in task.labels]
    scorer = Scorer(lm, task, batch_size=args.batch_size)

    ours_t, peer_t = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            ours = torch.cat([scorer.class_scores(prompt, [examples[i] for i in idx]).cpu()
                              for idx in scorer.batches(prompt, examples)])  # fmt: skip
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        peer = plain_loop(lm, texts, words, args.batch_size)
        peer_t.append(time.perf_counter() - start)
    order = [i for idx in scorer.batches(prompt, examples) for i in idx]
    ours_in_order = torch.empty_like(ours)
    ours_in_order[torch.tensor(order)] = ours
    max_diff = float((ours_in_order - peer).abs().max())
    result = {
        "benchmark": "scoring",
        "peer": "plain transformers loop (one sequence per example x label word, full logits)",
        "model": lm.name, "device": str(lm.device), "dtype": str(lm.dtype), "task": task.name, "n": len(examples),
        "batch_size": args.batch_size, "repeats": args.repeats,
        "ours_examples_per_s": len(examples) / statistics.median(ours_t),
        "peer_examples_per_s": len(examples) / statistics.median(peer_t),
        "speedup": statistics.median(peer_t) / statistics.median(ours_t),
        "max_abs_score_difference": max_diff, "machine": platform.platform(), "threads": torch.get_num_threads(),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
