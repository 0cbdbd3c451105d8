"""Exercises of notebooks/03_surgery.ipynb: what removing sub-layers does to a model.

TrimLLM Sec. 3.2 removes sub-layers physically. ``params_after_drop`` counts what is
left and ``blocks_removed`` names the decoder blocks that leave the layer list; both are
checked against :func:`trimlab.drop` on a copy, and must leave the given model alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from trimlab import accounting, surgery
from trimlab.exercises.core import (
    DROP_CASES,
    Exercise,
    NotYet,
    Wrong,
    call,
    check_int,
    checker,
    fresh,
)


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


# --- skip_mlp: the exact skip itself ----------------------------------------------------------


def _grade_skip_mlp(fn: Callable) -> tuple[bool, str]:
    import torch

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (2, 9), generator=gen)
    for block in (1, 3):
        mine, lib = fresh("llama"), fresh("llama")
        original = type(mine.model.layers[block].mlp)
        out = fn(mine, block)
        if out is None and type(mine.model.layers[block].mlp) is original:
            raise NotYet("your function returned None and left the MLP in place: write its body")
        if out is not None and out is not mine:
            raise Wrong("change the model in place (return it, or nothing)")
        surgery.drop(lib, f"{block}.mlp")
        with torch.no_grad():
            a, b = mine(input_ids=ids).logits, lib(input_ids=ids).logits
        if not torch.equal(a, b):
            diff = float((a - b).abs().max())
            raise Wrong(
                f"block {block}: your logits differ from trimlab.drop's by up to {diff:.3g}; "
                "the MLP's place must add exactly zero to the residual stream"
            )
        have, want = accounting.param_count(mine), accounting.param_count(lib)
        if have != want:
            raise Wrong(
                f"block {block}: your model keeps {have - want:,} parameters that trimlab.drop "
                "frees: the MLP's weights and the norm that only feeds it must go"
            )
    return True, "torch.equal to trimlab.drop, and the MLP's weights and its norm are freed"


SKIP_MLP = Exercise(
    name="skip_mlp",
    notebook="03_surgery",
    signature="skip_mlp(model, block) -> None",
    hint="blk = model.model.layers[block]; set blk.mlp to a module whose forward returns "
    "torch.zeros_like(x) (or trimlab.surgery.DroppedMLP()), and blk.post_attention_layernorm "
    "to torch.nn.Identity(): the norm only fed the MLP",
    grader=_grade_skip_mlp,
)
check_skip_mlp = checker(SKIP_MLP)

CHAPTER_EXERCISES = (PARAMS_AFTER_DROP, BLOCKS_REMOVED, SKIP_MLP)
