"""Solutions to the exercises of notebooks/04_sparse_finetuning.ipynb."""

import math

import trimlab


def n_trainable(r, units):
    """ceil(r * U), robust to floating point (0.14 * 50 is 7.000000000000001)."""
    return min(units, math.ceil(r * units - 1e-9))


def select_trainable(scores, r):
    """The ceil(r * U) most important units: the last ones of trimlab.rank."""
    order = trimlab.rank(scores)
    return order[len(order) - n_trainable(r, len(order)) :]
