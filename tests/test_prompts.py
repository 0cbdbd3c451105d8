"""trimlab.prompts against lm-eval's own tasks (SciQ, ARC, PIQA), offline.

lm-eval's ``ConfigurableTask`` is built from the task YAML files installed with
lm-eval, with the rows handed over in memory (``custom_dataset``), so nothing is
downloaded. Its ``doc_to_text``, ``fewshot_context`` (0-shot) and the requests of
``construct_requests`` are compared with :func:`trimlab.prompts.build_prompt` and
:func:`trimlab.prompts.continuation` on rows padded with whitespace. The known
differences documented in :mod:`trimlab.prompts` are tested too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trimlab import data as D
from trimlab.prompts import build_prompt, continuation, continuations

yaml = pytest.importorskip("yaml")
lm_eval = pytest.importorskip("lm_eval")
datasets = pytest.importorskip("datasets")

TASKS = Path(lm_eval.__file__).parent / "tasks"

SCIQ_ROWS = [
    {
        "question": "  What do plants take in?  ",
        "support": "  Leaves take in carbon dioxide.  \n",
        "distractor1": " oxygen",
        "distractor2": "helium ",
        "distractor3": "neon",
        "correct_answer": "  carbon dioxide ",
    },
    {
        "question": "Which gas? ",
        "support": "\n\tGases spread out.",
        "distractor1": "a",
        "distractor2": "b",
        "distractor3": "c",
        "correct_answer": "d",
    },
    {
        "question": " No support here?",
        "support": "",
        "distractor1": "a",
        "distractor2": "b",
        "distractor3": "c",
        "correct_answer": "d",
    },
    {
        "question": "Blank support?",
        "support": "   ",
        "distractor1": "a",
        "distractor2": "b",
        "distractor3": "c",
        "correct_answer": "d",
    },
]
ARC_ROWS = [
    {
        "id": "Mercury_1",
        "question": "  Which is a metal?\n",
        "choices": {"text": [" iron", "wood ", "glass"], "label": ["A", "B", "C"]},
        "answerKey": "A",
    },
    {
        "id": "Mercury_2",
        "question": "What is frozen water? ",
        "choices": {"text": ["steam", "ice"], "label": ["1", "2"]},
        "answerKey": "2",
    },
]
PIQA_ROWS = [
    {"goal": " To open a jar ", "sol1": "twist the lid ", "sol2": " hit it", "label": 0},
    {"goal": "Dry hands\n", "sol1": "use a towel", "sol2": "use water", "label": 0},
]


def _task(yaml_name: str, rows: list[dict]):
    """lm-eval's ConfigurableTask for an installed task YAML, on in-memory rows."""
    from lm_eval.api.task import ConfigurableTask

    path = TASKS / yaml_name
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    while "include" in config:  # arc_challenge.yaml includes arc_easy.yaml
        base = yaml.safe_load((path.parent / config.pop("include")).read_text(encoding="utf-8"))
        config = {**base, **config}
    docs = datasets.Dataset.from_list(rows)
    config["custom_dataset"] = lambda **_: {"train": docs, "validation": docs, "test": docs}
    return ConfigurableTask(config=config)


@pytest.fixture(scope="module")
def lm_tasks():
    from trimlab.lmeval import offline

    with offline():
        return {
            "sciq": _task("sciq/sciq.yaml", SCIQ_ROWS),
            "arc_easy": _task("arc/arc_easy.yaml", ARC_ROWS),
            "arc_challenge": _task("arc/arc_challenge.yaml", ARC_ROWS),
            "piqa": _task("piqa/piqa.yaml", PIQA_ROWS),
        }


def _sciq_item(row: dict) -> dict:
    """A SciQ row as an item *without* the data loader's cleaning (lm-eval's order)."""
    choices = [row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"]]
    return {"question": row["question"], "choices": choices, "answer": 3, "context": row["support"]}


def _arc_item(row: dict) -> dict:
    labels = row["choices"]["label"]
    return {
        "question": row["question"],
        "choices": list(row["choices"]["text"]),
        "answer": labels.index(row["answerKey"]),
        "context": None,
    }


def _piqa_item(row: dict) -> dict:
    return {"question": row["goal"], "choices": [row["sol1"], row["sol2"]], "answer": row["label"]}


def _check(task, item: dict, doc: dict, use_context: bool = True) -> None:
    """build_prompt / continuation are lm-eval's prompt and requests for this doc."""
    prompt = build_prompt(item, use_context)
    assert prompt == task.doc_to_text(doc)
    assert prompt == task.fewshot_context(doc, 0)
    assert task.doc_to_choice(doc) == item["choices"]
    assert task.doc_to_target(doc) == item["answer"]
    requests = task.construct_requests(doc, prompt, metadata=(task.config.task, 0, 1))
    assert [r.arguments for r in requests] == [(prompt, c) for c in continuations(item)]


def test_sciq_matches_lm_eval(lm_tasks):
    task = lm_tasks["sciq"]
    docs = list(task.eval_docs)
    for row, doc in zip(SCIQ_ROWS, docs, strict=True):
        _check(task, _sciq_item(row), doc)
    # only the support is left-stripped; its trailing whitespace and the question's stay
    assert build_prompt(_sciq_item(SCIQ_ROWS[0])) == (
        "Leaves take in carbon dioxide.  \n\nQuestion:   What do plants take in?  \nAnswer:"
    )
    assert continuation("  carbon dioxide ") == "   carbon dioxide "
    # an empty or blank support (a string) gives lm-eval's leading newline
    assert build_prompt(_sciq_item(SCIQ_ROWS[2])) == "\nQuestion:  No support here?\nAnswer:"
    assert build_prompt(_sciq_item(SCIQ_ROWS[3])) == "\nQuestion: Blank support?\nAnswer:"


@pytest.mark.parametrize("name", ["arc_easy", "arc_challenge"])
def test_arc_matches_lm_eval(lm_tasks, name):
    task = lm_tasks[name]
    for row, doc in zip(ARC_ROWS, task.eval_docs, strict=True):
        item = _arc_item(row)
        _check(task, item, doc)
        _check(task, item, doc, use_context=False)
        _check(task, {**item, "context": "ignored"}, doc, use_context=False)
    assert build_prompt(_arc_item(ARC_ROWS[0])) == "Question:   Which is a metal?\n\nAnswer:"


def test_piqa_matches_lm_eval(lm_tasks):
    task = lm_tasks["piqa"]
    for row, doc in zip(PIQA_ROWS, task.eval_docs, strict=True):
        _check(task, _piqa_item(row), doc)


def test_no_context_key_means_no_passage():
    item = {"question": "q", "choices": ["a"], "answer": 0}
    assert build_prompt(item) == build_prompt(item, use_context=False) == "Question: q\nAnswer:"
    assert build_prompt({**item, "context": None}) == "Question: q\nAnswer:"
    assert build_prompt({**item, "context": "P."}, use_context=False) == "Question: q\nAnswer:"
    assert continuations({**item, "choices": ["a", " b "]}) == [" a", "  b "]


# --------------------------------------------------- documented differences (data layer)


def test_sciq_empty_support_differs_through_the_data_loader(lm_tasks):
    """The loader stores an empty support as context=None: no leading newline, unlike
    lm-eval; context="" restores lm-eval's prompt (see trimlab.prompts)."""
    task = lm_tasks["sciq"]
    row, doc = SCIQ_ROWS[2], list(task.eval_docs)[2]
    item = D.sciq_row(row, 0, "test")
    assert item["context"] is None
    theirs = task.doc_to_text(doc)
    assert theirs == "\nQuestion:  No support here?\nAnswer:"
    assert build_prompt(item) == "Question: No support here?\nAnswer:"
    assert build_prompt({**item, "context": ""}) == "\n" + build_prompt(item)


def test_loader_strips_hub_text_before_the_prompt(lm_tasks):
    """Items from hub rows are stripped by make_item: the prompt then equals lm-eval's
    on the stripped row, not on the raw one (see trimlab.prompts)."""
    task = lm_tasks["sciq"]
    row, doc = SCIQ_ROWS[0], list(task.eval_docs)[0]
    item = D.sciq_row(row, 0, "test")
    assert build_prompt(item) != task.doc_to_text(doc)
    stripped = {k: v.strip() for k, v in doc.items()}
    assert build_prompt(item) == task.doc_to_text(stripped)
    assert sorted(continuations(item)) == sorted(" " + c for c in task.doc_to_choice(stripped))
    piqa = D.piqa_row(PIQA_ROWS[0], 0, "validation")
    assert continuations(piqa) == [" twist the lid", " hit it"]  # lm-eval: " twist the lid "


@pytest.mark.skipif(not os.environ.get(D.DATA_ENV), reason=f"{D.DATA_ENV} not set")
def test_mirror_sciq_empty_supports_are_counted():
    """The count quoted in trimlab.prompts: SciQ test items without a support."""
    test = D.load_domain("sciq", "test")
    assert (len(test), sum(it["context"] is None for it in test)) == (1000, 116)
    assert all(it["context"] is None or it["context"].strip() for it in test)
