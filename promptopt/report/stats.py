"""Paired statistics for leaderboards, in pure Python (``random``, ``math``): bootstrap intervals, paired bootstrap,
the exact McNemar test and Holm's correction. Every function is deterministic given its ``seed``.

The algorithms are written out in the docstrings exactly enough to recompute any number by hand:

- **Resampling** (:func:`resample_indices`): ``rng = random.Random(seed)``; then, ``n_resamples`` times,
  ``rng.choices(range(n), k=n)`` draws one resample of the ``n`` example indices (with replacement).
- **Percentile interval** (:func:`percentile`): the statistic of every resample, sorted; the bounds are the
  ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles with linear interpolation between order statistics
  (position ``q * (R - 1)`` in the sorted list of ``R`` values, as numpy's default).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Callable, Sequence

Metric = Callable[[Sequence[str], Sequence[str]], float]


def accuracy(golds: Sequence[str], preds: Sequence[str]) -> float:
    """The fraction of predictions equal to their gold label (0 for no examples)."""
    return sum(g == p for g, p in zip(golds, preds)) / len(golds) if golds else 0.0


def macro_f1_over(labels: Sequence[str]) -> Metric:
    """Macro-F1 over a fixed label set, as the engine computes it (scikit-learn's ``f1_score(average="macro",
    zero_division=0)``): per label ``F1 = 2 tp / (gold count + predicted count)``, 0 without a true positive; every
    label of ``labels`` counts in the mean."""
    labels = list(dict.fromkeys(labels))

    def macro_f1(golds: Sequence[str], preds: Sequence[str]) -> float:
        return macro_f1_of_pairs(Counter(zip(golds, preds)), labels)

    return macro_f1


def macro_f1_of_pairs(pairs: Counter, labels: Sequence[str]) -> float:
    """Macro-F1 (as :func:`macro_f1_over`) from the counts of (gold, prediction) pairs."""
    if not labels:
        return 0.0
    gold_n: Counter = Counter()
    pred_n: Counter = Counter()
    for (g, p), k in pairs.items():
        gold_n[g] += k
        pred_n[p] += k
    return sum(2 * pairs[lab, lab] / (gold_n[lab] + pred_n[lab]) if pairs[lab, lab] else 0.0
               for lab in labels) / len(labels)  # fmt: skip


ACCURACY_METRICS = ("accuracy", "p_at_1")  # metrics that are a mean of per-example correctness


def metric_function(name: str, labels: Sequence[str] = ()) -> Metric | None:
    """The metric of that name (the engine's names: ``accuracy``, ``p_at_1``, ``macro_f1``), or None if unknown.
    ``labels`` is the label set macro-F1 averages over."""
    if name in ACCURACY_METRICS:
        return accuracy
    if name == "macro_f1":
        return macro_f1_over(labels)
    return None


def resample_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> list[list[int]]:
    """``n_resamples`` bootstrap resamples of ``range(n)``: ``rng = random.Random(seed)``, then
    ``rng.choices(range(n), k=n)`` once per resample, in order."""
    rng = random.Random(seed)
    population = range(n)
    return [rng.choices(population, k=n) for _ in range(n_resamples)]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 <= q <= 1) of already sorted values: linear interpolation at position ``q * (R - 1)``."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap statistics: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles."""
    s = sorted(values)
    return percentile(s, (1 - level) / 2), percentile(s, (1 + level) / 2)


def _subset(items: Sequence, idx: Sequence[int]) -> list:
    return [items[i] for i in idx]


def bootstrap_ci(golds: Sequence[str], preds: Sequence[str], metric: Metric, n_resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap interval of ``metric(golds, preds)`` over examples.

    For each resample ``idx`` of :func:`resample_indices` (``n = len(golds)``) the statistic is
    ``metric([golds[i] for i in idx], [preds[i] for i in idx])``; the interval is :func:`interval` of those values.
    """
    if not golds:
        raise ValueError("bootstrap_ci: no examples")
    resamples = resample_indices(len(golds), n_resamples, seed)
    return interval([metric(_subset(golds, idx), _subset(preds, idx)) for idx in resamples], level)


def bootstrap_p(diffs: Sequence[float]) -> float:
    """Two-sided p-value of a bootstrap distribution of differences against 0:
    ``min(1, 2 * (min(#{d <= 0}, #{d >= 0}) + 1) / (R + 1))`` (the +1 keeps a finite resample count from claiming
    p = 0)."""
    below = sum(d <= 0 for d in diffs)
    above = sum(d >= 0 for d in diffs)
    return min(1.0, 2 * (min(below, above) + 1) / (len(diffs) + 1))


def paired_bootstrap(golds: Sequence[str], preds_a: Sequence[str], preds_b: Sequence[str], metric: Metric,
                     n_resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float, float]:  # fmt: skip
    """Paired bootstrap of ``metric(a) - metric(b)`` on the same examples: ``(diff, low, high, p_two_sided)``.

    ``diff`` is the difference on all examples; each resample ``idx`` of :func:`resample_indices` takes the same
    example indices for both, giving ``metric(golds[idx], a[idx]) - metric(golds[idx], b[idx])``; ``low``/``high``
    are :func:`interval` of those differences and ``p_two_sided`` is :func:`bootstrap_p` of them.
    """
    if not golds:
        raise ValueError("paired_bootstrap: no examples")
    diff = metric(golds, preds_a) - metric(golds, preds_b)
    diffs = []
    for idx in resample_indices(len(golds), n_resamples, seed):
        g = _subset(golds, idx)
        diffs.append(metric(g, _subset(preds_a, idx)) - metric(g, _subset(preds_b, idx)))
    low, high = interval(diffs, level)
    return diff, low, high, bootstrap_p(diffs)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact (binomial) McNemar test on the discordant counts ``b`` (only A right) and ``c`` (only B right):
    ``min(1, 2 * P(X <= min(b, c)))`` for ``X ~ Binomial(b + c, 1/2)``; 1 when ``b + c == 0``."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment, in the input's order: with the ``m`` p-values sorted ascending,
    ``adj[k] = max(adj[k - 1], min(1, (m - k) * p[k]))`` for k = 0..m-1 (so the adjusted values are monotone)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        out[i] = running
    return out


# Student's t 0.975 quantiles for 1..30 degrees of freedom (two-sided 95%), as printed in every t table
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom: the table above for 1..30, beyond it the
    Cornish-Fisher expansion ``z + (z^3 + z) / (4 df) + (5 z^5 + 16 z^3 + 3 z) / (96 df^2)`` (z = 1.959964)."""
    if df < 1:
        raise ValueError("t975: df must be >= 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The 95% t-interval of the mean of ``values`` (e.g. one score per seed): ``mean -/+ t975(n - 1) * s /
    sqrt(n)`` with ``s`` the sample standard deviation; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    half = t975(n - 1) * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)
    return mean - half, mean + half
