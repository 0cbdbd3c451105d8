"""Exercises of notebooks/03_surgery.ipynb: what removing sub-layers does to a model.

TrimLLM Sec. 3.2 removes sub-layers physically. ``params_after_drop`` counts what is
left and ``blocks_removed`` names the decoder blocks that leave the layer list; both are
checked against :func:`trimlab.drop` on a copy, and must leave the given model alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from trimlab import accounting, surgery
from trimlab.exercises.core import DROP_CASES, Exercise, Wrong, call, check_int, checker, fresh


def _unchanged(model, before: list[str]) -> None:
    if surgery.sublayers(model) != before:
        raise Wrong(
            "your function changed the model it was given: compute the answer without "
            "dropping anything (or drop from a copy.deepcopy)"
        )


# --- params_after_drop ----------------------------------------------------------------------


def _grade_params_after_drop(fn: Callable) -> tuple[bool, str]:
    for dropped, names in DROP_CASES:
        model = fresh("llama", dropped)
        before = surgery.sublayers(model)
        want = accounting.param_count(surgery.drop(copy.deepcopy(model), names))
        got = call(fn, model, list(names))
        _unchanged(model, before)
        where = f" (model with {list(dropped)} already gone)" if dropped else ""
        check_int(got, want, f"dropping {names}{where}")
    return True, "your count matches trimlab.param_count after trimlab.drop"


PARAMS_AFTER_DROP = Exercise(
    name="params_after_drop",
    notebook="03_surgery",
    signature="params_after_drop(model, names) -> int",
    hint="a dropped sub-layer takes all its parameters, its norms included, with it; "
    "trimlab.sublayer_params(model) counts them per sub-layer",
    grader=_grade_params_after_drop,
)
check_params_after_drop = checker(PARAMS_AFTER_DROP)

# --- blocks_removed -------------------------------------------------------------------------


def _grade_blocks_removed(fn: Callable) -> tuple[bool, str]:
    for dropped, names in DROP_CASES:
        model = fresh("llama", dropped)
        before = surgery.sublayers(model)
        after = surgery.block_ids(surgery.drop(copy.deepcopy(model), names))
        want = sorted(set(surgery.block_ids(model)) - set(after))
        got = call(fn, model, list(names))
        _unchanged(model, before)
        where = f" (model with {list(dropped)} already gone)" if dropped else ""
        try:
            got_list = sorted(int(b) for b in got)
        except (TypeError, ValueError):
            raise Wrong(f"expected a list of block ids (ints), got {got!r}") from None
        if got_list != want:
            raise Wrong(f"dropping {names}{where}: you gave {got_list}, expected {want}")
    return True, "you know which blocks leave the layer list"


BLOCKS_REMOVED = Exercise(
    name="blocks_removed",
    notebook="03_surgery",
    signature="blocks_removed(model, names) -> list[int]",
    hint="a block leaves the layer list when none of its sub-layers is left: look at "
    "trimlab.sublayers(model) (some blocks may have only one sub-layer already)",
    grader=_grade_blocks_removed,
)
check_blocks_removed = checker(BLOCKS_REMOVED)

CHAPTER_EXERCISES = (PARAMS_AFTER_DROP, BLOCKS_REMOVED)
