"""Training cost of progressive layer dropping (TrimLLM Appendix A.5, Eq. 5-6, Figure 4).

The paper's cost model: training one layer for one epoch takes about ``t`` (really it
depends on the layer's kind, size and depth, the data and the hardware; A.5 treats
it as one constant for an order-of-magnitude estimate). Then

* full fine-tuning of ``L`` layers for ``E`` epochs costs ``E * L * t``;
* progressive dropping of one layer per epoch until ``D`` layers are gone trains
  ``L, L - 1, ..., L - D + 1`` layers in its ``D`` epochs (**Eq. 5**)::

      T_1(L, D) = t * sum_{i=0}^{D-1} (L - i) = t * D * (2L - D + 1) / 2

* dropping two layers per epoch ("adaptive layer dropping") needs only ``D / 2``
  epochs, training ``L, L - 2, ..., L - D + 2`` layers (**Eq. 6**, ``D`` even)::

      T_2(L, D) = t * sum_{i=0}^{D/2-1} (L - 2i) = t * D * (2L - D + 2) / 4

* sparse fine-tuning (only the top ``r * L`` layers trainable, Sec. 3.4) scales the
  time of each by a measured factor, about 0.6 in the paper's Table 9
  (:data:`TABLE9`, :func:`table9_sparse_factor`).

The symbols of Eq. 5 and 6 were lost in the text extraction of the paper; the forms
above are rebuilt from its prose ("the time it takes to train L layers for one epoch
is L t and E L t for E epochs", one layer dropped per epoch, two per epoch). The paper's Figure 4 check, "at 50% compression,
dropping two layers at a time with sparse update takes roughly the time of full FT for
5 epochs", gives ``0.6 * T_2(32, 16) = 120 t`` against ``5 * 32 t = 160 t`` with
L = 32 layers (3.75 epochs' worth): the same order, as the paper says "roughly".

In trimlab a "layer" of this model is a sub-layer (attention or MLP), and a round of
``steps_per_round`` steps plays the part of an epoch. :func:`predicted_vs_measured`
fits ``t`` (seconds per sub-layer per training step) to a trim run's rounds and sets
the prediction beside the measured round times.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

TABLE9 = {
    # method: {epochs: fine-tuning hours}, LLaMA-7B on V100s (the paper's Table 9)
    "full": {2: 4.1, 4: 8.3, 8: 16.5},
    "sparse": {2: 2.5, 4: 5.0, 8: 10.0},
    "trimllm": {2: 1.8, 4: 3.4, 8: 6.5},
}
"""The paper's Table 9: fine-tuning time in hours against epochs."""


def table9_sparse_factor(method: str = "sparse") -> float:
    """Mean ratio of ``method``'s time to full FT's over Table 9's epochs (``sparse``:
    about 0.60, the paper's "roughly 0.6"; ``trimllm``: about 0.41)."""
    rows = TABLE9[method]
    return sum(rows[e] / TABLE9["full"][e] for e in rows) / len(rows)


def _check(L: int, D: int, drop_per_round: int = 1) -> None:
    if L < 1 or D < 0 or D > L:
        raise ValueError(f"need 0 <= D <= L and L >= 1, got L={L}, D={D}")
    if drop_per_round < 1:
        raise ValueError(f"drop_per_round must be >= 1, got {drop_per_round}")


def full_ft_cost(L: int, E: float, t: float = 1.0, sparse_factor: float = 1.0) -> float:
    """Full fine-tuning of ``L`` layers for ``E`` epochs: ``E * L * t`` (A.5), times
    ``sparse_factor`` for sparse fine-tuning."""
    if L < 1 or E < 0:
        raise ValueError(f"need L >= 1 and E >= 0, got L={L}, E={E}")
    return E * L * t * sparse_factor


def eq5(L: int, D: int, t: float = 1.0) -> float:
    """Eq. 5, closed form: one layer dropped per epoch, ``D`` epochs:
    ``t * D * (2L - D + 1) / 2``."""
    _check(L, D)
    return t * D * (2 * L - D + 1) / 2


def eq6(L: int, D: int, t: float = 1.0) -> float:
    """Eq. 6, closed form: two layers dropped per epoch, ``D / 2`` epochs (``D`` even):
    ``t * D * (2L - D + 2) / 4``. For odd ``D`` use :func:`progressive_cost`."""
    _check(L, D, 2)
    if D % 2:
        raise ValueError(f"Eq. 6 needs an even D, got {D}; use progressive_cost")
    return t * D * (2 * L - D + 2) / 4


def round_layers(L: int, D: int, drop_per_round: int = 1) -> list[int]:
    """Layers trained in each round until ``D`` are dropped, ``drop_per_round`` at a
    time (the last round may drop fewer): ``[L, L - k, L - 2k, ...]``."""
    _check(L, D, drop_per_round)
    return [L - j * drop_per_round for j in range(math.ceil(D / drop_per_round))]


def progressive_cost(
    L: int,
    D: int,
    t: float = 1.0,
    drop_per_round: int = 1,
    extra_epochs: float = 0,
    sparse_factor: float = 1.0,
) -> float:
    """Training cost of progressive dropping of ``D`` of ``L`` layers (Eq. 5 and 6).

    ``drop_per_round`` = 1 is Eq. 5, 2 is Eq. 6 (any k works: the sum over rounds of
    :func:`round_layers`). ``extra_epochs`` epochs of the final ``L - D`` layers follow
    the last drop; ``sparse_factor`` (about 0.6, Table 9) scales the whole for sparse
    fine-tuning.
    """
    if extra_epochs < 0:
        raise ValueError(f"extra_epochs must be >= 0, got {extra_epochs}")
    layers = sum(round_layers(L, D, drop_per_round)) + extra_epochs * (L - D)
    return t * layers * sparse_factor


def figure4(
    L: int = 32,
    t: float = 1.0,
    sparse_factor: float = 0.6,
    full_epochs: Sequence[float] = (2, 5),
    max_share: float = 0.75,
    ax=None,
):
    """The paper's Figure 4: training cost against the share of layers dropped.

    Curves: Eq. 5 (one per epoch) and Eq. 6 (two per epoch), each with and without
    sparse update (``sparse_factor``), and flat lines for full FT (and sparse FT) for
    ``full_epochs`` epochs. Cost is in units of ``t`` divided by ``L``, i.e. in epochs of
    full FT. Returns the matplotlib Figure (``ax`` draws into an existing axes).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
    else:
        fig = ax.figure
    Ds = list(range(0, int(max_share * L) + 1))
    share = [d / L for d in Ds]
    unit = L * t
    curves = (
        ("drop 1/epoch (Eq. 5)", 1, 1.0, "C0", "-"),
        (f"drop 1/epoch, sparse x{sparse_factor:g}", 1, sparse_factor, "C0", "--"),
        ("drop 2/epoch (Eq. 6)", 2, 1.0, "C1", "-"),
        (f"drop 2/epoch, sparse x{sparse_factor:g}", 2, sparse_factor, "C1", "--"),
    )
    for label, k, sf, color, style in curves:
        ds = [d for d in Ds if d % k == 0]  # whole rounds only (Eq. 6 takes an even D)
        ys = [progressive_cost(L, d, t, k, sparse_factor=sf) / unit for d in ds]
        ax.plot([d / L for d in ds], ys, style, color=color, label=label)
    for i, e in enumerate(full_epochs):
        ax.axhline(full_ft_cost(L, e, t) / unit, color="gray", ls="-", lw=0.8 + 0.4 * i)
        ax.annotate(f"full FT, {e:g} ep", (share[-1], e), ha="right", va="bottom", fontsize=8)
    ax.set_xlabel(f"share of layers dropped (D / L, L = {L})")
    ax.set_ylabel("training cost (epochs of full FT = L t)")
    ax.set_title("TrimLLM training cost (A.5, Figure 4)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------- measured


def load_history(history):
    """A :class:`trimlab.history.History` as given, or read from ``history.json`` or its folder."""
    from trimlab.history import HISTORY_FILE, History

    if isinstance(history, History):
        return history
    path = Path(history)
    if path.is_dir():
        path = path / HISTORY_FILE
    return History.from_json(path)


def predicted_vs_measured(history, fixed_cost: bool = False) -> dict:
    """Set the A.5 model beside the measured round times of a trim run.

    ``history`` is a :class:`trimlab.history.History` or a path to ``history.json`` (or
    its folder). Round ``k`` trains ``n_k`` sub-layers (those present before its drop)
    for ``steps_k`` steps, so the model predicts ``t * n_k * steps_k`` seconds of
    training; ``t`` (seconds per sub-layer per step) is fitted by least squares through
    the origin to the measured ``train_seconds``. With ``fixed_cost`` a per-step cost
    ``c`` independent of depth is fitted too (embeddings, LM head, optimizer), which
    the paper's model leaves out: ``c * steps_k + t * n_k * steps_k``.

    Returns ``{"t", "c", "rows", "r2", "total_predicted", "total_measured"}``; each
    row has ``round, sublayers, steps, predicted, measured`` (training seconds),
    ``round_seconds`` (training, scoring and dropping) and ``other_seconds`` (their
    difference: scoring and dropping, which A.5 does not count). Rounds without
    training steps are shown but not fitted.
    """
    h = load_history(history)
    data = []
    for r in h.rounds:
        n = r.sublayers_left + len(r.dropped)
        data.append((r.round, n, r.steps, r.train_seconds, r.seconds))
    fit = [(n * s, s, y) for _, n, s, y, _ in data if s > 0]
    t = c = 0.0
    if fit and fixed_cost:
        sxx = sum(x * x for x, _, _ in fit)
        sss = sum(s * s for _, s, _ in fit)
        sxs = sum(x * s for x, s, _ in fit)
        sxy = sum(x * y for x, _, y in fit)
        ssy = sum(s * y for _, s, y in fit)
        det = sxx * sss - sxs * sxs
        if abs(det) > 1e-12 * max(sxx * sss, 1.0):
            t = (sxy * sss - ssy * sxs) / det
            c = (sxx * ssy - sxs * sxy) / det
        else:  # every round trained the same number of sub-layers: t and c not separable
            fixed_cost = False
    if fit and not fixed_cost:
        sxx = sum(x * x for x, _, _ in fit)
        t = sum(x * y for x, _, y in fit) / sxx if sxx else 0.0
        c = 0.0
    rows = []
    for rnd, n, s, y, secs in data:
        rows.append(
            dict(
                round=rnd,
                sublayers=n,
                steps=s,
                predicted=(c * s + t * n * s) if s > 0 else 0.0,
                measured=y,
                round_seconds=secs,
                other_seconds=secs - y,
            )
        )
    ys = [r["measured"] for r in rows if r["steps"] > 0]
    mean = sum(ys) / len(ys) if ys else 0.0
    ss_tot = sum((y - mean) ** 2 for y in ys)
    ss_res = sum((r["measured"] - r["predicted"]) ** 2 for r in rows if r["steps"] > 0)
    return dict(
        t=t,
        c=c,
        rows=rows,
        r2=(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan"),
        total_predicted=sum(r["predicted"] for r in rows),
        total_measured=sum(r["measured"] for r in rows),
    )


def plot_predicted_vs_measured(fit: dict, ax=None, title: str = "predicted vs measured round time"):
    """Bars of measured training seconds per round with the fitted A.5 prediction
    (from :func:`predicted_vs_measured`); ``title`` should name the history's source.
    Returns the Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4))
    else:
        fig = ax.figure
    rows = fit["rows"]
    xs = [r["round"] for r in rows]
    ax.bar(xs, [r["measured"] for r in rows], color="C0", alpha=0.6, label="measured (train)")
    ax.bar(
        xs,
        [r["other_seconds"] for r in rows],
        bottom=[r["measured"] for r in rows],
        color="C2",
        alpha=0.4,
        label="scoring + drop",
    )
    ax.plot(xs, [r["predicted"] for r in rows], "k.-", label=f"A.5 model, t={fit['t']:.3g} s")
    ax.set_xlabel("round")
    ax.set_ylabel("seconds")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> int:
    """``python -m trimlab.cost HISTORY``: print predicted vs measured round times."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m trimlab.cost", description=__doc__.splitlines()[0])
    p.add_argument("history", help="history.json of a trim run (or its folder)")
    p.add_argument("--fixed-cost", action="store_true", help="also fit a per-step fixed cost")
    args = p.parse_args(argv)
    fit = predicted_vs_measured(args.history, fixed_cost=args.fixed_cost)
    print(f"t = {fit['t']:.4g} s per sub-layer per step; c = {fit['c']:.4g} s per step")
    print("| round | sub-layers | steps | predicted s | measured s | round s |")
    print("|---|---|---|---|---|---|")
    for r in fit["rows"]:
        print(
            f"| {r['round']} | {r['sublayers']} | {r['steps']} | {r['predicted']:.1f} | "
            f"{r['measured']:.1f} | {r['round_seconds']:.1f} |"
        )
    print(json.dumps({k: fit[k] for k in ("total_predicted", "total_measured", "r2")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
