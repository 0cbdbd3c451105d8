"""The exercise checkers of ``trimlab.exercises`` against the instructor solutions.

Every exercise's solution in ``solutions/<notebook>.py`` must pass its check; stubs (a
body that returns None or raises NotImplementedError) and wrong answers must get a "not
yet" with a hint, and a check must never raise, so a notebook runs top to bottom with
the stubs in place.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from trimlab import exercises

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"


def load_solutions(stem: str):
    path = SOLUTIONS / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"solutions_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def solution(name: str):
    ex = exercises.EXERCISES[name]
    module = load_solutions(ex.notebook)
    assert hasattr(module, name), f"solutions/{ex.notebook}.py has no function {name}"
    return getattr(module, name)


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_solution_passes(name):
    feedback = exercises.grade(name, solution(name))
    assert feedback.passed, str(feedback)
    assert str(feedback).startswith("passed")


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_stub_returning_none_is_not_yet(name, capsys):
    def stub(*args, **kwargs):
        return None

    feedback = exercises.grade(name, stub)
    assert not feedback.passed
    assert "returned None" in feedback.message
    assert feedback.hint
    getattr(exercises, f"check_{name}")(stub)  # prints, never raises
    out = capsys.readouterr().out
    assert out.startswith(f"not yet ({name})") and "hint:" not in out  # only on request
    assert f"check_{name}(your_function, hint=True)" in out
    getattr(exercises, f"check_{name}")(stub, hint=True)
    assert "hint: " + feedback.hint in capsys.readouterr().out


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_stub_raising_is_not_yet(name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError

    assert "NotImplementedError" in exercises.grade(name, stub).message
    getattr(exercises, f"check_{name}")(stub)
    assert capsys.readouterr().out.startswith("not yet")


@pytest.mark.parametrize("name", list(exercises.EXERCISES))
def test_wrong_answer_and_crash_are_not_yet(name):
    def wrong(*args, **kwargs):
        return 12345

    def crash(*args, **kwargs):
        return {}[0]

    for fn in (wrong, crash):
        feedback = exercises.grade(name, fn)
        assert not feedback.passed and feedback.hint, str(feedback)
    assert "KeyError" in exercises.grade(name, crash).message


def test_common_mistakes_are_caught():
    import math

    naive_ceil = exercises.grade("n_trainable", lambda r, u: math.ceil(r * u))
    assert not naive_ceil.passed and "0.14" in naive_ceil.message
    both_assumed = exercises.grade(
        "blocks_removed",
        lambda model, names: sorted(
            {int(n.split(".")[0]) for n in names if n.endswith(".attn")}
            & {int(n.split(".")[0]) for n in names if n.endswith(".mlp")}
        ),
    )
    assert not both_assumed.passed and "already gone" in both_assumed.message
    eq3_wrong = exercises.grade("calibration_importance", lambda acc, eps=1e-3: dict(acc))
    assert not eq3_wrong.passed


def test_checker_does_not_accept_a_mutated_model():
    import trimlab

    def drops_in_place(model, names):
        trimlab.drop(model, names)
        return trimlab.param_count(model)

    feedback = exercises.grade("params_after_drop", drops_in_place)
    assert not feedback.passed and "changed the model" in feedback.message


def test_unknown_exercise():
    with pytest.raises(ValueError, match="unknown exercise"):
        exercises.grade("nope", lambda: None)


def test_every_exercise_is_in_its_notebook_and_has_a_solution_file():
    for name, ex in exercises.EXERCISES.items():
        assert (SOLUTIONS / f"{ex.notebook}.py").is_file()
        nb = nbformat.read(NOTEBOOKS / f"{ex.notebook}.ipynb", as_version=4)
        sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert f"def {name}(" in sources, f"{ex.notebook} has no stub for {name}"
        assert f"trimlab.exercises.check_{name}({name})" in sources


def test_every_check_in_the_notebooks_exists():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for name in re.findall(r"exercises\.check_(\w+)\(", cell.source):
                assert name in exercises.EXERCISES, f"{path.name}: unknown check_{name}"
                assert exercises.EXERCISES[name].notebook == path.stem
