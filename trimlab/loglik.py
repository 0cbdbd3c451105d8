"""Choice log-likelihoods of encoded items, one prompt pass per question.

lm-eval's HFLM runs every (prompt, choice) pair as its own sequence and computes LM-head
logits for every position. Here each question's prompt runs **once** (a left-padded
batch of prompts, ``use_cache=True``, ``logits_to_keep=1``: only the last prompt
position goes through the LM head); its KV cache is then gathered once per choice and
only the continuation tokens run against it, with explicit ``position_ids`` and a
padding-aware attention mask. With long prompts (SciQ support paragraphs) and four
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
