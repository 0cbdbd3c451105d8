"""Solutions to the exercises of notebooks/08_training_cost.ipynb."""


def eq5(L, D):
    """Eq. 5 in units of t: epoch i (i = 0 .. D-1) trains L - i layers."""
    return sum(L - i for i in range(D))


def eq6(L, D):
    """Eq. 6 in units of t: D/2 epochs, epoch i trains L - 2i layers."""
    return sum(L - 2 * i for i in range(D // 2))
