"""Multiple-choice evaluation by answer log-likelihood, the lm-eval way, but faster.

For every item and every choice we compute the log-likelihood of the continuation
``continuation(choice)`` given the prompt ``build_prompt(item, use_context)`` (both from
:mod:`trimlab.prompts`), exactly as lm-eval's ``HFLM.loglikelihood`` does:

* tokenization follows ``lm_eval.api.model.LM._encode_pair``: trailing spaces of the
  prompt move onto the continuation, ``whole = tok(prompt + cont)``,
  ``prompt_enc = tok(prompt)``, ``cont_enc = whole[len(prompt_enc):]``, with the
  tokenizer's own special-token default (BOS only where the tokenizer adds one, as HFLM
  with ``add_bos_token=None``); the model reads ``prompt_enc + cont_enc[:-1]``;
* too long inputs are cut from the left to ``max_length`` tokens (HFLM's rule);
* the log-softmax runs over the full output vocabulary in float32.

What differs is the cost. HFLM runs every (prompt, choice) pair as its own sequence and
computes LM-head logits for every position. Here each question's prompt runs **once**
(a left-padded batch of prompts, ``use_cache=True``, ``logits_to_keep=1``: only the last
prompt position goes through the LM head); its KV cache is then gathered once per choice
and only the continuation tokens run against it, with explicit ``position_ids`` and a
padding-aware attention mask. With long prompts (SciQ support paragraphs) and four
choices this is several times fewer tokens and far fewer LM-head products.

One deliberate difference: when an input must be truncated, the prompt is cut to fit the
*longest* choice of its item (the prompt is shared), where HFLM cuts per choice.

Public API: :func:`choice_logliks` (per-choice log-likelihoods, used by scoring),
:func:`summarize` (metrics from them) and :func:`evaluate` (both in one call).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trimlab.prompts import Item, build_prompt, continuation

DEFAULT_MAX_LENGTH = 2048
"""Fallback token budget when neither the config nor the tokenizer gives one (lm-eval's)."""

_SEQLEN_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")
_TOKENIZER_INFINITY = 1e29


# --------------------------------------------------------------------------- validation


def validate_items(items: Iterable[Item]) -> list[Item]:
    """``items`` as a list, after checking every item's choices and answer index.

    Raises:
        ValueError: for no items, an item without choices, or an answer out of range.
    """
    items = list(items)
    if not items:
        raise ValueError("evaluate: no items to evaluate (got an empty list)")
    for i, item in enumerate(items):
        try:
            choices = item["choices"]
            answer = item["answer"]
            item["question"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"item {i}: missing key {exc} (need question, choices, answer)"
            ) from None
        if isinstance(choices, (str, bytes)) or not hasattr(choices, "__len__") or not len(choices):
            raise ValueError(f"item {i}: choices must be a non-empty list, got {choices!r}")
        if isinstance(answer, bool) or not isinstance(answer, int):
            try:
                ok = int(answer) == answer
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"item {i}: answer must be an integer index, got {answer!r}")
        if not 0 <= int(answer) < len(choices):
            raise ValueError(
                f"item {i}: answer index {answer} out of range for {len(choices)} choices"
            )
    return items


# --------------------------------------------------------------------------- tokenization


def resolve_max_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The model's context length, found the way lm-eval's ``resolve_max_length`` does."""
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):
        if cfg is None:
            continue
        for attr in _SEQLEN_ATTRS:
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _TOKENIZER_INFINITY:
        return limit
    return DEFAULT_MAX_LENGTH


def _prefix_string(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """HFLM's ``tokenizer.decode(prefix_token_id)`` (BOS, else EOS)."""
    prefix_id = tokenizer.bos_token_id
    if prefix_id is None:
        prefix_id = tokenizer.eos_token_id
    if prefix_id is None:
        return None
    return tokenizer.decode(prefix_id)


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], prefix: str | None) -> list:
    """HFLM ``tok_encode`` of each text (no special tokens when it starts with BOS text)."""
    out: list[list[int] | None] = [None] * len(texts)
    for flag in (True, False):
        idx = [
            i for i, t in enumerate(texts) if (prefix is None or not t.startswith(prefix)) == flag
        ]
        if not idx:
            continue
        enc = tokenizer([texts[i] for i in idx], add_special_tokens=flag)["input_ids"]
        for i, ids in zip(idx, enc, strict=True):
            out[i] = list(ids)
    return out


@dataclass
class EncodedItem:
    """Token ids of one item: its (possibly left-truncated) prompt and each continuation."""

    prompt: list[int]
    conts: list[list[int]]


def encode_items(
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    use_context: bool = True,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> list[EncodedItem]:
    """Prompt and continuation token ids of every item, as lm-eval's HFLM makes them.

    The prompt is left-truncated so that ``prompt + longest continuation - 1`` fits in
    ``max_length`` tokens (HFLM feeds ``(prompt + cont)[-(max_length + 1):][:-1]``).
    """
    prefix = _prefix_string(tokenizer)
    prompts, wholes, owners = [], [], []
    for i, item in enumerate(items):
        prompt = build_prompt(item, use_context)
        stripped = prompt.rstrip()
        spaces = prompt[len(stripped) :]  # _encode_pair moves these onto the continuation
        if not stripped:
            raise ValueError(f"item {i}: empty prompt")
        prompts.append(stripped)
        for choice in item["choices"]:
            wholes.append(stripped + spaces + continuation(choice))
            owners.append(i)
    prompt_enc = _encode(tokenizer, prompts, prefix)
    whole_enc = _encode(tokenizer, wholes, prefix)

    encoded = [EncodedItem(prompt=p, conts=[]) for p in prompt_enc]
    for owner, whole in zip(owners, whole_enc, strict=True):
        encoded[owner].conts.append(whole[len(encoded[owner].prompt) :])
    for i, enc in enumerate(encoded):
        longest = max(len(c) for c in enc.conts)
        if min(len(c) for c in enc.conts) == 0:
            raise ValueError(f"item {i}: a choice tokenizes to no continuation tokens")
        if longest > max_length:
            raise ValueError(
                f"item {i}: a continuation has {longest} tokens, more than max_length={max_length}"
            )
        keep = max_length + 1 - longest
        if len(enc.prompt) > keep:
            enc.prompt = enc.prompt[-keep:]
    return encoded


# --------------------------------------------------------------------------- model calls


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _supports(model: torch.nn.Module, arg: str) -> bool:
    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] in float32, without materialising the log-softmax."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def _score_batch(
    model: PreTrainedModel,
    batch: list[EncodedItem],
    pad_id: int,
    device: torch.device,
    keep_logits: bool,
) -> list[list[float]]:
    """Per-choice log-likelihoods of a batch of items: one prompt pass, one choice pass."""
    n = len(batch)
    plens = torch.tensor([len(e.prompt) for e in batch])
    width = int(plens.max())
    # Left padding: every prompt ends at column width-1, so the first continuation token
    # is predicted by the last position (logits_to_keep=1) and continuations follow on.
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for b, e in enumerate(batch):
        ids[b, width - len(e.prompt) :] = torch.tensor(e.prompt)
        mask[b, width - len(e.prompt) :] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": 1} if keep_logits else {}
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=pos.to(device),
        use_cache=True,
        **kwargs,
    )
    last = out.logits[:, -1, :]
    cache = out.cache
    del out

    # First continuation token of every choice, from the prompt's last logits.
    rows = [(b, k) for b, e in enumerate(batch) for k in range(len(e.conts))]
    owner = torch.tensor([b for b, _ in rows], device=device)
    first = torch.tensor([batch[b].conts[k][0] for b, k in rows], device=device)
    scores = _token_logprobs(last[owner], first).tolist()
    del last

    # The rest of each continuation, against the prompt's cache gathered per choice.
    long_rows = [r for r, (b, k) in enumerate(rows) if len(batch[b].conts[k]) > 1]
    if long_rows:
        conts = [batch[rows[r][0]].conts[rows[r][1]] for r in long_rows]
        clen = max(len(c) for c in conts) - 1
        m = len(long_rows)
        inp = torch.full((m, clen), pad_id, dtype=torch.long)
        tgt = torch.zeros((m, clen), dtype=torch.long)
        cmask = torch.zeros((m, clen), dtype=torch.long)
        for j, c in enumerate(conts):
            inp[j, : len(c) - 1] = torch.tensor(c[:-1])
            tgt[j, : len(c) - 1] = torch.tensor(c[1:])
            cmask[j, : len(c) - 1] = 1
        sel = torch.tensor([rows[r][0] for r in long_rows])
        cache.batch_select_indices(sel.to(device))
        full_mask = torch.cat([mask[sel], cmask], dim=1)
        cpos = plens[sel].unsqueeze(1) + torch.arange(clen).unsqueeze(0)
        out = model(
            input_ids=inp.to(device),
            attention_mask=full_mask.to(device),
            position_ids=cpos.to(device),
            cache=cache,
            use_cache=True,
        )
        lp = _token_logprobs(out.logits, tgt.to(device)) * cmask.to(device)
        rest = lp.sum(1).tolist()
        del out, cache
        for j, r in enumerate(long_rows):
            scores[r] += rest[j]

    result: list[list[float]] = [[] for _ in batch]
    for (b, _), s in zip(rows, scores, strict=True):
        result[b].append(s)
    return result


PAD_SLACK = 0.15
"""Largest share of padding a prompt batch may add over its real tokens."""


def make_batches(lengths: Sequence[int], batch_size: int, slack: float = PAD_SLACK) -> list:
    """Group indices into batches of at most ``batch_size`` with little padding.

    Prompts are taken longest first (as HFLM does: little padding, OOM shows early); a
    batch is closed early when adding the next prompt would make its padded size
    ``count * longest`` exceed ``(1 + slack)`` times its real tokens. On a CPU every
    padding token costs as much as a real one, so this matters as much as batching.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        if current and (
            len(current) >= batch_size
            or (len(current) + 1) * lengths[current[0]] > (1 + slack) * (total + lengths[i])
        ):
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        batches.append(current)
    return batches


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
        progress: show a tqdm bar over items.

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

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    device = _device(model)
    keep_logits = _supports(model, "logits_to_keep")
    batches = make_batches([len(e.prompt) for e in encoded], batch_size)
    results: list[list[float]] = [[] for _ in encoded]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(encoded), desc="evaluate", unit="item")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in batches:
                scores = _score_batch(model, [encoded[i] for i in idx], pad_id, device, keep_logits)
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
