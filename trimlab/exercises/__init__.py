"""Exercise checkers for the notebooks: write a small function, get feedback.

Each notebook has one to three exercises. The exercise cell holds a stub that returns
``None``; the student replaces its body and runs the check cell::

    trimlab.exercises.check_calibration_importance(calibration_importance)

A check prints one line that starts with ``passed`` or ``not yet``. The hint appears on
request: ``check_<name>(fn, hint=True)``. It never raises (a stub that returns ``None`` or raises
``NotImplementedError`` is reported as "not yet"), so a notebook runs top to bottom
with the stubs in place. :func:`grade` returns the same verdict as a :class:`Feedback`
object, for tests (``tests/test_solutions.py`` grades the instructor solutions in
``solutions/``).

The expected answers come from the library itself wherever it has them (surgery,
accounting, :func:`trimlab.sparse.n_trainable`, :func:`trimlab.specialization.spearman`),
so an exercise and the library cannot drift apart.

One module per notebook holds that notebook's exercises, each grader next to its hint:
:mod:`~trimlab.exercises.nb00_setup` ... :mod:`~trimlab.exercises.nb08_training_cost`.
The machinery they share (the verdict, grading, the tiny test models) is in
:mod:`~trimlab.exercises.core`.
"""

from __future__ import annotations

from collections.abc import Callable

from trimlab.exercises import (  # the chapters, one module per notebook
    nb00_setup,
    nb01_hypothesis,
    nb02_scoring,
    nb03_surgery,
    nb04_sparse_finetuning,
    nb05_progressive_dropping,
    nb06_ablations,
    nb07_speed,
    nb08_training_cost,
)
from trimlab.exercises.core import Exercise, Feedback, grade_exercise
from trimlab.exercises.nb00_setup import check_undroppable_share
from trimlab.exercises.nb01_hypothesis import check_mlp_share, check_spearman
from trimlab.exercises.nb02_scoring import (
    check_activation_importance,
    check_activation_norm,
    check_both_order,
    check_calibration_importance,
    check_drop_one_scan,
)
from trimlab.exercises.nb03_surgery import (
    check_blocks_removed,
    check_params_after_drop,
    check_skip_mlp,
)
from trimlab.exercises.nb04_sparse_finetuning import check_n_trainable, check_select_trainable
from trimlab.exercises.nb05_progressive_dropping import (
    check_decoder_kept,
    check_drops_for_round,
    check_kd_loss,
    check_trim_loop,
)
from trimlab.exercises.nb06_ablations import check_rule_order
from trimlab.exercises.nb07_speed import check_decode_speedup
from trimlab.exercises.nb08_training_cost import check_eq5, check_eq6

CHAPTERS = (
    nb00_setup,
    nb01_hypothesis,
    nb02_scoring,
    nb03_surgery,
    nb04_sparse_finetuning,
    nb05_progressive_dropping,
    nb06_ablations,
    nb07_speed,
    nb08_training_cost,
)
"""The chapter modules, in notebook order."""

EXERCISES: dict[str, Exercise] = {e.name: e for ch in CHAPTERS for e in ch.CHAPTER_EXERCISES}


def grade(exercise: str, fn: Callable) -> Feedback:
    """Grade ``fn`` for ``exercise`` (a key of :data:`EXERCISES`); never raises for the
    student's mistakes."""
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; known: {', '.join(EXERCISES)}")
    return grade_exercise(EXERCISES[exercise], fn)


__all__ = [
    "EXERCISES",
    "Exercise",
    "Feedback",
    "grade",
    "check_undroppable_share",
    "check_mlp_share",
    "check_spearman",
    "check_calibration_importance",
    "check_activation_importance",
    "check_drop_one_scan",
    "check_activation_norm",
    "check_both_order",
    "check_params_after_drop",
    "check_blocks_removed",
    "check_skip_mlp",
    "check_n_trainable",
    "check_select_trainable",
    "check_drops_for_round",
    "check_decoder_kept",
    "check_trim_loop",
    "check_kd_loss",
    "check_rule_order",
    "check_decode_speedup",
    "check_eq5",
    "check_eq6",
]
