"""Exercises of notebooks/01_hypothesis.ipynb: reading the drop-one sensitivity experiment.

TrimLLM's Hypothesis 1 (the paper's Fig. 1): layers specialise by domain, so some
sub-layers can go with little loss. ``mlp_share`` asks which kind of sub-layer is least
sensitive; ``spearman`` compares two domains' sensitivity orders (the statistic of
:mod:`trimlab.specialization`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from trimlab import surgery
from trimlab.exercises.core import Exercise, Wrong, call, checker, close
from trimlab.specialization import spearman as reference_spearman

# --- mlp_share ------------------------------------------------------------------------------


def _grade_mlp_share(fn: Callable) -> tuple[bool, str]:
    rng = random.Random(1)
    names = [f"{b}.{k}" for b in range(6) for k in surgery.KINDS]
    for k in (1, 3, 4, 12):
        sens = [rng.uniform(-1, 2) for _ in names]
        least = np.argsort(sens, kind="stable")[:k]
        want = float(np.mean([names[i].endswith(".mlp") for i in least]))
        got = call(fn, names, sens, k)
        if not close(got, want):
            raise Wrong(
                f"with k={k} you gave {float(got):.3f}, expected {want:.3f} "
                f"(the {k} least sensitive: {[names[i] for i in least]})"
            )
    return True, "the MLP share among the k least sensitive sub-layers is right"


MLP_SHARE = Exercise(
    name="mlp_share",
    notebook="01_hypothesis",
    signature="mlp_share(names, sensitivity, k) -> float",
    hint="np.argsort(sensitivity, kind='stable') lists the positions from least to most "
    "sensitive; look at the names of the first k",
    grader=_grade_mlp_share,
)
check_mlp_share = checker(MLP_SHARE)

# --- spearman -------------------------------------------------------------------------------


def _grade_spearman(fn: Callable) -> tuple[bool, str]:
    rng = np.random.default_rng(3)
    cases = [([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0])]
    cases.append(([1.0, 2.0, 3.0, 4.0], [0.4, 0.3, 0.2, 0.1]))
    cases += [(list(rng.normal(size=8)), list(rng.normal(size=8))) for _ in range(3)]
    for a, b in cases:
        want = reference_spearman(a, b)
        got = call(fn, list(a), list(b))
        if not close(got, want):
            raise Wrong(
                f"for a={np.round(a, 2).tolist()}, b={np.round(b, 2).tolist()} you gave "
                f"{float(got):.4f}, expected {want:.4f}"
            )
    return True, "your Spearman correlation matches trimlab.specialization.spearman"


SPEARMAN = Exercise(
    name="spearman",
    notebook="01_hypothesis",
    signature="spearman(a, b) -> float",
    hint="Spearman's rho is the Pearson correlation of the ranks; np.argsort(np.argsort(x)) "
    "gives the rank of each element, np.corrcoef a Pearson correlation",
    grader=_grade_spearman,
)
check_spearman = checker(SPEARMAN)

CHAPTER_EXERCISES = (MLP_SHARE, SPEARMAN)
