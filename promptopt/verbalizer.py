"""Label-word search: a verbalizer found from data, usable with any method (``promptopt run --label-search``).

AutoPrompt's label search (Shin et al., 2020): fit a logistic regression from the answer-position features of a
prompt (the vectors the output embedding matrix multiplies, :meth:`Scorer.answer_features`) to the labels, score
every vocabulary token by ``weights @ output_embeddings.T`` and keep, for each class, the best-scoring word tokens.
"""

from __future__ import annotations

import random
import re

import torch

from .errors import PromptoptError
from .prompt import Prompt, SegmentKind
from .tasks import Example, TaskKind

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
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
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
                       seed: int = 0) -> dict[str, list[str]]:  # fmt: skip
    """Label words by AutoPrompt's label search: ``{label: [k words]}``, usable as ``Prompt.label_words``.

    Fits a logistic regression (scikit-learn) from the answer-position features of ``prompt`` (see
    :meth:`Scorer.answer_features`) to the labels, scores every vocabulary token by the class weights times the
    output embeddings, and keeps each class's ``k`` best word tokens that are one token as an answer of
    ``answer_prompt`` (default ``prompt``) and are not taken by another class. A label absent from ``examples``
    keeps the task's words. Deterministic for a given ``seed``.
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
    taken: set[int] = set()
    words = {lab: list(ws) for lab, ws in task.label_words.items()}
    for row, label in enumerate(present):
        found = []
        for t in torch.argsort(scores[row], descending=True).tolist():
            if len(found) == k:
                break
            if not allowed[t] or t in taken:
                continue
            word = tokenizer.decode([t]).strip()
            if scorer.encoder.answer_ids(answer_prompt, word) == [t]:
                found.append(word)
                taken.add(t)
        if found:
            words[label] = found
    return words


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
