"""Does bf16 change the science? The same measurement in two compute dtypes, compared.

A run's compute dtype (``TrimConfig.dtype``) is a speed setting: bf16 autocast over
fp32 weights is several times faster on CPUs with AMX-BF16 / AVX512-BF16 units and on
GPUs. It must not change what TrimLLM decides. Three checks, each run once per dtype on
the same model and items:

* :func:`choice_agreement`: the share of multiple-choice items whose predicted choice
  (the argmax of the answer log-likelihoods, as in evaluation) is the same;
* :func:`score_agreement`: Spearman's rank correlation of the importance scores of every
  sub-layer (the drop-one scan of Eq. 3, or any other :mod:`trimlab.scoring` method);
* :func:`drop_sequence`: the sub-layers a short trim run removes, in order.

Each call leaves the model as it found it.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedModel

from trimlab import scoring
from trimlab.config import TrimConfig
from trimlab.evaluate import choice_logliks, predictions
from trimlab.runtime import autocast, model_device
from trimlab.specialization import spearman

DTYPES = ("fp32", "bf16")


def _check(dtypes: Sequence[str]) -> None:
    if len(dtypes) != 2 or any(d not in DTYPES for d in dtypes):
        raise ValueError(f"compare two of {DTYPES}, got {tuple(dtypes)}")


def choice_agreement(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    dtypes: Sequence[str] = DTYPES,
    **kw,
) -> dict:
    """``{"agree", "n", "acc": {dtype: accuracy}}``: the share of items predicted alike.

    ``kw`` goes to :func:`trimlab.evaluate.choice_logliks` (``use_context``,
    ``max_length``, ``batch_size``).
    """
    _check(dtypes)
    preds, acc = {}, {}
    for d in dtypes:
        with autocast(d, model_device(model)):
            preds[d] = predictions(choice_logliks(model, tokenizer, items, **kw))
        acc[d] = sum(p == it["answer"] for p, it in zip(preds[d], items, strict=True)) / len(items)
    a, b = (preds[d] for d in dtypes)
    same = sum(x == y for x, y in zip(a, b, strict=True))
    return {"agree": same / len(items), "n": len(items), "acc": acc}


def score_agreement(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    method: str = "loglik",
    dtypes: Sequence[str] = DTYPES,
    **kw,
) -> dict:
    """``{"rho", "scores": {dtype: {name: importance}}}``: Spearman's ρ over all sub-layers.

    ``kw`` goes to :func:`trimlab.scoring.score` (``use_context``, ``max_length``, ...).
    """
    _check(dtypes)
    scores = {}
    for d in dtypes:
        with autocast(d, model_device(model)):
            scores[d] = dict(scoring.score(model, tokenizer, items, method=method, **kw))
    names = list(scores[dtypes[0]])
    rho = spearman([scores[dtypes[0]][n] for n in names], [scores[dtypes[1]][n] for n in names])
    return {"rho": rho, "scores": scores}


def drop_sequence(model_factory, domain, target, config: TrimConfig) -> dict[str, list[str]]:
    """The sub-layers removed, in order, by ``trim`` in each dtype (``config.dtype`` is
    replaced). ``model_factory()`` returns a fresh ``(model, tokenizer)`` each time."""
    from trimlab.pipeline import trim

    out = {}
    for d in DTYPES:
        model, tok = model_factory()
        res = trim(model, tok, domain, target, config.replace(dtype=d), log=None)
        out[d] = [name for rnd in res.history.rounds for name in rnd.dropped]
    return out
