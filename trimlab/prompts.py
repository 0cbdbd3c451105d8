"""The one prompt format used for fine-tuning, calibration and test (lm-eval style).

A multiple-choice item is a dict with keys ``question, choices, answer, context, subject``.
Its prompt is::

    {context}\\n            <- only when use_context is True and the item has a context
    Question: {question}\\n
    Answer:

and each choice is scored as the continuation ``" " + choice`` (a leading space, as
lm-eval's ``target_delimiter``). This matches lm-eval's SciQ task exactly
(``{{support.lstrip()}}\\nQuestion: {{question}}\\nAnswer:``) and its ARC/PIQA tasks
when there is no context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Item = Mapping[str, Any]


def build_prompt(item: Item, use_context: bool = True) -> str:
    """The prompt text for ``item`` (everything before the answer)."""
    question = str(item["question"]).strip()
    context = item.get("context") if use_context else None
    head = f"{str(context).strip()}\n" if context else ""
    return f"{head}Question: {question}\nAnswer:"


def continuation(choice: str) -> str:
    """The text scored for one answer choice: a space, then the choice."""
    return " " + str(choice).strip()


def continuations(item: Item) -> list[str]:
    """The scored continuation of every choice of ``item``, in order."""
    return [continuation(c) for c in item["choices"]]
