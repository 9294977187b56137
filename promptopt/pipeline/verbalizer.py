"""Label-word search: a verbalizer found from data, usable with any method (``promptopt run --label-search``).

AutoPrompt's label search (Shin et al., 2020): fit a logistic regression from the answer-position features of a
prompt (the vectors the output embedding matrix multiplies, :meth:`Scorer.answer_features`) to the labels, score
every vocabulary token by ``weights @ output_embeddings.T`` and keep, for each class, the best-scoring word tokens.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time

import torch

from promptopt.engine.scoring import Scorer
from promptopt.errors import ConfigError, PromptoptError
from promptopt.data.prompt import Prompt, SegmentKind
from promptopt.data.tasks import Example, TaskKind
from promptopt.engine.inputs import special_token_ids

# a "word" token: letters or digits, optionally joined by ' or - (after stripping the leading space)
_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")


def allowed_tokens(tokenizer, n_rows: int, exclude_words=(), exclude_ids=(), word_tokens_only: bool = True) -> torch.Tensor:
    """``(n_rows,)`` bool: which embedding rows may be used as words (label words, trigger tokens).

    Never: special or added tokens, rows past the tokenizer's vocabulary, tokens that decode to nothing printable
    (or to a broken byte sequence), tokens whose stripped text is one of ``exclude_words`` (case-insensitive), and
    ``exclude_ids``. With ``word_tokens_only``, only tokens that decode to a word (letters or digits, ' or -).
    """
    allowed = torch.zeros(n_rows, dtype=torch.bool)
    n = min(n_rows, len(tokenizer))
    special = special_token_ids(tokenizer)
    excluded = {w.strip().lower() for w in exclude_words if w.strip()}
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    for i, text in enumerate(texts):
        word = text.strip()
        if i in special or not word or not text.isprintable() or "\ufffd" in text or word.lower() in excluded:
            continue
        if word_tokens_only and not _WORD.fullmatch(word):
            continue
        allowed[i] = True
    for i in exclude_ids:
        if 0 <= i < n_rows:
            allowed[i] = False
    return allowed


def search_label_words(scorer, prompt: Prompt, examples: list[Example], k: int = 3, answer_prompt: Prompt | None = None,
                       seed: int = 0, candidates: int = 0) -> dict[str, list[str]]:  # fmt: skip
    """Label words by AutoPrompt's label search: ``{label: [k words]}``, usable as ``Prompt.label_words``.

    Fits a logistic regression (scikit-learn) from the answer-position features of ``prompt`` (see
    :meth:`Scorer.answer_features`) to the labels, scores every vocabulary token by the class weights times the
    output embeddings, and keeps each class's ``k`` best word tokens that are one token as an answer of
    ``answer_prompt`` (default ``prompt``) and are not taken by another class. A label absent from ``examples``
    keeps the task's words. Deterministic for a given ``seed``.

    With ``candidates = M > 0`` the ranking only proposes: each class's candidates are its ``M`` best tokens by the
    classifier *and* its ``M`` most likely answer tokens under the model on that class's examples (LM-BFF's
    proposal, Gao et al., 2021), and the words kept are those that classify ``examples`` best when used as the
    verbalizer (see :func:`choose_words`). The classifier's projection alone often ranks rare tokens first on a
    small causal LM (on SST-2 with SmolLM2-135M: "Examin"/"multiplication"); checking words by what the model
    actually predicts removes those.
    """
    from sklearn.linear_model import LogisticRegression

    task = scorer.task
    if task.kind != TaskKind.CLASSIFICATION:
        raise PromptoptError(f"label-word search needs a classification task; {task.name!r} is {task.kind.value}")
    present = sorted({ex.label for ex in examples}, key=task.labels.index)
    if len(present) < 2:
        raise PromptoptError(f"label-word search needs examples of at least two labels, got {present}")
    with torch.inference_mode():
        features = scorer.answer_features(prompt, examples).cpu().double().numpy()
    y = [present.index(ex.label) for ex in examples]
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(features, y)
    coef = torch.tensor(clf.coef_, dtype=torch.float32)
    weights = torch.stack([-coef[0], coef[0]]) if coef.shape[0] == 1 else coef  # (labels present, H)
    output = scorer.lm.model.get_output_embeddings().weight.detach().float().cpu()
    scores = weights @ output.T  # (labels present, V)
    tokenizer, answer_prompt = scorer.lm.tokenizer, answer_prompt or prompt
    allowed = allowed_tokens(tokenizer, output.shape[0])
    words = {lab: list(ws) for lab, ws in task.label_words.items()}
    single: dict[int, bool] = {}

    def usable(t: int) -> bool:
        """Whether token ``t`` is an allowed word that is exactly one token as an answer of ``answer_prompt``."""
        if t not in single:
            single[t] = bool(allowed[t]) and scorer.encoder.answer_ids(answer_prompt, tokenizer.decode([t]).strip()) == [t]
        return single[t]

    if candidates > 0:
        return _verified_words(scorer, answer_prompt, examples, present, scores, allowed, usable, k, candidates, words)
    taken: set[int] = set()
    for row, label in enumerate(present):
        found = []
        for t in torch.argsort(scores[row], descending=True).tolist():
            if len(found) == k:
                break
            if t not in taken and usable(t):
                found.append(tokenizer.decode([t]).strip())
                taken.add(t)
        if found:
            words[label] = found
    return words


def _verified_words(scorer, prompt, examples, present, clf_scores, allowed, usable, k, m, words):
    tokenizer = scorer.lm.tokenizer
    with torch.inference_mode():
        logp = torch.cat([scorer.vocab_logprobs(prompt, examples[i : i + 32]).float().cpu()
                          for i in range(0, len(examples), 32)])  # fmt: skip
    logp = logp[:, : clf_scores.shape[1]]
    y = torch.tensor([present.index(ex.label) for ex in examples])
    masked = lambda s: torch.where(allowed[: s.shape[-1]], s, torch.full_like(s, float("-inf")))  # noqa: E731
    pools = []
    for row in range(len(present)):
        likely = masked(logp[y == row].mean(0))
        ranked = torch.argsort(masked(clf_scores[row]), descending=True)[: 4 * m].tolist()
        ranked += torch.argsort(likely, descending=True)[: 4 * m].tolist()
        pool = [t for t in dict.fromkeys(ranked) if usable(t)]
        pools.append(pool[: 2 * m])
    chosen = choose_words(logp, y, pools, k)
    for row, label in enumerate(present):
        words[label] = [tokenizer.decode([t]).strip() for t in chosen[row]]
    return words


def choose_words(logp: torch.Tensor, y: torch.Tensor, pools: list[list[int]], k: int) -> list[list[int]]:
    """Up to ``k`` token ids per class from its ``pools`` entry, chosen to classify best.

    ``logp`` is ``(N, V)`` answer-position log-probabilities of ``N`` examples, ``y`` their class indices. A class
    scores ``logsumexp`` of its words' log-probabilities (as the engine scores a verbalizer). Coordinate ascent on
    (accuracy, then mean gold log-likelihood): start from each pool's first token, then, twice over the classes,
    give a class the single word that scores best; then add words to a class while that strictly improves it.
    A token is used by one class at most.
    """

    def key(chosen):
        scores = torch.stack([torch.logsumexp(logp[:, ids], dim=-1) for ids in chosen], dim=-1)
        acc = (scores.argmax(-1) == y).float().mean().item()
        return (acc, -torch.nn.functional.cross_entropy(scores, y).item())

    if not all(pools):
        raise PromptoptError("label-word search: a class has no candidate word that is one answer token")
    chosen = [[pool[0]] for pool in pools]
    for _ in range(2):
        for c, pool in enumerate(pools):
            taken = {t for i, ids in enumerate(chosen) if i != c for t in ids}
            options = [[t] for t in pool if t not in taken]
            chosen[c] = max(options, key=lambda ids: key(chosen[:c] + [ids] + chosen[c + 1 :]))
    for c, pool in enumerate(pools):
        while len(chosen[c]) < k:
            taken = {t for ids in chosen for t in ids}
            best, best_key = None, key(chosen)
            for t in pool:
                if t in taken:
                    continue
                trial = key(chosen[:c] + [chosen[c] + [t]] + chosen[c + 1 :])
                if trial > best_key:
                    best, best_key = t, trial
            if best is None:
                break
            chosen[c] = chosen[c] + [best]
    return chosen


def fit_examples(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    """The examples a label search fits on: all of them in order (``n == 0``), else a sample of at most ``n`` drawn
    with ``rng`` (which is drawn from only then)."""
    return list(examples) if n == 0 else rng.sample(examples, min(n, len(examples)))


def text_prompt(template: str) -> Prompt:
    """``template`` as a prompt of text, fields and the answer only: trigger-token and soft segments, which have no
    values before a method runs, are left out. The label search reads its features from this prompt."""
    prompt = Prompt.from_template(template)
    keep = [s for s in prompt.segments if s.kind not in (SegmentKind.TOKENS, SegmentKind.VECTORS)]
    return Prompt(segments=keep, template=template)


def keep_better(scorer, prompt: Prompt, examples: list[Example], found: dict, given: dict) -> tuple[dict, dict]:
    """``found`` label words if they score at least as well as ``given`` on ``examples`` (the selection split) with
    ``prompt``, else ``given``; and a record of both scores (a tie keeps ``found``)."""
    from dataclasses import replace

    if found == given or not examples:
        return found, {}
    with torch.inference_mode():
        score = {name: scorer.evaluate(replace(prompt, label_words=words), examples).metrics["score"]
                 for name, words in (("found", found), ("given", given))}  # fmt: skip
    kept = "found" if score["found"] >= score["given"] else "given"
    return (found if kept == "found" else given), {"select_score": score, "kept": kept}


# -- the pipeline step (``promptopt run --label-search``) ------------------------------------------------------------


def check_label_search(task, opts) -> None:
    """Refuse ``--label-search`` settings that cannot work, before any model is loaded. ``opts`` has ``label_k``,
    ``label_examples`` and ``label_candidates`` (:class:`promptopt.pipeline.runner.RunOptions`)."""
    if task.kind != TaskKind.CLASSIFICATION:
        raise ConfigError(f"--label-search needs a classification task; task {task.name!r} is {task.kind.value} "
                          "(its answers are vocabulary tokens, there are no label words to search)")  # fmt: skip
    if "train" not in task.available_splits:
        raise ConfigError(f"--label-search fits on the training split; task {task.name!r} has none "
                          f"(splits: {task.available_splits})")  # fmt: skip
    if opts.label_k < 1:
        raise ConfigError(f"RunOptions.label_k must be >= 1, got {opts.label_k}")
    if opts.label_examples < 0:
        raise ConfigError(f"RunOptions.label_examples must be >= 0 (0 = all), got {opts.label_examples}")
    if opts.label_candidates < 0:
        raise ConfigError(f"RunOptions.label_candidates must be >= 0, got {opts.label_candidates}")


def label_search_step(scorer, data: dict, templates: list[str], opts):
    """The label-search step of the run pipeline: ``(scorer, found)``. Without ``opts.label_search`` it is
    ``(scorer, None)``. Else label words are fitted on ``data["train"]`` with the first template and kept only if
    they score at least as well as the task's on ``data["select"]``; the returned scorer's task holds them, so the
    method and the final evaluation score with them, and ``found`` says what was searched (``label_words`` first)."""
    if not opts.label_search:
        return scorer, None
    if not templates:
        raise ConfigError("--label-search reads features through a template; the task has none and none was given")
    prompt = text_prompt(templates[0])
    prompt.check_fields(scorer.task.inputs)
    train = data["train"]
    if not train:
        raise ConfigError(f"--label-search needs training examples; task {scorer.task.name!r} has none left "
                          "(check --max-train, --shots and --select-split holdout:N)")  # fmt: skip
    fit_on = fit_examples(train, opts.label_examples, random.Random(f"{opts.seed}:label_search"))
    start = time.perf_counter()
    found = search_label_words(scorer, prompt, fit_on, k=opts.label_k, seed=opts.seed, candidates=opts.label_candidates)
    words, check = keep_better(scorer, prompt, data["select"], found, scorer.task.label_words)
    found = {"label_words": words, "found": found, **check, "k": opts.label_k, "candidates": opts.label_candidates,
             "template": templates[0], "fitted_on": len(fit_on), "task_label_words": scorer.task.label_words,
             "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
    task = dataclasses.replace(scorer.task, label_words=words)
    return Scorer(scorer.lm, task, batch_size=scorer.batch_size, padding_side=scorer.side,
                  chat_template=scorer.encoder.chat is not None), found


def log_label_search(ctx, resolved: dict) -> None:
    """Write the label-search record to the run's ``history.jsonl`` once (a resumed run already holds it)."""
    if "label_search" not in resolved:
        return
    history = ctx.output_dir / "history.jsonl"
    if ctx.resume and history.exists() and '"label_search"' in history.read_text(encoding="utf-8"):
        return
    ctx.log({"label_search": resolved["label_search"], "label_words": resolved["label_words"]})
