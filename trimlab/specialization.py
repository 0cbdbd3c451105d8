"""The layer-wise specialization experiment (TrimLLM Hypothesis 1, the paper's Fig. 1).

For several datasets, drop each sub-layer of the pretrained model in turn and measure
how much the calibration metrics fall: the *drop-one sensitivity*. If layers
specialise by domain, the sensitivity rankings of two datasets differ by more than the
rankings of two disjoint halves of the same dataset (the split-half noise floor).

Sensitivity of sub-layer i on a dataset, for both metrics of :func:`trimlab.evaluate`:

* ``acc``: ``base_acc - a_i`` (accuracy points lost without i);
* ``ll``: ``base_ll - ll_i`` (mean correct-answer log-likelihood lost without i), a
  continuous signal that does not tie on small sets.

Run it: ``python -m trimlab.specialization --datasets sciq piqa arc_easy``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

from trimlab import surgery
from trimlab.evaluate import summarize
from trimlab.scoring import scan


@dataclass
class Specialization:
    """Drop-one sensitivities of one model on several datasets."""

    names: list[str]
    """Sub-layers, in forward order (the columns)."""
    datasets: list[str]
    """Datasets (the rows)."""
    base: dict[str, dict]
    """Undropped metrics per dataset."""
    acc: dict[str, list[float]]
    """Accuracy lost without each sub-layer, per dataset."""
    ll: dict[str, list[float]]
    """Mean correct-answer log-likelihood lost without each sub-layer, per dataset."""
    halves: dict[str, list[list[float]]] = field(default_factory=dict)
    """ll sensitivity on two disjoint halves (even and odd items) of each dataset."""
    settings: dict = field(default_factory=dict)

    def matrix(self, metric: str = "ll") -> np.ndarray:
        """Datasets x sub-layers sensitivity matrix."""
        table = self.ll if metric == "ll" else self.acc
        return np.array([table[d] for d in self.datasets])

    def correlations(self, metric: str = "ll") -> dict[str, float]:
        """Spearman rank correlation between each pair of datasets."""
        m = self.matrix(metric)
        out = {}
        for i, a in enumerate(self.datasets):
            for j in range(i + 1, len(self.datasets)):
                out[f"{a} vs {self.datasets[j]}"] = spearman(m[i], m[j])
        return out

    def noise_floor(self) -> dict[str, float]:
        """Spearman correlation of ll sensitivity between two halves of each dataset."""
        return {d: spearman(*map(np.array, h)) for d, h in self.halves.items()}

    def mlp_share(self, k: int | None = None, metric: str = "ll") -> dict[str, float]:
        """Share of MLP sub-layers among the ``k`` least important (default: a quarter)."""
        k = k or max(1, len(self.names) // 4)
        out = {}
        for d, row in zip(self.datasets, self.matrix(metric), strict=True):
            least = np.argsort(row, kind="stable")[:k]
            out[d] = float(np.mean([self.names[i].endswith(".mlp") for i in least]))
        return out

    def to_json(self, path: str | os.PathLike) -> None:
        """Write atomically."""
        from trimlab.checkpoint import write_json

        write_json(path, asdict(self))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Specialization:
        return cls(**json.loads(Path(path).read_text()))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (:func:`scipy.stats.spearmanr`: the Pearson correlation
    of the ranks, ties sharing their average rank); NaN when either side is constant.

    (Notebook 01 asks students to write it; ``trimlab.exercises`` grades theirs against
    this one.)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} values against {len(b)}")
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")  # scipy would also warn (ConstantInputWarning)
    return float(spearmanr(a, b).statistic)


def sensitivities(
    model,
    tokenizer,
    items: Sequence[dict],
    use_context: bool = False,
    batch_size: int | None = None,
    max_length: int | None = None,
    names: Sequence[str] | None = None,
) -> dict:
    """Drop-one sensitivities on one item set, with two disjoint halves (even/odd);
    ``max_length`` is the token budget per input (default: the model's context length);
    ``names`` the sub-layers to scan (default: all)."""
    base, metrics, base_ll, cand_ll = scan(
        model,
        tokenizer,
        items,
        names=names,
        batch_size=batch_size,
        use_context=use_context,
        max_length=max_length,
        return_logliks=True,
    )
    names = list(metrics)
    halves = []
    for part in (slice(0, None, 2), slice(1, None, 2)):
        sub = list(items)[part]
        b = summarize(sub, base_ll[part])["ll"]
        halves.append([b - summarize(sub, cand_ll[n][part])["ll"] for n in names])
    return {
        "base": base,
        "acc": [base["acc"] - metrics[n]["acc"] for n in names],
        "ll": [base["ll"] - metrics[n]["ll"] for n in names],
        "halves": halves,
    }


def experiment(
    model,
    tokenizer,
    datasets: Sequence[str],
    n: int = 96,
    split: str = "calib",
    seed: int = 0,
    use_context: bool = False,
    batch_size: int | None = None,
    max_length: int | None = None,
    log=print,
    save_to: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
) -> Specialization:
    """Run the drop-one scan on each dataset (``n`` items of ``split``), over every
    sub-layer or over ``names`` only (a cheaper live experiment).

    With ``save_to``, the result is written after every dataset, and a rerun with the
    same settings skips the datasets already there (a long run can be resumed).
    """
    from trimlab.data import load_domain

    settings = dict(n=n, split=split, seed=seed, use_context=use_context, max_length=max_length)
    result = Specialization(
        names=list(names or surgery.sublayers(model)),
        datasets=[],
        base={},
        acc={},
        ll={},
        settings=settings,
    )
    if save_to is not None and Path(save_to).exists():
        old = Specialization.from_json(save_to)
        same = {k: old.settings.get(k) for k in settings} == settings and old.names == result.names
        if same:
            result = old
            result.datasets = [d for d in old.datasets if d in datasets]
    for name in datasets:
        if name in result.datasets:
            log(f"{name}: already done")
            continue
        t = time.perf_counter()
        items = load_domain(name, split, n=n, seed=seed)
        s = sensitivities(
            model,
            tokenizer,
            items,
            use_context=use_context,
            batch_size=batch_size,
            max_length=max_length,
            names=result.names,
        )
        result.base[name], result.acc[name], result.ll[name] = s["base"], s["acc"], s["ll"]
        result.halves[name] = s["halves"]
        result.settings.setdefault("seconds", {})[name] = round(time.perf_counter() - t, 1)
        result.datasets.append(name)
        if save_to is not None:
            result.to_json(save_to)
        log(f"{name}: base acc {s['base']['acc']:.3f}, scan {time.perf_counter() - t:.0f} s")
    result.datasets = [d for d in datasets if d in result.datasets]
    return result


def heatmap(
    result: Specialization, metric: str = "ll", ranks: bool = True, source: str | None = None
):
    """The paper's Fig. 1 analogue: sensitivity per dataset (rows) and sub-layer (columns).

    With ``ranks`` each row shows the rank of the sensitivity within its dataset (0 = the
    least important sub-layer, 1 = the most), so datasets with very different scales
    (PIQA's long answers) compare directly and a few huge values (block 0) do not wash
    out the rest. ``source`` (a file name, or "live run") goes into the title.
    """
    import matplotlib.pyplot as plt

    m = result.matrix(metric)
    if ranks:
        m = np.array([(rankdata(row) - 1) / max(1, len(row) - 1) for row in m])
    fig, axes = plt.subplots(2, 1, figsize=(12, 1.6 + 0.9 * len(result.datasets)))
    scale = dict(vmin=0, vmax=1) if ranks else {}  # one colour scale for both panels
    for ax, kind in zip(axes, ("attn", "mlp"), strict=True):
        cols = [i for i, nm in enumerate(result.names) if nm.endswith(kind)]
        im = ax.imshow(m[:, cols], aspect="auto", cmap="viridis", **scale)
        ax.set_yticks(range(len(result.datasets)), result.datasets)
        ax.set_title(f"{kind} sub-layers", fontsize=9, loc="left")
        fig.colorbar(im, ax=ax, pad=0.01)
        ax.set_xticks(range(len(cols)), [result.names[i].split(".")[0] for i in cols], fontsize=7)
        ax.set_xlabel("block", fontsize=8)
    label = "mean correct-answer log-likelihood lost" if metric == "ll" else "accuracy lost"
    label = f"rank of {label} within each dataset" if ranks else label
    fig.suptitle(f"Drop-one sensitivity ({label})" + (f", {source}" if source else ""), fontsize=10)
    fig.tight_layout()
    return fig


def summary(result: Specialization) -> str:
    """Correlations against the noise floor, and the MLP share among the least important."""
    lines = ["rank correlation of ll sensitivity (Spearman):"]
    lines += [f"  {k}: {v:.2f}" for k, v in result.correlations("ll").items()]
    lines += ["split-half noise floor (same dataset, two halves):"]
    lines += [f"  {k}: {v:.2f}" for k, v in result.noise_floor().items()]
    k = max(1, len(result.names) // 4)
    lines += [f"MLP share among the {k} least important sub-layers:"]
    lines += [f"  {d}: {v:.2f}" for d, v in result.mlp_share(k).items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from trimlab.models import load_model
    from trimlab.profiles import get_profile

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["sciq", "piqa", "arc_easy"])
    p.add_argument("--model")
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--split", default="calib")
    p.add_argument("--context", action="store_true", help="use context paragraphs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", default="docs/results/specialization.json")
    p.add_argument("--figure", default="docs/figures/specialization.png")
    p.add_argument("--replot", action="store_true", help="redraw the figure from --out only")
    args = p.parse_args(argv)
    if args.replot:
        result = Specialization.from_json(args.out)
        heatmap(result).savefig(args.figure, dpi=120)
        print(summary(result))
        return 0
    prof = get_profile()
    model, tok = load_model(args.model or prof.model)
    t = time.perf_counter()
    result = experiment(
        model,
        tok,
        args.datasets,
        n=args.n,
        split=args.split,
        use_context=args.context,
        batch_size=args.batch_size or prof.batch_size,
        max_length=prof.max_length,
        save_to=args.out,
    )
    result.settings.update(
        model=args.model or prof.model, total_seconds=round(time.perf_counter() - t)
    )
    result.to_json(args.out)
    fig = heatmap(result)
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=120)
    print(summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
