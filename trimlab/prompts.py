"""The one prompt format used for fine-tuning, calibration and test (lm-eval's).

A multiple-choice item is a dict with keys ``question, choices, answer, context, subject``
(:mod:`trimlab.data.schema`). Its prompt is::

    {context.lstrip()}\\n   <- only when use_context is True and context is not None
    Question: {question}\\n
    Answer:

and each choice is scored as the continuation ``" " + choice`` (lm-eval's
``target_delimiter``). The text of the item is used as it is, exactly as lm-eval's
Jinja templates use a document's fields (lm-eval 0.4, ``lm_eval/tasks/``):

* SciQ (``sciq/sciq.yaml``): ``{{support.lstrip()}}\\nQuestion: {{question}}\\nAnswer:``.
  Only the support is *left*-stripped; its trailing whitespace and the question's
  whitespace at both ends are kept. ``build_prompt`` with a string ``context`` is this
  template (``context`` in the role of ``support``), an empty or blank one included.
* ARC-Easy, ARC-Challenge (``arc/arc_easy.yaml``): ``Question: {{question}}\\nAnswer:``,
  and PIQA (``piqa/piqa.yaml``): ``Question: {{goal}}\\nAnswer:``. ``build_prompt`` with
  ``context=None`` (or ``use_context=False``) is this template.
* Choices: lm-eval's ``doc_to_choice`` keeps each choice as it is, and its request is
  ``(prompt, target_delimiter + choice)``; :func:`continuation` is ``" " + choice``.

``tests/test_prompts.py`` checks these against lm-eval's own ``ConfigurableTask`` built
from those YAML files. Known differences, where matching lm-eval is not possible here:

* **SciQ items with an empty support** (116 of the 1,000 test items, 1,198 of 11,679
  train): lm-eval's prompt then starts with ``"\\n"`` (``"\\nQuestion: ..."``). The data
  loader (:func:`trimlab.data.make_item` and the mirror's ``convert.py``) stores an
  empty support as ``context=None``, which cannot be told apart from "this dataset has
  no passage" (ARC, PIQA), so the prompt starts with ``"Question:"``. Give such an item
  ``context=""`` to get lm-eval's prompt.
* **Text cleaning in the data loader**: items made from hub rows have their question,
  choices and context stripped at both ends (:func:`trimlab.data.make_item`, as the
  mirror's ``convert.py``), so a support's trailing whitespace or a padded choice is
  gone before it reaches this module (230 of the 3,676 PIQA validation solutions end in
  spaces, which lm-eval's ``piqa`` scores). ``build_prompt`` and :func:`continuation`
  match lm-eval on the item; the item may differ from the raw row.
* **Tasks with another format**: lm-eval's MedMCQA and MMLU tasks list lettered options
  (``A. ...``) and score the letters, its PubMedQA task writes ``Abstract: ...``. The lab
  uses the one cloze format above for every domain (as TrimLLM, Sec. 4, scores answer
  log-likelihoods), so those numbers are not lm-eval's ``medmcqa``/``mmlu``/``pubmedqa``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Item = Mapping[str, Any]


def build_prompt(item: Item, use_context: bool = True) -> str:
    """The prompt text for ``item`` (everything before the answer), lm-eval's template.

    ``use_context=True`` and a ``context`` that is not ``None``: SciQ's
    ``{{support.lstrip()}}\\nQuestion: {{question}}\\nAnswer:``. Otherwise ARC's
    ``Question: {{question}}\\nAnswer:``. The question is not stripped.
    """
    context = item.get("context") if use_context else None
    head = "" if context is None else f"{str(context).lstrip()}\n"
    return f"{head}Question: {item['question']}\nAnswer:"


def continuation(choice: str) -> str:
    """The text scored for one answer choice: a space, then the choice as it is."""
    return " " + str(choice)


def continuations(item: Item) -> list[str]:
    """The scored continuation of every choice of ``item``, in order."""
    return [continuation(c) for c in item["choices"]]
