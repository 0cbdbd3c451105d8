"""Browsing committed runs (trimlab.browse) on the reference results in docs/results."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from trimlab import browse

matplotlib.use("Agg")
REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "results" / "reference-cpu"


def test_histories_and_drop_rounds_of_the_committed_reference_run():
    runs = browse.run_histories(REFERENCE)
    assert "trimllm" in runs and "score_loglik" in runs
    h = runs["trimllm"]
    went = browse.dropped_by_round(h)
    assert list(went) == h.drop_sequence and went[h.drop_sequence[0]] == 1
    assert max(went.values()) == len(h.rounds)


def test_round_summary_and_plot_follow_the_history():
    h = browse.run_histories(REFERENCE)["trimllm"]
    assert browse.round_summary(h, 0).startswith("round 0: nothing removed")
    first = browse.round_summary(h, 1)
    assert ", ".join(h.rounds[0].dropped) in first and f"{h.rounds[0].decoder_kept:.1%}" in first
    fig = browse.plot_round(h, 3, title="x")
    grid = fig.axes[1].images[0].get_array()
    assert int((grid == grid).sum()) == sum(len(r.dropped) for r in h.rounds[:3])  # 3 rounds
    with pytest.raises(ValueError, match="out of range"):
        browse.round_summary(h, len(h.rounds) + 1)


def test_browser_moves_with_its_controls(capsys):
    widget = browse.browser(REFERENCE, source="docs/results/reference-cpu")
    run, k = widget.children[0], widget.children[1]
    assert k.value == k.max == len(browse.run_histories(REFERENCE)[run.value].rounds)
    run.value = "score_loglik"
    assert k.max == len(browse.run_histories(REFERENCE)["score_loglik"].rounds)
    k.value = 1
    widget.update()
    assert "round 1: dropped" in capsys.readouterr().out


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="no results folder"):
        browse.run_histories(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no"):
        browse.run_histories(tmp_path)


def test_retention_plot_of_the_committed_reference_table():
    from trimlab import plots
    from trimlab.results import load_rows

    rows = load_rows(REFERENCE)
    fig = plots.retention_plot(rows, title="docs/results/reference-cpu")
    ax = fig.axes[0]
    compressed = [r for r in rows.values() if r.get("decoder_kept", 1) < 0.999]
    lines = 2 if "zero_shot" in rows else 1  # the 90% line, the zero-shot model's level
    assert len(ax.get_legend_handles_labels()[1]) == len(compressed) + lines
