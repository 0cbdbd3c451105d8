"""Exercises of notebooks/04_sparse_finetuning.ipynb: the sparse update.

TrimLLM Sec. 3.4 keeps only the ceil(r * U) most important units trainable (r = 1/4 is
best in the paper's Table 6). ``n_trainable`` is that count, floating-point traps
included; ``select_trainable`` picks the units. Both are checked against
:mod:`trimlab.sparse`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from trimlab import sparse, surgery
from trimlab.exercises.core import Exercise, Wrong, call, check_int, checker

# --- n_trainable ----------------------------------------------------------------------------


def _grade_n_trainable(fn: Callable) -> tuple[bool, str]:
    cases = [(0.25, 60), (0.25, 8), (1.0, 8), (0.01, 8), (1 / 3, 9), (0.14, 50), (0.28, 100)]
    for r, units in cases:
        want = sparse.n_trainable(r, units)
        check_int(call(fn, r, units), want, f"r={r:g}, U={units}")
    return True, "ceil(r*U) is right, floating-point traps included"


N_TRAINABLE = Exercise(
    name="n_trainable",
    notebook="04_sparse_finetuning",
    signature="n_trainable(r, units) -> int",
    hint="math.ceil(r * units) is almost it, but r * units is inexact in floating point "
    "(0.14 * 50 == 7.000000000000001): make math.ceil ignore an error that small",
    grader=_grade_n_trainable,
)
check_n_trainable = checker(N_TRAINABLE)

# --- select_trainable -----------------------------------------------------------------------


def _grade_select_trainable(fn: Callable) -> tuple[bool, str]:
    rng = random.Random(4)
    names = [f"{b}.{k}" for b in range(5) for k in surgery.KINDS]
    values = rng.sample(range(100), len(names))
    scores = {n: float(v) for n, v in zip(names, values)}
    for r in (0.25, 0.5, 0.1, 1.0):
        want = sparse.select_trainable(scores, r)
        got = call(fn, dict(scores), r)
        try:
            got_set = set(got)
        except TypeError:
            raise Wrong(f"expected a list of names, got {got!r}") from None
        if got_set != set(want) or len(list(got)) != len(want):
            raise Wrong(f"r={r:g}: you chose {sorted(got_set)}, expected {sorted(want)}")
    return True, "you keep the ceil(r*U) most important units trainable"


SELECT_TRAINABLE = Exercise(
    name="select_trainable",
    notebook="04_sparse_finetuning",
    signature="select_trainable(scores, r) -> list[str]",
    hint="trimlab.rank(scores) orders names from least to most important; keep the "
    "last n_trainable(r, len(scores)) of them",
    grader=_grade_select_trainable,
)
check_select_trainable = checker(SELECT_TRAINABLE)

CHAPTER_EXERCISES = (N_TRAINABLE, SELECT_TRAINABLE)
