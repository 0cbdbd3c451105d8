"""Plots of a trim run: accuracy and loss against sub-layers removed (TrimLLM Fig. 3 style).

:func:`plot_history` draws a :class:`trimlab.trim.History` (live or loaded from
``history.json``); :class:`LivePlot` is a ``trim(callback=...)`` that redraws it after
every round inside Jupyter, and does nothing elsewhere.
"""

from __future__ import annotations

import os


def history_points(history) -> dict[str, list]:
    """Per round: sub-layers removed *before* its drop, calibration accuracy and ll
    (measured before the drop), training loss, and decoder share kept *after* it."""
    from trimlab.cost import load_history

    h = load_history(history)
    removed, out = 0, {"removed": [], "calib_acc": [], "calib_ll": [], "train_loss": []}
    out["decoder_kept"] = []
    for r in h.rounds:
        out["removed"].append(removed)
        out["calib_acc"].append(r.calib["acc"])
        out["calib_ll"].append(r.calib["ll"])
        out["train_loss"].append(r.train_loss)
        out["decoder_kept"].append(r.decoder_kept)
        removed += len(r.dropped)
    return out


def plot_history(history, ax=None, label: str | None = None, loss: bool = True):
    """Calibration accuracy (left axis) and training loss (right axis, dashed) against
    the number of sub-layers removed. ``history`` is a History or a ``history.json``
    path (or its folder). Returns the Figure."""
    import matplotlib.pyplot as plt

    pts = history_points(history)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    fig = ax.figure
    ax.plot(pts["removed"], pts["calib_acc"], "o-", label=label or "calibration accuracy")
    ax.set_xlabel("sub-layers removed before the round's drop")
    ax.set_ylabel("calibration accuracy")
    ax.grid(alpha=0.3)
    if loss and any(v is not None for v in pts["train_loss"]):
        ax2 = ax.twinx()
        xs = [x for x, v in zip(pts["removed"], pts["train_loss"]) if v is not None]
        ys = [v for v in pts["train_loss"] if v is not None]
        ax2.plot(xs, ys, "--", color="C3", label="train loss")
        ax2.set_ylabel("train loss (answer tokens)", color="C3")
    ax.legend(loc="lower left", fontsize=8)
    return fig


class LivePlot:
    """``trim(..., callback=LivePlot())``: redraw :func:`plot_history` after every round
    in one Jupyter output (``IPython.display`` handle); a no-op outside IPython."""

    def __init__(self, title: str | None = None):
        self.title = title
        self.fig = self.ax = self.handle = None

    def __call__(self, rnd, history) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython ships with Jupyter
            return
        if get_ipython() is None or os.environ.get("TRIMLAB_NO_LIVE_PLOT"):
            return
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6.4, 3.6))
            plt.close(self.fig)  # shown through the display handle only
        for extra in self.fig.axes[1:]:
            extra.remove()
        self.ax.clear()
        plot_history(history, ax=self.ax)
        if self.title:
            self.ax.set_title(self.title)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
