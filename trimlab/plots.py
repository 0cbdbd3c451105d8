"""Plots of a trim run (TrimLLM Fig. 3 style) and of the accuracy-memory-speed trade-off
(TrimLLM Fig. 2).

:func:`plot_history` draws a :class:`trimlab.history.History` (live or loaded from
``history.json``); :class:`LivePlot` is a ``trim(callback=...)`` that redraws it after
every round inside Jupyter, and does nothing elsewhere. :func:`pareto_plot` draws
accuracy against memory and against decode speed, with the Pareto frontier of each
(:func:`pareto_front`), from rows measured by :mod:`trimlab.bench` (``benchmarks/speed.py``,
``benchmarks/pareto.py``); both are re-exported as ``trimlab.bench.pareto_*``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def history_points(history) -> dict[str, list]:
    """Per round: sub-layers removed *before* its drop, calibration accuracy and ll
    (measured before the drop), training loss, and decoder share kept *after* it."""
    from trimlab.cost import load_history

    h = load_history(history)
    removed, out = 0, {"removed": [], "calib_acc": [], "calib_ll": [], "train_loss": []}
    out["decoder_kept"], out["calib_n"] = [], []
    for r in h.rounds:
        out["removed"].append(removed)
        out["calib_acc"].append(r.calib["acc"])
        out["calib_n"].append(r.calib.get("n"))
        out["calib_ll"].append(r.calib["ll"])
        out["train_loss"].append(r.train_loss)
        out["decoder_kept"].append(r.decoder_kept)
        removed += len(r.dropped)
    return out


def plot_history(history, ax=None, label: str | None = None, loss: bool = True):
    """Calibration accuracy (left axis, with its 95% Wilson band: a 32-item sample moves
    by about ±0.17) and training loss (right axis, dashed) against the number of
    sub-layers removed. ``history`` is a History or a ``history.json`` path (or its
    folder). Returns the Figure."""
    import matplotlib.pyplot as plt

    from trimlab.stats import wilson

    pts = history_points(history)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    fig = ax.figure
    line = ax.plot(pts["removed"], pts["calib_acc"], "o-", label=label or "calibration accuracy")
    ns = pts["calib_n"]
    if ns and all(ns):
        band = [wilson(a * n, n) for a, n in zip(pts["calib_acc"], ns)]
        ax.fill_between(
            pts["removed"],
            [lo for lo, _ in band],
            [hi for _, hi in band],
            color=line[0].get_color(),
            alpha=0.15,
            label=f"95% interval ({ns[0]} items)" if len(set(ns)) == 1 else "95% interval",
        )
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


# ----------------------------------------------------------------------------- Pareto plot


def pareto_front(points: Sequence[tuple[float, float]], lower_x_better: bool) -> list[int]:
    """Indices of the points not dominated in (x, higher y), sorted by x.

    A point is dominated when another is at least as good in both and better in one;
    "good" x is small when ``lower_x_better`` (memory) and large otherwise (speed)."""
    idx = []
    for i, (x, y) in enumerate(points):
        dominated = False
        for j, (x2, y2) in enumerate(points):
            if j == i:
                continue
            bx = x2 <= x if lower_x_better else x2 >= x
            sx = x2 < x if lower_x_better else x2 > x
            if bx and y2 >= y and (sx or y2 > y):
                dominated = True
                break
        if not dominated:
            idx.append(i)
    return sorted(idx, key=lambda i: points[i][0])


def pareto_plot(rows: Sequence[dict], title: str | None = None, n: int | None = None):
    """The paper's Figure 2 for our models: accuracy against memory and against speed.

    ``rows`` are dicts with ``name``, ``acc`` (0..1), ``bytes`` (weights) and
    ``decode_tokens_per_s``; rows whose ``acc`` is None are skipped. With ``n``, the
    number of test items behind each accuracy, every point carries its 95% Wilson
    interval. The Pareto frontier of each panel is drawn as a line. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from trimlab.stats import wilson

    rows = [r for r in rows if r.get("acc") is not None]
    fig, (ax_mem, ax_speed) = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        (ax_mem, "bytes", 1 / 2**20, "weights (MiB)", True),
        (ax_speed, "decode_tokens_per_s", 1.0, "decode tokens/s (batch 1)", False),
    )
    for ax, key, scale, label, lower_better in panels:
        pts = [(r[key] * scale, r["acc"]) for r in rows]
        for r, (x, y) in zip(rows, pts):
            trim = "int8" not in r["name"] and r["name"] != "full"
            ax.scatter([x], [y], marker="o" if trim else "s", zorder=3)
            if n:
                lo, hi = wilson(y * n, n)
                ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="none", ecolor="gray", lw=1)
            ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_front(pts, lower_x_better=lower_better)
        if front:
            ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy" + (f" ({n} items, 95% intervals)" if n else ""))
        ax.grid(alpha=0.3)
    ax_mem.set_title("accuracy vs memory (left is better)")
    ax_speed.set_title("accuracy vs speed (right is better)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def retention_plot(
    rows: dict[str, dict], reference: str = "full_ft", title: str | None = None, ax=None
):
    """Retention against size: for every compressed row of a results table (and the
    snapshots a trim row took on the way), accuracy over chance as a share of the
    ``reference`` row's, against the decoder share kept, with the accuracy's 95% Wilson
    interval carried through. ``rows`` is :func:`trimlab.results.load_rows`'s output.
    The 90% line is the paper's claim. Draws on ``ax`` when given (one panel of a larger
    figure). Returns the Figure."""
    import matplotlib.pyplot as plt

    from trimlab import stats

    ref = rows[reference]
    chance = ref.get("chance", 0.25)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4))
    else:
        fig = ax.figure
    for i, (name, row) in enumerate(rows.items()):
        if row.get("decoder_kept", 1.0) >= 0.999:
            continue
        points = [row] + list(row.get("snapshots", {}).values())
        points.sort(key=lambda p: p["decoder_kept"])
        xs = [p["decoder_kept"] for p in points]
        ys, lo, hi = [], [], []
        for p in points:
            low, high = stats.wilson(p["acc"] * p["n"], p["n"])
            y = stats.retention(p["acc"], ref["acc"], chance)
            ys.append(y)
            lo.append(y - stats.retention(low, ref["acc"], chance))
            hi.append(stats.retention(high, ref["acc"], chance) - y)
        ax.errorbar(
            xs, ys, yerr=[lo, hi], fmt="o-", ms=4, capsize=2, color=f"C{i % 10}", label=name
        )
    ax.axhline(0.9, color="k", ls="--", lw=1, label="90% of full FT (the paper's claim)")
    if "zero_shot" in rows:  # the untrimmed model before any fine-tuning, for scale
        zero = stats.retention(rows["zero_shot"]["acc"], ref["acc"], chance)
        ax.axhline(zero, color="grey", ls=":", lw=1.2, label="zero-shot (untrimmed, not tuned)")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("decoder parameters kept")
    ax.set_ylabel(f"accuracy over chance, share of {reference}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
