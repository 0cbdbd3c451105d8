"""Solutions to the exercises of notebooks/00_setup.ipynb."""

import trimlab


def undroppable_share(model):
    """Share of all parameters that lie outside the decoder blocks (embeddings, final
    norm, LM head): layer dropping can never remove them."""
    decoder = sum(trimlab.sublayer_params(model).values())
    return 1 - decoder / trimlab.param_count(model)
