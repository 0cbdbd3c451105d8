"""Exercise of notebooks/07_speed.ipynb: measuring a speedup honestly.

The paper's speed results (its Tables 1 and 7, Fig. 2) are ratios of measured times.
``decode_speedup`` takes the median over repeated runs, so one stalled run cannot move
it (the ratio of means can).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trimlab.exercises.core import Exercise, Wrong, call, checker, close


def _grade_decode_speedup(fn: Callable) -> tuple[bool, str]:
    cases = [
        ([1.0, 1.1, 0.9], [0.5, 0.55, 0.45]),
        ([1.0, 1.0, 9.0, 1.0, 1.0], [0.8, 0.8, 0.8, 0.8, 0.8]),  # one stall in the full runs
        ([2.0, 2.2, 2.1, 1.9], [1.5, 5.0, 1.4, 1.6]),
    ]
    for full, trimmed in cases:
        want = float(np.median(full) / np.median(trimmed))
        got = call(fn, list(full), list(trimmed))
        if not close(got, want):
            mean = float(np.mean(full) / np.mean(trimmed))
            extra = " (that is the ratio of means: one stall moves it)" if close(got, mean) else ""
            raise Wrong(
                f"full {full}, trimmed {trimmed}: you gave {float(got):.4f}, "
                f"expected {want:.4f}{extra}"
            )
    return True, "median over median: robust to the odd stalled run"


DECODE_SPEEDUP = Exercise(
    name="decode_speedup",
    notebook="07_speed",
    signature="decode_speedup(full_seconds, trimmed_seconds) -> float",
    hint="a speedup is a ratio of times, full over trimmed; take the median of each list "
    "(statistics.median), which one stalled run cannot move",
    grader=_grade_decode_speedup,
)
check_decode_speedup = checker(DECODE_SPEEDUP)

CHAPTER_EXERCISES = (DECODE_SPEEDUP,)
