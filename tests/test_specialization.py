"""The specialization experiment's statistics and its drop-one sensitivities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.test_scoring import ITEMS
from trimlab import specialization as spec
from trimlab.tiny import tiny_model


def test_spearman_and_ranks():
    assert spec.rankdata(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert spec.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spec.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spec.spearman([1, 1, 1], [1, 2, 3]))


def test_statistics_on_a_hand_built_result(tmp_path):
    r = spec.Specialization(
        names=["0.attn", "0.mlp", "1.attn", "1.mlp"],
        datasets=["a", "b"],
        base={"a": {}, "b": {}},
        acc={"a": [0.1, 0.0, 0.2, 0.0], "b": [0.0, 0.1, 0.0, 0.2]},
        ll={"a": [3.0, 1.0, 4.0, 2.0], "b": [1.0, 3.0, 2.0, 4.0]},
        halves={"a": [[3, 1, 4, 2], [3, 1, 4, 2]], "b": [[1, 2, 3, 4], [4, 3, 2, 1]]},
    )
    assert r.matrix().shape == (2, 4)
    assert r.correlations()["a vs b"] == pytest.approx(spec.spearman([3, 1, 4, 2], [1, 3, 2, 4]))
    assert r.noise_floor() == {"a": pytest.approx(1.0), "b": pytest.approx(-1.0)}
    assert r.mlp_share(k=2) == {"a": 1.0, "b": 0.0}
    r.to_json(tmp_path / "s.json")
    assert spec.Specialization.from_json(tmp_path / "s.json") == r
    assert "noise floor" in spec.summary(r)


def test_sensitivities_of_a_tiny_model():
    model, tok = tiny_model("llama", seed=3)
    s = spec.sensitivities(model, tok, ITEMS, batch_size=6)
    assert len(s["acc"]) == len(s["ll"]) == 8
    assert len(s["halves"]) == 2 and all(len(h) == 8 for h in s["halves"])
    fig = spec.heatmap(
        spec.Specialization(
            names=[f"{b}.{k}" for b in range(4) for k in ("attn", "mlp")],
            datasets=["x"],
            base={"x": s["base"]},
            acc={"x": s["acc"]},
            ll={"x": s["ll"]},
        )
    )
    assert len(fig.axes) >= 2
