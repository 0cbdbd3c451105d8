"""Retention against size for committed reference tables, one panel per folder:
``docs/figures/retention.png`` (:func:`trimlab.plots.retention_plot`)::

    python scripts/retention_figure.py docs/results/reference-cpu-open docs/results/reference-cpu-closed
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trimlab import plots  # noqa: E402
from trimlab.results import load_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def title(folder: Path, rows: dict) -> str:
    """``open-book SciQ, 1000 test items``: the setting a folder's settings.json names."""
    settings = json.loads((folder / "settings.json").read_text())
    book = "open-book" if settings.get("use_context") else "closed-book"
    return f"{folder.name}: {book} {settings.get('domain', '')}, {rows['full_ft']['n']} test items"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "retention.png")
    args = p.parse_args(argv)
    tables = [(f, load_rows(f)) for f in args.folders]
    missing = [str(f) for f, rows in tables if "full_ft" not in rows]
    if missing:
        raise SystemExit(f"{', '.join(missing)}: no full_ft row to measure retention against")
    fig, axes = plt.subplots(1, len(tables), figsize=(6.4 * len(tables), 4), squeeze=False)
    for ax, (folder, rows) in zip(axes[0], tables):
        keep = {k: r for k, r in rows.items() if not k.startswith("score_")}
        plots.retention_plot(keep, title=title(folder, rows), ax=ax)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(args.out)  # atomic: a half-written figure never replaces the old one
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
