"""Importance scoring: fast scan = naive scan, exact restore, Eq. 3 and Eq. 4 by hand."""

from __future__ import annotations

import math

import pytest
import torch

from trimlab import scoring, surgery
from trimlab.evaluate import evaluate
from trimlab.prompts import build_prompt, continuation
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

LONG = [{**it, "context": f"{it['context'] or 'A fact.'} " * 12} for it in ITEMS[:6]]
"""Items whose prompts run well past a 48-token budget (but fit the tiny model's 512)."""


def _text(item: dict) -> str:
    return build_prompt(item, True) + continuation(item["choices"][int(item["answer"])])


def _model_inputs(model, run) -> list[list[list[int]]]:
    """The real (unpadded) token ids of every row of every top-level forward in run()."""
    calls = []

    def hook(_m, _args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"].bool()
        calls.append([ids[b][mask[b, -ids.shape[1] :]].tolist() for b in range(len(ids))])

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return calls


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
    texts = [_text(it) for it in items]
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
    items = ITEMS[:6]  # 75, 40, 43, 59, 43 and 50 tokens: two padded batches of three
    masks = []
    handle = model.register_forward_pre_hook(
        lambda _m, _a, kw: masks.append(kw["attention_mask"]), with_kwargs=True
    )
    padded = scoring.residual_statistics(model, tok, items, batch_size=3)
    handle.remove()
    assert len(masks) == 2 and all(m.shape[0] == 3 and not bool(m.all()) for m in masks)
    solo = scoring.residual_statistics(model, tok, items, batch_size=1)  # never padded
    for name, s in solo.items():
        assert (
            padded[name]["tokens"]
            == s["tokens"]
            == sum(len(tok(_text(i))["input_ids"]) for i in items)
        )
        for key in ("sq_norm", "cos", "last_cos"):
            assert padded[name][key] == pytest.approx(s[key], rel=1e-5), (name, key)
    a = scoring.activation_scores(model, tok, items, batch_size=3)
    b = scoring.activation_scores(model, tok, items, batch_size=1)
    assert a == pytest.approx(b, rel=1e-5)


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


def test_angular_block_distances_by_hand():
    model, tok = tiny_model("llama", seed=3)
    with torch.no_grad():  # a final norm that is not a mere rescaling
        model.model.norm.weight.copy_(torch.linspace(0.2, 3.0, model.config.hidden_size))
    items = ITEMS[:3]
    got = scoring.angular_block_distances(model, tok, items, n=1, batch_size=3)
    want, normed, out = [0.0] * 4, 0.0, []
    h = model.model.layers[-1].register_forward_hook(lambda _m, _a, o: out.append(o))
    for it in items:
        with torch.no_grad():
            hs = model(**tok(_text(it), return_tensors="pt"), output_hidden_states=True)
        states = [x[0, -1] for x in (*hs.hidden_states[:-1], out[-1])]  # h_0 .. h_4
        for i in range(4):
            cos = torch.nn.functional.cosine_similarity(states[i], states[i + 1], dim=0)
            want[i] += math.acos(min(1.0, float(cos))) / math.pi / len(items)
        cos = torch.nn.functional.cosine_similarity(states[3], hs.hidden_states[-1][0, -1], dim=0)
        normed += math.acos(min(1.0, float(cos))) / math.pi / len(items)
    h.remove()
    assert [got[i] for i in range(4)] == pytest.approx(want, rel=1e-4)
    assert got[3] != pytest.approx(normed, rel=1e-3)  # the stream, not the final norm's output


def test_angular_block_distances_batches_truncates_and_restores_the_mode():
    model, tok = tiny_model("llama", seed=3)
    one = scoring.angular_block_distances(model, tok, ITEMS, n=2, batch_size=1)
    many = scoring.angular_block_distances(model, tok, ITEMS, n=2, batch_size=5)
    assert many == pytest.approx(one, rel=1e-5)
    model.train()
    seen = []
    handle = model.register_forward_pre_hook(
        lambda m, _a, kw: seen.append((m.training, kw["input_ids"].shape)), with_kwargs=True
    )
    scoring.angular_block_distances(model, tok, LONG, batch_size=4, max_length=48)
    handle.remove()
    assert model.training  # back in train mode
    assert [s[1][0] for s in seen] == [4, 2] and all(not t and s[1] <= 48 for t, s in seen)


def test_residual_passes_send_inputs_to_the_model_device():
    model, tok = tiny_model("llama", seed=3)
    model.to("meta")  # a device other than the CPU the tokenizer returns tensors on

    class Stop(Exception):
        pass

    devices = []

    def hook(_m, _args, kwargs):
        devices.append(kwargs["input_ids"].device)
        raise Stop

    model.register_forward_pre_hook(hook, with_kwargs=True)
    for fn in (scoring.angular_block_distances, scoring.residual_statistics):
        with pytest.raises(Stop):
            fn(model, tok, ITEMS[:2], batch_size=2)
    assert devices == [next(model.parameters()).device] * 2 == [torch.device("meta")] * 2


def test_score_passes_batch_size_and_max_length_to_every_pass(tiny, monkeypatch):
    model, tok = tiny
    calls = []

    def spy(fn, what):
        def wrapper(*args, **kwargs):
            calls.append((what, kwargs.get("batch_size"), kwargs.get("max_length")))
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(scoring, "scan", spy(scoring.scan, "scan"))
    monkeypatch.setattr(scoring, "residual_statistics", spy(scoring.residual_statistics, "act"))
    passes = {"calibration": ["scan"], "loglik": ["scan"], "both": ["scan", "act"]}
    for method in ("calibration", "loglik", "activation", "both", "block_influence", "angular"):
        calls.clear()
        scoring.score(model, tok, ITEMS[:4], method=method, batch_size=3, max_length=40)
        assert [c[0] for c in calls] == passes.get(method, ["act"]), method
        assert all(c[1:] == (3, 40) for c in calls), (method, calls)


def test_score_truncates_long_items_like_evaluate(tiny):
    model, tok = tiny
    m = 48
    calib = scoring.score(model, tok, LONG, method="calibration", batch_size=4, max_length=m)
    ref = evaluate(model, tok, LONG, batch_size=4, max_length=m)
    assert calib.info["base"]["acc"] == ref["acc"]
    assert calib.info["base"]["ll"] == pytest.approx(ref["ll"], abs=1e-5)
    assert ref["ll"] != pytest.approx(evaluate(model, tok, LONG, batch_size=4)["ll"], abs=1e-3)
    # The activation pass reads evaluate's (left-cut) prompt and then the correct answer,
    # itself cut from the left to m tokens.
    run = lambda: scoring.score(model, tok, LONG, "activation", batch_size=4, max_length=m)  # noqa: E731
    seen = [row for call in _model_inputs(model, run) for row in call]
    assert len(seen) == len(LONG) and all(len(row) <= m for row in seen)
    for it in LONG:
        # evaluate's prompt pass runs the decoder on the prompt but its last token, which
        # opens every choice's row of the choice pass.
        run = lambda it=it: evaluate(model, tok, [it], max_length=m)  # noqa: E731
        [head], choices = _model_inputs(model.get_decoder(), run)[:2]
        prompt = head + choices[0][:1]
        answer = tok(continuation(it["choices"][it["answer"]]), add_special_tokens=False)
        assert (prompt + answer["input_ids"])[-m:] in seen
