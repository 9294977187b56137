"""Evaluation throughput against lm-evaluation-harness itself, in the same command, on the same weights and data.

Both sides score rank classification as ``loglikelihood`` requests: for every example, the filled-in context in
front of ``{answer}`` and one continuation per label word (``" negative"``, ``" positive"`` for SST-2). The peer is
lm-evaluation-harness's ``HFLM`` (the class behind ``lm_eval --model hf``) on the same Hugging Face folder (for the
default model, the cached float32 copy promptopt made from the GGUF file), at the same dtype, fed the requests that
its own tasks build; ours is promptopt's ``Scorer`` with the task's template. A multiple-choice task (e.g.
``tiny-choice``) gives each example's choices as its continuations; ``--scoring norm_char`` divides each on both
sides by its length in characters (lm-eval's ``acc_norm``).

First both sides must compute the same numbers: per-request log-likelihoods are compared in float32 on
``--check-n`` examples (to 1e-4; the script stops if they differ). Then each side is timed over the same ``--n``
examples at ``--dtype``, the peer at each of ``--peer-batch-sizes``, ours at each of ``--batch-size`` (the
fastest of each side is reported); predictions are compared. The FLOPs of both sides are estimated alike (the
engine's count for ours; for the peer, its padded inputs with logits at every position) and their ratio, the most
the arithmetic allows, is reported beside the measured one. ``--defaults`` also times what each side does when a user gives no
option: promptopt's default dtype (bf16 on a CPU with native bf16) and batch size, and ``lm_eval --model hf``'s
(``dtype=auto``, batch size 1).

``--prefix`` puts the same block in front of every example on both sides: ``instruction`` (a ~200-token task
description) or ``demos`` (4 labelled training examples, 2 per class, seeded, rendered with the template).

    python benchmarks/bench_lm_eval.py --task sst2 --dtype float32 --out runs/bench/lm_eval_f32.json
    python benchmarks/bench_lm_eval.py --task sst2 --dtype bfloat16 --defaults --out runs/bench/lm_eval_bf16.json
    python benchmarks/bench_lm_eval.py --task sst2 --prefix demos --n 256 --out runs/bench/lm_eval_demos.json
    python benchmarks/bench_lm_eval.py --task tiny-choice --split test --scoring norm_char --check-n 0

Needs the ``bench`` extra (``pip install -e '.[bench]'``: lm_eval).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time

import torch

INSTRUCTION = (
    "You will read a short passage taken from a review of a film, written by a critic or by an ordinary viewer. "
    "The passage may be a whole sentence or only a fragment of one, and it may be sarcastic, understated or mixed. "
    "Decide whether the writer's opinion of the film, as expressed in this passage alone, is favourable or "
    "unfavourable. Answer with a single word: positive when the passage praises the film, its acting, its story, "
    "its direction or the experience of watching it, and negative when the passage criticises any of these or "
    "expresses boredom, disappointment or irritation. Do not explain your answer, do not repeat the passage, and do "
    "not hedge; if the passage is neutral in tone, choose the word that fits its overall leaning. Consider the whole "
    "passage before answering, since a single word of praise can be undone by what follows it.\n\n"
)


def model_folder(name: str | None) -> str:
    from promptopt.engine.model import default_model_dir

    return str(default_model_dir()) if name is None else name


def build(task, template: str, examples, prefix_block: str):
    """``(contexts, continuations)``: the loglikelihood requests of every example (one list of continuations per
    example: the label words in task order, or a multiple-choice example's choices)."""
    context_template = template.split("{answer}")[0]
    before = context_template.rstrip(" ")
    space = "" if before.endswith(("\n", "\t")) else " "  # the space before the answer belongs to the answer
    words = [task.label_words[lab][0] for lab in task.labels] if task.kind.value == "classification" else None
    contexts, continuations = [], []
    for ex in examples:
        text = context_template
        for field, value in ex.inputs.items():
            text = text.replace("{" + field + "}", value)
        contexts.append(prefix_block + text.rstrip(" "))
        continuations.append([space + w for w in (words or ex.choices)])
    return contexts, continuations


def demo_block(task, template: str, seed: int = 0) -> str:
    """4 training examples, 2 per class, seeded, rendered with the template (label word after the answer slot)."""
    rng = random.Random(seed)
    train = task.load_split("train")
    chosen = []
    for lab in task.labels:
        pool = [ex for ex in train if ex.label == lab]
        chosen += rng.sample(pool, 2)
    rng.shuffle(chosen)
    head, tail = template.split("{answer}")
    parts = []
    for ex in chosen:
        text = head
        for field, value in ex.inputs.items():
            text = text.replace("{" + field + "}", value)
        parts.append(text.rstrip(" ") + " " + task.label_words[ex.label][0] + tail)
    return "\n\n".join(parts) + "\n\n"


def ours(lm, task, template, examples, batch_size, scoring=None, spent=None):
    """Class (or choice) scores ``(N, C)`` in example order, and seconds; the FLOPs the engine counted go into the
    dict ``spent`` (``flops``) when one is given."""
    from promptopt.data.prompt import Prompt
    from promptopt.engine import Scorer

    prompt = Prompt.from_template(template)
    scorer = Scorer(lm, task, batch_size=batch_size, scoring=scoring)
    before = scorer.compute.snapshot()
    start = time.perf_counter()
    out = None
    with torch.inference_mode():
        for idx in scorer.batches(prompt, examples):
            got = scorer.scores(prompt, [examples[i] for i in idx]).float().cpu()
            out = torch.empty(len(examples), got.shape[1]) if out is None else out
            out[torch.tensor(idx)] = got
    seconds = time.perf_counter() - start
    if spent is not None:
        spent.update(scorer.compute.since(before).to_json())
    return out, seconds


def peer_flops(lm, contexts, continuations, batch_size) -> float:
    """The arithmetic of lm-eval's requests, estimated as promptopt's counter does (2 FLOPs per body weight per
    position, the same for the head, padding included since it is computed): one forward per distinct input (the
    context and the continuation but its last token; requests that share it run once), longest first in batches of
    ``batch_size`` padded to their longest, logits at every position."""
    from promptopt.engine.compute import compute_counter

    counter = compute_counter(lm)
    tok = lm.tokenizer
    inputs = set()
    for ctx, conts in zip(contexts, continuations):
        ids = tok(ctx, add_special_tokens=False)["input_ids"]
        for cont in conts:
            inputs.add(tuple(ids + tok(cont, add_special_tokens=False)["input_ids"][:-1]))
    lengths = sorted(map(len, inputs), reverse=True)
    positions = sum(len(lengths[i : i + batch_size]) * lengths[i] for i in range(0, len(lengths), batch_size))
    return 2.0 * (counter.body_parameters + counter.head_parameters) * positions


def peer(hflm, contexts, continuations, scoring=None):
    """lm-eval's log-likelihoods ``(N, C)``, and seconds; with ``norm_char`` divided by the continuation's length
    in characters, as its ``acc_norm`` does."""
    from lm_eval.api.instance import Instance

    requests = [Instance("loglikelihood", {}, (ctx, cont), len(conts) * i + j)
                for i, (ctx, conts) in enumerate(zip(contexts, continuations)) for j, cont in enumerate(conts)]  # fmt: skip
    start = time.perf_counter()
    got = hflm.loglikelihood(requests, disable_tqdm=True)
    seconds = time.perf_counter() - start
    out = torch.tensor([g[0] for g in got]).view(len(contexts), -1)
    if scoring == "norm_char":
        out = out / torch.tensor([[len(c) for c in conts] for conts in continuations], dtype=out.dtype)
    return out, seconds


def gold(task, ex) -> int:
    return int(ex.label) if task.kind.value == "multiple_choice" else task.labels.index(ex.label)


def prompt_template(task, prefix_block: str) -> str:
    """The task's first template with the block in front, as a promptopt template (literal text escaped)."""
    template = task.templates[0]
    return prefix_block.replace("{", "{{").replace("}", "}}") + template


def defaults(args, folder, task, template, examples, contexts, continuations, hf) -> dict:
    """What a user gets without options: promptopt's default dtype and evaluation batch size against
    ``lm_eval --model hf``'s (``dtype=auto``, batch size 1), each timed once after a warm-up."""
    from promptopt.engine import load_model
    from promptopt.pipeline.runner import RunOptions

    lm, default_bs = load_model(folder), RunOptions.batch_size
    ours(lm, task, template, examples[:default_bs], default_bs, args.scoring)
    _, ours_default_s = ours(lm, task, template, examples, default_bs, args.scoring)
    model = hf("auto", 1)
    peer(model, contexts[:4], continuations[:4])
    _, peer_default_s = peer(model, contexts, continuations)
    return {
        "ours": {"dtype": str(lm.dtype).replace("torch.", ""), "batch_size": default_bs,
                 "examples_per_s": len(examples) / ours_default_s},
        "peer": {"dtype": "auto (" + str(model.model.dtype).replace("torch.", "") + ")", "batch_size": 1,
                 "examples_per_s": len(examples) / peer_default_s},
        "ratio": peer_default_s / ours_default_s,
    }  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a Hugging Face folder (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=None, help="examples timed (default: the whole split)")
    ap.add_argument("--check-n", type=int, default=64, help="examples checked equal in float32 first (0: all)")
    ap.add_argument("--scoring", default=None, help="loglik (default) or norm_char (lm-eval's acc_norm) on both sides")
    ap.add_argument("--batch-size", default="32", help="ours: one size, or several (comma-separated) of which the fastest is reported, as for the peer")
    ap.add_argument("--peer-batch-sizes", default="32,64")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prefix", choices=["none", "instruction", "demos"], default="none")
    ap.add_argument("--defaults", action="store_true", help="also time both sides' defaults")
    ap.add_argument("--only-defaults", action="store_true",
                    help="check the numbers, then time only both sides' defaults (no equal-dtype timing)")
    ap.add_argument("--repeats", type=int, default=2, help="timings of each side, alternating")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from lm_eval.models.huggingface import HFLM

    from promptopt.engine import load_model
    from promptopt.plugins import get_task

    task = get_task(args.task)
    examples = task.load_split(args.split)
    examples = examples[: args.n] if args.n else examples
    folder = model_folder(args.model)
    block = {"none": "", "instruction": INSTRUCTION, "demos": None}[args.prefix]
    if block is None:
        block = demo_block(task, task.templates[0])
    template = prompt_template(task, block)
    contexts, continuations = build(task, task.templates[0], examples, block)

    def hf(dtype, batch_size):
        return HFLM(pretrained=folder, device="cpu" if not torch.cuda.is_available() else "cuda", dtype=dtype,
                    batch_size=batch_size)  # fmt: skip

    # 1. the same numbers, in float32
    n_check = min(args.check_n or len(examples), len(examples))
    lm32 = load_model(folder, dtype="float32")
    sizes = [int(x) for x in str(args.batch_size).split(",")]
    a, _ = ours(lm32, task, template, examples[:n_check], sizes[0], args.scoring)
    b, _ = peer(hf("float32", sizes[0]), contexts[:n_check], continuations[:n_check], args.scoring)
    check = float((a - b).abs().max())
    golds = torch.tensor([gold(task, ex) for ex in examples])
    check_acc = {"ours": float((a.argmax(-1) == golds[:n_check]).float().mean()),
                 "peer": float((b.argmax(-1) == golds[:n_check]).float().mean())}  # fmt: skip
    print(f"check: {n_check} examples, {a.numel()} requests, max |ours - lm_eval| = {check:.2e}, accuracy {check_acc}",
          flush=True)  # fmt: skip
    if check > 1e-4:
        raise SystemExit(f"the two sides do not compute the same log-likelihoods (max difference {check:.3g})")
    del lm32

    if args.only_defaults:
        result = {"benchmark": "evaluation vs lm-evaluation-harness, the defaults of each side",
                  "peer": "lm_eval HFLM.loglikelihood (lm_eval --model hf)", "lm_eval_version": __import__("lm_eval").__version__,
                  "model": folder, "task": task.name, "split": args.split, "n": len(examples), "prefix": args.prefix,
                  "float32_check": {"examples": n_check, "max_abs_loglik_difference": check, "accuracy": check_acc},
                  "machine": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__}  # fmt: skip
        result["defaults"] = defaults(args, folder, task, template, examples, contexts, continuations, hf)
        print(json.dumps(result, indent=2))
        if args.out:
            from promptopt.data.files import write_json

            write_json(args.out, result)
        return

    # 2. throughput at the requested dtype: the sides alternate, --repeats times, the median of each is reported
    lm = load_model(folder, dtype=args.dtype)
    for bs in sizes:
        ours(lm, task, template, examples[:bs], bs, args.scoring)  # warm-up
    models = {int(x): hf(args.dtype, int(x)) for x in args.peer_batch_sizes.split(",")}
    for bs, model in models.items():
        peer(model, contexts[:bs], continuations[:bs])  # warm-up
    ours_by, peer_times = {bs: [] for bs in sizes}, {bs: [] for bs in models}
    spent_by, scores_by = {}, {}
    for r in range(args.repeats):
        sides = [("ours", bs) for bs in sizes] + [("lm_eval", bs) for bs in models]
        for side, bs in sides if r % 2 == 0 else sides[::-1]:
            if side == "ours":
                spent_by[bs] = {}
                scores_by[bs], seconds = ours(lm, task, template, examples, bs, args.scoring, spent_by[bs])
                ours_by[bs].append(seconds)
            else:
                got, seconds = peer(models[bs], contexts, continuations, args.scoring)
                peer_times[bs].append(seconds)
                if bs == min(models):
                    peer_scores = got
            print(f"repeat {r + 1}: {side} batch {bs} {len(examples) / seconds:.2f} ex/s", flush=True)
    del models
    ours_median = {bs: statistics.median(t) for bs, t in ours_by.items()}
    ours_bs = min(ours_median, key=ours_median.get)
    ours_s, ours_times, scores, spent = ours_median[ours_bs], ours_by[ours_bs], scores_by[ours_bs], spent_by[ours_bs]
    peers = {bs: statistics.median(t) for bs, t in peer_times.items()}
    best_bs = min(peers, key=peers.get)
    peer_s = peers[best_bs]
    ours_pred, peer_pred = scores.argmax(-1), peer_scores.argmax(-1)
    result = {
        "benchmark": "evaluation vs lm-evaluation-harness", "peer": "lm_eval HFLM.loglikelihood (lm_eval --model hf)",
        "lm_eval_version": __import__("lm_eval").__version__, "model": folder, "task": task.name, "split": args.split,
        "n": len(examples), "prefix": args.prefix, "prefix_tokens": len(lm.tokenizer(block)["input_ids"]) if block else 0,
        "dtype": args.dtype, "batch_size": ours_bs, "peer_batch_size": best_bs,
        "ours_examples_per_s_by_batch": {bs: len(examples) / s for bs, s in ours_median.items()},
        "scoring": args.scoring or "loglik",
        "float32_check": {"examples": n_check, "max_abs_loglik_difference": check, "accuracy": check_acc},
        "ours_examples_per_s": len(examples) / ours_s, "peer_examples_per_s": len(examples) / peer_s,
        "peer_examples_per_s_by_batch": {bs: len(examples) / s for bs, s in peers.items()},
        "repeats": args.repeats, "seconds": {"ours": ours_times, "peer": peer_times},
        "load_average": __import__("os").getloadavg(),
        "ratio": peer_s / ours_s,
        # what each side computes, estimated alike (padding included): the ratio the arithmetic allows, and how
        # much of it the measured ratio reaches
        "flop_bound": {"ours_flops": spent["flops"], "peer_flops": (pf := peer_flops(lm, contexts, continuations, best_bs)),
                       "ratio_bound": pf / spent["flops"], "measured_over_bound": (peer_s / ours_s) / (pf / spent["flops"])},
        "ours_accuracy": float((ours_pred == golds).float().mean()), "peer_accuracy": float((peer_pred == golds).float().mean()),
        "predictions_differing": int((ours_pred != peer_pred).sum()),
        "max_abs_loglik_difference": float((scores - peer_scores).abs().max()),
        "machine": platform.platform(), "processor": platform.processor(), "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }  # fmt: skip
    del lm
    if args.defaults:
        result["defaults"] = defaults(args, folder, task, template, examples, contexts, continuations, hf)
    fb = result["flop_bound"]
    print(f"FLOP bound: ours {fb['ours_flops'] / 1e12:.2f} TFLOP, lm-eval {fb['peer_flops'] / 1e12:.2f} TFLOP: the "
          f"arithmetic allows {fb['ratio_bound']:.2f}x, measured {result['ratio']:.2f}x", flush=True)  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        from promptopt.data.files import write_json

        write_json(args.out, result)


if __name__ == "__main__":
    main()
