"""Solutions to the exercises of notebooks/02_scoring.ipynb."""


def calibration_importance(accuracies, eps=1e-3):
    """Eq. 3: s_i = 1 / (a_i + eps), a_i the calibration accuracy without sub-layer i."""
    return {name: 1.0 / (a + eps) for name, a in accuracies.items()}


def activation_importance(norms):
    """Eq. 4: s_i = 1 - n_i / sum_j n_j; the highest norm is the least important."""
    total = sum(norms.values())
    return {name: 1.0 - n / total for name, n in norms.items()}
