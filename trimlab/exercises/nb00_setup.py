"""Exercise of notebooks/00_setup.ipynb: the share of a model that trimming cannot touch.

TrimLLM (Sec. 3.2) drops attention and MLP sub-layers of the decoder blocks; the
embeddings, the final norm and the LM head always stay. ``undroppable_share`` measures
how much of the model that is, also for a model that is already trimmed.
"""

from __future__ import annotations

from collections.abc import Callable

from trimlab import accounting
from trimlab.exercises.core import Exercise, Wrong, call, checker, close, fresh


def _grade_undroppable_share(fn: Callable) -> tuple[bool, str]:
    cases = [("llama", ()), ("gpt2", ()), ("llama", ("1.attn", "1.mlp", "2.mlp"))]
    for arch, dropped in cases:
        model = fresh(arch, dropped)
        want = 1 - accounting.decoder_param_count(model) / accounting.param_count(model)
        got = call(fn, model)
        what = f"tiny-{arch}" + (f" with {list(dropped)} dropped" if dropped else "")
        if not close(got, want):
            raise Wrong(f"for {what} you gave {float(got):.4f}, expected {want:.4f}")
    return True, "the share outside the decoder blocks is right, also for a trimmed model"


UNDROPPABLE_SHARE = Exercise(
    name="undroppable_share",
    notebook="00_setup",
    signature="undroppable_share(model) -> float",
    hint="trimlab.sublayer_params(model) maps every sub-layer to its parameter count, and "
    "together they are the decoder blocks; trimlab.param_count(model) is the total",
    grader=_grade_undroppable_share,
)
check_undroppable_share = checker(UNDROPPABLE_SHARE)

CHAPTER_EXERCISES = (UNDROPPABLE_SHARE,)
