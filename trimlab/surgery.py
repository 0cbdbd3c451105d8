"""Model surgery: exact removal of attention and MLP sub-layers (TrimLLM Sec. 3.2).

A decoder block ``i`` has two sub-layers, named ``"i.attn"`` and ``"i.mlp"``, with ``i``
counted from 0 in the *original* model. Names never change as the model shrinks: after
block 3 is gone, block 7 is still ``"7"``.

Removing a sub-layer is an exact skip: the residual stream passes through it unchanged.
For a pre-norm block ``h -> h + Attn(LN_in(h)) -> h + MLP(LN_post(h))``, dropping
``attn`` gives ``h -> h + MLP(LN_post(h))``; dropping ``mlp`` gives
``h -> h + Attn(LN_in(h))``; dropping both is the identity, and the block leaves the
layer list. (The authors' code computes ``LN_in(h) + MLP(LN_in(h))`` instead: the
residual is lost and the wrong norm is used: defect 1 of the README's Correctness table.)

One mechanism serves every family. The module that *produces* a sub-layer's contribution to the residual stream (``self_attn``, ``mlp``; ``fc2`` in OPT) is replaced by
a parameter-free module that contributes zero, and the modules that only feed it (its
norms; ``fc1`` in OPT) become ``nn.Identity``. Their parameters are freed, not zeroed or
hidden. Each family adds only a row to :data:`trimlab.families.FAMILIES`: the names of
those modules, plus a small check where its forward differs (OPT, GPT-2, GPT-NeoX).

KV cache: attention modules keep ``layer_idx`` equal to their block's position in the
layer list, and a block whose attention is gone gets a ``DummyLayer`` in the
transformers cache (through ``config.kv_sharing_modes``), so the cache holds entries
only for attention sub-layers that remain and ``get_seq_length()`` / the mask builders
look at the first real attention layer, even when block 0's attention is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

from trimlab import accounting
from trimlab.families import (  # noqa: F401  (re-exported: trimlab.surgery.X keeps working)
    FAMILIES,
    KINDS,
    SUPPORTED_MODEL_TYPES,
    Dropped,
    DroppedAttention,
    DroppedMLP,
    Family,
    Sublayer,
    Wrapped,
    base_layers,
    block_ids,
    family_of,
    layer_list,
    locate,
    modules_of,
    parse_name,
    present,
    real_blocks,
    sublayers,
)

DROPPED = (DroppedAttention, DroppedMLP)


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
                else f"does not exist (blocks 0..{base_layers(model) - 1})"
            )
            raise ValueError(f"sub-layer {name!r} {why}")
    return names


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
    has_attn = [present(b, fam.attn) for b in layer_list(model)]
    if not any(has_attn):  # nothing to cache; leave the config alone
        has_attn = [True] * len(has_attn)
    configs = {id(model.config): model.config}
    text = model.config.get_text_config(decoder=True)
    configs[id(text)] = text
    for cfg in configs.values():
        if all(has_attn):
            if "kv_sharing_modes" in cfg.__dict__:
                del cfg.__dict__["kv_sharing_modes"]
        else:
            cfg.kv_sharing_modes = [None if p else "reuse" for p in has_attn]


def record_base(model: PreTrainedModel) -> None:
    """Record the untrimmed model's block count and sizes in its config (once), so that
    names and compression ratios stay relative to the original model."""
    cfg = model.config
    if getattr(cfg, "trimlab_base_layers", None) is None:
        cfg.trimlab_base_layers = len(layer_list(model))
        cfg.trimlab_blocks = list(range(cfg.trimlab_base_layers))
        cfg.trimlab_dropped = []
        cfg.trimlab_base_sizes = accounting.sizes(model)


def drop(model: PreTrainedModel, names: str | Iterable[str]) -> PreTrainedModel:
    """Remove sub-layers ``names`` in place and return the model (TrimLLM Sec. 3.2).

    Every name is checked first; on any error nothing changes. A block that loses both
    sub-layers leaves the layer list, and the config follows (``num_hidden_layers``,
    ``layer_types``), with attention ``layer_idx`` renumbered for the cache.
    """
    names = check_names(model, names)
    fam = family_of(model)
    record_base(model)
    for name in names:
        block, sub = locate(model, name)
        _swap(block, sub, parse_name(name)[1])
    layers = layer_list(model)
    keep = [i for i, b in enumerate(layers) if present(b, fam.attn) or present(b, fam.mlp)]
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
    return all(present(b, fam.attn) and present(b, fam.mlp) for b in layer_list(model))


class Replay(Wrapped):
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
