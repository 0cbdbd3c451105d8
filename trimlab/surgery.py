"""Model surgery: exact removal of attention and MLP sub-layers (TrimLLM Sec. 3.2).

A decoder block ``i`` has two sub-layers, named ``"i.attn"`` and ``"i.mlp"``, with ``i``
counted from 0 in the *original* model. Names never change as the model shrinks: after
block 3 is gone, block 7 is still ``"7"``.

Removing a sub-layer is an exact skip: the residual stream passes through it unchanged.
For a pre-norm block ``h -> h + Attn(LN_in(h)) -> h + MLP(LN_post(h))``, dropping
``attn`` gives ``h -> h + MLP(LN_post(h))``; dropping ``mlp`` gives
``h -> h + Attn(LN_in(h))``; dropping both is the identity, and the block leaves the
layer list. (The authors' code computes ``LN_in(h) + MLP(LN_in(h))`` instead: the
residual is lost and the wrong norm is used; see ``method.md``, defect 1.)

One mechanism serves every family. The module that *produces* a sub-layer's
contribution to the residual stream (``self_attn``, ``mlp``; ``fc2`` in OPT) is replaced by
a parameter-free module that contributes zero, and the modules that only feed it (its
norms; ``fc1`` in OPT) become ``nn.Identity``. Their parameters are freed, not zeroed or
hidden. Each family adds only a row to :data:`FAMILIES`: the names of those modules,
plus a small check where its forward differs (OPT, GPT-2, GPT-NeoX).

KV cache: attention modules keep ``layer_idx`` equal to their block's position in the
layer list, and a block whose attention is gone gets a ``DummyLayer`` in the
transformers cache (through ``config.kv_sharing_modes``), so the cache holds entries
only for attention sub-layers that remain and ``get_seq_length()`` / the mask builders
look at the first real attention layer, even when block 0's attention is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

KINDS = ("attn", "mlp")
_NAME = re.compile(r"^(\d+)\.(attn|mlp)$")


class DroppedAttention(nn.Module):
    """Stands where a removed attention sub-layer was; it adds nothing to the stream."""

    def forward(self, hidden_states: torch.Tensor | None = None, *args: object, **kwargs: object):
        if hidden_states is None:  # called with hidden_states as the first positional arg
            hidden_states = args[0]  # type: ignore[assignment]
        return hidden_states.new_zeros(()), None


class DroppedMLP(nn.Module):
    """Stands where a removed MLP sub-layer (or OPT's ``fc2``) was; it adds nothing."""

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object):
        return hidden_states.new_zeros(())


DROPPED = (DroppedAttention, DroppedMLP)


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
    not ``out`` (Gemma's post-norms). Scoring hooks read activations there (Eq. 4)."""

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
    Family(
        "llama",
        ("llama", "mistral", "qwen2", "qwen3", "phi3"),
        "model.layers",
        **_PRE_NORM,
    ),
    Family(
        "gemma",
        ("gemma", "gemma2", "gemma3_text"),
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


def block_ids(model: PreTrainedModel) -> list[int]:
    """Original block number of each block still in the layer list, in order."""
    ids = getattr(model.config, "trimlab_blocks", None)
    return list(ids) if ids is not None else list(range(len(layer_list(model))))


def parse_name(name: str) -> tuple[int, str]:
    """``"7.mlp" -> (7, "mlp")``; ValueError for a malformed name."""
    m = _NAME.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(
            f"malformed sub-layer name {name!r}; expected '<block>.attn' or '<block>.mlp'"
        )
    return int(m.group(1)), m.group(2)


def _present(block: nn.Module, sub: Sublayer) -> bool:
    return not isinstance(block, Replay) and not isinstance(getattr(block, sub.out), DROPPED)


def sublayers(model: PreTrainedModel) -> list[str]:
    """Names of the remaining sub-layers, in forward order (``"0.attn", "0.mlp", ...``)."""
    fam = family_of(model)
    names = []
    for bid, block in zip(block_ids(model), _real_blocks(model)):
        names += [f"{bid}.{k}" for k in KINDS if _present(block, fam.sublayer(k))]
    return names


def _real_blocks(model: PreTrainedModel) -> list[nn.Module]:
    """The blocks, looking through any :class:`Replay` stand-ins of :func:`run_from`."""
    return [b.block if isinstance(b, Replay) else b for b in layer_list(model)]


def locate(model: PreTrainedModel, name: str) -> tuple[nn.Module, Sublayer]:
    """The block holding sub-layer ``name`` and the module names of that sub-layer (its
    kind is ``name``'s suffix)."""
    bid, kind = parse_name(name)
    ids = block_ids(model)
    if bid not in ids:
        raise ValueError(f"sub-layer {name!r}: block {bid} is not in the model (blocks: {ids})")
    fam = family_of(model)
    return _real_blocks(model)[ids.index(bid)], fam.sublayer(kind)


def modules_of(model: PreTrainedModel, name: str) -> list[nn.Module]:
    """The modules that make up sub-layer ``name`` (its output module and its feeders)."""
    block, sub = locate(model, name)
    return [getattr(block, n) for n in (sub.out, *sub.feeds)]


def check_names(model: PreTrainedModel, names: Iterable[str]) -> list[str]:
    """Validate ``names`` against the remaining sub-layers; ValueError names the problem."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    remaining = set(sublayers(model))
    seen: set[str] = set()
    for name in names:
        bid, _ = parse_name(name)
        if name in seen:
            raise ValueError(f"sub-layer {name!r} is listed twice")
        seen.add(name)
        if name not in remaining:
            dropped = name in getattr(model.config, "trimlab_dropped", [])
            why = (
                "was already dropped"
                if dropped
                else f"does not exist (blocks 0..{_base_layers(model) - 1})"
            )
            raise ValueError(f"sub-layer {name!r} {why}")
    return names


def _base_layers(model: PreTrainedModel) -> int:
    return int(getattr(model.config, "trimlab_base_layers", len(layer_list(model))))


def _swap(block: nn.Module, sub: Sublayer, kind: str) -> list[tuple[str, nn.Module]]:
    """Replace a sub-layer's modules by zero/identity stand-ins; return the originals."""
    old = [(n, getattr(block, n)) for n in (sub.out, *sub.feeds)]
    setattr(block, sub.out, DroppedAttention() if kind == "attn" else DroppedMLP())
    for n in sub.feeds:
        setattr(block, n, nn.Identity())
    return old


def sync_cache_layout(model: PreTrainedModel) -> None:
    """Point the transformers cache at the attention sub-layers that remain.

    Blocks without attention get a ``DummyLayer`` (via ``config.kv_sharing_modes``, which
    ``DynamicCache(config=...)`` reads), so the cache stores nothing for them.
    """
    fam = family_of(model)
    present = [_present(b, fam.attn) for b in layer_list(model)]
    if not any(present):  # nothing to cache; leave the config alone
        present = [True] * len(present)
    configs = {id(model.config): model.config}
    text = model.config.get_text_config(decoder=True)
    configs[id(text)] = text
    for cfg in configs.values():
        if all(present):
            if "kv_sharing_modes" in cfg.__dict__:
                del cfg.__dict__["kv_sharing_modes"]
        else:
            cfg.kv_sharing_modes = [None if p else "reuse" for p in present]


def _record_base(model: PreTrainedModel) -> None:
    cfg = model.config
    if getattr(cfg, "trimlab_base_layers", None) is None:
        from trimlab.accounting import decoder_param_count, param_bytes, param_count

        cfg.trimlab_base_layers = len(layer_list(model))
        cfg.trimlab_blocks = list(range(cfg.trimlab_base_layers))
        cfg.trimlab_dropped = []
        cfg.trimlab_base_sizes = {
            "decoder_params": decoder_param_count(model),
            "params": param_count(model),
            "bytes": param_bytes(model),
        }


def drop(model: PreTrainedModel, names: str | Iterable[str]) -> PreTrainedModel:
    """Remove sub-layers ``names`` in place and return the model (TrimLLM Sec. 3.2).

    Every name is checked first; on any error nothing changes. A block that loses both
    sub-layers leaves the layer list, and the config follows (``num_hidden_layers``,
    ``layer_types``), with attention ``layer_idx`` renumbered for the cache.
    """
    names = check_names(model, names)
    fam = family_of(model)
    _record_base(model)
    for name in names:
        block, sub = locate(model, name)
        _swap(block, sub, parse_name(name)[1])
    layers = layer_list(model)
    keep = [i for i, b in enumerate(layers) if _present(b, fam.attn) or _present(b, fam.mlp)]
    if len(keep) < len(layers):
        _keep_blocks(model, keep)
    model.config.trimlab_dropped = list(model.config.trimlab_dropped) + names
    sync_cache_layout(model)
    return model


def _keep_blocks(model: PreTrainedModel, keep: list[int]) -> None:
    """Keep only blocks at positions ``keep``; renumber ``layer_idx``; update the config."""
    fam = family_of(model)
    parent_name, _, attr = fam.layers.rpartition(".")
    old = layer_list(model)
    new = nn.ModuleList([old[i] for i in keep])
    setattr(model.get_submodule(parent_name), attr, new)
    for pos, block in enumerate(new):
        for mod in block.modules():
            if isinstance(getattr(mod, "layer_idx", None), int):
                mod.layer_idx = pos
    ids = block_ids(model)
    for cfg in {
        id(c): c for c in (model.config, model.config.get_text_config(decoder=True))
    }.values():
        if getattr(cfg, "layer_types", None) is not None:
            cfg.layer_types = [cfg.layer_types[i] for i in keep]
        cfg.num_hidden_layers = len(keep)
    model.config.trimlab_blocks = [ids[i] for i in keep]


@contextmanager
def trial_drop(model: PreTrainedModel, names: str | Iterable[str]) -> Iterator[PreTrainedModel]:
    """Remove ``names`` temporarily (for scoring); restore the model bit-exactly after.

    No copy is made: the original modules are put back, the same objects.
    """
    names = check_names(model, names)
    saved: list[tuple[nn.Module, list[tuple[str, nn.Module]]]] = []
    try:
        for name in names:
            block, sub = locate(model, name)
            saved.append((block, _swap(block, sub, parse_name(name)[1])))
        sync_cache_layout(model)
        yield model
    finally:
        for block, old in reversed(saved):
            for n, mod in old:
                setattr(block, n, mod)
        sync_cache_layout(model)


def dropped(model: PreTrainedModel) -> list[str]:
    """Names removed by :func:`drop`, in the order they were removed."""
    return list(getattr(model.config, "trimlab_dropped", []))


def whole_blocks_only(model: PreTrainedModel) -> bool:
    """True when every remaining block still has both sub-layers."""
    fam = family_of(model)
    return all(_present(b, fam.attn) and _present(b, fam.mlp) for b in layer_list(model))


class Replay(nn.Module):
    """Stands in for a block below the start of :func:`run_from`: it skips the block's
    work and hands on a recorded block input instead, one tensor per forward call."""

    def __init__(self, block: nn.Module, feed: list[torch.Tensor] | None):
        super().__init__()
        self.block = block  # kept only so that names and the structure stay visible
        self.feed = feed
        self.calls = 0

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if self.feed is None:
            return hidden_states
        out = self.feed[self.calls]
        self.calls += 1
        return out


@contextmanager
def run_from(model: PreTrainedModel, position: int, inputs: list[torch.Tensor]) -> Iterator[None]:
    """Run only blocks ``position`` and up, feeding ``inputs`` as block ``position``'s input.

    ``inputs[k]`` is what block ``position`` received in the k-th forward call of a
    reference run (see :func:`record_block_inputs`). Blocks below are not computed, and
    the cache treats them as having no attention. The hidden states below a block do not
    change when that block is modified, so this is exact (used by the fast scan, Eq. 3).
    """
    layers = layer_list(model)
    originals = list(layers)
    try:
        for i in range(position):
            layers[i] = Replay(originals[i], inputs if i == position - 1 else None)
        sync_cache_layout(model)
        yield
    finally:
        for i, block in enumerate(originals):
            layers[i] = block
        sync_cache_layout(model)


@contextmanager
def record_block_inputs(model: PreTrainedModel) -> Iterator[list[list[torch.Tensor]]]:
    """Record every block's input hidden states, per forward call, while the block runs."""
    layers = layer_list(model)
    record: list[list[torch.Tensor]] = [[] for _ in layers]

    def hook(i: int):
        def pre(_mod: nn.Module, args: tuple, kwargs: dict):
            h = args[0] if args else kwargs["hidden_states"]
            record[i].append(h.detach())

        return pre

    handles = [b.register_forward_pre_hook(hook(i), with_kwargs=True) for i, b in enumerate(layers)]
    try:
        yield record
    finally:
        for h in handles:
            h.remove()
