"""Candidate pre-selection against a full re-scan (``TrimConfig.scan_candidates``).

A run that re-scans every sub-layer every round records, per round, exactly what a full
re-scan measures. So its ``history.json`` answers, round by round, what re-scanning only
the ``n`` candidates ranked lowest before that round would have chosen, and what that
choice would have cost in the score's own units (:func:`trimlab.schedule.preselection_regret`).
The gap from the least important sub-layer to the median one gives the scale.

    python benchmarks/preselect.py docs/results/reference-cpu/score_loglik/history.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from trimlab import schedule


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("histories", nargs="+", help="history.json files of full-scan runs")
    p.add_argument("--n", nargs="+", type=int, default=[8, 12, 16, 20])
    args = p.parse_args(argv)
    rows = []
    print(
        "| run | score | n | rounds where the full scan's choice was a candidate | "
        "mean regret | max regret | median gap (lowest to median) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for path in args.histories:
        h = json.loads(Path(path).read_text())
        gaps = []
        for r in h["rounds"]:
            v = sorted(r["scores"].values())
            gaps.append(v[len(v) // 2] - v[0])
        for n in args.n:
            reg = schedule.preselection_regret(h["initial_scores"], h["rounds"], n)
            row = {
                "run": str(path),
                "score": h["settings"]["score"],
                "n": n,
                "hits": sum(x["hit"] for x in reg),
                "rounds": len(reg),
                "mean_regret": statistics.fmean(x["regret"] for x in reg),
                "max_regret": max(x["regret"] for x in reg),
                "median_gap": statistics.median(gaps),
            }
            rows.append(row)
            print(
                f"| {Path(path).parent.name} | {row['score']} | {n} | {row['hits']}/{row['rounds']} "
                f"| {row['mean_regret']:.4f} | {row['max_regret']:.3f} | {row['median_gap']:.3f} |"
            )
    return rows


if __name__ == "__main__":
    main()
