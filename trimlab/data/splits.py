"""How a source pool is cut into the lab's three non-overlapping splits.

TrimLLM (arXiv 2412.11242, Sec. 4) fine-tunes on a domain's training set, scores
sub-layers on a small *calibration* set before each drop (Sec. 3.2, Eq. 3 and 4) and
reports accuracy on held-out questions. The lab's splits (:data:`SPLITS`) are:

* ``train`` -- fine-tuning items (the paper's domain training set),
* ``calib`` -- calibration items used to score sub-layers before each drop,
* ``test``  -- held-out items for the accuracy tables.

A *recipe* maps each split to a spec such as ``"test"`` (the whole source split) or
``"validation[40%:50%]"`` (the items of the source split whose *content hash* falls in
that slice of [0, 1)); :func:`parse_spec` reads a spec and :func:`carve` writes the
usual three. The hash (:func:`content_unit`) is SHA-256 of :data:`SPLIT_SEED` and the
item's normalised question + choices, so it does not depend on file order, on item
ids, or on ``PYTHONHASHSEED``, and duplicated questions land in one split.

Then, as a leak guard (:func:`drop_leaks`), ``calib`` drops items that also occur in
``test``, and ``train`` drops items that also occur in ``calib`` or ``test`` (same
question and choices, or same question and correct answer; :func:`splits_above`).
:func:`sample` takes nested, seeded subsets. Everything here is pure: no files, no
registry (see :mod:`trimlab.data.loading` for where the rows come from).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trimlab.data.schema import Item, answer_key, item_key

SPLITS = ("train", "calib", "test")
"""The lab's splits, from the least to the most protected."""
SPLIT_SEED = 1234
"""Seed of the content hash that carves splits."""

SPEC = re.compile(r"^([\w.-]+(?:\+[\w.-]+)*)(?:\[(\d+(?:\.\d+)?)%:(\d+(?:\.\d+)?)%\])?$")
"""A split spec: ``src``, ``src1+src2``, optionally followed by ``[lo%:hi%]``."""


def parse_spec(spec: str) -> tuple[list[str], float, float]:
    """``"validation+test[40%:50%]"`` -> ``(["validation", "test"], 0.4, 0.5)``."""
    m = SPEC.match(spec.replace(" ", ""))
    if not m:
        raise ValueError(f"bad split spec {spec!r}; expected 'src', 'a+b' or 'src[lo%:hi%]'")
    lo, hi = (float(m[2]) / 100, float(m[3]) / 100) if m[2] else (0.0, 1.0)
    return m[1].split("+"), lo, hi


def carve(source: str, test: float = 0.4, calib: float = 0.1) -> dict[str, str]:
    """Recipe that cuts one source pool by content hash: test, calib, then train."""
    if not (0 < test and 0 <= calib and test + calib < 1):
        raise ValueError(f"need 0 < test, 0 <= calib and test + calib < 1, got {test}, {calib}")
    a, b = f"{100 * test:g}", f"{100 * (test + calib):g}"
    return {
        "train": f"{source}[{b}%:100%]",
        "calib": f"{source}[{a}%:{b}%]",
        "test": f"{source}[0%:{a}%]",
    }


def content_unit(item: Mapping[str, Any]) -> float:
    """The item's place in [0, 1): SHA-256 of :data:`SPLIT_SEED` and :func:`item_key`."""
    digest = hashlib.sha256(f"{SPLIT_SEED}:{item_key(item)}".encode()).hexdigest()
    return int(digest[:16], 16) / 2**64


def take_slice(items: list[Item], lo: float, hi: float) -> list[Item]:
    """The items whose :func:`content_unit` is in ``[lo, hi)`` (all for ``[0, 1)``)."""
    if (lo, hi) == (0.0, 1.0):
        return items
    return [it for it in items if lo <= content_unit(it) < hi]


def splits_above(split: str, available: Iterable[str]) -> list[str]:
    """The splits of ``available`` that ``split`` is leak-filtered against."""
    available = set(available)
    return [s for s in SPLITS[SPLITS.index(split) + 1 :] if s in available]


def drop_leaks(items: Sequence[Item], held_out: Iterable[Item]) -> list[Item]:
    """``items`` minus those sharing an :func:`item_key` or :func:`answer_key` with
    ``held_out``, each returned as a new dict with its own ``choices`` list."""
    seen: set[str] = set()
    for it in held_out:
        seen.update((item_key(it), answer_key(it)))
    kept = [it for it in items if item_key(it) not in seen and answer_key(it) not in seen]
    return [{**it, "choices": list(it["choices"])} for it in kept]


def check_n(n: int | None) -> None:
    """Raise ``ValueError`` unless ``n`` is a positive ``int`` or ``None``."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")


def sample(items: list[Item], n: int | None, seed: int = 0) -> list[Item]:
    """``n`` items chosen by a seeded shuffle, kept in their original order.

    Samples are nested (the ``n`` items are a subset of the ``n + 1`` items for the same
    seed). ``None`` or ``n >= len(items)`` returns all items.
    """
    check_n(n)
    if n is None or n >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in sorted(order[:n])]
