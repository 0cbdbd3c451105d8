"""Importance scoring: fast scan = naive scan, exact restore, Eq. 3 and Eq. 4 by hand."""

from __future__ import annotations

import math

import pytest
import torch

from trimlab import scoring, surgery
from trimlab.evaluate import evaluate
from trimlab.tiny import tiny_model

ITEMS = [
    {"question": q, "choices": c, "answer": a, "context": ctx, "subject": None}
    for q, c, a, ctx in [
        ("What do plants need to make food?", ["light", "sand", "noise"], 0, "Plants use light."),
        ("Which is a metal?", ["wood", "iron"], 1, None),
        ("What is frozen water?", ["steam", "ice", "fog", "rain"], 1, None),
        ("Which planet is red?", ["Mars", "Venus", "Earth"], 0, "Mars looks red."),
        ("What carries blood?", ["veins", "bones"], 0, None),
        ("What is H2O?", ["salt", "water", "air", "sugar"], 1, "H2O is water."),
        ("What gives milk?", ["cow", "rock", "tree"], 0, None),
        ("Which is a gas?", ["oxygen", "stone"], 0, None),
        ("What do bees make?", ["silk", "honey", "wax paper"], 1, None),
        ("Sun is a?", ["planet", "star", "moon"], 1, "The Sun is a star."),
        ("What melts ice?", ["heat", "cold"], 0, None),
        ("Fish live in?", ["trees", "water", "sand"], 1, None),
    ]
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=3)


def test_fast_scan_equals_naive_scan_and_restores(tiny):
    model, tok = tiny
    state = {k: v.clone() for k, v in model.state_dict().items()}
    base_fast, fast = scoring.scan(model, tok, ITEMS, batch_size=5, chunk=7, fast=True)
    base_slow, slow = scoring.scan(model, tok, ITEMS, batch_size=5, chunk=7, fast=False)
    assert base_fast == base_slow
    assert set(fast) == set(surgery.sublayers(model))
    for name in fast:
        assert fast[name]["acc"] == slow[name]["acc"]
        assert fast[name]["ll"] == pytest.approx(slow[name]["ll"], abs=1e-5)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert surgery.sublayers(model) == [f"{b}.{k}" for b in range(4) for k in ("attn", "mlp")]


def test_scan_matches_evaluate_with_the_sublayer_dropped(tiny):
    model, tok = tiny
    _, metrics = scoring.scan(model, tok, ITEMS, names=["2.mlp", "0.attn"], batch_size=4)
    for name in ("2.mlp", "0.attn"):
        with surgery.trial_drop(model, [name]):
            ref = evaluate(model, tok, ITEMS, batch_size=3)
        assert metrics[name]["acc"] == ref["acc"]
        assert metrics[name]["ll"] == pytest.approx(ref["ll"], abs=1e-4)


def test_fast_scan_after_real_drops(tiny):
    model, tok = tiny_model("qwen3", seed=1)
    surgery.drop(model, ["0.attn", "1.attn", "1.mlp", "3.attn"])  # no attention above block 2
    _, fast = scoring.scan(model, tok, ITEMS, batch_size=4, fast=True)
    _, slow = scoring.scan(model, tok, ITEMS, batch_size=4, fast=False)
    for name in fast:
        assert fast[name]["ll"] == pytest.approx(slow[name]["ll"], abs=1e-5)


def test_noop_sublayer_scores_the_base_accuracy():
    model, tok = tiny_model("llama", seed=5)
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.zero_()  # 1.attn adds nothing
    scores = scoring.calibration_scores(model, tok, ITEMS, eps=0.01, batch_size=6)
    base = scores.info["base"]["acc"]
    assert scores.details["1.attn"]["acc"] == base
    assert scores["1.attn"] == pytest.approx(1 / (base + 0.01))
    assert scores.details["1.attn"]["ll"] == pytest.approx(scores.info["base"]["ll"], abs=1e-5)


def test_loglik_scores_are_negated_drop_one_loglik(tiny):
    model, tok = tiny
    ll = scoring.score(model, tok, ITEMS, method="loglik", batch_size=6)
    _, metrics = scoring.scan(model, tok, ITEMS, batch_size=6)
    assert ll.method == "loglik"
    for name, m in metrics.items():
        assert ll[name] == pytest.approx(-m["ll"])
    # least important first: the candidate whose removal keeps the likelihood highest
    assert metrics[scoring.rank(ll)[0]]["ll"] == max(m["ll"] for m in metrics.values())


def test_scores_are_deterministic(tiny):
    model, tok = tiny
    for method in scoring.METHODS:
        a = scoring.score(model, tok, ITEMS, method=method, batch_size=4)
        b = scoring.score(model, tok, ITEMS, method=method, batch_size=4)
        assert scoring.rank(a) == scoring.rank(b), method
        assert sorted(a) == sorted(surgery.sublayers(model)), method  # each name exactly once


def test_every_method_after_drops_returns_each_remaining_name_once():
    model, tok = tiny_model("gemma2", seed=2)
    surgery.drop(model, ["1.attn", "2.mlp", "2.attn"])
    remaining = surgery.sublayers(model)
    for method in scoring.METHODS:
        order = scoring.rank(scoring.score(model, tok, ITEMS[:6], method=method, batch_size=3))
        assert sorted(order) == sorted(remaining) and len(order) == len(remaining), method


def test_activation_norm_by_hand():
    model, tok = tiny_model("llama", seed=4)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.zero_()  # so block 0 adds only attention
    items = ITEMS[:5]
    scores = scoring.activation_scores(model, tok, items, use_context=True)
    texts = scoring._sequences(tok, items, True)
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="right")
    with torch.no_grad():
        hs = model(**enc, output_hidden_states=True).hidden_states
    c = hs[1] - hs[0]  # what 0.attn added, per token
    mask = enc["attention_mask"].bool()
    by_hand = math.sqrt(float(c.pow(2).sum(-1)[mask].sum()) / int(mask.sum()))
    assert scores.details["0.attn"]["norm"] == pytest.approx(by_hand, rel=1e-4)
    assert scores.details["0.mlp"]["norm"] == 0.0
    total = sum(d["norm"] for d in scores.details.values())
    assert scores["0.attn"] == pytest.approx(1 - by_hand / total, rel=1e-5)
    # the highest norm is the least important: dropped first
    top = max(scores.details, key=lambda n: scores.details[n]["norm"])
    assert scoring.rank(scores)[0] == top


def test_padding_is_excluded_from_activation_norms():
    model, tok = tiny_model("llama", seed=4)
    a = scoring.activation_scores(model, tok, ITEMS[:1] * 2)
    b = scoring.activation_scores(model, tok, ITEMS[:1] + ITEMS[1:2] + ITEMS[:1])
    solo = scoring.activation_scores(model, tok, ITEMS[:1])
    for n in a.details:
        assert a.details[n]["norm"] == pytest.approx(solo.details[n]["norm"], rel=1e-5)
    assert b.details  # mixed lengths run with padding


def test_both_breaks_calibration_ties_by_activation():
    calib = scoring.Scores(
        {"0.attn": 1.0, "0.mlp": 1.0, "1.attn": 2.0},
        "calibration",
        {"0.attn": {"acc": 0.5}, "0.mlp": {"acc": 0.5}, "1.attn": {"acc": 0.25}},
        n=4,
    )
    act = scoring.Scores({"0.attn": 0.9, "0.mlp": 0.1, "1.attn": 0.0}, "activation")
    assert scoring.both_order(calib, act) == ["0.mlp", "0.attn", "1.attn"]


def test_rank_ties_follow_position():
    assert scoring.rank({"3.mlp": 1.0, "0.attn": 1.0, "1.mlp": 0.5}) == ["1.mlp", "0.attn", "3.mlp"]


def test_rule_baselines(tiny):
    model, _ = tiny
    names = surgery.sublayers(model)
    assert scoring.rank(scoring.rule_scores(model, "top"))[:2] == names[::-1][:2]
    assert scoring.rank(scoring.rule_scores(model, "bottom"))[:2] == names[:2]
    r1 = scoring.rank(scoring.rule_scores(model, "random", seed=1))
    assert r1 == scoring.rank(scoring.rule_scores(model, "random", seed=1))
    assert r1 != scoring.rank(scoring.rule_scores(model, "random", seed=2))


def test_bad_method_and_eps(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="unknown score method"):
        scoring.score(model, tok, ITEMS, method="magic")
    with pytest.raises(ValueError, match="eps"):
        scoring.calibration_scores(model, tok, ITEMS, eps=0)
    with pytest.raises(ValueError, match="no items"):
        scoring.calibration_scores(model, tok, [])


def test_angular_block_distances(tiny):
    model, tok = tiny
    d1 = scoring.angular_block_distances(model, tok, ITEMS[:4], n=1)
    d2 = scoring.angular_block_distances(model, tok, ITEMS[:4], n=2)
    assert sorted(d1) == [0, 1, 2, 3] and sorted(d2) == [0, 1, 2]
    assert all(0.0 <= v <= 1.0 for v in d1.values())
