"""One soft-prompt training step: promptopt's against PEFT's PromptTuning, same model, batch, lengths, prompt size.

Both steps compute the same loss (cross-entropy of the gold class, read at the answer position, over the two label
words' log-probabilities; checked equal at the start) from the same initial vectors, then backward, clip the
gradient to norm 1 and take an AdamW step on the 20 prompt vectors only.

* ``promptopt``: ``Scorer.loss`` as the shared training loop calls it: vocabulary logits only at the answer
  position, and the prompt prefix (identical for every example of a causal LM) computed once per batch, its
  keys/values shared by the 16 examples, gradients flowing back through them.
* ``promptopt-plain``: the same with ``share_prefix=False`` (answer-position logits only), to show what sharing adds.
* ``peft``: ``get_peft_model(model, PromptTuningConfig(num_virtual_tokens=20))``, forward on ``input_ids`` as PEFT
  is used (logits at every position), loss from the last position's logits.
* ``peft-last-logit`` (with ``--peft-last-logit``): PEFT's forward with ``logits_to_keep=1``, a stronger peer.

On a CPU both sides run transformers' eager attention for these differentiated forwards (torch's fused CPU
attention backward is slower; ``--peer-attention sdpa`` times PEFT with the model's SDPA instead).

Repetitions alternate between the variants (same process, same warm model), after one warm-up step each; the
median step time of each and the ratio PEFT / promptopt are printed and written as JSON. Peak memory is the peak
resident set size (``VmHWM`` from ``/proc/self/status``) of a fresh process per variant that loads the model and
runs two steps, and its growth over the resident size just before the first step (CPU; on CUDA,
``torch.cuda.max_memory_allocated``).

With ``--task NAME`` the two systems instead train on ``--steps`` batches sampled from the task's training split,
each batching as it is normally used: PEFT on plain shuffled batches right-padded to their longest example (logits
at every position, read at each row's last token), ours in the shared training loop's order (seeded shuffle,
sorted by length within runs of 16 batches, so a batch holds similar lengths) with the task's first template behind
the virtual tokens. The two losses are first checked equal on one batch; the ratio is of total step time.

    python benchmarks/bench_soft_step.py --out bench_soft_step.json            # default model (SmolLM2-135M)
    python benchmarks/bench_soft_step.py --task sst2 --steps 24 --out bench_soft_task.json
    python benchmarks/bench_soft_step.py --model /path/to/tiny --repeats 2     # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

import torch

WORDS = ("the movie was good and the plot is not bad but it has a great cast with some fine acting in every scene of "
         "this long story that I liked very much as it made me laugh more than once so see it if you can").split()  # fmt: skip


def make_batch(lm, batch, length, seed=0):
    """``batch`` texts of exactly ``length`` tokens (words that are one token each), with alternating labels."""
    from promptopt.data.tasks import Example

    tok = lm.tokenizer
    single = [w for w in dict.fromkeys(WORDS) if len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    g = torch.Generator().manual_seed(seed)
    examples = []
    for i in range(batch):
        for _ in range(100):
            words = [single[j] for j in torch.randint(len(single), (length,), generator=g).tolist()]
            text = " ".join(words)
            if len(tok(text, add_special_tokens=False)["input_ids"]) == length:
                break
        else:
            raise SystemExit(f"cannot build a text of exactly {length} tokens with this tokenizer")
        examples.append(Example({"text": text}, "positive" if i % 2 else "negative"))
    return examples


class Setup:
    def __init__(self, args):
        from promptopt.engine import Scorer, load_model
        from promptopt.engine.train import PromptVectors
        from promptopt.plugins import get_task
        from promptopt.data.prompt import Prompt

        self.args = args
        self.lm = lm = load_model(args.model, device=args.device, dtype=args.dtype)
        self.task = get_task("tiny-reviews")  # labels negative/positive, label words " negative"/" positive"
        self.examples = make_batch(lm, args.batch_size, args.length)
        self.prompt = Prompt.from_template(f"[P*{args.virtual}]{{text}}{{answer}}")
        g = torch.Generator().manual_seed(0)
        self.init = lm.embeddings.weight[torch.randint(100, min(5000, lm.vocab_size), (args.virtual,), generator=g)].detach().float().clone()
        self.scorers = {"promptopt": Scorer(lm, self.task), "promptopt-plain": Scorer(lm, self.task, share_prefix=False)}
        self.label_ids = [self.scorers["promptopt"].answer_token(self.prompt, w) for w in ("negative", "positive")]
        self.targets = torch.tensor([int(ex.label == "positive") for ex in self.examples], device=lm.device)
        self.ours = {}
        for name, scorer in self.scorers.items():
            params = PromptVectors({"p0": self.init})
            self.ours[name] = (scorer, params.to(lm.device), torch.optim.AdamW(params.parameters(), lr=1e-3))
        self.peft = None
        enc = lm.tokenizer([ex.inputs["text"] for ex in self.examples], add_special_tokens=False, return_tensors="pt")
        self.ids, self.mask = enc["input_ids"].to(lm.device), enc["attention_mask"].to(lm.device)

    def peft_model(self):
        if self.peft is None:
            from peft import PromptTuningConfig, TaskType, get_peft_model

            config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.init.shape[0])
            model = get_peft_model(self.lm.model, config)
            with torch.no_grad():
                model.prompt_encoder["default"].embedding.weight.copy_(self.init)
            params = [p for p in model.parameters() if p.requires_grad]
            assert sum(p.numel() for p in params) == self.init.numel(), "PEFT must train the prompt only"
            self.peft = (model, params, torch.optim.AdamW(params, lr=1e-3))
        return self.peft

    def step(self, name, update=True) -> float:
        if name.startswith("promptopt"):
            scorer, params, optimizer = self.ours[name]
            loss = scorer.loss(self.prompt, self.examples, vectors=params())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.parameters()), 1.0)
        else:
            model, params, optimizer = self.peft_model()
            kwargs = {"logits_to_keep": 1} if name == "peft-last-logit" else {}
            with peer_attention(self.lm, self.args):
                logits = model(input_ids=self.ids, attention_mask=self.mask, **kwargs).logits[:, -1].float()
            scores = torch.log_softmax(logits, dim=-1)[:, self.label_ids]
            loss = torch.nn.functional.cross_entropy(scores, self.targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        if update:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()


def matmul_peak(dtype, device, n=2048, repeats=5) -> float:
    """FLOP/s of an ``n``-cubed matrix multiply in ``dtype`` here: the ceiling any step can approach."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def step_flops(lm, variant: str, batch: int, length: int, virtual: int) -> float:
    """Arithmetic of one training step (forward, and the backward to the inputs only: the weights are frozen):
    2 FLOPs per weight per position through the layers, the vocabulary head where logits are computed, and the
    attention products. ``promptopt`` runs the virtual tokens once per batch (shared keys/values)."""
    cfg = lm.model.config
    hidden, layers, vocab = lm.hidden_size, cfg.num_hidden_layers, lm.vocab_size
    embed = lm.embeddings.weight.numel()
    body = sum(p.numel() for p in lm.model.model.parameters()) - embed
    own = batch * length + (virtual if variant == "promptopt" else batch * virtual)
    head = batch * (virtual + length) if variant == "peft" else batch
    attention = 4 * layers * hidden * batch * length * (virtual + length)  # q.k and p.v, every query row
    forward = 2 * body * own + 2 * vocab * hidden * head + attention
    return 2 * forward  # the input-gradient backward costs what the forward does


def peer_attention(lm, args):
    """The attention implementation PEFT's forward runs with (``--peer-attention``): the faster one on this device
    unless told otherwise, so that the peer is timed at its strongest."""
    import contextlib

    from promptopt.engine import attention_implementation

    choice = getattr(args, "peer_attention", "auto")
    if choice == "auto":
        choice = "eager" if lm.device.type == "cpu" else None
    return attention_implementation(lm.model, choice) if choice else contextlib.nullcontext()


def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory_only(args):
    setup = Setup(args)
    if args.memory_only.startswith("peft"):
        setup.peft_model()
    cuda = setup.lm.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = _rss_kib("VmRSS")
    for _ in range(2):
        setup.step(args.memory_only)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps({"peak_mb": peak, "growth_mb": peak, "measure": "torch.cuda.max_memory_allocated"}))
    else:
        peak = _rss_kib("VmHWM") / 1024
        print(json.dumps({"peak_mb": peak, "growth_mb": peak - before / 1024, "measure": "peak RSS (VmHWM)"}))


def task_mode(args):
    """Steps on a real task's training data, each system batching as it would: see ``--task`` in the docstring."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from promptopt.engine import Scorer, load_model
    from promptopt.engine.train import BatchStream, PromptVectors, _prompt_length
    from promptopt.plugins import get_task
    from promptopt.data.prompt import Prompt

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    task = get_task(args.task)
    field = task.inputs[0]
    template = task.templates[0]
    prompt = Prompt.from_template(f"[P*{args.virtual}]" + template)
    scorer = Scorer(lm, task)
    pool = scorer.usable_examples(prompt, task.load_split("train"))
    rng = random.Random(0)
    examples = rng.sample(pool, args.steps * args.batch_size)
    g = torch.Generator().manual_seed(0)
    init = lm.embeddings.weight[torch.randint(100, min(5000, lm.vocab_size), (args.virtual,), generator=g)].detach().float().clone()
    ours = PromptVectors({"p0": init}).to(lm.device)
    ours_opt = torch.optim.AdamW(ours.parameters(), lr=1e-3)
    # ours: the training loop's order (seeded shuffle, sorted by length within runs of 16 batches)
    length_of = _prompt_length(scorer, prompt)  # what the training loop groups by
    lengths = [length_of(ex) for ex in examples]
    stream = BatchStream(len(examples), args.batch_size, 0, lengths, group=16)
    our_batches = [[examples[i] for i in stream.batch(k)] for k in range(args.steps)]
    # PEFT: the usual plain shuffled batches, right-padded to the longest, read at each row's last real token
    peft_batches = [examples[k * args.batch_size:(k + 1) * args.batch_size] for k in range(args.steps)]
    answer_ids = [scorer.verbalizer(prompt).ids[i][0][0] for i in range(len(task.labels))]
    model = get_peft_model(lm.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.virtual))
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(init)
    peft_params = [p for p in model.parameters() if p.requires_grad]
    peft_opt = torch.optim.AdamW(peft_params, lr=1e-3)
    lm.tokenizer.padding_side = "right"
    prefix_text = template.split("{answer}")[0]

    def peft_loss(batch, last_only=False):
        texts = [prefix_text.replace("{" + field + "}", ex.inputs[field]) for ex in batch]
        enc = lm.tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True).to(lm.device)
        last = enc["attention_mask"].sum(-1) - 1 + args.virtual
        if last_only:  # logits only at the positions some row reads (few, in a length-grouped batch)
            keep, where = torch.unique(last, return_inverse=True)
            with peer_attention(lm, args):
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], logits_to_keep=keep).logits
            picked = logits[torch.arange(len(batch)), where]
        else:
            with peer_attention(lm, args):
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            picked = logits[torch.arange(len(batch)), last]
        scores = torch.log_softmax(picked.float(), dim=-1)[:, answer_ids]
        targets = torch.tensor([task.labels.index(ex.label) for ex in batch], device=lm.device)
        return torch.nn.functional.cross_entropy(scores, targets)

    def step(name, batch):
        if name == "promptopt":
            loss, params, opt = scorer.loss(prompt, batch, vectors=ours()), list(ours.parameters()), ours_opt
        else:
            loss, params, opt = peft_loss(batch, last_only=name == "peft-last-logit"), peft_params, peft_opt
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    with torch.no_grad():  # same vectors, same batch: the losses must agree
        a, b = scorer.loss(prompt, peft_batches[0], vectors=ours()).item(), peft_loss(peft_batches[0]).item()
        c = peft_loss(our_batches[0], last_only=True).item()
        a2 = scorer.loss(prompt, our_batches[0], vectors=ours()).item()
    tol = 1e-3 if lm.dtype == torch.float32 else 5e-2
    assert abs(a - b) < tol, f"promptopt and PEFT compute different losses on the same batch: {a} vs {b}"
    assert abs(a2 - c) < tol, f"promptopt and PEFT (last logits) compute different losses on the same batch: {a2} vs {c}"
    names = ["promptopt", "peft"] + (["peft-last-logit"] if args.peft_last_logit else [])
    times = {n: [] for n in names}
    for k in range(args.steps):
        for name in (names if k % 2 == 0 else names[::-1]):
            start = time.perf_counter()  # PEFT as commonly used on plain batches; with last logits on ours
            step(name, peft_batches[k] if name == "peft" else our_batches[k])
            times[name].append(time.perf_counter() - start)
        print(f"step {k + 1}/{args.steps}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names), flush=True)
    total = {n: sum(t) for n, t in times.items()}
    bs = args.batch_size
    tokens = {"promptopt": sum(max(lengths[i] for i in stream.batch(k)) * bs for k in range(args.steps)),
              "peft": sum(max(lengths[k * bs:(k + 1) * bs]) * bs for k in range(args.steps))}  # its batches are slices
    # the arithmetic of the same steps (lengths count the virtual tokens: what each side pads to, less them)
    v = args.virtual
    ours_len = [max(lengths[i] for i in stream.batch(k)) - v for k in range(args.steps)]
    peft_len = [max(lengths[k * bs:(k + 1) * bs]) - v for k in range(args.steps)]
    flops = {"promptopt": sum(step_flops(lm, "promptopt", bs, n, v) for n in ours_len),
             "peft": sum(step_flops(lm, "peft", bs, n, v) for n in peft_len),
             "peft-last-logit": sum(step_flops(lm, "peft-last-logit", bs, n, v) for n in ours_len)}
    flops = {n: f for n, f in flops.items() if n in names}
    result = {"model": lm.name, "task": task.name, "template": prompt.text(), "device": str(lm.device),
              "flop_bound": {"step_flops": {n: f / args.steps for n, f in flops.items()},
                             "ratio_bound_peft_over_promptopt": {n: f / flops["promptopt"] for n, f in flops.items()}},
              "peer_attention": args.peer_attention,
              "threads": torch.get_num_threads(), "batch_size": args.batch_size, "steps": args.steps,
              "virtual_tokens": args.virtual, "first_loss": {"promptopt": a, "peft": b}, "step_seconds": times,
              "seconds_per_step": {n: t / args.steps for n, t in total.items()}, "padded_positions": tokens,
              "ratio_peft_over_promptopt": total["peft"] / total["promptopt"], "machine": platform.platform(),
              "ratio_peft_last_logit_same_batches_over_promptopt":
                  total["peft-last-logit"] / total["promptopt"] if "peft-last-logit" in total else None,
              "load_average": os.getloadavg(), "torch": torch.__version__}  # fmt: skip
    print(f"\n{task.name}, {args.steps} steps of {args.batch_size}, {args.virtual} virtual tokens, "
          f"{result['threads']} threads: promptopt {result['seconds_per_step']['promptopt']:.3f} s/step, "
          f"PEFT {result['seconds_per_step']['peft']:.3f} s/step, ratio {result['ratio_peft_over_promptopt']:.2f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"written: {args.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--length", type=int, default=48, help="input tokens per example")
    ap.add_argument("--virtual", type=int, default=20, help="soft / virtual tokens")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: promptopt's: bf16 on a GPU or a CPU with native bf16)")
    ap.add_argument("--peft-last-logit", action="store_true", help="also time PEFT with logits_to_keep=1")
    ap.add_argument("--peer-attention", choices=["auto", "sdpa", "eager"], default="auto",
                    help="PEFT's attention: auto = eager on a CPU (its faster backward there, the choice promptopt's engine makes for a differentiated forward), else the model's own")
    ap.add_argument("--peak-n", type=int, default=2048, help="size of the matrix multiply that measures the peak")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--memory-only", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--task", default=None, help="real-data mode: train batches of this task (see above)")
    ap.add_argument("--steps", type=int, default=24, help="steps per system in --task mode")
    args = ap.parse_args()
    if args.memory_only:
        return memory_only(args)
    if args.task:
        return task_mode(args)

    setup = Setup(args)
    variants = ["promptopt", "promptopt-plain", "peft"] + (["peft-last-logit"] if args.peft_last_logit else [])
    first = {name: setup.step(name, update=False) for name in variants}  # same vectors: the losses must agree
    tol = 1e-4 if setup.lm.dtype == torch.float32 else 5e-2  # bf16/fp16 round differently along different paths
    assert all(abs(v - first["peft"]) < tol for v in first.values()), f"the variants compute different losses: {first}"
    for name in variants:  # warm-up
        setup.step(name)
    times = {name: [] for name in variants}
    for r in range(args.repeats):
        order = variants if r % 2 == 0 else variants[::-1]
        for name in order:
            start = time.perf_counter()
            setup.step(name)
            times[name].append(time.perf_counter() - start)
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in variants), flush=True)
    median = {n: statistics.median(t) for n, t in times.items()}
    memory = {}
    if not args.no_memory:
        for name in variants:
            cmd = [sys.executable, __file__, "--memory-only", name, "--batch-size", str(args.batch_size), "--length",
                   str(args.length), "--virtual", str(args.virtual)]  # fmt: skip
            cmd += [f"--{k}={v}" for k, v in (("device", args.device), ("dtype", args.dtype)) if v]
            if args.model:
                cmd += ["--model", args.model]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            memory[name] = json.loads(out.stdout.strip().splitlines()[-1])
    result = {
        "model": setup.lm.name, "device": str(setup.lm.device), "threads": torch.get_num_threads(),
        "peer_attention": args.peer_attention,
        "batch_size": args.batch_size, "input_tokens": args.length, "virtual_tokens": args.virtual,
        "repeats": args.repeats, "first_loss": first, "step_seconds": times, "median_seconds": median,
        "ratio_peft_over_promptopt": median["peft"] / median["promptopt"],
        "ratio_peft_over_promptopt_plain": median["peft"] / median["promptopt-plain"],
        "peak_memory": memory, "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "torch": torch.__version__,
    }  # fmt: skip
    if "peft-last-logit" in median:
        result["ratio_peft_last_logit_over_promptopt"] = median["peft-last-logit"] / median["promptopt"]
    peak = matmul_peak(setup.lm.dtype, setup.lm.device, n=args.peak_n)
    flops = {n: step_flops(setup.lm, n, args.batch_size, args.length, args.virtual) for n in variants}
    result["flop_bound"] = {
        "matmul_peak_flops": peak, "dtype": str(setup.lm.dtype),
        "step_flops": flops, "bound_seconds": {n: f / peak for n, f in flops.items()},
        "fraction_of_peak": {n: flops[n] / median[n] / peak for n in variants},
        "ratio_bound_peft_over_promptopt": {n: flops[n] / flops["promptopt"] for n in variants},
    }  # fmt: skip
    print(f"\nmodel {result['model']}, batch {args.batch_size} x {args.length} tokens + {args.virtual} virtual, "
          f"{args.repeats} repeats, {result['threads']} threads, load average {result['load_average'][0]:.1f}")  # fmt: skip
    for name in variants:
        mem = memory.get(name)
        mem_text = f"  peak {mem['peak_mb']:.0f} MB (+{mem['growth_mb']:.0f} MB over pre-step)" if mem else ""
        print(f"  {name:<16} median {median[name]:.3f}s{mem_text}")
    bound = result["flop_bound"]
    for name in variants:
        print(f"  {name:<16} {bound['step_flops'][name] / 1e9:.0f} GFLOP, bound {bound['bound_seconds'][name]:.3f}s "
              f"at {bound['matmul_peak_flops'] / 1e9:.0f} GFLOP/s, {100 * bound['fraction_of_peak'][name]:.0f}% of peak")
    print(f"ratio PEFT / promptopt: {result['ratio_peft_over_promptopt']:.2f}x "
          f"(PEFT / promptopt-plain: {result['ratio_peft_over_promptopt_plain']:.2f}x)")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
