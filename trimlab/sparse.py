"""Sparse update: fine-tune only the most important units (TrimLLM Sec. 3.4).

Before any fine-tuning, every unit is scored once (:mod:`trimlab.scoring`). Only the
``ceil(r * U)`` most important of the ``U`` units stay trainable; all others are frozen
for the whole run. When a trainable unit is later dropped, no other unit is unfrozen:
the trainable set only shrinks. The paper's ablation (its Table 6) finds ``r = 1/4``
best and ``r = 1`` (update everything) worst; :data:`PAPER_R` is that value.

Units come in two granularities:

* ``"sublayer"`` (default): the sub-layers ``"7.attn"``, ``"7.mlp"`` that progressive
  dropping removes (``U = 60`` for SmolLM2-135M's 30 blocks). A trainable sub-layer
  trains every module of :func:`trimlab.surgery.modules_of`: its output module (the
  attention or MLP) and the norms / input projections that only feed it.
* ``"block"``: whole decoder blocks, named by their original id as a string (``"7"``),
  as the authors' code does (it freezes whole LLaMA blocks). A block's importance is the
  mean of its sub-layers' positions in :func:`trimlab.scoring.rank` (0 = least
  important); a block with one sub-layer left has that sub-layer's position.

Embeddings and LM head: the authors' code always trains them (defect 6 of the README's
Correctness table).
Here they are frozen by default, as the paper describes a sparse update of layers;
``train_embeddings=True`` trains every parameter *outside* the decoder blocks (token and
position embeddings, the final norm, the LM head; a tied embedding / LM head is one
parameter and is counted once).

Typical use, before the first round of progressive dropping::

    scores = scoring.score(model, tok, calib, method="both")
    trainable = select_trainable(scores, r=0.25)
    freeze(model, trainable)            # once; drops later only remove trainable units
    finetune.finetune(model, tok, train_items, steps=...)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from torch import nn
from transformers import PreTrainedModel

from trimlab import surgery
from trimlab.scoring import rank

GRANULARITIES = ("sublayer", "block")
PAPER_R = 0.25
"""The paper's best share of trainable units (its Table 6)."""


def _check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"unknown granularity {granularity!r}; choose one of {', '.join(GRANULARITIES)}"
        )


def units(model: PreTrainedModel, granularity: str = "sublayer") -> list[str]:
    """The model's remaining trainable units, in forward order.

    ``"sublayer"``: the sub-layer names of :func:`trimlab.surgery.sublayers`;
    ``"block"``: the original ids of the remaining blocks as strings (``"0"``, ``"1"``...).
    """
    _check_granularity(granularity)
    if granularity == "sublayer":
        return surgery.sublayers(model)
    return [str(b) for b in surgery.block_ids(model)]


def block_importance(scores: Mapping[str, float]) -> dict[str, float]:
    """Importance of each block: the mean rank position (0 = least important) of its
    sub-layers in ``scoring.rank(scores)``."""
    positions: dict[str, list[int]] = {}
    for pos, name in enumerate(rank(dict(scores))):
        block, _ = surgery.parse_name(name)
        positions.setdefault(str(block), []).append(pos)
    return {b: sum(p) / len(p) for b, p in positions.items()}


def n_trainable(r: float, n_units: int) -> int:
    """``ceil(r * n_units)``, robust to float rounding (``0.1 * 30`` gives 3, not 4)."""
    _check_r(r)
    return min(n_units, math.ceil(r * n_units - 1e-9))


def _check_r(r: float) -> None:
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
        raise ValueError(
            f"r (the share of trainable units) must be in (0, 1], got r={r!r}; "
            f"the paper's best is r={PAPER_R}"
        )


def select_trainable(
    scores: Mapping[str, float], r: float = PAPER_R, granularity: str = "sublayer"
) -> list[str]:
    """The ``ceil(r * U)`` most important units under ``scores`` (Sec. 3.4), forward order.

    Args:
        scores: ``{sub-layer name: importance}`` over all U' sub-layers (any method of
            :mod:`trimlab.scoring`; higher is more important).
        r: share of units kept trainable, in (0, 1]; the paper's best is 1/4 (Table 6).
        granularity: ``"sublayer"`` (U = number of scored sub-layers) or ``"block"``
            (U = number of blocks with a scored sub-layer; a block's importance is the mean
            rank position of its sub-layers, see :func:`block_importance`).

    The chosen units are the last ``ceil(r * U)`` of the least-to-most-important order
    (:func:`trimlab.scoring.rank` for sub-layers, whose ties put the earlier sub-layer
    first; for blocks, equal mean positions put the lower block id first).

    Raises:
        ValueError: for r outside (0, 1], an unknown granularity or empty scores.
    """
    _check_r(r)
    _check_granularity(granularity)
    if not scores:
        raise ValueError("select_trainable: no scores given")
    if granularity == "sublayer":
        order = rank(dict(scores))
    else:
        imp = block_importance(scores)
        order = sorted(imp, key=lambda b: (imp[b], int(b)))
    chosen = order[len(order) - n_trainable(r, len(order)) :]
    return sorted(chosen, key=_unit_key)


def _unit_key(unit: str) -> tuple[int, int]:
    if unit.isdigit():
        return int(unit), -1
    block, kind = surgery.parse_name(unit)
    return block, surgery.KINDS.index(kind)


def trainable_units(
    model: PreTrainedModel, trainable: Iterable[str], granularity: str = "sublayer"
) -> list[str]:
    """The units of ``trainable`` still in the model (dropped ones are skipped), in the
    given order.

    Raises:
        ValueError: for a malformed name or one the model never had (e.g. block 99).
    """
    _check_granularity(granularity)
    if isinstance(trainable, str):
        trainable = [trainable]
    present = set(units(model, granularity))
    base = surgery.base_layers(model)
    kept = []
    for unit in trainable:
        if granularity == "block":
            if not (isinstance(unit, str) and unit.isdigit()):
                raise ValueError(f"malformed block unit {unit!r}; expected a block id like '7'")
            block = int(unit)
        else:
            block, _ = surgery.parse_name(unit)
        if unit in present:
            kept.append(unit)
        elif block >= base:
            raise ValueError(
                f"trainable unit {unit!r} does not exist (blocks 0..{base - 1}, "
                f"granularity={granularity!r})"
            )
    return kept


def unit_modules(model: PreTrainedModel, unit: str, granularity: str = "sublayer") -> list:
    """The modules whose parameters train when ``unit`` is trainable."""
    if granularity == "sublayer":
        return surgery.modules_of(model, unit)
    blocks = dict(zip(surgery.block_ids(model), surgery.layer_list(model), strict=True))
    return [blocks[int(unit)]]


def outside_blocks(model: PreTrainedModel) -> list[nn.Parameter]:
    """Parameters not in any decoder block: embeddings, final norm, LM head (tied ones
    once)."""
    inside = {id(p) for p in surgery.layer_list(model).parameters()}
    return [p for p in model.parameters() if id(p) not in inside]


def freeze(
    model: PreTrainedModel,
    trainable: Sequence[str],
    granularity: str = "sublayer",
    train_embeddings: bool = False,
) -> dict:
    """Make only the parameters of the ``trainable`` units trainable (Sec. 3.4).

    Every parameter gets ``requires_grad=False`` except those of the trainable units
    that are still in the model (see :func:`unit_modules`), and, with
    ``train_embeddings=True``, those outside the decoder blocks (:func:`outside_blocks`).
    Units dropped since selection are skipped; no other unit takes their place.

    Returns:
        ``{"trainable_params", "total_params", "units", "names"}``: parameter counts
        (shared parameters once), the number of trainable units still present and
        their names.
    """
    _check_granularity(granularity)
    names = trainable_units(model, trainable, granularity)
    for p in model.parameters():
        p.requires_grad_(False)
    for unit in names:
        for module in unit_modules(model, unit, granularity):
            for p in module.parameters():
                p.requires_grad_(True)
    if train_embeddings:
        for p in outside_blocks(model):
            p.requires_grad_(True)
    return {**counts(model), "units": len(names), "names": names}


def counts(model: nn.Module) -> dict[str, int]:
    """``{"trainable_params", "total_params"}`` (``model.parameters()`` yields a tied
    parameter once)."""
    params = list(model.parameters())
    return {
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "total_params": sum(p.numel() for p in params),
    }
