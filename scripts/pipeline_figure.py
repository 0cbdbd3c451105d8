"""Draw the lab pipeline (load -> score -> drop -> heal -> measure) once per notebook, with
the stages that notebook covers highlighted and marked "you are here".

Each notebook's first cell shows its figure, ``notebooks/figures/pipeline_NN.png``
(700 x 110 pixels). Run this script again after changing the stages or the notebooks::

    python scripts/pipeline_figure.py                  # all nine figures
    python scripts/pipeline_figure.py --out /tmp/figs  # somewhere else
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks" / "figures"

STAGES = ("load", "score", "drop", "heal", "measure")

# The stages each notebook covers (always a run of neighbouring stages).
COVERS = {
    "00": ("load",),
    "01": ("load", "score"),  # the hypothesis behind scoring
    "02": ("score",),
    "03": ("drop",),
    "04": ("heal",),
    "05": ("score", "drop", "heal"),  # the TrimLLM loop
    "06": STAGES,  # ablations
    "07": ("measure",),  # speed and memory
    "08": ("measure",),  # training cost
}

WIDTH, HEIGHT, DPI = 7.0, 1.1, 100  # inches and dots per inch: 700 x 110 pixels
HIGHLIGHT, HIGHLIGHT_TEXT = "#e8833a", "white"
PLAIN, PLAIN_TEXT, LINE = "#ececec", "#666666", "#999999"


def draw(notebook: str, path: Path) -> Path:
    """Draw the pipeline with the stages of `notebook` ("00" .. "08") highlighted; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    covered = COVERS[notebook]
    fig = plt.figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.axis("off")

    box_w, box_h, y0 = 1.0, 0.38, 0.32
    centres = [0.75 + 1.375 * i for i in range(len(STAGES))]
    for stage, x in zip(STAGES, centres):
        on = stage in covered
        ax.add_patch(
            FancyBboxPatch(
                (x - box_w / 2, y0),
                box_w,
                box_h,
                boxstyle="round,pad=0,rounding_size=0.08",
                facecolor=HIGHLIGHT if on else PLAIN,
                edgecolor=HIGHLIGHT if on else LINE,
                linewidth=1.2,
            )
        )
        ax.text(
            x,
            y0 + box_h / 2,
            stage,
            ha="center",
            va="center",
            fontsize=11,
            color=HIGHLIGHT_TEXT if on else PLAIN_TEXT,
            fontweight="bold" if on else "normal",
        )
    for a, b in zip(centres, centres[1:]):
        ax.annotate(
            "",
            xy=(b - box_w / 2 - 0.03, y0 + box_h / 2),
            xytext=(a + box_w / 2 + 0.03, y0 + box_h / 2),
            arrowprops=dict(arrowstyle="->", color=LINE, lw=1.2),
        )

    # the loop of TrimLLM: after healing, score again, until the target size
    score_x, heal_x = centres[STAGES.index("score")], centres[STAGES.index("heal")]
    ax.add_patch(
        FancyArrowPatch(
            (heal_x, y0 + box_h + 0.02),
            (score_x, y0 + box_h + 0.02),
            connectionstyle="arc3,rad=0.12",
            arrowstyle="->",
            mutation_scale=9,
            color=LINE,
            lw=1.0,
        )
    )
    ax.text(
        (score_x + heal_x) / 2,
        HEIGHT - 0.09,
        "repeat until the target size",
        ha="center",
        va="center",
        fontsize=7,
        color=PLAIN_TEXT,
    )

    # "you are here" under the highlighted stages
    xs = [x for stage, x in zip(STAGES, centres) if stage in covered]
    left, right = min(xs) - box_w / 2, max(xs) + box_w / 2
    ax.plot([left, left, right, right], [0.26, 0.21, 0.21, 0.26], color=HIGHLIGHT, lw=1.2)
    centre, align = (left + right) / 2, "center"
    if centre < 1.2:  # keep the label inside the figure at either end
        centre, align = left, "left"
    elif centre > WIDTH - 1.2:
        centre, align = right, "right"
    ax.text(
        centre,
        0.09,
        f"you are here: notebook {notebook}",
        ha=align,
        va="center",
        fontsize=8.5,
        color=HIGHLIGHT,
        fontweight="bold",
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for pipeline_NN.png")
    args = parser.parse_args(argv)
    for notebook in COVERS:
        path = draw(notebook, args.out / f"pipeline_{notebook}.png")
        print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
