"""AutoPrompt: gradient-guided search for discrete trigger tokens and label words (Shin et al., 2020).

Trigger search. The template holds trigger slots anywhere (``"{sentence} [T*4] {answer}"``; if no template has any,
``n_triggers`` slots are inserted before ``{answer}`` of the first template). Each iteration:

1. accumulate the gradient of the training loss with respect to the trigger tokens' input embeddings over a few
   batches (the engine embeds a TOKENS segment from vectors when they are given);
2. for one trigger position (random or round-robin), rank the allowed tokens by the first-order estimate of the
   loss decrease, ``-E @ grad`` (``E`` the input embedding matrix), and keep the top ``candidates``;
3. re-score the current prompt and every candidate on a fresh batch with :meth:`Scorer.losses` (one batched forward
   pass; a causal LM computes each example's common prefix once) and keep the best candidate if it lowers the loss
   and, with ``confirm=N`` (default 1), lowers it again on N more fresh batches: the best of k candidates on one
   small batch beats the current prompt by chance (on SST-2 with batches of 16, 9 of 12 accepted swaps in a row
   lowered the selection accuracy from 81.5% to 62.5%).

Rules (``rule``): ``autoprompt`` is the above. ``gcg`` (Zou et al., 2023): the gradient's top-``candidates`` tokens
at every trigger position, then ``swaps`` random single-token swaps (position and token drawn, seeded) re-scored
with the current prompt in one batched forward pass; the best is kept only if it beats the current prompt on that
batch (and, with ``confirm``, again on fresh ones): a swap scoring worse on its batch is never accepted. ``pez``
(Wen et al., 2023): continuous trigger vectors (initialised at the tokens' embeddings) take Adam steps (``pez_lr``)
along the gradient of the loss computed at their nearest allowed tokens (cosine); each new projection is the one
candidate, kept by the same rule. All three share the batched scorer, the filters and the resumable state (pez's
vectors and moments included).

The prompt scoring best on the selection split is returned: a hard prompt whose token ids are saved in the artifact
and are authoritative (its decoded text may tokenize differently). Works for causal LMs (answer read after the
prompt) and masked LMs (answer at the mask), for classification and fact retrieval (answer over the vocabulary).

Label-word search (``label_search=true``): fit a logistic regression on the answer-position features (the vectors
the output embedding matrix multiplies) and propose, for each class, the ``label_k`` vocabulary tokens that score
highest under ``weights @ output_embeddings.T`` (:mod:`promptopt.pipeline.verbalizer`, which also gives every method a
verbalizer: ``promptopt run --label-search``).

Resume. Every ``checkpoint_every`` iterations the search state is written atomically, as JSON, to
``<run>/checkpoint/autoprompt.json``: the current and best token ids (with the best one's metrics), the counters, the
elapsed time, the random generator's state and the position in the shuffled training stream, the searched label
words, and the length of ``history.jsonl`` then. ``promptopt run --resume`` continues from it (the history is cut
back to that length) and ends with the prompt an uninterrupted run with the same seed finds.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from dataclasses import dataclass, field, replace

import torch

from promptopt import hookimpl
from promptopt.sdk import config as cfg_dict
from promptopt.sdk import (
    MethodKind, ConfigError,
    Evaluation,
    Example,
    OptimizeResult,
    Prompt,
    PromptOptimizer,
    PromptoptError,
    ResumableState,
    RunContext,
    SearchIteration,
    Segment,
    SegmentKind,
    TaskKind,
    allowed_tokens,
    decode_escapes,
    enum_value,
    fit_examples,
    keep_better,
    search_label_words,
)

log = logging.getLogger(__name__)


class SearchRule(str, enum.Enum):
    AUTOPROMPT = "autoprompt"
    GCG = "gcg"
    PEZ = "pez"


class PositionChoice(str, enum.Enum):
    RANDOM = "random"
    ROUND_ROBIN = "round-robin"


@dataclass
class AutoPromptConfig:
    iterations: int | None = field(default=None, metadata={"help": "search iterations (default: the run's --steps)"})
    candidates: int = field(default=10, metadata={"help": "k: tokens re-scored per iteration (top-k of the gradient estimate)"})
    accumulation: int | None = field(default=None, metadata={"help": "batches whose gradients are summed per iteration (default: --grad-accum)"})
    batch_size: int | None = field(default=None, metadata={"help": "examples per gradient batch; candidates are re-scored on `accumulation` fresh batches (default: --batch-size)"})
    position: PositionChoice = field(default=PositionChoice.RANDOM, metadata={"help": "trigger position changed each iteration: random or round-robin"})
    time_budget: float = field(default=0.0, metadata={"help": "stop searching after this many seconds (0 = no limit)", "resume_free": True})
    exclude: list[str] = field(default_factory=list, metadata={"help": "words never used as trigger tokens (comma-separated)"})
    init_token: str = field(default="the", metadata={"help": "token every trigger slot starts as: a word, a special token such as [MASK], or e.g. \\n"})
    init_text: str = field(default="", metadata={"help": "text whose tokens fill the trigger slots in order instead (exactly one token per slot), e.g. to start from a manual phrase"})
    n_triggers: int = field(default=4, metadata={"help": "K: trigger slots inserted before {answer} when no template has [T] slots (0 = none)"})
    select_every: int = field(default=5, metadata={"help": "score a changed prompt on the selection split every N iterations (0 = only at the end)"})
    rows_per_forward: int = field(default=512, metadata={"help": "at most this many (prompt, example) rows per re-scoring forward pass"})
    filter_answers: bool = field(default=True, metadata={"help": "never use label words (fact retrieval: training answers) as triggers"})
    word_tokens_only: bool = field(default=True, metadata={"help": "only tokens that decode to a word (letters/digits, ' or -)"})
    label_search: bool = field(default=False, metadata={"help": "search label words first (logistic regression on answer-position features)"})
    label_k: int = field(default=3, metadata={"help": "label words per class proposed by the label search"})
    label_examples: int = field(default=512, metadata={"help": "training examples the label search fits on (0 = all)"})
    label_candidates: int = field(default=50, metadata={"help": "M: words per class proposed (classifier and model) and then chosen by how well they classify the fitted examples (0 = AutoPrompt's classifier ranking alone)"})  # fmt: skip
    confirm: int = field(default=1, metadata={"help": "fresh batches on which the best candidate must also beat the current prompt before it is kept (0 = AutoPrompt's rule: one batch decides)"})  # fmt: skip
    checkpoint_every: int = field(default=1, metadata={"help": "write the resumable search state every N iterations (0 = off)", "resume_free": True})
    rule: SearchRule = field(default=SearchRule.AUTOPROMPT, metadata={"help": "autoprompt (one position, top-k candidates), gcg (random single swaps from every position's top-k) or pez (continuous vectors, forward on their nearest tokens)"})  # fmt: skip
    swaps: int = field(default=32, metadata={"help": "gcg: random single-token swaps re-scored together per iteration"})
    pez_lr: float = field(default=0.1, metadata={"help": "pez: Adam step size of the continuous trigger vectors"})

    def __post_init__(self):
        self.position = enum_value(PositionChoice, self.position, "AutoPromptConfig.position")
        self.rule = enum_value(SearchRule, self.rule, "AutoPromptConfig.rule")
        if self.swaps < 1 or self.pez_lr <= 0:
            raise ConfigError(f"AutoPromptConfig.swaps must be >= 1 and pez_lr > 0, got {self.swaps} and {self.pez_lr}")
        if self.iterations is not None and self.iterations < 0:
            raise ConfigError(f"AutoPromptConfig.iterations must be >= 0 (or unset for --steps), got {self.iterations}")
        for name in ("candidates", "rows_per_forward", "label_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AutoPromptConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("accumulation", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"AutoPromptConfig.{name} must be >= 1 (or unset for the training option), got {value}")
        for name in ("time_budget", "n_triggers", "select_every", "label_examples", "checkpoint_every", "label_candidates", "confirm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AutoPromptConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.init_token:
            raise ConfigError("AutoPromptConfig.init_token must be a non-empty token")


class AutoPromptOptimizer(PromptOptimizer):
    """Gradient-guided trigger-token search (and optional label-word search), kept best on the selection split."""

    name = "autoprompt"
    description = "AutoPrompt: discrete trigger tokens chosen by gradients and kept only if they score better"
    kind = MethodKind.HARD
    config_class = AutoPromptConfig
    needs_training_data = True

    def optimize(self, run: RunContext) -> OptimizeResult:
        cfg, tc, scorer = self.config, run.train_config, run.scorer
        tokenizer = run.lm.tokenizer
        start = time.perf_counter()
        init = token_id(tokenizer, cfg.init_token)
        if cfg.init_text:
            init = tokenizer(decode_escapes(cfg.init_text), add_special_tokens=False)["input_ids"]
        base, prompt = trigger_prompts(run.templates, cfg.n_triggers, init)
        prompt.check_fields(run.task.inputs)
        train = scorer.usable_examples(prompt, run.train)
        if not train:
            raise PromptoptError(f"task {run.task.name!r}: no training example can be scored with this model")
        slots = [(s.name, i) for s in prompt.segments_of(SegmentKind.TOKENS) for i in range(s.n)]
        if not slots and not cfg.label_search:
            raise ConfigError("AutoPromptConfig: nothing to search: the template has no [T] slots, n_triggers is 0 "
                              "and label_search is off")  # fmt: skip
        rng = random.Random(run.seed)
        iterations = cfg.iterations if cfg.iterations is not None else tc.steps
        batch_size, accumulation = cfg.batch_size or tc.batch_size, cfg.accumulation or tc.grad_accum
        checkpoint = run.output_dir / "checkpoint" / CHECKPOINT_FILE
        fingerprint = {"config": cfg_dict.fingerprint_dict(cfg),
                       "iterations": iterations, "batch_size": batch_size, "accumulation": accumulation,
                       "seed": run.seed, "template": prompt.text(), "train_examples": len(train)}  # fmt: skip
        store = ResumableState(checkpoint, fingerprint)
        saved = store.load() if run.resume else None
        if saved is not None and saved["label_words"] is not None:
            prompt = replace(prompt, label_words=saved["label_words"])  # searched before the interruption
        elif cfg.label_search:
            fit_on = fit_examples(train, cfg.label_examples, rng)
            features_of = prompt if base.segments_of(SegmentKind.TOKENS) else base  # slots need their initial tokens
            found = search_label_words(scorer, features_of, fit_on, k=cfg.label_k, answer_prompt=prompt, seed=run.seed,
                                       candidates=cfg.label_candidates)  # fmt: skip
            words, check = keep_better(scorer, prompt, run.select, found, prompt.label_words or run.task.label_words)
            prompt = replace(prompt, label_words=words)
            run.log({"label_words": words, "found": found, "fitted_on": len(fit_on), **check})
        search = _Search(self.config, run, prompt, train, rng, slots, start)
        search.store = store if cfg.checkpoint_every else None
        if saved is not None:
            search.restore(saved)
            log.info("resumed the search from %s at iteration %d", checkpoint, search.iterations)
        best = search.search(iterations=iterations, batch_size=batch_size, accumulation=accumulation)
        prompt, metrics = best
        prompt = replace(prompt, meta={**prompt.meta, "text": prompt.text(tokenizer), "search": search.summary(),
                                       "trigger_tokens": {s.name: tokenizer.convert_ids_to_tokens(list(s.ids))
                                                          for s in prompt.segments_of(SegmentKind.TOKENS)}})  # fmt: skip
        return OptimizeResult(prompt=prompt, trainable_parameters=len(slots), select_metrics=metrics,
                              extra=search.summary())  # fmt: skip


CHECKPOINT_FILE = "autoprompt.json"


class _Search:
    """The trigger-search loop of one run; keeps the best prompt on the selection split."""

    store = None  # the ResumableState the search is saved to (None: not saved)

    def __init__(self, cfg: AutoPromptConfig, run: RunContext, prompt: Prompt, train: list[Example], rng, slots, start):
        self.cfg, self.run, self.prompt, self.rng, self.slots, self.start = cfg, run, prompt, rng, slots, start
        self.flops_start = run.compute.flops
        self.scorer = run.scorer
        self.stream = _Stream(train, rng)
        self.embeddings = run.lm.embeddings.weight
        self.iterations = self.accepted = self.scored = 0
        self.stopped = "iterations"
        self.best: tuple[Prompt, dict] | None = None
        self.best_key: tuple[float, float] = (float("-inf"), float("-inf"))
        self.last_scored: Prompt | None = None
        self.allowed = None
        self.pez: dict | None = None  # pez: the continuous trigger vectors and their Adam moments
        if slots:
            exclude_words, exclude_ids = list(cfg.exclude), set()
            if cfg.filter_answers:
                words, exclude_ids = answer_exclusions(self.scorer, prompt, train)
                exclude_words += words
            self.allowed = allowed_tokens(run.lm.tokenizer, self.embeddings.shape[0], exclude_words, exclude_ids,
                                          cfg.word_tokens_only)  # fmt: skip
            if int(self.allowed.sum()) == 0:
                raise PromptoptError("the filters leave no token to use as a trigger; relax exclude/word_tokens_only")

    def search(self, iterations: int, batch_size: int, accumulation: int):
        if self.best is None:  # not resumed
            self._select(self.prompt, step=0)
        for it in range(self.iterations + 1, iterations + 1 if self.slots else 1):
            if self.cfg.time_budget and time.perf_counter() - self.start > self.cfg.time_budget:
                self.stopped = "time_budget"
                break
            if self.run.compute.exhausted:  # the run's --budget-flops
                self.stopped = "compute_budget"
                break
            self._iterate(it, batch_size, accumulation)
            self.iterations = it
            if self.cfg.select_every and it % self.cfg.select_every == 0:
                self._select(self.prompt, step=it)
            if self.store is not None and it % self.cfg.checkpoint_every == 0:
                self.save()
        self._select(self.prompt, step=self.iterations)
        return self.best

    # -- resume ----------------------------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the state the search continues from (atomically; JSON, no pickle)."""
        history = self.run.output_dir / "history.jsonl"
        version, internal, gauss = self.rng.getstate()
        best_prompt, best_metrics = self.best
        self.store.save({
            "iterations": self.iterations, "accepted": self.accepted, "candidates_scored": self.scored,
            "elapsed_seconds": time.perf_counter() - self.start,
            "flops": self.run.compute.flops - self.flops_start,
            "tokens": _tokens(self.prompt), "current_scored": self.prompt is self.last_scored,
            "best": {"tokens": _tokens(best_prompt), "metrics": best_metrics, "key": list(self.best_key)},
            "rng": [version, list(internal), gauss], "stream_order": list(self.stream.order),
            "label_words": self.prompt.label_words,
            "history_bytes": history.stat().st_size if history.exists() else 0,
            "pez": {k: {n: t.tolist() for n, t in v.items()} if isinstance(v, dict) else v
                    for k, v in self.pez.items()} if self.pez is not None else None,
        })  # fmt: skip

    def restore(self, saved: dict) -> None:
        """Continue from a state written by :meth:`save`; the history is cut back to its length then."""
        self.iterations, self.accepted, self.scored = saved["iterations"], saved["accepted"], saved["candidates_scored"]
        self.start = time.perf_counter() - saved["elapsed_seconds"]
        self.run.compute.totals.flops += saved.get("flops", 0.0)  # spent before the interruption
        self.flops_start = self.run.compute.flops - saved.get("flops", 0.0)
        self.prompt = _with_tokens(self.prompt, saved["tokens"])
        if saved["current_scored"]:
            self.last_scored = self.prompt
        best = saved["best"]
        self.best = (_with_tokens(self.prompt, best["tokens"]), best["metrics"])
        self.best_key = tuple(best["key"])
        version, internal, gauss = saved["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.stream.order = list(saved["stream_order"])
        if saved.get("pez") is not None:
            self.pez = {k: {n: torch.tensor(t, dtype=torch.float32) for n, t in v.items()} if isinstance(v, dict) else v
                        for k, v in saved["pez"].items()}  # fmt: skip
        history = self.run.output_dir / "history.jsonl"
        if history.exists() and history.stat().st_size > saved["history_bytes"]:
            with open(history, "r+b") as f:  # records of iterations after the checkpoint are written again
                f.truncate(saved["history_bytes"])

    def _iterate(self, it: int, batch_size: int, accumulation: int):
        cfg = self.cfg
        t0 = time.perf_counter()
        if cfg.rule == SearchRule.PEZ:
            candidates, swaps, grad_loss = self._pez_step(batch_size, accumulation)
        else:
            grads, grad_loss = self._gradients(self.prompt, [self.stream.take(batch_size) for _ in range(accumulation)])
            step = self._gcg_swaps if cfg.rule == SearchRule.GCG else self._position_candidates
            candidates, swaps = step(it, grads)
        fresh = self.stream.take(batch_size * accumulation)
        losses = self._losses([self.prompt, *candidates], fresh)  # one batched forward pass (rows_per_forward)
        self.scored += len(candidates)
        j = int(torch.argmin(losses[1:])) if candidates else -1
        accepted = bool(candidates) and float(losses[1 + j]) < float(losses[0])  # never worse on its batch
        confirm = None
        if accepted and cfg.confirm:
            # the minimum over k candidates on one small batch beats the current prompt by chance often (the
            # winner's curse): the winner must also win on fresh examples
            pair = self._losses([self.prompt, candidates[j]], self.stream.take(batch_size * accumulation * cfg.confirm))
            confirm = [round(float(pair[0]), 5), round(float(pair[1]), 5)]
            accepted = float(pair[1]) < float(pair[0])
        if accepted:
            self.prompt = candidates[j]
            self.accepted += 1
        tokenizer = self.run.lm.tokenizer
        self.run.hook.training_step(run=self.run, step=it, loss=grad_loss, lr=None)
        best = swaps[j] if candidates else None
        extra = {"position": list(best[:2]) if best else None, "gradient_loss": round(grad_loss, 5),
                 "current_loss": round(float(losses[0]), 5),
                 "best_candidate": (tokenizer.decode([best[2]]) if best[2] is not None
                                    else candidates[j].text(tokenizer)) if best else None,
                 "best_candidate_loss": round(float(losses[1 + j]), 5) if candidates else None,
                 **({"confirm_losses": confirm} if confirm is not None else {}),
                 "seconds": round(time.perf_counter() - t0, 3), "flops": self.run.compute.flops - self.flops_start}  # fmt: skip
        if cfg.rule != SearchRule.AUTOPROMPT:
            extra["rule"], extra["candidates"] = cfg.rule.value, len(candidates)
        self.run.log(SearchIteration(step=it, loss=grad_loss, accepted=accepted, prompt=self.prompt.text(tokenizer),
                                     extra=extra).to_json())  # fmt: skip

    def _estimate(self, grads: dict, name: str, i: int, current: list[int]) -> torch.Tensor:
        """First-order decrease of the loss for every token at slot (name, i); banned tokens at -inf."""
        estimate = -(self.embeddings.float() @ grads[name][i].float())
        estimate[~self.allowed] = float("-inf")
        estimate[current[i]] = float("-inf")
        return estimate

    def _position_candidates(self, it: int, grads: dict):
        """AutoPrompt's rule: one trigger position (random or round-robin), its top-k tokens."""
        if self.cfg.position == PositionChoice.ROUND_ROBIN:
            name, i = self.slots[(it - 1) % len(self.slots)]
        else:
            name, i = self.slots[self.rng.randrange(len(self.slots))]
        current = list(_segment(self.prompt, name).ids)
        estimate = self._estimate(grads, name, i, current)
        top = torch.topk(estimate, min(self.cfg.candidates, int(torch.isfinite(estimate).sum())))
        tokens = top.indices.tolist()
        return ([self.prompt.with_tokens(name, current[:i] + [t] + current[i + 1 :]) for t in tokens],
                [(name, i, t) for t in tokens])  # fmt: skip

    def _gcg_swaps(self, it: int, grads: dict):
        """GCG's rule (Zou et al., 2023): top-k tokens at every position, then ``swaps`` random single swaps."""
        tops = {}
        for name, i in self.slots:
            estimate = self._estimate(grads, name, i, list(_segment(self.prompt, name).ids))
            tops[(name, i)] = torch.topk(estimate, min(self.cfg.candidates, int(torch.isfinite(estimate).sum()))).indices.tolist()
        seen, candidates, swaps = set(), [], []
        for _ in range(self.cfg.swaps):
            name, i = self.slots[self.rng.randrange(len(self.slots))]
            if not tops[(name, i)]:
                continue
            t = tops[(name, i)][self.rng.randrange(len(tops[(name, i)]))]
            if (name, i, t) in seen:
                continue
            seen.add((name, i, t))
            current = list(_segment(self.prompt, name).ids)
            candidates.append(self.prompt.with_tokens(name, current[:i] + [t] + current[i + 1 :]))
            swaps.append((name, i, t))
        return candidates, swaps

    def _pez_step(self, batch_size: int, accumulation: int):
        """PEZ's rule (Wen et al., 2023): the gradient of the loss at the continuous vectors' nearest tokens moves
        the continuous vectors (Adam); their new projection is the one candidate."""
        if self.pez is None:
            self.pez = {"x": {s.name: self.embeddings[list(s.ids)].detach().float().clone()
                              for s in self.prompt.segments_of(SegmentKind.TOKENS)},
                        "m": {}, "v": {}, "t": 0}  # fmt: skip
        projected = self._project()
        grads, grad_loss = self._gradients(projected, [self.stream.take(batch_size) for _ in range(accumulation)])
        state, lr, (b1, b2) = self.pez, self.cfg.pez_lr, (0.9, 0.999)
        state["t"] += 1
        for name, x in state["x"].items():
            g = grads[name].float()
            m = state["m"][name] = b1 * state["m"].get(name, torch.zeros_like(g)) + (1 - b1) * g
            v = state["v"][name] = b2 * state["v"].get(name, torch.zeros_like(g)) + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** state["t"]), v / (1 - b2 ** state["t"])
            state["x"][name] = x - lr * m_hat / (v_hat.sqrt() + 1e-8)
        new = self._project()
        if _tokens(new) == _tokens(self.prompt):
            return [], [], grad_loss
        return [new], [("*", 0, None)], grad_loss

    def _project(self) -> Prompt:
        """The prompt whose trigger tokens are the allowed tokens nearest (cosine) to the continuous vectors."""
        table = torch.nn.functional.normalize(self.embeddings.detach().float(), dim=-1)
        prompt = self.prompt
        for name, x in self.pez["x"].items():
            sims = torch.nn.functional.normalize(x, dim=-1) @ table.T
            sims[:, ~self.allowed] = float("-inf")
            prompt = prompt.with_tokens(name, sims.argmax(-1).tolist())
        return prompt

    def _gradients(self, prompt: Prompt, batches: list[list[Example]]):
        """Sum over batches of d(loss)/d(trigger embeddings) of ``prompt``, per token segment; and the mean loss."""
        grads: dict[str, torch.Tensor] = {}
        total = 0.0
        for batch in batches:
            vectors = {s.name: self.embeddings[list(s.ids)].detach().clone().requires_grad_()
                       for s in prompt.segments_of(SegmentKind.TOKENS)}  # fmt: skip
            with torch.enable_grad():  # losses(): a causal LM runs the input in front of the triggers without a graph
                loss = self.scorer.losses([prompt], batch, vectors=vectors)[0]
                loss.backward()
            total += loss.detach().item()
            for name, v in vectors.items():
                grads[name] = grads[name] + v.grad if name in grads else v.grad
        return grads, total / len(batches)

    def _losses(self, prompts: list[Prompt], examples: list[Example]) -> torch.Tensor:
        per_forward = max(1, self.cfg.rows_per_forward // len(examples))
        with torch.inference_mode():
            return torch.cat([self.scorer.losses(prompts[i : i + per_forward], examples)
                              for i in range(0, len(prompts), per_forward)]).cpu()  # fmt: skip

    def _select(self, prompt: Prompt, step: int):
        if prompt is self.last_scored:
            return
        self.last_scored = prompt
        if not self.run.select:
            self.best = (prompt, {})
            return
        result = self.run.evaluate(prompt, step=step)
        metrics = {k: v for k, v in result.metrics.items() if k != "per_class"}
        self.run.log(Evaluation(step=step, split="select", metrics=metrics,
                                extra={"prompt": prompt.text(self.run.lm.tokenizer)}).to_json())  # fmt: skip
        key = (result.score, _gold_fit(result.predictions))
        if self.best is None or key > self.best_key:
            self.best, self.best_key = (prompt, result.metrics), key

    def summary(self) -> dict:
        return {"iterations": self.iterations, "accepted": self.accepted, "candidates_scored": self.scored,
                "stopped": self.stopped, "seconds": round(time.perf_counter() - self.start, 2)}  # fmt: skip


def _gold_fit(predictions: list[dict]) -> float:
    """A tie-breaker between prompts of equal score: mean reciprocal rank of the gold answer (fact retrieval) or
    mean probability of the gold class (classification), from the engine's per-example predictions."""
    if not predictions:
        return 0.0
    if "gold_rank" in predictions[0]:
        return sum(1.0 / row["gold_rank"] for row in predictions) / len(predictions)
    total = 0.0
    for row in predictions:
        scores = torch.tensor(list(row["scores"].values()))
        total += float(torch.softmax(scores, 0)[list(row["scores"]).index(row["label"])])
    return total / len(predictions)


class _Stream:
    """Training examples in seeded random order, reshuffled every pass, handed out in batches."""

    def __init__(self, examples: list[Example], rng: random.Random):
        self.examples, self.rng, self.order = examples, rng, []

    def take(self, n: int) -> list[Example]:
        out = []
        for _ in range(min(n, len(self.examples))):
            if not self.order:
                self.order = list(range(len(self.examples)))
                self.rng.shuffle(self.order)
            out.append(self.examples[self.order.pop()])
        return out


def _segment(prompt: Prompt, name: str) -> Segment:
    return next(s for s in prompt.segments_of(SegmentKind.TOKENS) if s.name == name)


def _tokens(prompt: Prompt) -> dict[str, list[int]]:
    return {s.name: list(s.ids) for s in prompt.segments_of(SegmentKind.TOKENS)}


def _with_tokens(prompt: Prompt, tokens: dict[str, list[int]]) -> Prompt:
    for name, ids in tokens.items():
        prompt = prompt.with_tokens(name, ids)
    return prompt


# -- building blocks, usable on their own --------------------------------------------------------------------------


def token_id(tokenizer, text: str) -> int:
    """The single token id of ``text``: a special token, a word (with a leading space if that is one token, else
    without), or any other text as it is (``\\n`` and ``\\t`` typed as two characters are decoded)."""
    text = decode_escapes(text)
    if text in tokenizer.all_special_tokens:
        return tokenizer.convert_tokens_to_ids(text)
    for candidate in (" " + text, text) if text[:1].isalnum() else (text,):
        ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return ids[0]
    raise ConfigError(f"AutoPromptConfig.init_token: {text!r} is not a single token of this model's vocabulary")


def trigger_prompts(templates: list[str], n_triggers: int, init: int | list[int]) -> tuple[Prompt, Prompt]:
    """(base prompt, prompt with trigger slots filled with ``init``: one id for every slot, or one id per slot).

    The first template with ``[T]`` slots is used as it is (its own base); otherwise ``n_triggers`` slots are
    inserted just before ``{answer}`` of the first template (spaces before them dropped: a trigger token carries
    its own), which is the base.
    """
    if not templates:
        raise ConfigError("autoprompt needs a template (the task's, or --template)")
    for template in templates:
        prompt = Prompt.from_template(template)
        if prompt.segments_of(SegmentKind.TOKENS):
            return prompt, _fill(prompt, init)
    base = Prompt.from_template(templates[0])
    if n_triggers == 0:
        return base, base
    segments = list(base.segments)
    at = next(i for i, s in enumerate(segments) if s.kind == SegmentKind.ANSWER)
    if at > 0 and segments[at - 1].kind == SegmentKind.TEXT:
        text = segments[at - 1].text.rstrip(" ")
        if text:
            segments[at - 1] = replace(segments[at - 1], text=text)
        else:
            del segments[at - 1]
            at -= 1
    segments.insert(at, Segment(SegmentKind.TOKENS, name="t0", n=n_triggers))
    prompt = Prompt(segments=segments)
    prompt.template = prompt.text()
    return base, _fill(prompt, init)


def _fill(prompt: Prompt, init: int | list[int]) -> Prompt:
    empty = [s for s in prompt.segments_of(SegmentKind.TOKENS) if s.ids is None]
    ids = [init] * sum(s.n for s in empty) if isinstance(init, int) else list(init)
    if len(ids) != sum(s.n for s in empty):
        raise ConfigError(f"AutoPromptConfig.init_text gives {len(ids)} tokens for {sum(s.n for s in empty)} trigger slots")
    for s in empty:
        prompt, ids = prompt.with_tokens(s.name, ids[: s.n]), ids[s.n :]
    return prompt


def answer_exclusions(scorer, prompt: Prompt, examples: list[Example]) -> tuple[list[str], set[int]]:
    """Words and token ids that would leak the answer into a trigger: the label words (every tokenization), or for
    fact retrieval the training answers."""
    enc = scorer.encoder
    if scorer.task.kind == TaskKind.CLASSIFICATION:
        words = [w for ws in (prompt.label_words or scorer.task.label_words).values() for w in ws]
        ids = {i for w in words for text in (w, " " + w) for i in enc.tokens(text)}
        ids |= {i for w in words for i in enc.answer_ids(prompt, w)}
        return words, ids
    words = sorted({ex.label for ex in examples})
    return words, {i for w in words if (i := scorer.answer_token(prompt, w)) is not None}


@hookimpl
def register_optimizers(register):
    register(AutoPromptOptimizer)
