"""Exercises of notebooks/05_progressive_dropping.ipynb: one round of the trim loop.

TrimLLM Sec. 3.2 drops, round by round, the least important sub-layers until the model
is as small as asked. ``drops_for_round`` picks a round's drops (checked against
:func:`trimlab.rank`); ``decoder_kept`` measures progress towards the target (checked
against :func:`trimlab.compression`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from trimlab import accounting, scoring, surgery
from trimlab.exercises.core import DROP_CASES, Exercise, Wrong, call, checker, close, fresh

# --- drops_for_round ------------------------------------------------------------------------


def _grade_drops_for_round(fn: Callable) -> tuple[bool, str]:
    rng = random.Random(5)
    names = [f"{b}.{k}" for b in range(5) for k in surgery.KINDS]
    for k in (1, 2, 3):
        values = [float(rng.randint(0, 4)) for _ in names]  # many ties: position decides
        scores = dict(zip(names, values))
        want = scoring.rank(scores)[:k]
        got = call(fn, dict(scores), k)
        if list(got) != want:
            raise Wrong(f"drop_rate={k}: you chose {list(got)}, expected {want} (in order)")
    return True, "you drop the drop_rate least important, ties going to the earlier sub-layer"


DROPS_FOR_ROUND = Exercise(
    name="drops_for_round",
    notebook="05_progressive_dropping",
    signature="drops_for_round(scores, drop_rate) -> list[str]",
    hint="trimlab.rank(scores) lists names from least to most important (ties by "
    "position); a round drops the first drop_rate of them",
    grader=_grade_drops_for_round,
)
check_drops_for_round = checker(DROPS_FOR_ROUND)

# --- decoder_kept ---------------------------------------------------------------------------


def _grade_decoder_kept(fn: Callable) -> tuple[bool, str]:
    for dropped, names in DROP_CASES:
        base = fresh("llama")
        sizes = accounting.sublayer_params(base)
        model = fresh("llama", tuple(dropped) + tuple(names))
        want = accounting.compression(model)["decoder_kept"]
        got = call(fn, dict(sizes), list(dropped) + list(names))
        if not close(got, want):
            raise Wrong(
                f"removing {list(dropped) + list(names)}: you gave {float(got):.4f}, "
                f"expected {want:.4f}"
            )
    return True, "your share matches trimlab.compression(model)['decoder_kept']"


DECODER_KEPT = Exercise(
    name="decoder_kept",
    notebook="05_progressive_dropping",
    signature="decoder_kept(sizes, removed) -> float",
    hint="sizes maps every sub-layer of the untrimmed model to its parameter count and "
    "together they are the decoder; kept = 1 - (sum over removed) / (sum over all)",
    grader=_grade_decoder_kept,
)
check_decoder_kept = checker(DECODER_KEPT)

CHAPTER_EXERCISES = (DROPS_FOR_ROUND, DECODER_KEPT)
