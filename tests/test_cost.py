"""trimlab.cost: A.5's Eq. 5 and 6, Figure 4, and predicted against measured rounds."""

from __future__ import annotations

import matplotlib
import pytest

from trimlab import cost
from trimlab.history import History, Round

matplotlib.use("Agg")


def test_full_ft_cost():
    assert cost.full_ft_cost(4, 3) == 12
    assert cost.full_ft_cost(4, 3, t=2.0, sparse_factor=0.5) == 12


def test_eq5_by_hand():
    # L = 4, D = 2: epochs train 4 then 3 layers
    assert cost.eq5(4, 2) == 7
    assert cost.progressive_cost(4, 2) == 7
    assert cost.eq5(32, 16, t=2) == 2 * sum(32 - i for i in range(16))
    assert cost.eq5(4, 0) == 0


def test_eq6_by_hand():
    # L = 4, D = 2, two per epoch: one epoch of 4 layers
    assert cost.eq6(4, 2) == 4
    assert cost.progressive_cost(4, 2, drop_per_round=2) == 4
    # L = 8, D = 4: epochs of 8 and 6 layers
    assert cost.eq6(8, 4) == 14 == cost.progressive_cost(8, 4, drop_per_round=2)
    with pytest.raises(ValueError):
        cost.eq6(8, 3)
    # odd D: the last round drops one
    assert cost.round_layers(8, 3, 2) == [8, 6]
    assert cost.progressive_cost(8, 3, drop_per_round=2) == 14


def test_closed_forms_equal_sums():
    for L in (4, 30, 64):
        for D in range(0, L + 1):
            assert cost.eq5(L, D) == pytest.approx(cost.progressive_cost(L, D, drop_per_round=1))
            if D % 2 == 0:
                assert cost.eq6(L, D) == pytest.approx(cost.progressive_cost(L, D, 1.0, 2))


def test_extra_epochs_and_sparse_factor():
    # L = 4, D = 2, then 3 epochs of the 2 layers left: 7 + 6
    assert cost.progressive_cost(4, 2, extra_epochs=3) == 13
    assert cost.progressive_cost(4, 2, t=10, sparse_factor=0.6) == pytest.approx(42)
    with pytest.raises(ValueError):
        cost.progressive_cost(4, 5)
    with pytest.raises(ValueError):
        cost.progressive_cost(4, 2, drop_per_round=0)


def test_table9_factor_is_about_0_6():
    assert cost.table9_sparse_factor() == pytest.approx(0.6, abs=0.02)
    assert cost.table9_sparse_factor("trimllm") < cost.table9_sparse_factor()


def test_paper_figure4_claim_is_the_same_order():
    # "at 50% compression, two per epoch with sparse update ~ full FT for 5 epochs"
    sparse2 = cost.progressive_cost(32, 16, drop_per_round=2, sparse_factor=0.6)
    assert cost.full_ft_cost(32, 3) < sparse2 < cost.full_ft_cost(32, 5)


def test_figure4_returns_a_figure():
    fig = cost.figure4(L=8, full_epochs=(2,))
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes[0].lines) >= 5
    matplotlib.pyplot.close(fig)


def _round(k, dropped, left, steps, train, secs):
    return Round(
        round=k,
        dropped=dropped,
        scores={},
        calib={"acc": 0.5, "acc_norm": 0.5, "ll": -1.0, "n": 8},
        calib_after=None,
        train_loss=1.0 if steps else None,
        steps=steps,
        seconds=secs,
        train_seconds=train,
        params=0,
        bytes=0,
        decoder_kept=1.0,
        bytes_kept=1.0,
        sublayers_left=left,
    )


def _history():
    # 8 sub-layers, one dropped per round, 10 steps; 0.5 s per sub-layer-step exactly
    rounds = [
        _round(1, ["3.mlp"], 7, 10, 40.0, 45.0),
        _round(2, ["2.mlp"], 6, 10, 35.0, 39.0),
        _round(3, ["1.attn"], 5, 10, 30.0, 33.0),
        _round(4, ["0.mlp"], 4, 0, 0.0, 2.0),
    ]
    return History(settings={"steps_per_round": 10}, rounds=rounds)


def test_predicted_vs_measured_fits_t(tmp_path):
    fit = cost.predicted_vs_measured(_history())
    assert fit["t"] == pytest.approx(0.5)
    assert fit["c"] == 0
    assert fit["r2"] == pytest.approx(1.0)
    rows = fit["rows"]
    assert [r["sublayers"] for r in rows] == [8, 7, 6, 5]
    assert [r["predicted"] for r in rows] == pytest.approx([40, 35, 30, 0])
    assert [r["other_seconds"] for r in rows] == pytest.approx([5, 4, 3, 2])
    assert fit["total_measured"] == pytest.approx(105)
    # from a history.json path, and from its folder
    _history().to_json(tmp_path / "history.json")
    assert cost.predicted_vs_measured(tmp_path / "history.json")["t"] == pytest.approx(0.5)
    assert cost.predicted_vs_measured(tmp_path)["t"] == pytest.approx(0.5)


def test_predicted_vs_measured_with_fixed_cost():
    h = _history()
    for r in h.rounds:  # add 1 s per step of depth-independent work
        r.train_seconds += r.steps * 1.0
    plain = cost.predicted_vs_measured(h)
    fixed = cost.predicted_vs_measured(h, fixed_cost=True)
    assert fixed["t"] == pytest.approx(0.5) and fixed["c"] == pytest.approx(1.0)
    assert fixed["r2"] == pytest.approx(1.0)
    assert plain["r2"] < 1.0
    fig = cost.plot_predicted_vs_measured(fixed)
    assert isinstance(fig, matplotlib.figure.Figure)
    matplotlib.pyplot.close(fig)


def test_cost_cli(tmp_path, capsys):
    _history().to_json(tmp_path / "history.json")
    assert cost.main([str(tmp_path / "history.json")]) == 0
    out = capsys.readouterr().out
    assert "t = 0.5 s" in out and "| 1 | 8 | 10 |" in out
