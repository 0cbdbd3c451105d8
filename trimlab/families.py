"""Architecture families: one table row per family, and the sub-layer naming helpers.

TrimLLM (Sec. 3.2) removes attention or MLP sub-layers of a decoder block. Where those
live differs by architecture, so each family is one row of :data:`FAMILIES`, in the
spirit of the transformers model files: the dotted path to the list of blocks, and for
each kind of sub-layer the module that adds its output to the residual stream and the
modules that only feed it (its norms). Everything else in trimlab reads the table
through this module, which depends on nothing else in trimlab.

A decoder block ``i`` has two sub-layers, named ``"i.attn"`` and ``"i.mlp"``, with ``i``
counted from 0 in the *original* model; names never change as the model shrinks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

KINDS = ("attn", "mlp")
_NAME = re.compile(r"^(\d+)\.(attn|mlp)$")


# ----------------------------------------------------------------------------- stand-ins


class Dropped(nn.Module):
    """Base class of the parameter-free modules that stand where a sub-layer was."""


class DroppedAttention(Dropped):
    """Stands where a removed attention sub-layer was; it adds nothing to the stream."""

    def forward(self, hidden_states: torch.Tensor | None = None, *args: object, **kwargs: object):
        if hidden_states is None:  # called with hidden_states as the first positional arg
            hidden_states = args[0]  # type: ignore[assignment]
        return hidden_states.new_zeros(()), None


class DroppedMLP(Dropped):
    """Stands where a removed MLP sub-layer (or OPT's ``fc2``) was; it adds nothing."""

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object):
        return hidden_states.new_zeros(())


class Wrapped(nn.Module):
    """Base class of modules that stand in for a whole block for a while (the fast
    scan's replay); the original block is kept in ``self.block``."""

    block: nn.Module


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Sublayer:
    """Module names of one kind of sub-layer inside a block."""

    out: str
    """The module whose output is added to the residual stream (replaced by a zero)."""
    feeds: tuple[str, ...]
    """Modules that only feed ``out`` (norms, OPT's fc1); they become ``nn.Identity``."""
    linears: tuple[str, ...] = ()
    """Extra modules whose weights count for FLOPs (besides those inside ``out``)."""
    added: str | None = None
    """The module whose output is the tensor added to the residual stream, when it is
    not ``out`` (Gemma 2/3's post-norms). Scoring hooks read activations there (Eq. 4)."""

    @property
    def contribution(self) -> str:
        return self.added or self.out


@dataclass(frozen=True)
class Family:
    """How one architecture family names its decoder layers and sub-layers."""

    name: str
    model_types: tuple[str, ...]
    layers: str
    """Dotted path from the top-level model to the ``nn.ModuleList`` of blocks."""
    attn: Sublayer
    mlp: Sublayer
    check: Callable[[object], None] | None = None
    """Raises ValueError for configs where dropping is not an exact skip."""

    def sublayer(self, kind: str) -> Sublayer:
        return self.attn if kind == "attn" else self.mlp


def _check_opt(config: object) -> None:
    if not getattr(config, "do_layer_norm_before", True):
        raise ValueError(
            "OPT with do_layer_norm_before=False (post-norm, e.g. opt-350m) applies a norm after "
            "the residual add, so removing a sub-layer is not an exact skip; use a pre-norm OPT"
        )


def _check_gpt2(config: object) -> None:
    if getattr(config, "scale_attn_by_inverse_layer_idx", False) or getattr(
        config, "reorder_and_upcast_attn", False
    ):
        raise ValueError(
            "GPT-2 with scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn scales attention "
            "by the block position, which removing blocks would change"
        )


_PRE_NORM = dict(
    attn=Sublayer("self_attn", ("input_layernorm",)),
    mlp=Sublayer("mlp", ("post_attention_layernorm",)),
)

FAMILIES: tuple[Family, ...] = (
    Family("llama", ("llama", "mistral", "qwen2", "qwen3", "phi3"), "model.layers", **_PRE_NORM),
    # Gemma 1 is pre-norm like Llama: post_attention_layernorm is the MLP's *input* norm.
    Family("gemma", ("gemma",), "model.layers", **_PRE_NORM),
    # Gemma 2 and 3 add a norm after each sub-layer, before the residual add.
    Family(
        "gemma2",
        ("gemma2", "gemma3_text"),
        "model.layers",
        attn=Sublayer(
            "self_attn",
            ("input_layernorm", "post_attention_layernorm"),
            added="post_attention_layernorm",
        ),
        mlp=Sublayer(
            "mlp",
            ("pre_feedforward_layernorm", "post_feedforward_layernorm"),
            added="post_feedforward_layernorm",
        ),
    ),
    Family(
        "opt",
        ("opt",),
        "model.decoder.layers",
        attn=Sublayer("self_attn", ("self_attn_layer_norm",)),
        mlp=Sublayer("fc2", ("fc1", "final_layer_norm"), linears=("fc1",)),
        check=_check_opt,
    ),
    Family(
        "gpt2",
        ("gpt2",),
        "transformer.h",
        attn=Sublayer("attn", ("ln_1",)),
        mlp=Sublayer("mlp", ("ln_2",)),
        check=_check_gpt2,
    ),
    # GPT-NeoX's parallel residual, h + Attn(LN1(h)) + MLP(LN2(h)), is still an exact skip
    # when either term contributes zero, so the table row is all it needs.
    Family(
        "gpt_neox",
        ("gpt_neox",),
        "gpt_neox.layers",
        attn=Sublayer("attention", ("input_layernorm",)),
        mlp=Sublayer("mlp", ("post_attention_layernorm",)),
    ),
)
SUPPORTED_MODEL_TYPES = tuple(t for f in FAMILIES for t in f.model_types)


# ----------------------------------------------------------------------------- lookups


def family_of(model: PreTrainedModel) -> Family:
    """The :class:`Family` of ``model``; ValueError listing the supported ones otherwise."""
    model_type = getattr(model.config, "model_type", None)
    for fam in FAMILIES:
        if model_type in fam.model_types:
            if fam.check is not None:
                fam.check(model.config)
            return fam
    raise ValueError(
        f"model type {model_type!r} is not supported by trimlab surgery; supported: "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def layer_list(model: PreTrainedModel) -> nn.ModuleList:
    """The model's ``nn.ModuleList`` of decoder blocks."""
    return model.get_submodule(family_of(model).layers)


def real_blocks(model: PreTrainedModel) -> list[nn.Module]:
    """The blocks, looking through any :class:`Wrapped` stand-ins."""
    return [b.block if isinstance(b, Wrapped) else b for b in layer_list(model)]


def block_ids(model: PreTrainedModel) -> list[int]:
    """Original block number of each block still in the layer list, in order."""
    ids = getattr(model.config, "trimlab_blocks", None)
    return list(ids) if ids is not None else list(range(len(layer_list(model))))


def base_layers(model: PreTrainedModel) -> int:
    """Number of blocks of the model before any drop."""
    return int(getattr(model.config, "trimlab_base_layers", len(layer_list(model))))


def parse_name(name: str) -> tuple[int, str]:
    """``"7.mlp" -> (7, "mlp")``; ValueError for a malformed name."""
    m = _NAME.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(
            f"malformed sub-layer name {name!r}; expected '<block>.attn' or '<block>.mlp'"
        )
    return int(m.group(1)), m.group(2)


def present(block: nn.Module, sub: Sublayer) -> bool:
    """Whether ``block`` still has sub-layer ``sub`` (False inside a :class:`Wrapped`)."""
    return not isinstance(block, Wrapped) and not isinstance(getattr(block, sub.out), Dropped)


def sublayers(model: PreTrainedModel) -> list[str]:
    """Names of the remaining sub-layers, in forward order (``"0.attn", "0.mlp", ...``)."""
    fam = family_of(model)
    names = []
    for bid, block in zip(block_ids(model), real_blocks(model)):
        names += [f"{bid}.{k}" for k in KINDS if present(block, fam.sublayer(k))]
    return names


def locate(model: PreTrainedModel, name: str) -> tuple[nn.Module, Sublayer]:
    """The block holding sub-layer ``name`` and the module names of that sub-layer (its
    kind is ``name``'s suffix)."""
    bid, kind = parse_name(name)
    ids = block_ids(model)
    if bid not in ids:
        raise ValueError(f"sub-layer {name!r}: block {bid} is not in the model (blocks: {ids})")
    fam = family_of(model)
    return real_blocks(model)[ids.index(bid)], fam.sublayer(kind)


def modules_of(model: PreTrainedModel, name: str) -> list[nn.Module]:
    """The modules that make up sub-layer ``name`` (its output module and its feeders)."""
    block, sub = locate(model, name)
    return [getattr(block, n) for n in (sub.out, *sub.feeds)]


def head_geometry(config: object) -> tuple[int, int, int]:
    """``(query heads, key/value heads, head_dim)`` of a model config (its text part)."""
    cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = int(cfg.num_attention_heads)
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return heads, kv, int(head_dim)
