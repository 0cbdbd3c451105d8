"""The Hugging Face hub side of the data: one pure row mapper per dataset, and the fetch.

Without a local mirror, the rows of the lab's datasets (TrimLLM, arXiv 2412.11242,
Sec. 4: one benchmark per domain) come from the hub through ``datasets.load_dataset``
(:func:`load_hf`). Each hub row is turned into a lab item (:mod:`trimlab.data.schema`)
by a pure ``(row, index, split, config) -> item`` function: :func:`sciq_row`,
:func:`piqa_row`, :func:`arc_row`, :func:`medmcqa_row`, :func:`mmlu_row` and
:func:`pubmedqa_row`. They build the same items as the mirror's ``convert.py``, so the
hub and the mirror give the same splits.

PubMedQA has its 1,000 labelled items in one hub split; :func:`pubmedqa_official_split`
re-derives the official 500/500 train/test halves.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from trimlab.data.schema import Item, make_item

SCIQ_SEED = 1234
"""Seed of SciQ's per-item option shuffle (the mirror's convert.py uses the same)."""
PUBMEDQA_CHOICES = ("yes", "no", "maybe")


def load_hf(path: str, config: str | None, split: str) -> Any:
    """``datasets.load_dataset(path, config, split=split)`` (imported lazily).

    Every hub read of :mod:`trimlab.data` goes through this function, looked up on this
    module at call time, so tests can replace ``trimlab.data.hub.load_hf``.
    """
    import datasets

    return datasets.load_dataset(path, config, split=split)


# ------------------------------------------------- hub row mappers (pure functions)


def sciq_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """allenai/sciq row -> item; options shuffled exactly as the mirror's convert.py."""
    id_ = f"sciq-{split}-{index:05d}"
    correct = row["correct_answer"].strip()
    options = [correct] + [row[f"distractor{k}"].strip() for k in (1, 2, 3)]
    random.Random(f"{SCIQ_SEED}:{id_}").shuffle(options)
    return make_item(id_, row["question"], options, options.index(correct), row.get("support"))


def piqa_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """baber/piqa row (goal, sol1, sol2, label) -> item."""
    return make_item(
        f"piqa-{split}-{index:05d}", row["goal"], [row["sol1"], row["sol2"]], int(row["label"])
    )


def arc_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """allenai/ai2_arc row -> item (labels may be A-E or 1-5)."""
    labels = list(row["choices"]["label"])
    return make_item(
        row["id"], row["question"], row["choices"]["text"], labels.index(row["answerKey"])
    )


def medmcqa_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """openlifescienceai/medmcqa row (opa..opd, cop 0-3) -> item."""
    choices = [row[k] for k in ("opa", "opb", "opc", "opd")]
    subject = row.get("subject_name")
    return make_item(
        f"medmcqa-{row['id']}", row["question"], choices, int(row["cop"]), None, subject
    )


def mmlu_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """cais/mmlu row (question, subject, choices, answer) -> item."""
    subject = row.get("subject") or config
    return make_item(
        f"mmlu-{subject}-{split}-{index:04d}",
        row["question"],
        row["choices"],
        int(row["answer"]),
        None,
        subject,
    )


def pubmedqa_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """qiaojin/PubMedQA pqa_labeled row -> item (abstract sections joined by newlines)."""
    context = "\n".join(c.strip() for c in row["context"]["contexts"])
    answer = PUBMEDQA_CHOICES.index(row["final_decision"])
    return make_item(f"pubmedqa-{row['pubid']}", row["question"], PUBMEDQA_CHOICES, answer, context)


# ------------------------------------------------------------ PubMedQA's official split


def pubmedqa_official_split(items: list[Item]) -> dict[str, list[Item]]:
    """The official PQA-L 500/500 split (pubmedqa/preprocess/split_dataset.py, seed 0).

    The hub has the 1,000 labelled items as one split; this re-derives which 500 are
    the official test set. It needs the items in the order of ``ori_pqal.json`` and
    returns both halves in that order.
    """
    rng = random.Random(0)
    by_label: dict[str, list[str]] = {c: [] for c in PUBMEDQA_CHOICES}
    for it in items:
        by_label[it["choices"][it["answer"]]].append(it["id"])
    halves: list[list[str]] = [[], []]
    for ids in by_label.values():
        rng.shuffle(ids)
        cut = math.ceil(len(ids) / 2)
        halves[0] += ids[:cut]
        halves[1] += ids[cut:]
    if len(halves[1]) != len(halves[0]):  # as the original: move one random item over
        halves[1].append(halves[0].pop(halves[0].index(rng.choice(halves[0]))))
    test = set(halves[1])
    return {
        "train": [it for it in items if it["id"] not in test],
        "test": [it for it in items if it["id"] in test],
    }


def pubmedqa_select(items: list[Item], split: str) -> list[Item]:
    """``hub_select`` of PubMedQA: the official half named ``split`` (train or test)."""
    return pubmedqa_official_split(items)[split]
