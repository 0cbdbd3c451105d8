"""Shared machinery of the exercise checks: the verdict, the exercise, and grading.

A chapter module (``nb00_setup`` ... ``nb08_training_cost``) writes one grader per
exercise: a function of the student's function that returns ``(passed, message)`` and
raises :class:`Wrong` for a case the student got wrong. It calls the student's code
through :func:`call`, compares with :func:`close` or :func:`check_int`, and builds its
test models with :func:`fresh`. :func:`grade_exercise` turns a grader's outcome, errors
included, into a :class:`Feedback`; :func:`checker` makes the ``check_<name>`` function a
notebook calls.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from trimlab import surgery


@dataclass(frozen=True)
class Feedback:
    """The verdict of one check."""

    exercise: str
    passed: bool
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return self.text(hint=True)

    def text(self, hint: bool = False) -> str:
        """The verdict; a "not yet" ends with the hint (``hint=True``) or says how to
        ask for it."""
        if self.passed:
            return f"passed ({self.exercise}): {self.message}"
        text = f"not yet ({self.exercise}): {self.message}"
        if not self.hint:
            return text
        if hint:
            return f"{text}\n  hint: {self.hint}"
        return f"{text}\n  (stuck? check_{self.exercise}(your_function, hint=True) shows a hint)"


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


class Wrong(Exception):
    """A case the student's function got wrong (its message says which)."""


class NotYet(Exception):
    """The student's function is still the stub."""


def call(fn: Callable, *args, **kwargs):
    """Call the student's function; None -> not written yet."""
    out = fn(*args, **kwargs)
    if out is None:
        raise NotYet("your function returned None: replace the stub's body with your code")
    return out


def check_int(got: object, want: int, what: str) -> None:
    """The student's whole number ``got`` must be the int ``want``."""
    if isinstance(got, (float, np.floating)) and got == want:
        raise Wrong(f"{what}: the right number, but return it as an int, not {got!r}")
    if isinstance(got, bool) or not isinstance(got, (int, np.integer)) or got != want:
        raise Wrong(f"{what}: you gave {got!r}, expected {want:,}")


def close(got: object, want: float, tol: float = 1e-6) -> bool:
    """Whether the student's number ``got`` is ``want`` (a non-number is an error)."""
    if isinstance(got, bool):
        raise Wrong(f"expected a number, got {got!r}")
    try:
        value = float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Wrong(f"expected a number, got {type(got).__name__} {got!r}") from None
    return math.isclose(value, float(want), rel_tol=tol, abs_tol=tol)


# --- tiny models shared by the checks (built once, copied per case) ----------------------


@cache
def _tiny(arch: str = "llama"):
    from trimlab.tiny import tiny_model

    return tiny_model(arch)[0]


def tiny_tokenizer():
    """The byte-level tokenizer of the tiny models."""
    from trimlab.tiny import byte_tokenizer

    return byte_tokenizer()


def fresh(arch: str = "llama", dropped: Sequence[str] = ()):
    """A private copy of the tiny ``arch`` model, with sub-layers ``dropped`` removed."""
    model = copy.deepcopy(_tiny(arch))
    if dropped:
        surgery.drop(model, list(dropped))
    return model


def toy_items(n: int = 12, offset: int = 0) -> list[dict]:
    """``n`` three-choice arithmetic items ("What is 3 plus 4?"), for the checks that
    evaluate a tiny model (no data files needed)."""
    items = []
    for i in range(offset, offset + n):
        a, b = i % 9 + 1, i // 9 + 1
        items.append(
            {
                "id": f"toy-{i}",
                "question": f"What is {a} plus {b}?",
                "choices": [str(a + b), str(a + b + 1), str(a + b + 3)],
                "answer": i % 3,
                "context": None,
            }
        )
    for item in items:  # put the right sum at the answer's place
        right = item["choices"].pop(0)
        item["choices"].insert(item["answer"], right)
    return items


DROP_CASES = [
    ((), ["1.mlp"]),
    ((), ["0.attn", "0.mlp"]),
    ((), ["3.attn", "1.mlp", "2.attn"]),
    (("2.attn", "0.mlp"), ["2.mlp", "1.attn"]),
]
"""``(already dropped, names to drop)`` on tiny-llama, for the checks of 03 and 05."""


# --- grading -------------------------------------------------------------------------------


def grade_exercise(ex: Exercise, fn: Callable) -> Feedback:
    """Grade ``fn`` for ``ex``; never raises for the student's mistakes."""
    if not callable(fn):
        return Feedback(ex.name, False, f"expected a function, got {type(fn).__name__}", ex.hint)
    try:
        passed, message = ex.grader(fn)
    except NotImplementedError:
        return Feedback(ex.name, False, "the stub still raises NotImplementedError", ex.hint)
    except NotYet as e:
        return Feedback(ex.name, False, str(e), ex.hint)
    except Wrong as e:
        return Feedback(ex.name, False, str(e), ex.hint)
    except Exception as e:  # the student's code failed: report, do not crash the notebook
        return Feedback(ex.name, False, f"your function raised {type(e).__name__}: {e}", ex.hint)
    return Feedback(ex.name, passed, message)


def checker(ex: Exercise) -> Callable[[Callable], None]:
    """The ``check_<name>`` function of ``ex``: prints its :class:`Feedback`."""

    def check(fn: Callable, hint: bool = False) -> None:
        print(grade_exercise(ex, fn).text(hint))

    check.__name__ = f"check_{ex.name}"
    check.__qualname__ = check.__name__
    check.__module__ = "trimlab.exercises"  # the public home: trimlab.exercises.check_<name>
    check.__doc__ = (
        f"Check your ``{ex.signature}`` (notebook {ex.notebook}); prints 'passed' or "
        f"'not yet' (with a hint when ``hint=True``). Never raises."
    )
    return check
