"""Exercises of notebooks/02_scoring.ipynb: the paper's two importance scores.

TrimLLM Sec. 3.3 scores every sub-layer before a drop: Eq. 3 from the calibration
accuracy without it (``calibration_importance``), Eq. 4 from its activation norm
(``activation_importance``). The lowest score is dropped first.
"""

from __future__ import annotations

from collections.abc import Callable

from trimlab.exercises.core import Exercise, Wrong, call, checker, close


def _check_dict(got: object, want: dict[str, float], what: str) -> None:
    if not isinstance(got, dict):
        raise Wrong(f"expected a dict {{name: importance}}, got {type(got).__name__}")
    if set(got) != set(want):
        raise Wrong(f"{what}: keys {sorted(got)} differ from the names {sorted(want)}")
    for name, value in want.items():
        if not close(got[name], value, 1e-9):
            raise Wrong(f"{what}: {name} should have importance {value:.6g}, got {got[name]!r}")


# --- calibration_importance (Eq. 3) ---------------------------------------------------------


def _grade_calibration_importance(fn: Callable) -> tuple[bool, str]:
    acc = {"0.attn": 0.75, "0.mlp": 0.5, "1.attn": 0.8125, "1.mlp": 0.0}
    _check_dict(call(fn, acc), {n: 1 / (a + 1e-3) for n, a in acc.items()}, "eps=1e-3")
    _check_dict(call(fn, acc, eps=0.5), {n: 1 / (a + 0.5) for n, a in acc.items()}, "eps=0.5")
    return True, "Eq. 3 is right: the highest a_i (dropping it hurts least) goes first"


CALIBRATION_IMPORTANCE = Exercise(
    name="calibration_importance",
    notebook="02_scoring",
    signature="calibration_importance(accuracies, eps=1e-3) -> dict",
    hint="Eq. 3: s_i = 1 / (a_i + eps) for every name i; return a new dict",
    grader=_grade_calibration_importance,
)
check_calibration_importance = checker(CALIBRATION_IMPORTANCE)

# --- activation_importance (Eq. 4) ----------------------------------------------------------


def _grade_activation_importance(fn: Callable) -> tuple[bool, str]:
    for norms in (
        {"0.attn": 1.0, "0.mlp": 3.0, "1.attn": 2.0, "1.mlp": 4.0},
        {"2.attn": 0.5, "5.mlp": 0.25},
    ):
        total = sum(norms.values())
        _check_dict(call(fn, dict(norms)), {n: 1 - v / total for n, v in norms.items()}, "Eq. 4")
    return True, "Eq. 4 is right: the highest norm gets the lowest importance (dropped first)"


ACTIVATION_IMPORTANCE = Exercise(
    name="activation_importance",
    notebook="02_scoring",
    signature="activation_importance(norms) -> dict",
    hint="Eq. 4: s_i = 1 - n_i / sum_j n_j, the sum over all names in the dict",
    grader=_grade_activation_importance,
)
check_activation_importance = checker(ACTIVATION_IMPORTANCE)

CHAPTER_EXERCISES = (CALIBRATION_IMPORTANCE, ACTIVATION_IMPORTANCE)
