"""Solutions to the exercises of notebooks/03_surgery.ipynb."""

import trimlab


def params_after_drop(model, names):
    """Parameters left after dropping ``names``, without touching the model."""
    sizes = trimlab.sublayer_params(model)
    return trimlab.param_count(model) - sum(sizes[n] for n in names)


def blocks_removed(model, names):
    """Original ids of the blocks that leave the layer list when ``names`` are dropped:
    those with no sub-layer left."""
    left = set(trimlab.sublayers(model)) - set(names)
    blocks = {int(n.split(".")[0]) for n in trimlab.sublayers(model)}
    return sorted(b for b in blocks if f"{b}.attn" not in left and f"{b}.mlp" not in left)


def skip_mlp(model, block):
    """The exact skip of block ``block``'s MLP: h -> h + Attn(LN_in(h)). The MLP adds
    zero, and the norm that only fed it goes too."""
    import torch

    class Zero(torch.nn.Module):
        def forward(self, x):
            return torch.zeros_like(x)

    layer = model.model.layers[block]
    layer.mlp = Zero()
    layer.post_attention_layernorm = torch.nn.Identity()
