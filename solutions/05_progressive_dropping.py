"""Solutions to the exercises of notebooks/05_progressive_dropping.ipynb."""

import trimlab


def drops_for_round(scores, drop_rate):
    """The drop_rate least important names, in order (ties: the earlier sub-layer)."""
    return trimlab.rank(scores)[:drop_rate]


def decoder_kept(sizes, removed):
    """Share of the decoder-layer parameters left after removing `removed`."""
    total = sum(sizes.values())
    return 1 - sum(sizes[n] for n in removed) / total
