"""Per-token cost of a decode step and of a prefill: bytes read and FLOPs (TrimLLM Sec. 4).

The ideal speedups of :mod:`trimlab.bench.ideal` are ratios of these costs. FLOPs come
from :mod:`trimlab.accounting` (remaining sub-layers plus the LM head; one multiply-add
is 2 FLOPs); this module adds the memory traffic of decoding: every remaining weight is
read once per step and shared by the batch (:func:`bytes_read_per_step`), and each
sequence reads its own KV cache (:func:`kv_bytes_per_token`). Model geometry (heads,
head size, which sub-layers remain) is read through :mod:`trimlab.families`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from trimlab import accounting, families
from trimlab.bench.memory import tensor_bytes, weight_bytes


def bytes_read_per_step(model: nn.Module) -> int:
    """Weight bytes one decoding step reads: every weight except the input embedding
    (only one row of it per token), with a tied LM head's matrix counted once."""
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    total = weight_bytes(model) - weight_bytes(emb)
    if head is not None and getattr(head, "weight", None) is emb.weight:
        total += tensor_bytes(emb.weight)
    return total


def kv_bytes_per_token(
    model: PreTrainedModel, context: int, dtype: torch.dtype | None = None
) -> int:
    """Bytes of KV cache one sequence reads per decoded token at ``context`` cached
    tokens: keys and values of every remaining attention sub-layer, in ``dtype``
    (default: the model's floating dtype)."""
    _, kv_heads, head_dim = families.head_geometry(model.config)
    n_attn = sum(n.endswith(".attn") for n in families.sublayers(model))
    dtype = dtype or getattr(model, "dtype", torch.float32)
    if not dtype.is_floating_point:
        dtype = torch.float32
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * n_attn * kv_heads * head_dim * context * elem


def decode_cost(
    model: nn.Module,
    context: int,
    batch_size: int = 1,
    structure: PreTrainedModel | None = None,
) -> dict[str, float]:
    """Per decoded token: forward FLOPs (remaining sub-layers at ``context`` plus the LM
    head, from :func:`trimlab.accounting.flops_per_token`) and bytes read (weights once
    per step shared by ``batch_size`` sequences, plus the sequence's KV cache).

    ``structure`` is an un-quantized model with the same sub-layers, for FLOPs and KV
    geometry when ``model`` is quantized (quantized linears are not ``nn.Linear``)."""
    ref = structure if structure is not None else model
    kv = kv_bytes_per_token(ref, context, getattr(model, "dtype", None))
    return {
        "flops": float(accounting.flops_per_token(ref, context)),
        "bytes": bytes_read_per_step(model) / batch_size + kv,
    }


def prefill_flops(model: PreTrainedModel, prompt_tokens: int) -> float:
    """Forward FLOPs of a prefill of ``prompt_tokens``: each token's sub-layers at its
    own position (the mean context ``(P - 1) / 2``, through
    :func:`trimlab.accounting.sublayer_flops`) and the LM head once."""
    ctx = (prompt_tokens - 1) / 2
    per_token = sum(accounting.sublayer_flops(model, ctx).values())
    return prompt_tokens * per_token + accounting.lm_head_flops(model)
