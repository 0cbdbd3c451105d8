"""A bridge to lm-evaluation-harness, to check :mod:`trimlab.evaluate` against it offline.

Two ways to run an in-memory model through lm-eval's ``HFLM``:

* :func:`lmeval_loglikelihoods` builds the ``(prompt, continuation)`` requests itself
  (from :mod:`trimlab.prompts`) and calls ``HFLM.loglikelihood``: per-choice
  log-likelihoods to compare with :func:`trimlab.evaluate.choice_logliks`;
* :func:`lmeval_evaluate` runs the full ``simple_evaluate`` pipeline on a task generated
  on the fly: the items go to a temporary JSONL file, a YAML task reads it with
  ``dataset_path: json`` (``output_type: multiple_choice``, metrics ``acc`` and
  ``acc_norm``) and a ``TaskManager`` finds it through ``include_path``.

Nothing here touches the network: the Hub and ``datasets`` are put in offline mode for
the duration of the call, and the dataset cache lives in the temporary directory.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trimlab.evaluate import validate_items
from trimlab.prompts import Item, build_prompt, continuation

_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Hub and ``datasets`` offline inside the block (env vars and already-read flags)."""
    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    os.environ.update(_OFFLINE_ENV)
    patched: list[tuple[object, str, object]] = []
    for module, attr in (
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ):
        try:
            mod = __import__(module, fromlist=["_"])
        except ImportError:  # pragma: no cover
            continue
        if hasattr(mod, attr):
            patched.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, True)
    try:
        yield
    finally:
        for mod, attr, value in patched:
            setattr(mod, attr, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No ``datasets`` progress bars inside the block."""
    import datasets

    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def make_hflm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 1,
    **hflm_kwargs: object,
):
    """lm-eval's ``HFLM`` around an in-memory model (on a copy of the tokenizer).

    HFLM may set a pad token on the tokenizer it gets; the copy keeps the caller's as is.
    ``hflm_kwargs`` go to ``HFLM`` (e.g. ``max_length``).
    """
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return HFLM(
        pretrained=model,
        tokenizer=copy.deepcopy(tokenizer),
        batch_size=batch_size,
        **hflm_kwargs,
    )


def requests_for(items: Sequence[Item], use_context: bool = True) -> list[tuple[str, str]]:
    """The ``(context, continuation)`` pairs of every choice of every item, in order."""
    return [
        (build_prompt(item, use_context), continuation(choice))
        for item in items
        for choice in item["choices"]
    ]


def lmeval_loglikelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Iterable[Item],
    use_context: bool = True,
    batch_size: int = 1,
    lm: object | None = None,
) -> list[list[float]]:
    """Per-choice log-likelihoods from lm-eval's ``HFLM.loglikelihood``, per item.

    ``lm`` reuses an ``HFLM`` made by :func:`make_hflm` (its batch size then applies).
    """
    from lm_eval.api.instance import Instance

    items = validate_items(items)
    if lm is None:
        lm = make_hflm(model, tokenizer, batch_size)
    reqs = [
        Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i)
        for i, pair in enumerate(requests_for(items, use_context))
    ]
    was_training = model.training
    try:
        with offline():
            flat = [ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    finally:
        model.train(was_training)
    out, pos = [], 0
    for item in items:
        k = len(item["choices"])
        out.append(flat[pos : pos + k])
        pos += k
    return out


def write_task(
    items: Sequence[Item], use_context: bool, directory: str | os.PathLike, name: str
) -> Path:
    """Write ``items`` as JSONL plus an lm-eval YAML task ``name`` reading it; the YAML path.

    Each JSONL row holds the finished ``prompt`` (:func:`~trimlab.prompts.build_prompt`),
    the ``choices`` as lm-eval's ``doc_to_choice`` wants them (the continuation without
    its leading space: lm-eval adds ``target_delimiter: " "``) and the ``answer`` index.
    """
    import yaml

    directory = Path(directory)
    data = directory / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for item in items:
            row = {
                "prompt": build_prompt(item, use_context),
                "choices": [continuation(c)[1:] for c in item["choices"]],
                "answer": int(item["answer"]),
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {"test": str(data)},
            "cache_dir": str(directory / "hf_datasets_cache"),
        },
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "prompt",
        "doc_to_choice": "choices",
        "doc_to_target": "answer",
        "target_delimiter": " ",
        "num_fewshot": 0,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def lmeval_evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Iterable[Item],
    use_context: bool = True,
    batch_size: int = 1,
) -> dict:
    """``acc``, ``acc_norm`` and ``n`` from lm-eval's ``simple_evaluate`` on ``items``.

    The items are written to a temporary JSONL file with a generated YAML task; lm-eval
    loads it with ``datasets``' local ``json`` builder, offline.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    items = validate_items(items)
    name = f"trimlab_mc_{uuid.uuid4().hex[:10]}"
    lm = make_hflm(model, tokenizer, batch_size)
    was_training = model.training
    with tempfile.TemporaryDirectory(prefix="trimlab_lmeval_") as tmp, offline(), _quiet():
        write_task(items, use_context, tmp, name)
        manager = TaskManager(include_path=tmp, include_defaults=False)
        try:
            results = simple_evaluate(
                model=lm,
                tasks=[name],
                task_manager=manager,
                num_fewshot=0,
                batch_size=batch_size,
                bootstrap_iters=0,
                log_samples=False,
                verbosity="ERROR",
            )
        finally:
            model.train(was_training)
    metrics = results["results"][name]
    return {
        "acc": float(metrics["acc,none"]),
        "acc_norm": float(metrics["acc_norm,none"]),
        "n": len(items),
    }
