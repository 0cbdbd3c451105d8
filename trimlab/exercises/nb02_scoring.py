"""Exercises of notebooks/02_scoring.ipynb: the paper's two importance scores.

TrimLLM Sec. 3.3 scores every sub-layer before a drop: Eq. 3 from the calibration
accuracy without it (``calibration_importance``), Eq. 4 from its activation norm
(``activation_importance``). The lowest score is dropped first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trimlab import surgery
from trimlab.exercises.core import Exercise, Wrong, call, checker, close, tiny_tokenizer


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


# --- the method itself: the drop-one scan, the activation norm, the 'both' order -----------


def _grade_drop_one_scan(fn: Callable) -> tuple[bool, str]:
    from trimlab import scoring
    from trimlab.exercises.core import fresh, toy_items

    model = fresh("llama")
    items = toy_items(9)
    names = ["0.attn", "1.mlp", "3.attn"]
    _, want = scoring.scan(model, tiny_tokenizer(), items, names, use_context=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = call(fn, model, tiny_tokenizer(), items, list(names))
    if not isinstance(got, dict) or set(got) != set(names):
        raise Wrong(f"expected a dict over the names {names}, got {got!r}")
    if surgery.sublayers(model) != surgery.sublayers(fresh("llama")):
        raise Wrong("the model lost sub-layers: drop each one only for its own evaluation")
    if any(not torch.equal(before[k], v) for k, v in model.state_dict().items()):
        raise Wrong("the model's weights changed: a scan must leave the model as it was")
    for name in names:
        if not close(got[name], want[name]["acc"], 1e-9):
            raise Wrong(
                f"without {name} the accuracy is {want[name]['acc']:.4f}, you gave {got[name]!r}"
            )
    return True, "your scan gives trimlab.scoring.scan's a_i, and the model comes back whole"


DROP_ONE_SCAN = Exercise(
    name="drop_one_scan",
    notebook="02_scoring",
    signature="drop_one_scan(model, tokenizer, items, names) -> dict",
    hint="for each name: with trimlab.trial_drop(model, [name]): evaluate the model on the "
    "items (trimlab.evaluate, use_context=False) and keep its 'acc'",
    grader=_grade_drop_one_scan,
)
check_drop_one_scan = checker(DROP_ONE_SCAN)


def _reference_norm(model, input_ids, name: str) -> float:
    from trimlab import families

    block, sub = families.locate(model, name)
    module = getattr(block, sub.contribution)
    seen = []

    def hook(_module, _inputs, output):
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(input_ids=input_ids)
    finally:
        handle.remove()
    out = seen[0].reshape(-1, seen[0].shape[-1])
    return float(out.float().norm() / out.shape[0] ** 0.5)


def _grade_activation_norm(fn: Callable) -> tuple[bool, str]:
    from trimlab.exercises.core import fresh

    model = fresh("llama")
    gen = torch.Generator().manual_seed(0)
    for shape, name in (((1, 7), "1.mlp"), ((2, 5), "2.attn"), ((3, 4), "0.mlp")):
        ids = torch.randint(0, 256, shape, generator=gen)
        want = _reference_norm(model, ids, name)
        got = call(fn, model, ids, name)
        if not close(got, want, 1e-5):
            raise Wrong(
                f"{name} on a {shape[0]}x{shape[1]} batch: expected {want:.6f}, got {got!r}"
            )
        hooks = sum(len(m._forward_hooks) for m in model.modules())
        if hooks:
            raise Wrong("a forward hook is still registered: remove it (handle.remove())")
    return True, "n_i = ||A_i||_F / sqrt(N) from a forward hook, and the hook is gone"


ACTIVATION_NORM = Exercise(
    name="activation_norm",
    notebook="02_scoring",
    signature="activation_norm(model, input_ids, name) -> float",
    hint="block = model.model.layers[b]; register_forward_hook on block.mlp (or block.self_attn,"
    " whose output is a tuple: take [0]); run model(input_ids=...) under torch.no_grad(); "
    "flatten the output to (N, d); return its Frobenius norm / sqrt(N); remove the hook",
    grader=_grade_activation_norm,
)
check_activation_norm = checker(ACTIVATION_NORM)


def _grade_both_order(fn: Callable) -> tuple[bool, str]:
    from trimlab import scoring

    names = [f"{b}.{k}" for b in range(4) for k in surgery.KINDS]
    n = 7
    right = [5, 6, 5, 3, 6, 5, 7, 5]  # items right without each sub-layer: many ties
    # accuracies as a scan computes them: sums of 1/n, not exact multiples of 1/n
    accs = {m: sum(1 / n for _ in range(r)) for m, r in zip(names, right, strict=True)}
    norms = dict(zip(names, [0.5, 2.0, 0.7, 1.1, 3.0, 0.2, 0.9, 0.4], strict=True))
    calib = scoring.Scores(
        {m: 1 / (a + 1e-3) for m, a in accs.items()},
        "calibration",
        {m: {"acc": a} for m, a in accs.items()},
        n=n,
    )
    total = sum(norms.values())
    act = scoring.Scores({m: 1 - v / total for m, v in norms.items()}, "activation")
    want = scoring.both_order(calib, act)
    got = call(fn, dict(accs), dict(norms), n)
    if list(got) != want:
        raise Wrong(f"expected {want}, got {list(got)}")
    return True, "equal a_i (within 1/(2n)) go by the activation score: highest norm first"


BOTH_ORDER = Exercise(
    name="both_order",
    notebook="02_scoring",
    signature="both_order(accuracies, norms, n) -> list[str]",
    hint="sort by the number of items right, round(a_i * n), highest first (dropping it "
    "hurts least); accuracies closer than 1/(2n) are a tie, and ties go to the highest "
    "activation norm (Eq. 4's lowest importance); sorted() is stable for equal norms",
    grader=_grade_both_order,
)
check_both_order = checker(BOTH_ORDER)

CHAPTER_EXERCISES = (
    CALIBRATION_IMPORTANCE,
    ACTIVATION_IMPORTANCE,
    DROP_ONE_SCAN,
    ACTIVATION_NORM,
    BOTH_ORDER,
)
