"""Accounting: parameters, bytes and per-token FLOPs of a model and of each sub-layer.

Compression ratios and ideal speedups everywhere in trimlab are computed from these.
TrimLLM reports "compression" as final memory over original (e.g. "TrimLLM (50%)"). For a
small model the embeddings and LM head are a large share that cannot be dropped
(SmolLM2-135M: about 28M of 135M parameters), so trimlab always reports both:

* ``decoder_kept``: share of decoder-layer parameters kept (the paper's "P%"), and
* ``bytes_kept``: share of all parameter bytes kept (``"P%mem"``).

FLOPs count one multiply-add as 2 FLOPs. A sub-layer costs ``2 * (its matrix weights)``
per token, and an attention sub-layer adds ``4 * heads * head_dim * context`` for the
scores and the weighted sum over ``context`` cached tokens. Norms and the residual add
are counted as free. The LM head costs ``2 * vocab * hidden``; the embedding lookup is free.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from transformers import PreTrainedModel

from trimlab import families


def _unique(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for p in params:
        seen.setdefault(id(p), p)
    return list(seen.values())


def param_count(model: nn.Module) -> int:
    """All parameters (tied weights counted once)."""
    return sum(p.numel() for p in _unique(model.parameters()))


def param_bytes(model: nn.Module) -> int:
    """Bytes of all parameters in their current dtypes (tied weights counted once)."""
    return sum(p.numel() * p.element_size() for p in _unique(model.parameters()))


def decoder_param_count(model: PreTrainedModel) -> int:
    """Parameters inside the decoder blocks (what layer dropping can remove)."""
    return param_count(families.layer_list(model))


def _modules_params(mods: Iterable[nn.Module]) -> list[nn.Parameter]:
    return _unique(p for m in mods for p in m.parameters())


def sublayer_params(model: PreTrainedModel) -> dict[str, int]:
    """Parameter count of each remaining sub-layer (its norms included)."""
    return {
        n: sum(p.numel() for p in _modules_params(families.modules_of(model, n)))
        for n in families.sublayers(model)
    }


def sublayer_flops(model: PreTrainedModel, context: int = 0) -> dict[str, int]:
    """Per-token forward FLOPs of each remaining sub-layer at ``context`` cached tokens."""
    heads, _, head_dim = families.head_geometry(model.config)
    out = {}
    for n in families.sublayers(model):
        params = _modules_params(families.modules_of(model, n))
        flops = 2 * sum(p.numel() for p in params if p.dim() >= 2)
        if n.endswith(".attn"):
            flops += 4 * heads * head_dim * context
        out[n] = flops
    return out


def embedding_params(model: PreTrainedModel) -> int:
    """Input embedding parameters (plus learned position embeddings where the family has them)."""
    inside = {id(p) for p in families.layer_list(model).parameters()}
    head = model.get_output_embeddings()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    emb = model.get_input_embeddings()
    total = sum(p.numel() for p in emb.parameters())
    for name, p in model.named_parameters():
        if id(p) in inside or id(p) in head_ids or p is emb.weight:
            continue
        if "pos" in name and p.dim() == 2:  # GPT-2 wpe, OPT embed_positions
            total += p.numel()
    return total


def lm_head_params(model: PreTrainedModel) -> int:
    """LM head parameters not shared with the input embedding (0 when tied)."""
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    if head is None:
        return 0
    return sum(p.numel() for p in head.parameters() if p is not emb.weight)


def lm_head_flops(model: PreTrainedModel) -> int:
    """Per-token FLOPs of the LM head: 2 * vocab * hidden."""
    w = model.get_output_embeddings().weight
    return 2 * w.shape[0] * w.shape[1]


def flops_per_token(model: PreTrainedModel, context: int = 0) -> int:
    """Forward FLOPs per generated token: remaining sub-layers + LM head."""
    return sum(sublayer_flops(model, context).values()) + lm_head_flops(model)


def sizes(model: PreTrainedModel) -> dict[str, int]:
    """Parameter count, parameter bytes and decoder-layer parameters of ``model``."""
    return {
        "params": param_count(model),
        "bytes": param_bytes(model),
        "decoder_params": decoder_param_count(model),
    }


def base_sizes(model: PreTrainedModel) -> dict[str, int]:
    """:func:`sizes` of the model before any drop (recorded at the first drop)."""
    base = getattr(model.config, "trimlab_base_sizes", None)
    return dict(base) if base else sizes(model)


def compression(model: PreTrainedModel) -> dict[str, float]:
    """Shares kept relative to the untrimmed model: decoder params, params, bytes."""
    now, base = sizes(model), base_sizes(model)
    return {
        "decoder_kept": now["decoder_params"] / base["decoder_params"],
        "params_kept": now["params"] / base["params"],
        "bytes_kept": now["bytes"] / base["bytes"],
    }


def ideal_speedup(
    full: PreTrainedModel, trimmed: PreTrainedModel, context: int = 0
) -> dict[str, float]:
    """Upper bounds on the speedup of ``trimmed`` over ``full`` from the accounting.

    ``flops``: ratio of per-token FLOPs (compute-bound prefill); ``bytes``: ratio of
    parameter bytes read per decoded token (memory-bound decode at batch 1).
    """
    return {
        "flops": flops_per_token(full, context) / flops_per_token(trimmed, context),
        "bytes": param_bytes(full) / param_bytes(trimmed),
    }
