"""Exercises of notebooks/08_training_cost.ipynb: the cost of progressive dropping.

The paper's Appendix A.5 models the training time of a model that shrinks as it trains:
Eq. 5 drops one layer per epoch, Eq. 6 two. ``eq5`` and ``eq6`` are checked against
:func:`trimlab.cost.eq5` and :func:`trimlab.cost.eq6`, in units of one layer-epoch t.
"""

from __future__ import annotations

from collections.abc import Callable

from trimlab import cost
from trimlab.exercises.core import Exercise, Wrong, call, checker, close


def _grade_cost(fn: Callable, eq: Callable, cases, what: str) -> tuple[bool, str]:
    for L, D in cases:
        want = eq(L, D)
        got = call(fn, L, D)
        if not close(got, want):
            raise Wrong(f"L={L}, D={D}: you gave {got!r}, expected {want:g} (units of t)")
    return True, what


# --- eq5 ------------------------------------------------------------------------------------


def _grade_eq5(fn: Callable) -> tuple[bool, str]:
    cases = ((32, 16), (30, 1), (60, 30), (10, 0), (12, 12))
    return _grade_cost(fn, cost.eq5, cases, "Eq. 5 is right: L + (L - 1) + ... + (L - D + 1)")


EQ5 = Exercise(
    name="eq5",
    notebook="08_training_cost",
    signature="eq5(L, D) -> float",
    hint="one layer dropped per epoch: epoch i trains L - i layers, for i = 0 .. D - 1; sum them",
    grader=_grade_eq5,
)
check_eq5 = checker(EQ5)

# --- eq6 ------------------------------------------------------------------------------------


def _grade_eq6(fn: Callable) -> tuple[bool, str]:
    cases = ((32, 16), (30, 2), (60, 30), (10, 0), (12, 12))
    return _grade_cost(fn, cost.eq6, cases, "Eq. 6 is right: L + (L - 2) + ... + (L - D + 2)")


EQ6 = Exercise(
    name="eq6",
    notebook="08_training_cost",
    signature="eq6(L, D) -> float",
    hint="two layers dropped per epoch: D / 2 epochs, epoch i trains L - 2 i layers",
    grader=_grade_eq6,
)
check_eq6 = checker(EQ6)

CHAPTER_EXERCISES = (EQ5, EQ6)
