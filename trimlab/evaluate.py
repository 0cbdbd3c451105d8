"""Multiple-choice evaluation by answer log-likelihood, the lm-eval way, but faster.

For every item and every choice we compute the log-likelihood of the continuation
``continuation(choice)`` given the prompt ``build_prompt(item, use_context)`` (both from
:mod:`trimlab.prompts`), exactly as lm-eval's ``HFLM.loglikelihood`` does. The work is
split by concept:

* :mod:`trimlab.encoding`: tokenization as HFLM's ``_encode_pair`` does it, and the
  left truncation to ``max_length`` (:func:`encode_items`, :func:`resolve_max_length`);
* :mod:`trimlab.loglik`: batching (:func:`make_batches`) and the fast scoring of a batch
  (:func:`~trimlab.loglik.score_batch`): each question's prompt runs once and its KV
  cache is shared by the choices, where HFLM runs every (prompt, choice) pair;
* this module: item validation, :func:`choice_logliks` (per-choice log-likelihoods, used
  by scoring), :func:`summarize` (metrics from them) and :func:`evaluate` (both in one
  call).

One deliberate difference from HFLM: when an input must be truncated, the prompt is cut
to fit the *longest* choice of its item (the prompt is shared), where HFLM cuts per
choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trimlab.data import validate_item
from trimlab.encoding import DEFAULT_MAX_LENGTH, EncodedItem, encode_items, resolve_max_length
from trimlab.loglik import PAD_SLACK, make_batches, score_batch, supports
from trimlab.prompts import Item, continuation
from trimlab.runtime import is_main_process, model_device, pad_id

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "PAD_SLACK",
    "EncodedItem",
    "choice_logliks",
    "default_batch_size",
    "encode_items",
    "evaluate",
    "make_batches",
    "norm_length",
    "predictions",
    "resolve_max_length",
    "summarize",
    "validate_items",
]


# --------------------------------------------------------------------------- validation


def validate_items(items: Iterable[Item]) -> list[Item]:
    """``items`` as a list, after checking every item with :func:`trimlab.data.validate_item`.

    The rules are the data loader's (:func:`trimlab.data.schema.schema_error`): a dict
    with a non-empty string ``question``, a non-empty list of string ``choices``, an
    ``int`` ``answer`` in range, and string-or-``None`` ``context`` and ``subject``.
    The items themselves are returned unchanged.

    Raises:
        ValueError: for no items, or ``"item <i>: <problem>"`` for the first bad item.
    """
    items = list(items)
    if not items:
        raise ValueError("evaluate: no items to evaluate (got an empty list)")
    for i, item in enumerate(items):
        validate_item(item, f"item {i}")
    return items


# --------------------------------------------------------------------------- log-likelihoods


def default_batch_size() -> int:
    """The active profile's batch size (``trimlab.profiles.get_profile().batch_size``)."""
    from trimlab.profiles import get_profile

    return get_profile().batch_size


def choice_logliks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Iterable[Item],
    batch_size: int | None = None,
    use_context: bool = True,
    max_length: int | None = None,
    progress: bool = False,
) -> list[list[float]]:
    """Summed log-likelihood of every choice's continuation, per item, in item order.

    Args:
        batch_size: at most this many questions per forward pass (their choices run
            together in a second, short pass; batches close early rather than pad a lot,
            see :func:`make_batches`); ``None`` takes the active profile's batch size.
        use_context: put the item's context paragraph in the prompt.
        max_length: token budget per input (default: the model's context length).
        progress: show a tqdm bar over items (on the main process only).

    Results do not depend on ``batch_size`` (up to float rounding).
    """
    items = validate_items(items)
    if batch_size is None:
        batch_size = default_batch_size()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length is None:
        max_length = resolve_max_length(model, tokenizer)
    encoded = encode_items(tokenizer, items, use_context, max_length)

    pad = pad_id(tokenizer)
    device = model_device(model)
    keep_logits = supports(model, "logits_to_keep")
    batches = make_batches([len(e.prompt) for e in encoded], batch_size)
    results: list[list[float]] = [[] for _ in encoded]

    bar = None
    if progress and is_main_process():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(encoded), desc="evaluate", unit="item")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in batches:
                scores = score_batch(model, [encoded[i] for i in idx], pad, device, keep_logits)
                for i, s in zip(idx, scores, strict=True):
                    results[i] = s
                if bar is not None:
                    bar.update(len(idx))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return results


# --------------------------------------------------------------------------- metrics


def norm_length(choice: str) -> int:
    """Characters that ``acc_norm`` divides by: lm-eval's ``len(choice)``.

    lm-eval's multiple-choice ``process_results`` uses the length of the choice string
    from ``doc_to_choice`` (without the target delimiter); ours is
    ``continuation(choice)`` minus its leading space.
    """
    return max(1, len(continuation(choice)) - 1)


def summarize(items: Sequence[Item], logliks: Sequence[Sequence[float]]) -> dict:
    """``acc``, ``acc_norm``, ``ll`` and ``n`` from per-choice log-likelihoods.

    * ``acc``: share of items whose highest summed log-likelihood is the answer;
    * ``acc_norm``: the same after dividing each log-likelihood by the choice's length in
      characters (lm-eval's ``acc_norm``);
    * ``ll``: mean log-likelihood of the correct continuation.

    Ties go to the first choice (``argmax``), as in lm-eval.
    """
    if len(items) != len(logliks):
        raise ValueError(f"{len(items)} items but {len(logliks)} log-likelihood rows")
    if not items:
        raise ValueError("summarize: no items")
    acc = acc_norm = ll = 0.0
    for item, lls in zip(items, logliks, strict=True):
        answer = int(item["answer"])
        normed = [x / norm_length(c) for x, c in zip(lls, item["choices"], strict=True)]
        acc += _argmax(lls) == answer
        acc_norm += _argmax(normed) == answer
        ll += lls[answer]
    n = len(items)
    return {"acc": acc / n, "acc_norm": acc_norm / n, "ll": ll / n, "n": n}


def _argmax(values: Sequence[float]) -> int:
    best, best_i = -math.inf, 0
    for i, v in enumerate(values):
        if v > best:
            best, best_i = v, i
    return best_i


def predictions(logliks: Sequence[Sequence[float]]) -> list[int]:
    """The predicted choice (argmax of summed log-likelihood) of every item."""
    return [_argmax(lls) for lls in logliks]


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Iterable[Item],
    batch_size: int | None = None,
    use_context: bool = True,
    progress: bool = False,
    max_length: int | None = None,
) -> dict:
    """Accuracy of ``model`` on multiple-choice ``items`` by answer log-likelihood.

    Returns ``{"acc", "acc_norm", "ll", "n"}`` (see :func:`summarize`); lm-eval's HFLM on
    the same prompts picks the same choices (see :mod:`trimlab.lmeval`).

    Raises:
        ValueError: for no items, empty choices or an answer index out of range, before
            any model work.
    """
    items = validate_items(items)
    logliks = choice_logliks(
        model,
        tokenizer,
        items,
        batch_size=batch_size,
        use_context=use_context,
        max_length=max_length,
        progress=progress,
    )
    return summarize(items, logliks)
