"""The budget levers of a trim run (trimlab.schedule): candidate pre-selection, cost-aware
ranking, the final heal phase and length-grouped batches."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_trim import FAST
from trimlab import TrimConfig, accounting, schedule, scoring, surgery, trim
from trimlab.data import load_domain
from trimlab.finetune import finetune
from trimlab.heal import AnswerCE
from trimlab.tiny import tiny_model


def test_candidates_are_the_lowest_latest_scores_in_forward_order():
    rounds = [{"0.attn": 1.0, "0.mlp": 5.0, "1.attn": 2.0, "1.mlp": 0.5}, {"1.attn": 9.0}]
    remaining = ["0.attn", "0.mlp", "1.attn", "1.mlp", "2.attn"]
    # ranks merge rounds on different scales: round 1 ranks 1.mlp 0, 0.attn 1, 1.attn 2,
    # 0.mlp 3; round 2 re-ranks 1.attn alone (0); 2.attn was never measured
    assert schedule.ranks(rounds[0]) == {"1.mlp": 0, "0.attn": 1, "1.attn": 2, "0.mlp": 3}
    assert schedule.candidates(rounds, remaining, 3) == ["1.attn", "1.mlp", "2.attn"]
    assert schedule.candidates(rounds, remaining, 4) == ["0.attn", "1.attn", "1.mlp", "2.attn"]
    assert schedule.candidates(rounds, remaining, None) is None
    assert schedule.candidates([], remaining, 2) is None  # round 1 scans all
    assert schedule.candidates(rounds, remaining, 5) is None


def test_cost_aware_divides_the_loss_by_the_parameters():
    got = schedule.cost_aware(-1.0, {"0.attn": -1.3, "0.mlp": -1.6}, {"0.attn": 1, "0.mlp": 3})
    assert got == pytest.approx({"0.attn": 0.3, "0.mlp": 0.2})  # the MLP costs less per param
    with pytest.raises(ValueError, match="no parameter count"):
        schedule.cost_aware(0.0, {"9.mlp": 0.0}, {})


def test_preselection_regret_from_a_full_scan_history():
    rounds = [
        {"round": 1, "scores": {"a.attn": 1.0, "a.mlp": 2.0, "b.attn": 3.0}, "dropped": ["a.attn"]},
        {"round": 2, "scores": {"a.mlp": 5.0, "b.attn": 1.0}, "dropped": ["b.attn"]},
    ]
    names = {"a.attn": "0.attn", "a.mlp": "0.mlp", "b.attn": "1.attn"}
    rounds = [
        {
            **r,
            "scores": {names[k]: v for k, v in r["scores"].items()},
            "dropped": [names[d] for d in r["dropped"]],
        }
        for r in rounds
    ]
    assert schedule.preselection_regret({}, rounds, 1)[0]["regret"] == 0.0  # nothing before
    got = schedule.preselection_regret({"1.attn": 0.0, "0.attn": 1.0, "0.mlp": 2.0}, rounds, 1)
    # round 1: the one candidate is 1.attn (initial rank 0), the full scan chose 0.attn
    assert got[0] == {"round": 1, "hit": False, "regret": 2.0}
    # round 2: 1.attn (rank 2 in round 1) trails 0.mlp (rank 1): the candidate is 0.mlp
    assert got[1] == {"round": 2, "hit": False, "regret": 4.0}


def test_score_restricted_to_names_equals_the_full_scan(toy_domain):
    model, tok = tiny_model("llama")
    items = load_domain(toy_domain, "calib", n=6, seed=1)
    kw = dict(use_context=False, batch_size=4, max_length=96)
    full = scoring.score(model, tok, items, method="loglik", **kw)
    part = scoring.score(model, tok, items, method="loglik", names=["2.mlp", "0.attn"], **kw)
    assert set(part) == {"2.mlp", "0.attn"}
    assert all(part[n] == full[n] for n in part)
    act = scoring.score(model, tok, items, method="activation", names=["1.attn"], **kw)
    assert list(act) == ["1.attn"]
    with pytest.raises(ValueError, match="does not exist"):
        scoring.score(model, tok, items, method="loglik", names=["9.mlp"], **kw)


def test_scan_candidates_rescans_only_that_many(toy_domain):
    model, tok = tiny_model("llama")
    names = surgery.sublayers(model)
    h = trim(model, tok, toy_domain, 3, score="loglik", scan_candidates=2, **FAST).history
    for k, rnd in enumerate(h.rounds):
        gone = [n for r in h.rounds[:k] for n in r.dropped]
        remaining = [n for n in names if n not in gone]
        measured = [h.initial_scores] + [r.scores for r in h.rounds[:k]]
        want = schedule.candidates(measured, remaining, 2)
        assert sorted(rnd.scores) == sorted(want) and rnd.dropped[0] in want


def test_cost_aware_ranks_by_loss_per_parameter(toy_domain):
    model, tok = tiny_model("llama")
    fresh, _ = tiny_model("llama")
    cfg = dict(FAST, steps_per_round=0)
    h = trim(model, tok, toy_domain, 1, score="loglik", cost_aware=True, **cfg).history
    # round 1 without healing scores the initial model on calib sample seed + 1000 + 1
    items = load_domain(toy_domain, "calib", n=8, seed=1001)
    s = scoring.score(
        fresh, tok, items, method="loglik", use_context=False, batch_size=4, max_length=96
    )
    lls = {n: d["ll"] for n, d in s.details.items()}
    want = schedule.cost_aware(s.info["base"]["ll"], lls, accounting.sublayer_params(fresh))
    assert h.rounds[0].scores == pytest.approx(want)
    assert h.rounds[0].dropped == [min(want, key=want.get)]


def test_final_heal_runs_once_and_resumes(toy_domain, tmp_path):
    model, tok = tiny_model("llama")
    res = trim(model, tok, toy_domain, 2, final_steps=3, out_dir=tmp_path / "a", **FAST)
    h = res.history
    assert len(h.rounds) == 2 and h.final_heal["steps"] == 3
    assert h.steps_done == 2 * 2 + 3

    class Killed(Exception):
        pass

    class DiesInFinalPhase(AnswerCE):
        def __call__(self, model, tokenizer, items, config, where, progress=False):
            if where.round == 3:  # rounds 1 and 2 drop; call 3 is the final phase
                raise Killed
            return super().__call__(model, tokenizer, items, config, where, progress)

    model, tok = tiny_model("llama")
    with pytest.raises(Killed):
        trim(
            model,
            tok,
            toy_domain,
            2,
            final_steps=3,
            out_dir=tmp_path / "b",
            heal=DiesInFinalPhase(),
            **FAST,
        )
    fresh, tok = tiny_model("llama")
    again = trim(fresh, tok, toy_domain, 2, final_steps=3, out_dir=tmp_path / "b", **FAST)
    assert again.history.final_heal["steps"] == 3
    a, b = res.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    done = json.loads((tmp_path / "b" / "final" / "history.json").read_text())
    assert done["final_heal"]["steps"] == 3  # and a finished run is not healed twice
    third, tok = tiny_model("llama")
    trim(
        third,
        tok,
        toy_domain,
        2,
        final_steps=3,
        out_dir=tmp_path / "b",
        heal=DiesInFinalPhase(),
        **FAST,
    )


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(scan_candidates=0), "scan_candidates"),
        (dict(scan_candidates=1, drop_rate=2), "scan_candidates"),
        (dict(cost_aware=True), "cost_aware needs"),
        (dict(final_steps=-1), "final_steps"),
    ],
)
def test_bad_levers_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        TrimConfig.from_profile("ci", **kw)


def test_group_by_length_batches_similar_lengths_deterministically(toy_domain):
    items = load_domain(toy_domain, "train")
    runs = []
    for _ in range(2):
        model, tok = tiny_model("llama")
        fit = finetune(
            model,
            tok,
            items,
            steps=3,
            batch_size=4,
            use_context=False,
            max_length=96,
            group_by_length=True,
        )
        runs.append((fit["train_loss"], {k: v.clone() for k, v in model.state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_a_proxy_initial_score_does_not_preselect_the_first_candidates(toy_domain):
    """Initial scores by Eq. 4 (activation) do not pick round 1's candidates for a drop-one
    score: round 1 scans every sub-layer, later rounds re-scan from the rounds' own scans."""
    assert schedule.preselects("both", "loglik") and schedule.preselects("activation", "activation")
    assert not schedule.preselects("activation", "loglik")
    model, tok = tiny_model("llama")
    names = surgery.sublayers(model)
    cfg = dict(FAST, select_score="activation")
    h = trim(model, tok, toy_domain, 3, score="loglik", scan_candidates=2, **cfg).history
    assert sorted(h.rounds[0].scores) == sorted(names)
    gone = h.rounds[0].dropped
    want = schedule.candidates([h.rounds[0].scores], [n for n in names if n not in gone], 2)
    assert sorted(h.rounds[1].scores) == sorted(want)
