"""Copy the small result files of a run folder into ``docs/results/`` (no weights).

``benchmarks/reference.py`` writes its rows under ``runs/`` (git-ignored, with the model
weights). What the docs and notebooks read is copied from there by this script:
``settings.json``, and for every row ``result.json``, ``snapshot_*.json`` and the trim
run's ``history.json``::

    python scripts/publish_results.py runs/reference-cpu docs/results/reference-cpu
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def publish(src: Path, dst: Path) -> list[Path]:
    """Copy the result files of ``src`` into ``dst``; return the files written."""
    if not (src / "settings.json").is_file():
        raise SystemExit(f"{src} has no settings.json: not a benchmarks/reference.py folder")
    written = []
    pairs = [(src / "settings.json", dst / "settings.json")]
    for result in sorted(src.glob("*/result.json")):
        row = result.parent
        pairs.append((result, dst / row.name / "result.json"))
        pairs += [(f, dst / row.name / f.name) for f in sorted(row.glob("snapshot_*.json"))]
        if (row / "run" / "history.json").is_file():
            pairs.append((row / "run" / "history.json", dst / row.name / "history.json"))
    for a, b in pairs:
        b.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a, b)
        written.append(b)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    args = p.parse_args()
    for f in publish(args.src, args.dst):
        print(f)


if __name__ == "__main__":
    main()
