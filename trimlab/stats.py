"""Honest statistics for accuracy tables: intervals, retention, seeds, paired differences.

A test accuracy is a share of n items, so it carries sampling noise: on 300 items a 95%
interval is about ±5 points, on 1000 items about ±3. Every accuracy in a trimlab results
table is printed with its interval, and a claim that one model beats another rests on
the paired difference over the same items, not on two overlapping intervals.

* :func:`wilson`: the Wilson score interval of a binomial share (better than the
  normal approximation near 0 and 1 and for small n);
* :func:`retention`: accuracy kept relative to a reference row (the paper's "keeps 90%
  of full fine-tuning"), plainly and over chance, ``(acc - chance) / (ref - chance)``,
  which does not give a model credit for guessing;
* :func:`paired_difference`: mean difference of two models' per-item correctness on the
  same items, with a paired bootstrap interval;
* :func:`mean_sd`: mean and sample standard deviation over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest, bootstrap


def wilson(k: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval ``(low, high)`` of ``k`` successes out of ``n``
    (:meth:`scipy.stats.binomtest(...).proportion_ci <scipy.stats.binomtest>`).

    ``k`` may be a share times ``n`` (``acc * n``); it is rounded to the nearest count.
    """
    if n <= 0:
        raise ValueError(f"wilson: n must be positive, got {n}")
    k = round(k)
    if not 0 <= k <= n:
        raise ValueError(f"wilson: {k} successes out of {n}")
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def retention(acc: float, reference: float, chance: float | None = None) -> float:
    """``acc / reference``, or over chance ``(acc - chance) / (reference - chance)``."""
    if chance is None:
        if reference <= 0:
            raise ValueError(f"retention: reference accuracy must be positive, got {reference}")
        return acc / reference
    if reference <= chance:
        raise ValueError(f"retention over chance: reference {reference} is not above {chance}")
    return (acc - chance) / (reference - chance)


def chance_level(items: Sequence[dict]) -> float:
    """Expected accuracy of uniform guessing: the mean of ``1 / len(choices)``."""
    if not items:
        raise ValueError("chance_level: no items")
    return sum(1 / len(it["choices"]) for it in items) / len(items)


def paired_difference(
    a: Sequence[int], b: Sequence[int], resamples: int = 2000, seed: int = 0
) -> dict:
    """``{"diff", "low", "high"}``: mean of ``a - b`` (per-item 0/1 correctness on the
    same items) with a 95% percentile interval from a paired bootstrap over items
    (:func:`scipy.stats.bootstrap` on the per-item differences)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference: {len(a)} against {len(b)} items")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if np.all(d == d[0]):  # no spread: the bootstrap interval is the point itself
        return {"diff": float(d[0]), "low": float(d[0]), "high": float(d[0])}
    ci = bootstrap(
        (d,),
        np.mean,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return {"diff": float(d.mean()), "low": float(ci.low), "high": float(ci.high)}


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        raise ValueError("mean_sd: no values")
    m = sum(values) / len(values)
    if len(values) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def fmt_acc(acc: float, n: int) -> str:
    """``0.763 [0.712, 0.807]``: an accuracy with its 95% Wilson interval."""
    lo, hi = wilson(acc * n, n)
    return f"{acc:.3f} [{lo:.3f}, {hi:.3f}]"
