"""The candidates of a speed comparison: trimmed copies and their quantized or compiled peers
(TrimLLM Sec. 4, Tables 1 and 7, Fig. 2).

The paper compares a trimmed model with the full one and with quantized models, and
combines trimming with quantization (Table 7). Each function here makes one such
candidate from a loaded model without touching it: :func:`trimmed_copy` (named
sub-layers dropped), :func:`trimmed_copies` (a share of whole blocks dropped, see
:func:`block_drop_names`), :func:`quantize_int8` (PyTorch dynamic int8, CPU) and
:func:`quantize_int8_torchao` (torchao weight-only int8). :func:`compile_blocks`
compiles a model's blocks in place, to see how much of the per-call overhead that FLOPs
do not count a compiler removes.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from trimlab import families, surgery
from trimlab.bench.inputs import model_device

# ----------------------------------------------------------------------------- trimmed


def block_drop_names(model: PreTrainedModel, fraction: float) -> list[str]:
    """Sub-layer names that remove ``round(fraction * blocks)`` whole blocks of ``model``.

    The blocks are spread evenly over the interior (block 0 and the last block are kept
    while others remain, as layer-removal studies find the first and last blocks the
    least dispensable). For speed all blocks of a model cost the same, so which ones go
    does not matter; for accuracy use a trim run's drops (``--history``).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    fam = families.family_of(model)
    ids = [
        bid
        for bid, block in zip(families.block_ids(model), families.real_blocks(model))
        if families.present(block, fam.attn) and families.present(block, fam.mlp)
    ]
    k = round(fraction * len(ids))
    inner = ids[1:-1] if len(ids) - 2 >= k else ids
    picked = [inner[(2 * i + 1) * len(inner) // (2 * k)] for i in range(k)] if k else []
    return [f"{b}.{kind}" for b in sorted(picked) for kind in families.KINDS]


def trimmed_copy(model: PreTrainedModel, names: Sequence[str]) -> PreTrainedModel:
    """A deep copy of ``model`` with sub-layers ``names`` dropped (the original is kept)."""
    clone = copy.deepcopy(model)
    if names:
        surgery.drop(clone, list(names))
    return clone.eval()


def trimmed_copies(
    model: PreTrainedModel, fractions: Sequence[float]
) -> dict[float, PreTrainedModel]:
    """``{fraction: copy with round(fraction * blocks) whole blocks dropped}``
    (:func:`block_drop_names`); ``fraction`` is the share of sub-layers removed."""
    return {f: trimmed_copy(model, block_drop_names(model, f)) for f in fractions}


def prefix_for(sequence: Sequence[str], count: int) -> list[str]:
    """The first ``count`` names of a drop sequence (all of it when shorter)."""
    return list(sequence[: max(count, 0)])


# ----------------------------------------------------------------------------- quantized


def quantize_int8(model: PreTrainedModel) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` (LM head included) replaced by PyTorch's
    dynamic int8 quantized linear (``torch.ao.quantization.quantize_dynamic``): int8
    weights, activations quantized on the fly per call. CPU only (fbgemm/onednn/qnnpack
    kernels); embeddings and norms stay in floating point. The copy shares nothing with
    ``model``; surgery and accounting no longer apply to it (no ``nn.Linear`` left)."""
    if model_device(model).type != "cpu":
        raise ValueError("dynamic int8 quantization runs on the CPU only")
    from torch.ao.quantization import quantize_dynamic

    clone = copy.deepcopy(model).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(clone, {nn.Linear}, dtype=torch.qint8)


def torchao_available() -> bool:
    """Whether torchao imports (``pip install torchao``; it is optional)."""
    try:
        import torchao.quantization  # noqa: F401
    except Exception:  # ImportError, or a torchao built for another torch
        return False
    return True


def quantize_int8_torchao(model: PreTrainedModel) -> nn.Module:
    """A copy of ``model`` with weight-only int8 linears from torchao (``quantize_`` with
    ``Int8WeightOnlyConfig``; activations stay in floating point). ImportError without
    torchao. The LM head is quantized too (it is untied from the embedding)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    clone = copy.deepcopy(model).eval()
    head = clone.get_output_embeddings()
    if head is not None and head.weight is clone.get_input_embeddings().weight:
        head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    quantize_(clone, Int8WeightOnlyConfig())
    return clone


# ----------------------------------------------------------------------------- compiled


def compile_blocks(model: PreTrainedModel, **kwargs) -> PreTrainedModel:
    """Compile every decoder block in place with ``torch.compile`` (``dynamic=True``:
    the KV cache grows each step). Fuses each block's small ops (norms, rotary, SiLU,
    residual adds), cutting the per-call overhead that FLOPs do not count. Needs a C++
    compiler on the CPU; the first calls compile (use warm-up)."""
    import torch._dynamo

    # Each block guards on its own ``layer_idx`` (it indexes the KV cache), so there is
    # one compiled graph per block position: raise dynamo's per-function limit above it.
    need = 2 * len(families.layer_list(model)) + 8
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), need))
    for block in families.layer_list(model):
        block.compile(dynamic=True, **kwargs)
    return model
