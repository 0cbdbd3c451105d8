"""Residual-stream measurements on calibration text (TrimLLM Eq. 4, and the peers' cosines).

Eq. 4 scores sub-layer i by ``n_i = ||A_i||_F / sqrt(N)``, where ``A_i`` is the
(N tokens x d) matrix of what i adds to the residual stream over all N non-padding
calibration tokens. ShortGPT's block influence and Gromov et al.'s angular distance
compare the stream before and after a sub-layer or a window of blocks. All of them come
from one hooked forward pass per batch, made here by :func:`stream_pass`:

* the text is each item's prompt followed by its correct answer, tokenized and truncated
  as :func:`trimlab.encoding.encode_items` does (the prompt is cut from the left; the
  default budget is the model's context length, as in :func:`trimlab.evaluate.evaluate`),
  so the calibration passes read the tokens that test evaluation reads;
* batches of at most ``batch_size`` sequences are right-padded, and every sum masks the
  padding out, so results do not depend on the batch size (up to float rounding);
* the model runs without gradients, in eval mode, with its inputs on its own device, and
  comes back in the mode it was in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedModel

from trimlab import families
from trimlab.encoding import encode_items, resolve_max_length
from trimlab.evaluate import default_batch_size, validate_items
from trimlab.runtime import model_device, pad_id

OnBatch = Callable[[list[int], torch.Tensor, dict[str, torch.Tensor]], None]


def calibration_ids(
    tokenizer, items: Sequence[dict], use_context: bool, max_length: int
) -> list[list[int]]:
    """Token ids of each item's prompt and correct answer: the prompt as
    :func:`~trimlab.encoding.encode_items` encodes and left-truncates it, then the answer's
    continuation, the whole cut from the left to at most ``max_length`` tokens."""
    encoded = encode_items(tokenizer, items, use_context, max_length)
    return [
        (e.prompt + e.conts[int(it["answer"])])[-max_length:]
        for e, it in zip(encoded, items, strict=True)
    ]


def stream_pass(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    taps: dict[str, tuple[torch.nn.Module, str]],
    on_batch: OnBatch,
    use_context: bool = True,
    batch_size: int | None = None,
    max_length: int | None = None,
) -> None:
    """Run the calibration sequences through ``model`` and call ``on_batch(rows, mask,
    captured)`` after each batch: ``rows`` the item indices, ``mask`` the (batch x width)
    bool mask of real tokens, ``captured[key]`` the float32 input (``"in"``) or output
    (``"out"``) of the module of ``taps[key] = (module, "in" | "out")``.

    ``batch_size`` None takes the active profile's; ``max_length`` None the model's context
    length. Sequences are batched longest first, so batches need little padding.
    """
    items = validate_items(items)
    batch_size = default_batch_size() if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length is None:
        max_length = resolve_max_length(model, tokenizer)
    ids = calibration_ids(tokenizer, items, use_context, max_length)
    pad = pad_id(tokenizer)
    device = model_device(model)  # the first parameter's device
    captured: dict[str, torch.Tensor] = {}

    def grab_out(key: str) -> Callable:
        def hook(_m, _args, out):
            out = out[0] if isinstance(out, tuple) else out
            captured[key] = out.detach().to(device, torch.float32)

        return hook

    def grab_in(key: str) -> Callable:
        def hook(_m, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            captured[key] = x.detach().to(device, torch.float32)

        return hook

    handles = [
        mod.register_forward_pre_hook(grab_in(key), with_kwargs=True)
        if where == "in"
        else mod.register_forward_hook(grab_out(key))
        for key, (mod, where) in taps.items()
    ]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                width = len(ids[rows[0]])
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for b, i in enumerate(rows):
                    input_ids[b, : len(ids[i])] = torch.tensor(ids[i])
                    mask[b, : len(ids[i])] = 1
                mask = mask.to(device)
                model(input_ids=input_ids.to(device), attention_mask=mask, use_cache=False)
                on_batch(rows, mask.bool(), captured)
                captured.clear()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


def residual_statistics(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    use_context: bool = True,
    batch_size: int | None = None,
    max_length: int | None = None,
) -> dict[str, dict[str, float]]:
    """Per remaining sub-layer, over all non-padding calibration tokens:

    * ``sq_norm``: sum of ``||c_t||^2``, c_t the sub-layer's addition to the stream
      (Eq. 4's ``||A_i||_F^2``);
    * ``tokens``: N, the number of tokens;
    * ``cos``: sum over tokens of ``cos(x_t, x_t + c_t)`` (x_t the stream entering it);
    * ``last_cos``: sum over sequences of that cosine at the last token;
    * ``sequences``: the number of sequences.
    """
    fam = families.family_of(model)
    names = families.sublayers(model)
    blocks = dict(zip(families.block_ids(model), families.layer_list(model), strict=True))
    stats = {n: dict(sq_norm=0.0, tokens=0, cos=0.0, last_cos=0.0, sequences=0) for n in names}
    taps = {}
    for bid, block in blocks.items():
        taps[f"{bid}.in"] = (block, "in")
        for kind in families.KINDS:
            if f"{bid}.{kind}" in stats:
                taps[f"{bid}.{kind}"] = (getattr(block, fam.sublayer(kind).contribution), "out")

    def on_batch(_rows: list[int], mask: torch.Tensor, captured: dict) -> None:
        last = mask.sum(1) - 1
        rows = torch.arange(mask.shape[0], device=mask.device)
        for bid in blocks:
            x = captured[f"{bid}.in"]
            for kind in families.KINDS:
                name = f"{bid}.{kind}"
                if name not in stats:
                    continue
                c = captured[name]
                c = c.reshape(x.shape) if c.numel() == x.numel() else c.expand_as(x)
                y = x + c
                cos = torch.nn.functional.cosine_similarity(x, y, dim=-1)
                s = stats[name]
                s["sq_norm"] += float((c.pow(2).sum(-1) * mask).sum())
                s["tokens"] += int(mask.sum())
                s["cos"] += float((cos * mask).sum())
                s["last_cos"] += float(cos[rows, last].sum())
                s["sequences"] += int(mask.shape[0])
                x = y

    stream_pass(model, tokenizer, items, taps, on_batch, use_context, batch_size, max_length)
    return stats


def angular_block_distances(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    n: int = 1,
    use_context: bool = True,
    batch_size: int | None = None,
    max_length: int | None = None,
) -> dict[int, float]:
    """Gromov et al.: mean ``arccos(cos(h_l, h_{l+n})) / pi`` at the last token, for every
    start block l (original ids) of a window of n blocks; the smallest is pruned first.

    ``h_l`` is the residual stream entering block l, and after the last block its output
    (before the final norm, which ``output_hidden_states`` would put in its place).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    blocks = list(families.layer_list(model))
    taps = {f"in{p}": (b, "in") for p, b in enumerate(blocks)}
    taps["out"] = (blocks[-1], "out")
    sums = [0.0] * max(0, len(blocks) - n + 1)

    def on_batch(_rows: list[int], mask: torch.Tensor, captured: dict) -> None:
        last = mask.sum(1) - 1
        rows = torch.arange(mask.shape[0], device=mask.device)
        keys = [f"in{p}" for p in range(len(blocks))] + ["out"]
        hs = [captured[k][rows, last] for k in keys]
        for i in range(len(sums)):
            cos = torch.nn.functional.cosine_similarity(hs[i], hs[i + n], dim=-1).clamp(-1, 1)
            sums[i] += float((torch.arccos(cos) / math.pi).sum())

    items = validate_items(items)
    stream_pass(model, tokenizer, items, taps, on_batch, use_context, batch_size, max_length)
    ids = families.block_ids(model)
    return {ids[i]: s / len(items) for i, s in enumerate(sums)}
