"""The specialization experiment's statistics and its drop-one sensitivities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from tests.test_scoring import ITEMS
from trimlab import exercises
from trimlab import specialization as spec
from trimlab.tiny import tiny_model


def test_spearman_is_scipys():
    assert spec.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spec.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spec.spearman([1, 1, 1], [1, 2, 3]))  # constant: NaN, no warning
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, size=20), rng.normal(size=20)  # a has ties
    assert spec.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    with pytest.raises(ValueError, match="3 values against 2"):
        spec.spearman([1, 2, 3], [1, 2])


def test_the_spearman_exercise_is_graded_against_scipy(monkeypatch):
    from trimlab.exercises import nb01_hypothesis

    def hand_written(a, b):  # the notebook's exercise: ranks without ties, then Pearson
        ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        return float(np.corrcoef(ra, rb)[0, 1])

    assert nb01_hypothesis.reference_spearman is spec.spearman
    assert exercises.grade("spearman", hand_written).passed
    calls = []
    monkeypatch.setattr(spec, "spearmanr", lambda a, b: calls.append(1) or spearmanr(a, b))
    exercises.grade("spearman", hand_written)
    assert calls  # the grader's reference is scipy's spearmanr


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


def test_sensitivities_pass_the_token_budget_to_the_scan(monkeypatch):
    model, tok = tiny_model("llama", seed=3)
    seen = []
    real = spec.scan

    def spy(*args, **kwargs):
        seen.append(kwargs.get("max_length"))
        return real(*args, **kwargs)

    monkeypatch.setattr(spec, "scan", spy)
    spec.sensitivities(model, tok, ITEMS[:4], batch_size=4, max_length=40)
    assert seen == [40]


def test_sensitivities_of_a_subset_are_those_of_the_full_scan():
    """``names`` (the lab's cheaper live experiment) scans those sub-layers only, with the
    values the full scan gives them."""
    model, tok = tiny_model("llama")
    full = spec.sensitivities(model, tok, ITEMS, batch_size=4)
    names = ["0.attn", "1.mlp", "3.attn"]
    part = spec.sensitivities(model, tok, ITEMS, batch_size=4, names=names)
    every = ["0.attn", "0.mlp", "1.attn", "1.mlp", "2.attn", "2.mlp", "3.attn", "3.mlp"]
    for key in ("acc", "ll"):
        want = [full[key][every.index(n)] for n in names]
        assert part[key] == pytest.approx(want, abs=1e-6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("trimlab.data.load_domain", lambda name, split, n, seed: ITEMS)
        result = spec.experiment(
            model, tok, ["sciq"], n=len(ITEMS), names=names, log=lambda s: None
        )
    assert result.names == names and len(result.ll["sciq"]) == 3
