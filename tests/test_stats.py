"""Intervals, retention and paired differences (:mod:`trimlab.stats`) and the table that
prints them (:func:`trimlab.results.interval_table`)."""

from __future__ import annotations

import math

import pytest

from trimlab import results, stats


def test_wilson_matches_the_textbook_formula():
    k, n, z = 229, 300, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = stats.wilson(k, n)
    assert lo == pytest.approx(centre - half, abs=1e-9) and hi == pytest.approx(centre + half)
    assert stats.wilson(0, 10)[0] == 0.0 and stats.wilson(10, 10)[1] == 1.0
    assert stats.wilson(0.5 * 300, 300) == stats.wilson(150, 300)  # a share times n


@pytest.mark.parametrize("k, n", [(1, 0), (-1, 5), (6, 5)])
def test_wilson_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError, match="wilson"):
        stats.wilson(k, n)


def test_retention_plain_and_over_chance():
    assert stats.retention(0.6, 0.8) == pytest.approx(0.75)
    assert stats.retention(0.6, 0.8, chance=0.25) == pytest.approx(0.35 / 0.55)
    assert stats.retention(0.25, 0.8, chance=0.25) == 0.0  # guessing keeps nothing
    with pytest.raises(ValueError, match="not above"):
        stats.retention(0.5, 0.25, chance=0.25)
    assert stats.chance_level([{"choices": ["a", "b"]}, {"choices": list("abcd")}]) == 0.375


def test_paired_difference_is_centred_and_covers_the_truth():
    a = [1] * 70 + [0] * 30
    b = [1] * 60 + [0] * 40  # a is right on 10 more items, b never where a is wrong
    d = stats.paired_difference(a, b, seed=1)
    assert d["diff"] == pytest.approx(0.10)
    assert d["low"] < 0.10 < d["high"] and d["low"] > 0  # paired: the gain is significant
    same = stats.paired_difference(a, a)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0}
    assert stats.paired_difference(a, b, seed=1) == d  # seeded
    with pytest.raises(ValueError, match="against"):
        stats.paired_difference(a, b[:-1])


def test_mean_sd():
    assert stats.mean_sd([0.5]) == (0.5, 0.0)
    m, sd = stats.mean_sd([0.6, 0.7, 0.8])
    assert m == pytest.approx(0.7) and sd == pytest.approx(0.1)


def test_interval_table_prints_intervals_retention_and_paired_differences():
    full = {"acc": 0.8, "n": 10, "chance": 0.25, "correct": [1] * 8 + [0] * 2}
    rows = {
        "full_ft": {**full, "decoder_kept": 1.0, "seconds": 60},
        "trimllm": {
            "acc": 0.6,
            "n": 10,
            "chance": 0.25,
            "correct": [1] * 6 + [0] * 4,
            "decoder_kept": 0.5,
            "seconds": 120,
        },
        "old": {"acc": 0.5, "n": 10, "decoder_kept": 0.5},  # measured before per-item results
    }
    md = results.interval_table(rows)
    line = next(x for x in md.splitlines() if x.startswith("| TrimLLM"))
    lo, hi = stats.wilson(6, 10)
    assert f"0.600 [{lo:.3f}, {hi:.3f}]" in line and "| 75% |" in line and "| 64% |" in line
    assert "-0.200 [" in line
    old = next(x for x in md.splitlines() if x.startswith("| old"))
    assert "| - | - |" in old  # no chance level, no per-item results


def test_seeds_table_gives_mean_and_sd_over_seed_folders(tmp_path):
    import json

    def folder(seed, full, trim, done=True):
        f = tmp_path / f"seed{seed}"
        rows = {"full_ft": full} | ({"trimlab": trim} if done else {})
        for row, acc in rows.items():
            (f / row).mkdir(parents=True)
            (f / row / "result.json").write_text(
                json.dumps({"acc": acc, "n": 1000, "chance": 0.25})
            )
        (f / "settings.json").write_text(json.dumps({"seed": seed}))
        return f

    folders = [folder(0, 0.9, 0.6), folder(1, 0.8, 0.7), folder(2, 0.85, 0.5, done=False)]
    md = results.seeds_table(folders, ["trimlab"])
    assert "| seed 0 | seed 1 |" in md and "seed 2" not in md  # seed 2 has not finished
    line = next(x for x in md.splitlines() if x.startswith("| trimlab"))
    m, sd = stats.mean_sd([0.6, 0.7])
    assert f"| 0.600 | 0.700 | {m:.3f} ± {sd:.3f} |" in line
    plain = stats.mean_sd([0.6 / 0.9, 0.7 / 0.8])  # each seed against its own full FT
    assert f"{plain[0]:.1%} ± {plain[1]:.1%}" in line
    with pytest.raises(ValueError, match="every row"):
        results.seeds_table(folders[2:], ["trimlab"])
