"""Exercise checkers for the notebooks: write a small function, get feedback.

Each notebook has one to three exercises. The exercise cell holds a stub that returns
``None``; the student replaces its body and runs the check cell::

    trimlab.exercises.check_calibration_importance(calibration_importance)

A check prints one line that starts with ``passed`` or ``not yet``, followed by a hint
when it is not yet right. It never raises (a stub that returns ``None`` or raises
``NotImplementedError`` is reported as "not yet"), so a notebook runs top to bottom
with the stubs in place. :func:`grade` returns the same verdict as a :class:`Feedback`
object, for tests (``tests/test_solutions.py`` grades the instructor solutions in
``solutions/``).

The expected answers come from the library itself wherever it has them (surgery,
accounting, :func:`trimlab.sparse.n_trainable`, :func:`trimlab.specialization.spearman`),
so an exercise and the library cannot drift apart.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from trimlab import accounting, cost, scoring, sparse, surgery
from trimlab.specialization import spearman as _spearman


@dataclass(frozen=True)
class Feedback:
    """The verdict of one check."""

    exercise: str
    passed: bool
    message: str
    hint: str = ""

    def __str__(self) -> str:
        if self.passed:
            return f"passed ({self.exercise}): {self.message}"
        text = f"not yet ({self.exercise}): {self.message}"
        return text + (f"\n  hint: {self.hint}" if self.hint else "")


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it lives, what the student writes, and how it is graded."""

    name: str
    notebook: str
    """Notebook stem, e.g. ``"02_scoring"`` (the solution is ``solutions/<stem>.py``)."""
    signature: str
    hint: str
    grader: Callable[[Callable], tuple[bool, str]]
    """Returns ``(passed, message)``; may raise (the student's errors are caught)."""


class _Wrong(Exception):
    """A case the student's function got wrong (its message says which)."""


class _NotYet(Exception):
    """The student's function is still the stub."""


def _call(fn: Callable, *args, **kwargs):
    """Call the student's function; None -> not written yet."""
    out = fn(*args, **kwargs)
    if out is None:
        raise _NotYet("your function returned None: replace the stub's body with your code")
    return out


def _check_int(got: object, want: int, what: str) -> None:
    """The student's whole number ``got`` must be the int ``want``."""
    if isinstance(got, (float, np.floating)) and got == want:
        raise _Wrong(f"{what}: the right number, but return it as an int, not {got!r}")
    if isinstance(got, bool) or not isinstance(got, (int, np.integer)) or got != want:
        raise _Wrong(f"{what}: you gave {got!r}, expected {want:,}")


def _close(got: object, want: float, tol: float = 1e-6) -> bool:
    """Whether the student's number ``got`` is ``want`` (a non-number is an error)."""
    if isinstance(got, bool):
        raise _Wrong(f"expected a number, got {got!r}")
    try:
        value = float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Wrong(f"expected a number, got {type(got).__name__} {got!r}") from None
    return math.isclose(value, float(want), rel_tol=tol, abs_tol=tol)


# --- tiny models shared by the checks (built once, copied per case) ----------------------


@cache
def _tiny(arch: str = "llama"):
    from trimlab.tiny import tiny_model

    return tiny_model(arch)[0]


def _fresh(arch: str = "llama", dropped: Sequence[str] = ()):
    model = copy.deepcopy(_tiny(arch))
    if dropped:
        surgery.drop(model, list(dropped))
    return model


# --- 00: the undroppable share ------------------------------------------------------------


def _grade_undroppable_share(fn: Callable) -> tuple[bool, str]:
    cases = [("llama", ()), ("gpt2", ()), ("llama", ("1.attn", "1.mlp", "2.mlp"))]
    for arch, dropped in cases:
        model = _fresh(arch, dropped)
        want = 1 - accounting.decoder_param_count(model) / accounting.param_count(model)
        got = _call(fn, model)
        what = f"tiny-{arch}" + (f" with {list(dropped)} dropped" if dropped else "")
        if not _close(got, want):
            raise _Wrong(f"for {what} you gave {float(got):.4f}, expected {want:.4f}")
    return True, "the share outside the decoder blocks is right, also for a trimmed model"


# --- 01: specialization ---------------------------------------------------------------------


def _grade_mlp_share(fn: Callable) -> tuple[bool, str]:
    rng = random.Random(1)
    names = [f"{b}.{k}" for b in range(6) for k in surgery.KINDS]
    for k in (1, 3, 4, 12):
        sens = [rng.uniform(-1, 2) for _ in names]
        least = np.argsort(sens, kind="stable")[:k]
        want = float(np.mean([names[i].endswith(".mlp") for i in least]))
        got = _call(fn, names, sens, k)
        if not _close(got, want):
            raise _Wrong(
                f"with k={k} you gave {float(got):.3f}, expected {want:.3f} "
                f"(the {k} least sensitive: {[names[i] for i in least]})"
            )
    return True, "the MLP share among the k least sensitive sub-layers is right"


def _grade_spearman(fn: Callable) -> tuple[bool, str]:
    rng = np.random.default_rng(3)
    cases = [([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0])]
    cases.append(([1.0, 2.0, 3.0, 4.0], [0.4, 0.3, 0.2, 0.1]))
    cases += [(list(rng.normal(size=8)), list(rng.normal(size=8))) for _ in range(3)]
    for a, b in cases:
        want = _spearman(a, b)
        got = _call(fn, list(a), list(b))
        if not _close(got, want):
            raise _Wrong(
                f"for a={np.round(a, 2).tolist()}, b={np.round(b, 2).tolist()} you gave "
                f"{float(got):.4f}, expected {want:.4f}"
            )
    return True, "your Spearman correlation matches trimlab.specialization.spearman"


# --- 02: Eq. 3 and Eq. 4 --------------------------------------------------------------------


def _check_dict(got: object, want: dict[str, float], what: str) -> None:
    if not isinstance(got, dict):
        raise _Wrong(f"expected a dict {{name: importance}}, got {type(got).__name__}")
    if set(got) != set(want):
        raise _Wrong(f"{what}: keys {sorted(got)} differ from the names {sorted(want)}")
    for name, value in want.items():
        if not _close(got[name], value, 1e-9):
            raise _Wrong(f"{what}: {name} should have importance {value:.6g}, got {got[name]!r}")


def _grade_calibration_importance(fn: Callable) -> tuple[bool, str]:
    acc = {"0.attn": 0.75, "0.mlp": 0.5, "1.attn": 0.8125, "1.mlp": 0.0}
    _check_dict(_call(fn, acc), {n: 1 / (a + 1e-3) for n, a in acc.items()}, "eps=1e-3")
    _check_dict(_call(fn, acc, eps=0.5), {n: 1 / (a + 0.5) for n, a in acc.items()}, "eps=0.5")
    return True, "Eq. 3 is right: the highest a_i (dropping it hurts least) goes first"


def _grade_activation_importance(fn: Callable) -> tuple[bool, str]:
    for norms in (
        {"0.attn": 1.0, "0.mlp": 3.0, "1.attn": 2.0, "1.mlp": 4.0},
        {"2.attn": 0.5, "5.mlp": 0.25},
    ):
        total = sum(norms.values())
        _check_dict(_call(fn, dict(norms)), {n: 1 - v / total for n, v in norms.items()}, "Eq. 4")
    return True, "Eq. 4 is right: the highest norm gets the lowest importance (dropped first)"


# --- 03: surgery accounting -----------------------------------------------------------------

_DROP_CASES = [
    ((), ["1.mlp"]),
    ((), ["0.attn", "0.mlp"]),
    ((), ["3.attn", "1.mlp", "2.attn"]),
    (("2.attn", "0.mlp"), ["2.mlp", "1.attn"]),
]


def _unchanged(model, before: list[str]) -> None:
    if surgery.sublayers(model) != before:
        raise _Wrong(
            "your function changed the model it was given: compute the answer without "
            "dropping anything (or drop from a copy.deepcopy)"
        )


def _grade_params_after_drop(fn: Callable) -> tuple[bool, str]:
    for dropped, names in _DROP_CASES:
        model = _fresh("llama", dropped)
        before = surgery.sublayers(model)
        want = accounting.param_count(surgery.drop(copy.deepcopy(model), names))
        got = _call(fn, model, list(names))
        _unchanged(model, before)
        where = f" (model with {list(dropped)} already gone)" if dropped else ""
        _check_int(got, want, f"dropping {names}{where}")
    return True, "your count matches trimlab.param_count after trimlab.drop"


def _grade_blocks_removed(fn: Callable) -> tuple[bool, str]:
    for dropped, names in _DROP_CASES:
        model = _fresh("llama", dropped)
        before = surgery.sublayers(model)
        after = surgery.block_ids(surgery.drop(copy.deepcopy(model), names))
        want = sorted(set(surgery.block_ids(model)) - set(after))
        got = _call(fn, model, list(names))
        _unchanged(model, before)
        where = f" (model with {list(dropped)} already gone)" if dropped else ""
        try:
            got_list = sorted(int(b) for b in got)
        except (TypeError, ValueError):
            raise _Wrong(f"expected a list of block ids (ints), got {got!r}") from None
        if got_list != want:
            raise _Wrong(f"dropping {names}{where}: you gave {got_list}, expected {want}")
    return True, "you know which blocks leave the layer list"


# --- 04: sparse update ----------------------------------------------------------------------


def _grade_n_trainable(fn: Callable) -> tuple[bool, str]:
    cases = [(0.25, 60), (0.25, 8), (1.0, 8), (0.01, 8), (1 / 3, 9), (0.14, 50), (0.28, 100)]
    for r, units in cases:
        want = sparse.n_trainable(r, units)
        _check_int(_call(fn, r, units), want, f"r={r:g}, U={units}")
    return True, "ceil(r*U) is right, floating-point traps included"


def _grade_select_trainable(fn: Callable) -> tuple[bool, str]:
    rng = random.Random(4)
    names = [f"{b}.{k}" for b in range(5) for k in surgery.KINDS]
    values = rng.sample(range(100), len(names))
    scores = {n: float(v) for n, v in zip(names, values)}
    for r in (0.25, 0.5, 0.1, 1.0):
        want = sparse.select_trainable(scores, r)
        got = _call(fn, dict(scores), r)
        try:
            got_set = set(got)
        except TypeError:
            raise _Wrong(f"expected a list of names, got {got!r}") from None
        if got_set != set(want) or len(list(got)) != len(want):
            raise _Wrong(f"r={r:g}: you chose {sorted(got_set)}, expected {sorted(want)}")
    return True, "you keep the ceil(r*U) most important units trainable"


# --- 05: progressive dropping ---------------------------------------------------------------


def _grade_drops_for_round(fn: Callable) -> tuple[bool, str]:
    rng = random.Random(5)
    names = [f"{b}.{k}" for b in range(5) for k in surgery.KINDS]
    for k in (1, 2, 3):
        values = [float(rng.randint(0, 4)) for _ in names]  # many ties: position decides
        scores = dict(zip(names, values))
        want = scoring.rank(scores)[:k]
        got = _call(fn, dict(scores), k)
        if list(got) != want:
            raise _Wrong(f"drop_rate={k}: you chose {list(got)}, expected {want} (in order)")
    return True, "you drop the drop_rate least important, ties going to the earlier sub-layer"


def _grade_decoder_kept(fn: Callable) -> tuple[bool, str]:
    for dropped, names in _DROP_CASES:
        base = _fresh("llama")
        sizes = accounting.sublayer_params(base)
        model = _fresh("llama", tuple(dropped) + tuple(names))
        want = accounting.compression(model)["decoder_kept"]
        got = _call(fn, dict(sizes), list(dropped) + list(names))
        if not _close(got, want):
            raise _Wrong(
                f"removing {list(dropped) + list(names)}: you gave {float(got):.4f}, "
                f"expected {want:.4f}"
            )
    return True, "your share matches trimlab.compression(model)['decoder_kept']"


# --- 06: ablations --------------------------------------------------------------------------


def _grade_rule_order(fn: Callable) -> tuple[bool, str]:
    for dropped in ((), ("1.attn", "2.mlp")):
        model = _fresh("llama", dropped)
        names = surgery.sublayers(model)
        for rule in ("top", "bottom"):
            want = scoring.rank(scoring.rule_scores(model, rule))
            got = _call(fn, list(names), rule)
            if list(got) != want:
                raise _Wrong(f"rule {rule!r} over {names}: you gave {list(got)}, expected {want}")
    return True, "top drops from the output end, bottom from the input end"


# --- 07: measuring speed --------------------------------------------------------------------


def _grade_decode_speedup(fn: Callable) -> tuple[bool, str]:
    cases = [
        ([1.0, 1.1, 0.9], [0.5, 0.55, 0.45]),
        ([1.0, 1.0, 9.0, 1.0, 1.0], [0.8, 0.8, 0.8, 0.8, 0.8]),  # one stall in the full runs
        ([2.0, 2.2, 2.1, 1.9], [1.5, 5.0, 1.4, 1.6]),
    ]
    for full, trimmed in cases:
        want = float(np.median(full) / np.median(trimmed))
        got = _call(fn, list(full), list(trimmed))
        if not _close(got, want):
            mean = float(np.mean(full) / np.mean(trimmed))
            extra = " (that is the ratio of means: one stall moves it)" if _close(got, mean) else ""
            raise _Wrong(
                f"full {full}, trimmed {trimmed}: you gave {float(got):.4f}, "
                f"expected {want:.4f}{extra}"
            )
    return True, "median over median: robust to the odd stalled run"


# --- 08: training cost ----------------------------------------------------------------------


def _grade_cost(fn: Callable, eq: Callable, cases, what: str) -> tuple[bool, str]:
    for L, D in cases:
        want = eq(L, D)
        got = _call(fn, L, D)
        if not _close(got, want):
            raise _Wrong(f"L={L}, D={D}: you gave {got!r}, expected {want:g} (units of t)")
    return True, what


def _grade_eq5(fn: Callable) -> tuple[bool, str]:
    cases = ((32, 16), (30, 1), (60, 30), (10, 0), (12, 12))
    return _grade_cost(fn, cost.eq5, cases, "Eq. 5 is right: L + (L - 1) + ... + (L - D + 1)")


def _grade_eq6(fn: Callable) -> tuple[bool, str]:
    cases = ((32, 16), (30, 2), (60, 30), (10, 0), (12, 12))
    return _grade_cost(fn, cost.eq6, cases, "Eq. 6 is right: L + (L - 2) + ... + (L - D + 2)")


# --- registry and the public checks ------------------------------------------------------

EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in [
        Exercise(
            "undroppable_share",
            "00_setup",
            "undroppable_share(model) -> float",
            "trimlab.sublayer_params(model) maps every sub-layer to its parameter count, and "
            "together they are the decoder blocks; trimlab.param_count(model) is the total",
            _grade_undroppable_share,
        ),
        Exercise(
            "mlp_share",
            "01_hypothesis",
            "mlp_share(names, sensitivity, k) -> float",
            "np.argsort(sensitivity, kind='stable') lists the positions from least to most "
            "sensitive; look at the names of the first k",
            _grade_mlp_share,
        ),
        Exercise(
            "spearman",
            "01_hypothesis",
            "spearman(a, b) -> float",
            "Spearman's rho is the Pearson correlation of the ranks; np.argsort(np.argsort(x)) "
            "gives the rank of each element, np.corrcoef a Pearson correlation",
            _grade_spearman,
        ),
        Exercise(
            "calibration_importance",
            "02_scoring",
            "calibration_importance(accuracies, eps=1e-3) -> dict",
            "Eq. 3: s_i = 1 / (a_i + eps) for every name i; return a new dict",
            _grade_calibration_importance,
        ),
        Exercise(
            "activation_importance",
            "02_scoring",
            "activation_importance(norms) -> dict",
            "Eq. 4: s_i = 1 - n_i / sum_j n_j, the sum over all names in the dict",
            _grade_activation_importance,
        ),
        Exercise(
            "params_after_drop",
            "03_surgery",
            "params_after_drop(model, names) -> int",
            "a dropped sub-layer takes all its parameters, its norms included, with it; "
            "trimlab.sublayer_params(model) counts them per sub-layer",
            _grade_params_after_drop,
        ),
        Exercise(
            "blocks_removed",
            "03_surgery",
            "blocks_removed(model, names) -> list[int]",
            "a block leaves the layer list when none of its sub-layers is left: look at "
            "trimlab.sublayers(model) (some blocks may have only one sub-layer already)",
            _grade_blocks_removed,
        ),
        Exercise(
            "n_trainable",
            "04_sparse_finetuning",
            "n_trainable(r, units) -> int",
            "math.ceil(r * units) is almost it, but r * units is inexact in floating point "
            "(0.14 * 50 == 7.000000000000001): make math.ceil ignore an error that small",
            _grade_n_trainable,
        ),
        Exercise(
            "select_trainable",
            "04_sparse_finetuning",
            "select_trainable(scores, r) -> list[str]",
            "trimlab.rank(scores) orders names from least to most important; keep the "
            "last n_trainable(r, len(scores)) of them",
            _grade_select_trainable,
        ),
        Exercise(
            "drops_for_round",
            "05_progressive_dropping",
            "drops_for_round(scores, drop_rate) -> list[str]",
            "trimlab.rank(scores) lists names from least to most important (ties by "
            "position); a round drops the first drop_rate of them",
            _grade_drops_for_round,
        ),
        Exercise(
            "decoder_kept",
            "05_progressive_dropping",
            "decoder_kept(sizes, removed) -> float",
            "sizes maps every sub-layer of the untrimmed model to its parameter count and "
            "together they are the decoder; kept = 1 - (sum over removed) / (sum over all)",
            _grade_decoder_kept,
        ),
        Exercise(
            "rule_order",
            "06_ablations",
            "rule_order(names, rule) -> list[str]",
            "names come in forward order; 'bottom' drops the first ones first, 'top' the "
            "last ones first (list(reversed(names)))",
            _grade_rule_order,
        ),
        Exercise(
            "decode_speedup",
            "07_speed",
            "decode_speedup(full_seconds, trimmed_seconds) -> float",
            "a speedup is a ratio of times, full over trimmed; take the median of each list "
            "(statistics.median), which one stalled run cannot move",
            _grade_decode_speedup,
        ),
        Exercise(
            "eq5",
            "08_training_cost",
            "eq5(L, D) -> float",
            "one layer dropped per epoch: epoch i trains L - i layers, for i = 0 .. D - 1; "
            "sum them",
            _grade_eq5,
        ),
        Exercise(
            "eq6",
            "08_training_cost",
            "eq6(L, D) -> float",
            "two layers dropped per epoch: D / 2 epochs, epoch i trains L - 2 i layers",
            _grade_eq6,
        ),
    ]
}


def grade(exercise: str, fn: Callable) -> Feedback:
    """Grade ``fn`` for ``exercise`` (a key of :data:`EXERCISES`); never raises for the
    student's mistakes."""
    if exercise not in EXERCISES:
        raise ValueError(f"unknown exercise {exercise!r}; known: {', '.join(EXERCISES)}")
    ex = EXERCISES[exercise]
    if not callable(fn):
        return Feedback(exercise, False, f"expected a function, got {type(fn).__name__}", ex.hint)
    try:
        passed, message = ex.grader(fn)
    except NotImplementedError:
        return Feedback(exercise, False, "the stub still raises NotImplementedError", ex.hint)
    except _NotYet as e:
        return Feedback(exercise, False, str(e), ex.hint)
    except _Wrong as e:
        return Feedback(exercise, False, str(e), ex.hint)
    except Exception as e:  # the student's code failed: report, do not crash the notebook
        return Feedback(exercise, False, f"your function raised {type(e).__name__}: {e}", ex.hint)
    return Feedback(exercise, passed, message)


def _checker(exercise: str) -> Callable[[Callable], None]:
    ex = EXERCISES[exercise]

    def check(fn: Callable) -> None:
        print(grade(exercise, fn))

    check.__name__ = f"check_{exercise}"
    check.__qualname__ = check.__name__
    check.__doc__ = (
        f"Check your ``{ex.signature}`` (notebook {ex.notebook}); prints 'passed' or "
        f"'not yet' with a hint. Never raises."
    )
    return check


check_undroppable_share = _checker("undroppable_share")
check_mlp_share = _checker("mlp_share")
check_spearman = _checker("spearman")
check_calibration_importance = _checker("calibration_importance")
check_activation_importance = _checker("activation_importance")
check_params_after_drop = _checker("params_after_drop")
check_blocks_removed = _checker("blocks_removed")
check_n_trainable = _checker("n_trainable")
check_select_trainable = _checker("select_trainable")
check_drops_for_round = _checker("drops_for_round")
check_decoder_kept = _checker("decoder_kept")
check_rule_order = _checker("rule_order")
check_decode_speedup = _checker("decode_speedup")
check_eq5 = _checker("eq5")
check_eq6 = _checker("eq6")

__all__ = ["EXERCISES", "Exercise", "Feedback", "grade"] + [f"check_{n}" for n in EXERCISES]
