"""Ideal speedups, and where a measured speedup falls short of them (TrimLLM Sec. 4,
Tables 1 and 7).

The paper's speedups are measured; these are the bounds a measured speedup is compared
with (``measured/ideal`` in ``benchmarks/speed.py``). The FLOPs ratio is
:func:`trimlab.accounting.ideal_speedup`'s, the one implementation of it; this module
adds the bytes each decode step reads (:mod:`trimlab.bench.costs`) and the prefill.

Which one is "the" ideal (:func:`ideal_decode_speedup`): decode with a KV cache
multiplies each weight once per sequence in the batch, 2 FLOPs per 4 bytes in fp32 at
batch 1, far below what a CPU core can compute per byte it loads, so decode is limited by
memory traffic and the *bytes* ratio is the ideal; prefill multiplies every weight by
hundreds of tokens and is limited by arithmetic, so the *FLOPs* ratio is its ideal
(:func:`ideal_prefill_speedup`). When whole blocks are removed the two ratios agree to a
percent; they part when attention and MLP sub-layers are removed unevenly, or when
weights change precision (int8).

Where measured falls short of ideal: FLOPs and bytes count only matrix work, but every
sub-layer call also pays a fixed cost per step that neither counts: Python dispatch of a
dozen small ops, rotary embeddings, the KV-cache append (``torch.cat``), the attention
call itself (SDPA) and the norms. At batch 1 on a CPU that is tens of microseconds per
attention sub-layer, comparable to its matrix work (an attention sub-layer of
SmolLM2-135M has a quarter of an MLP's weights). Dropping whole blocks removes those
costs in proportion, so measured/ideal stays near 1 or above; dropping mostly MLPs
removes most of the FLOPs and bytes but keeps nearly every attention call and its fixed
cost, so the measured speedup falls behind the ideal (ratios near 0.8). The per-step
work outside the blocks (embedding lookup, final norm, LM head, argmax, and with
``generate`` its logits processors and stopping checks) does not shrink at all.
:func:`fit_step_time` splits measured step times into these parts.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from transformers import PreTrainedModel

from trimlab import accounting
from trimlab.bench.costs import decode_cost, prefill_flops


def ideal_decode_speedup(
    full: nn.Module,
    trimmed: nn.Module,
    context: int = 0,
    batch_size: int = 1,
    full_structure: PreTrainedModel | None = None,
    trimmed_structure: PreTrainedModel | None = None,
) -> dict[str, float]:
    """Ideal decode speedup of ``trimmed`` over ``full`` at ``context`` cached tokens.

    ``flops`` is :func:`trimlab.accounting.ideal_speedup`'s FLOPs ratio and ``bytes`` the
    ratio of the bytes read per token of :func:`decode_cost`; ``ideal`` is the bytes
    ratio: decode multiplies each weight read once per sequence, so it is bound by memory
    traffic, not arithmetic (see :mod:`trimlab.bench.ideal`). ``*_structure`` are
    un-quantized models with the same sub-layers, for FLOPs and KV geometry when a model
    is quantized. With ``context=0`` and ``batch_size=1`` the bytes ratio equals
    :func:`trimlab.accounting.ideal_speedup`'s for models with a tied LM head. Use the
    mean context of a run (prompt + new/2).
    """
    a = decode_cost(full, context, batch_size, full_structure)
    b = decode_cost(trimmed, context, batch_size, trimmed_structure)
    flops = accounting.ideal_speedup(
        full_structure if full_structure is not None else full,
        trimmed_structure if trimmed_structure is not None else trimmed,
        context,
    )["flops"]
    r = {"flops": flops, "bytes": a["bytes"] / b["bytes"]}
    r["ideal"] = r["bytes"]
    return r


def ideal_prefill_speedup(
    full: PreTrainedModel, trimmed: PreTrainedModel, prompt_tokens: int
) -> float:
    """FLOPs ratio of a prefill (compute-bound, so FLOPs are its ideal)."""
    return prefill_flops(full, prompt_tokens) / prefill_flops(trimmed, prompt_tokens)


def fit_step_time(samples: Sequence[tuple[int, int, float]]) -> dict[str, float]:
    """Where a decode step's time goes: least squares of ``seconds = fixed + attn *
    n_attn + mlp * n_mlp`` over ``samples`` of ``(n_attn, n_mlp, seconds)`` (models of
    one family and dtype with different sub-layers left).

    ``fixed`` is the per-step work outside the blocks (embedding, final norm, LM head,
    loop); ``attn`` and ``mlp`` are the time of one attention / MLP sub-layer. Compare
    ``attn / mlp`` with their byte ratio: the excess of ``attn`` is its per-call
    overhead. When every sample keeps whole blocks (``n_attn == n_mlp``) the two
    cannot be told apart: ``attn`` and ``mlp`` are then both half a block's time, and
    ``separable`` is 0.
    """
    import numpy as np

    if len(samples) < 2:
        raise ValueError("need at least two samples")
    X = np.array([[1.0, a, m] for a, m, _ in samples])
    y = np.array([s for _, _, s in samples])
    if np.linalg.matrix_rank(X) >= 3:
        (fixed, attn, mlp), *_ = np.linalg.lstsq(X, y, rcond=None)
        return {"fixed": float(fixed), "attn": float(attn), "mlp": float(mlp), "separable": 1}
    Xb = np.array([[1.0, (a + m) / 2] for a, m, _ in samples])
    (fixed, block), *_ = np.linalg.lstsq(Xb, y, rcond=None)
    return {"fixed": float(fixed), "attn": block / 2, "mlp": block / 2, "separable": 0}
