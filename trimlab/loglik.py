"""Choice log-likelihoods of encoded items, one prompt pass per question.

lm-eval's HFLM runs every (prompt, choice) pair as its own sequence and computes LM-head
logits for every position. Here each question's prompt runs **once** (a left-padded
batch of prompts through the decoder alone, ``use_cache=True``: no LM head); its KV
cache is then gathered once per choice and only the prompt's last token and the
continuation run against it, with explicit ``position_ids``, a padding-aware attention
mask and a boolean ``logits_to_keep``: only real tokens go through the LM head, once per
batch, not their padding. With long prompts (SciQ support paragraphs) and four
choices this is several times fewer tokens and far fewer LM-head products. The
log-softmax runs over the full output vocabulary in float32, as in HFLM.

:func:`make_batches` groups the prompts, :func:`score_batch` scores one group; the
public entry point is :func:`trimlab.evaluate.choice_logliks`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel

from trimlab.encoding import EncodedItem

PAD_SLACK = 0.15
"""Largest share of padding a prompt batch may add over its real tokens."""


def supports(model: torch.nn.Module, arg: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``arg`` (e.g. ``logits_to_keep``)."""
    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] in float32, without materialising the log-softmax."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def score_batch(
    model: PreTrainedModel,
    batch: list[EncodedItem],
    pad_id: int,
    device: torch.device,
    keep_logits: bool,
) -> list[list[float]]:
    """Per-choice log-likelihoods of a batch of items: one prompt pass through the decoder
    (no LM head), then one choice pass whose real tokens alone go through the LM head."""
    n = len(batch)
    plens = torch.tensor([len(e.prompt) for e in batch])
    # The prompt pass takes each prompt but its last token, left-padded to one width; the
    # last token opens every choice's row in the choice pass, where it predicts the
    # continuation's first token. So every logit comes from one pass and one LM-head call.
    width = int(plens.max()) - 1
    mask = torch.zeros((n, width), dtype=torch.long)
    cache = None
    if width > 0:
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        for b, e in enumerate(batch):
            if len(e.prompt) > 1:
                ids[b, width - len(e.prompt) + 1 :] = torch.tensor(e.prompt[:-1])
                mask[b, width - len(e.prompt) + 1 :] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        cache = model.get_decoder()(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=pos.to(device),
            use_cache=True,
        ).cache

    rows = [(b, k) for b, e in enumerate(batch) for k in range(len(e.conts))]
    m = len(rows)
    clen = max(len(batch[b].conts[k]) for b, k in rows)
    inp = torch.full((m, clen), pad_id, dtype=torch.long)
    tgt = torch.zeros((m, clen), dtype=torch.long)
    cmask = torch.zeros((m, clen), dtype=torch.long)
    for j, (b, k) in enumerate(rows):
        c = batch[b].conts[k]
        inp[j, : len(c)] = torch.tensor([batch[b].prompt[-1], *c[:-1]])
        tgt[j, : len(c)] = torch.tensor(c)
        cmask[j, : len(c)] = 1
    sel = torch.tensor([b for b, _ in rows])
    if cache is not None:
        cache.batch_select_indices(sel.to(device))
    full_mask = torch.cat([mask[sel], cmask], dim=1)
    cpos = (plens[sel] - 1).unsqueeze(1) + torch.arange(clen).unsqueeze(0)
    real = cmask.bool().to(device)
    # A boolean logits_to_keep: transformers flattens the kept positions to (tokens, vocab).
    kwargs = {"logits_to_keep": real} if keep_logits else {}
    out = model(
        input_ids=inp.to(device),
        attention_mask=full_mask.to(device),
        position_ids=cpos.to(device),
        cache=cache,
        use_cache=cache is not None,
        **kwargs,
    )
    logits = out.logits if keep_logits else out.logits[real]
    del out, cache
    lp = _token_logprobs(logits, tgt.to(device)[real])
    owner = torch.arange(m, device=device).unsqueeze(1).expand(m, clen)[real]
    scores = torch.zeros(m, dtype=lp.dtype, device=device).index_add_(0, owner, lp).tolist()

    result: list[list[float]] = [[] for _ in batch]
    for (b, _), s in zip(rows, scores, strict=True):
        result[b].append(s)
    return result


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
