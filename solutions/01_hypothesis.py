"""Solutions to the exercises of notebooks/01_hypothesis.ipynb."""

import numpy as np


def mlp_share(names, sensitivity, k):
    """Share of MLP sub-layers among the ``k`` least sensitive ones."""
    least = np.argsort(sensitivity, kind="stable")[:k]
    return float(np.mean([names[i].endswith(".mlp") for i in least]))


def spearman(a, b):
    """Spearman's rank correlation of two lists without ties."""
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])
