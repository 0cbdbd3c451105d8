"""Browse committed runs: a row's history, the grid of what it dropped, the model at round k.

A results folder of ``benchmarks/reference.py`` (``docs/results/reference-cpu``, say)
holds one ``history.json`` per trim row. These functions read them, so a notebook can
show real SmolLM2 runs instantly, without training anything:

* :func:`run_histories`: ``{row: History}`` for every row of a folder that has one;
* :func:`dropped_by_round`: when each sub-layer went (Sec. 3.2's progressive dropping);
* :func:`round_summary`: the model after round k, in one line;
* :func:`plot_round`: the calibration curve up to round k and the drop grid at round k;
* :func:`browser`: both behind a row dropdown and a round slider (ipywidgets).
"""

from __future__ import annotations

import os
from pathlib import Path

from trimlab.history import History


def run_histories(folder: str | os.PathLike) -> dict[str, History]:
    """``{row: History}`` for each ``<row>/history.json`` under ``folder``, sorted by row."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"no results folder at {root}")
    found = {p.parent.name: History.from_json(p) for p in sorted(root.glob("*/history.json"))}
    if not found:
        raise ValueError(f"{root} holds no <row>/history.json (a benchmarks/reference.py folder?)")
    return found


def dropped_by_round(history: History) -> dict[str, int]:
    """``{name: round}``: the round at the end of which each dropped sub-layer went."""
    return {name: r.round for r in history.rounds for name in r.dropped}


def _check_round(history: History, k: int) -> None:
    if not 0 <= k <= len(history.rounds):
        raise ValueError(f"round {k} is out of range: this run has rounds 1..{len(history.rounds)}")


def round_summary(history: History, k: int) -> str:
    """The model after round ``k`` (0: before any drop) in one line: sub-layers removed,
    decoder share kept, parameters, and the calibration accuracy before and after."""
    _check_round(history, k)
    if k == 0:
        sizes = history.initial.get("sizes", {})
        return f"round 0: nothing removed yet; {sizes.get('params', 0):,} parameters"
    rnd = history.rounds[k - 1]
    gone = sum(len(r.dropped) for r in history.rounds[:k])
    after = (rnd.calib_after or {}).get("acc")
    acc = f"{rnd.calib['acc']:.3f}" + (f" -> {after:.3f}" if after is not None else "")
    return (
        f"round {k}: dropped {', '.join(rnd.dropped) or 'nothing'}; {gone} sub-layers removed, "
        f"{rnd.decoder_kept:.1%} of the decoder kept, {rnd.params:,} parameters; "
        f"calibration accuracy {acc} (n = {rnd.calib.get('n', '?')})"
    )


def plot_round(history: History, k: int, title: str | None = None):
    """Calibration accuracy per round with round ``k`` marked, and the grid of sub-layers
    (blocks across, attention and MLP down) shaded by the round they went, up to ``k``.
    Returns the Figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    _check_round(history, k)
    blocks = _blocks(history)
    fig, (ax, grid_ax) = plt.subplots(
        2, 1, figsize=(8, 4.2), gridspec_kw={"height_ratios": [3, 1.2]}
    )
    rounds = [r.round for r in history.rounds]
    ax.plot(rounds, [r.calib["acc"] for r in history.rounds], "o-", ms=3)
    ax.axvline(k, color="C3", lw=1)
    ax.set_xlabel("round")
    ax.set_ylabel("calibration accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title or "")
    went = dropped_by_round(history)
    grid = np.full((2, blocks), np.nan)
    for name, rnd in went.items():
        if rnd <= k:
            block, kind = name.split(".")
            grid[0 if kind == "attn" else 1, int(block)] = rnd
    grid_ax.imshow(grid, cmap="viridis_r", vmin=1, vmax=max(1, len(rounds)), aspect="auto")
    grid_ax.set_yticks([0, 1], ["attn", "mlp"])
    grid_ax.set_xticks(range(0, blocks, 2))
    grid_ax.set_xlabel("block (coloured: dropped, darker = later round; blank: kept)")
    fig.tight_layout()
    return fig


def _blocks(history: History) -> int:
    names = list(history.initial_scores) or [n for r in history.rounds for n in r.scores]
    return 1 + max(int(n.split(".")[0]) for n in names)


def browser(folder: str | os.PathLike, source: str | None = None):
    """A row dropdown and a round slider over the runs of ``folder`` (ipywidgets); each
    move redraws :func:`plot_round` and prints :func:`round_summary`. Instant: it only
    reads the committed files. ``source`` names the files in every plot's title."""
    import matplotlib.pyplot as plt
    from ipywidgets import Dropdown, IntSlider, interactive

    runs = run_histories(folder)
    label = source or str(folder)
    row = Dropdown(options=list(runs), description="run")
    k = IntSlider(value=len(runs[row.value].rounds), min=0, max=len(runs[row.value].rounds))
    k.description = "round"

    def follow(change) -> None:  # a new row: the slider spans its rounds, ending at the last
        k.max = len(runs[change["new"]].rounds)
        k.value = k.max

    row.observe(follow, names="value")

    def show(run: str, round_: int) -> None:
        h = runs[run]
        print(round_summary(h, round_))
        plot_round(h, round_, title=f"{run} ({label})")
        plt.show()

    return interactive(show, run=row, round_=k)
