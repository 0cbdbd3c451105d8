"""The item schema of the lab: what a multiple-choice item is, how it is checked, who it is.

TrimLLM (arXiv 2412.11242, Sec. 3 and 4) scores, trims and tests on multiple-choice
questions of one domain. In this lab every such question, whatever dataset it comes
from, is a plain dict with exactly the keys ``id, question, choices, answer, context,
subject`` (:data:`KEYS`):

* ``question``: a non-empty string;
* ``choices``: a non-empty list of strings;
* ``answer``: the 0-based ``int`` index of the correct choice;
* ``context``: a passage (SciQ's support, PubMedQA's abstract) or ``None``;
* ``subject``: a sub-field label (MMLU subject, MedMCQA subject) or ``None``.

:func:`validate_item` is the **one** validator of that schema: the data loaders run it
on every row they read, and :func:`trimlab.evaluate.validate_items` on every item it
is given, so both reject the same items with the same message. :func:`make_item`
builds an item from a hub row's fields. :func:`item_key` and :func:`answer_key` are
an item's identity, used to carve splits and to keep them from leaking into each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

KEYS = ("id", "question", "choices", "answer", "context", "subject")
"""The keys of every item, in this order."""
REQUIRED = ("question", "choices", "answer")
"""The keys a row must have (``id``, ``context`` and ``subject`` are optional)."""
OPTIONAL_TEXT = ("context", "subject")
"""Optional keys that, when present and not ``None``, must be strings."""

Item = dict[str, Any]
RowMapper = Callable[..., Item]


# ----------------------------------------------------------------------- text helpers


def norm_text(text: object) -> str:
    """Lower-cased text with runs of whitespace collapsed (what identity compares)."""
    return " ".join(str(text).lower().split())


def clean_text(text: object) -> str | None:
    """Stripped text, or ``None`` for ``None``, an empty or a blank string."""
    text = None if text is None else str(text).strip()
    return text or None


def item_key(item: Mapping[str, Any]) -> str:
    """Identity of an item: its normalised question and (sorted) choices."""
    return "\x1f".join(
        [norm_text(item["question"]), *sorted(norm_text(c) for c in item["choices"])]
    )


def answer_key(item: Mapping[str, Any]) -> str:
    """Its normalised question and correct answer (catches re-worded distractors)."""
    return norm_text(item["question"]) + "\x1e" + norm_text(item["choices"][item["answer"]])


# ------------------------------------------------------------------ building, checking


def make_item(
    id: str,
    question: str,
    choices: Sequence[str],
    answer: int,
    context: str | None = None,
    subject: str | None = None,
) -> Item:
    """An item in the lab schema (stripped text, empty context -> ``None``)."""
    return {
        "id": str(id),
        "question": str(question).strip(),
        "choices": [str(c).strip() for c in choices],
        "answer": answer,
        "context": clean_text(context),
        "subject": clean_text(subject),
    }


def _show(value: object, limit: int = 60) -> str:
    """``type repr`` of a bad value, the repr cut to ``limit`` characters."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def schema_error(item: object) -> str | None:
    """What is wrong with ``item`` (the first problem found), or ``None`` if nothing is.

    The rules, checked in this order:

    1. the item is a mapping (a dict, a JSON object);
    2. it has the keys ``question``, ``choices`` and ``answer``;
    3. ``question`` is a string that is not empty or blank;
    4. ``choices`` is a non-empty ``list`` whose every element is a string;
    5. ``answer`` is an ``int`` (not a ``bool``, not a float, not a numeric string)
       with ``0 <= answer < len(choices)``;
    6. ``context`` and ``subject``, when present, are strings or ``None``.
    """
    if not isinstance(item, Mapping):
        return f"expected a dict (JSON object) with question, choices and answer, got {_show(item)}"
    missing = [k for k in REQUIRED if k not in item]
    if missing:
        return f"missing key(s) {missing} (need {', '.join(REQUIRED)})"
    question, choices, answer = (item[k] for k in REQUIRED)
    if not isinstance(question, str) or not question.strip():
        return f"question must be a non-empty string, got {_show(question)}"
    if not isinstance(choices, list) or not choices:
        return f"choices must be a non-empty list of strings, got {_show(choices)}"
    for k, choice in enumerate(choices):
        if not isinstance(choice, str):
            return (
                f"choices must be a non-empty list of strings, but choices[{k}] is {_show(choice)}"
            )
    if isinstance(answer, bool) or not isinstance(answer, int):
        return f"answer must be an int index into choices, got {_show(answer)}"
    if not 0 <= answer < len(choices):
        return (
            f"answer index {answer} out of range for {len(choices)} choices "
            f"(valid: 0 to {len(choices) - 1})"
        )
    for k in OPTIONAL_TEXT:
        if item.get(k) is not None and not isinstance(item[k], str):
            return f"{k} must be a string or None, got {_show(item[k])}"
    return None


def validate_item(item: Mapping[str, Any], where: str = "item") -> Item:
    """Check one item against the schema and return it as a new schema dict.

    ``where`` names the item in the error (``"file.jsonl:4"``, ``"item 3"``); the rules
    are those of :func:`schema_error`. The result has exactly the keys :data:`KEYS`
    (missing optional ones become ``None``, extra ones are dropped, ``id`` defaults to
    ``where``); the text is not changed.

    Raises:
        ValueError: ``"<where>: <problem>"`` for the first rule the item breaks.
    """
    problem = schema_error(item)
    if problem is not None:
        raise ValueError(f"{where}: {problem}")
    out = {k: item.get(k) for k in KEYS}
    out["choices"] = list(item["choices"])
    out["id"] = str(item.get("id", where))
    return out
