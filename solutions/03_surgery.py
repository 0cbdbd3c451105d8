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
