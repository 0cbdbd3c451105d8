"""Tokenizing multiple-choice items the way lm-eval's ``HFLM`` does.

For every item and choice, the prompt is ``build_prompt(item, use_context)`` and the
continuation ``continuation(choice)`` (both from :mod:`trimlab.prompts`). Tokenization
follows ``lm_eval.api.model.LM._encode_pair``: trailing spaces of the prompt move onto
the continuation, ``whole = tok(prompt + cont)``, ``prompt_enc = tok(prompt)``,
``cont_enc = whole[len(prompt_enc):]``, with the tokenizer's own special-token default
(BOS only where the tokenizer adds one, as HFLM with ``add_bos_token=None``). Too long
inputs are cut from the left (HFLM's rule), except that the prompt, shared by the
choices of an item, is cut to fit the *longest* choice.

Both evaluation (:mod:`trimlab.evaluate`) and fine-tuning (:mod:`trimlab.train_data`)
use :func:`encode_items`, so training raises the very log-likelihood that evaluation
compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trimlab.prompts import Item, build_prompt, continuation

DEFAULT_MAX_LENGTH = 2048
"""Fallback token budget when neither the config nor the tokenizer gives one (lm-eval's)."""

_SEQLEN_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")
_TOKENIZER_INFINITY = 1e29


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
