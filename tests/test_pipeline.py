"""The reshaped loop: one run configuration, a swappable heal step, and the fixes of the
code review (integer targets, the LR schedule, the accuracy floor, the rule-based
baselines' trainable set, the resume window)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from trimlab import TrimConfig, checkpoint, config, scoring, surgery, trim
from trimlab.heal import AnswerCE, NoHeal, get_heal
from trimlab.history import History
from trimlab.runtime import fast_bf16
from trimlab.target import parse_target, planned_rounds
from trimlab.tiny import tiny_model

FAST = dict(
    steps_per_round=2,
    calib_items=8,
    batch_size=4,
    lr=1e-3,
    use_context=False,
    max_length=96,
)


def cfg(**kw) -> TrimConfig:
    return TrimConfig.from_profile("ci", **FAST).replace(**kw)


# ----------------------------------------------------------------------------- the shape


def test_config_from_profile_and_overrides_and_checks():
    c = TrimConfig.from_profile("ci")
    assert (c.profile, c.model, c.steps_per_round) == ("ci", "tiny-llama", 2)
    assert c.replace(r=0.5, seed=None).r == 0.5  # None means "keep"
    with pytest.raises(ValueError, match="unknown run settings"):
        c.replace(learning_rate=1e-3)
    with pytest.raises(ValueError, match="r must be"):
        c.replace(r=0)
    with pytest.raises(ValueError, match="unknown heal"):
        c.replace(heal="magic")
    assert TrimConfig.from_settings({**c.to_dict(), "domain": "x", "target": "3"}) == c
    assert set(config.SCORE_METHODS) == set(scoring.METHODS)
    lab = TrimConfig.from_profile("lab")  # the notebooks' profile: cheap scans, one thread
    assert (lab.model, lab.select_score, lab.scan_candidates) == ("smollm2-135m", "loglik", 6)
    assert c.select_score == "both" and c.scan_candidates is None


def test_a_no_op_heal_step_gives_a_run_that_only_scores_and_drops(toy_domain):
    model, tok = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = trim(model, tok, toy_domain, 3, cfg(drop_rate=1), heal=NoHeal(), log=None)
    assert [r.steps for r in res.history.rounds] == [0, 0, 0]
    assert all(r.train_loss is None for r in res.history.rounds)
    after = res.model.state_dict()  # the weights that remain were never trained
    assert all(torch.equal(before[k], v) for k, v in after.items())
    assert len(res.history.drop_sequence) == 3
    # the same through the configuration
    model, tok = tiny_model("llama")
    same = trim(model, tok, toy_domain, 3, cfg(drop_rate=1, heal="none"), log=None)
    assert same.history.drop_sequence == res.history.drop_sequence


def test_trim_accepts_keyword_overrides_as_before(toy_domain):
    model, tok = tiny_model("llama")
    res = trim(model, tok, toy_domain, 2, profile="ci", log=None, **FAST)
    stored = TrimConfig.from_settings(res.history.settings)
    assert stored == cfg() and res.history.settings["target"] == "2"


# ----------------------------------------------------------------------------- the fixes


def test_an_int_target_counts_all_removals_and_a_met_one_is_refused(toy_domain):
    model, tok = tiny_model("llama")
    surgery.drop(model, ["1.attn", "2.attn", "2.mlp"])
    with pytest.raises(ValueError, match="already met"):
        trim(model, tok, toy_domain, 3, cfg(), log=None)
    assert surgery.dropped(model) == ["1.attn", "2.attn", "2.mlp"]  # untouched
    res = trim(model, tok, toy_domain, 4, cfg(drop_rate=2), log=None)
    assert [len(r.dropped) for r in res.history.rounds] == [1]  # exactly one more
    assert len(surgery.dropped(model)) == 4


def test_the_lr_schedule_reaches_zero_when_the_target_is_met(toy_domain):
    model, tok = tiny_model("llama")
    assert planned_rounds(model, parse_target(3), 2) == 2
    res = trim(model, tok, toy_domain, 3, cfg(drop_rate=2), log=None)
    h = res.history
    assert h.planned_rounds == len(h.rounds) == 2
    # linear decay planned over exactly the 4 steps run: the last step has lr * 1/4, and
    # the schedule is at zero right after it (a plan over all 8 sub-layers gave 13/16)
    total = h.steps_done
    assert total == 4 and h.rounds[-1].lr == pytest.approx(1e-3 / total)
    assert h.rounds[0].lr == pytest.approx(1e-3 * (total - 1) / total)


def test_a_share_target_plans_its_rounds_and_replans_when_short(toy_domain):
    model, tok = tiny_model("llama")
    target = parse_target("60%")
    planned = planned_rounds(model, target, 1)
    res = trim(model, tok, toy_domain, "60%", cfg(drop_rate=1, score="top"), log=None)
    h = res.history
    assert planned >= 1 and h.planned_rounds >= len(h.rounds)
    assert h.rounds[-1].decoder_kept <= 0.6


def test_the_accuracy_floor_is_never_broken_and_is_recorded(toy_domain):
    model, tok = tiny_model("llama")
    res = trim(model, tok, toy_domain, 6, cfg(drop_rate=1, accuracy_floor=1.0), log=None)
    last = res.history.rounds[-1]
    # a tiny random model cannot keep 100% calibration accuracy: the first drop is refused
    assert last.refused and not last.dropped
    assert last.calib_after["acc"] < 1.0
    assert res.history.stopped.startswith("accuracy floor")
    assert surgery.dropped(res.model) == res.history.drop_sequence
    for rnd in res.history.rounds[:-1]:
        assert rnd.calib_after["acc"] >= 1.0


@pytest.mark.parametrize("rule", ["random", "top", "bottom"])
def test_rule_based_baselines_train_trimllms_trainable_set(toy_domain, rule):
    runs = {}
    for method in ("both", rule):
        model, tok = tiny_model("llama")
        runs[method] = trim(model, tok, toy_domain, 2, cfg(score=method), log=None).history
    assert runs[rule].trainable == runs["both"].trainable
    assert runs[rule].initial_scores == runs["both"].initial_scores


def test_a_kill_between_the_two_renames_resumes_not_restarts(toy_domain, tmp_path):
    model, tok = tiny_model("llama")
    full = trim(model, tok, toy_domain, 3, cfg(drop_rate=1), out_dir=tmp_path / "a", log=None)

    class Killed(Exception):
        pass

    def kill(rnd, hist):
        if rnd.round == 2:
            raise Killed

    model, tok = tiny_model("llama")
    run = tmp_path / "b"
    with pytest.raises(Killed):
        trim(model, tok, toy_domain, 3, cfg(drop_rate=1), out_dir=run, callback=kill, log=None)
    # the state a kill leaves between atomic_directory's two os.replace calls
    os.replace(run / "latest", run / f".latest.old-{os.getpid()}")
    fresh, tok = tiny_model("llama")
    resumed = trim(fresh, tok, toy_domain, 3, cfg(drop_rate=1), out_dir=run, log=None)
    assert resumed.history.drop_sequence == full.history.drop_sequence
    assert len(resumed.history.rounds) == 3
    # a run folder that lost its checkpoint altogether is an error, not a fresh start
    shutil.rmtree(run / "latest")
    shutil.rmtree(run / "final")
    with pytest.raises(ValueError, match="refusing to start over"):
        trim(*tiny_model("llama"), toy_domain, 3, cfg(drop_rate=1), out_dir=run, log=None)


def test_recover_directory_restores_the_previous_version(tmp_path):
    target = tmp_path / "latest"
    with checkpoint.atomic_directory(target) as tmp:
        (tmp / "x").write_text("1")
    assert not checkpoint.recover_directory(target)  # nothing to do
    os.replace(target, tmp_path / ".latest.old-7")
    assert checkpoint.recover_directory(target) and (target / "x").read_text() == "1"


def test_history_files_of_version_0_1_still_load(tmp_path):
    old = {
        "settings": {"domain": "science", "target": "50%", "r": 0.25, "profile": "cpu"},
        "trainable": ["0.attn"],
        "initial_scores": {"0.attn": 1.0},
        "initial": {},
        "rounds": [
            {
                "round": 1,
                "dropped": ["3.mlp"],
                "scores": {"3.mlp": 0.1},
                "calib": {"acc": 0.5, "acc_norm": 0.5, "ll": -1.0, "n": 8},
                "calib_after": None,
                "train_loss": 1.0,
                "steps": 10,
                "seconds": 1.0,
                "train_seconds": 0.5,
                "params": 1,
                "bytes": 4,
                "decoder_kept": 0.9,
                "bytes_kept": 0.9,
                "sublayers_left": 59,
            }
        ],
        "stopped": "target 50% met",
    }
    (tmp_path / "history.json").write_text(json.dumps(old))
    h = History.from_json(tmp_path / "history.json")
    assert h.drop_sequence == ["3.mlp"] and h.rounds[0].refused == [] and h.planned_rounds is None


def test_committed_histories_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "docs" / "results"
    files = sorted(root.glob("**/history.json"))
    assert files
    for f in files:
        assert History.from_json(f).rounds


def test_answer_ce_is_the_default_heal():
    assert isinstance(get_heal(cfg().heal), AnswerCE)


# ----------------------------------------------------------------------------- compute dtype


def test_auto_dtype_follows_the_cpus_bf16_units(monkeypatch):
    from trimlab import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert runtime.compute_dtype("auto") == "bf16"
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert runtime.compute_dtype("auto") == "bf16"
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "fma"})
    assert runtime.compute_dtype("auto") == "fp32"
    assert runtime.compute_dtype("bf16") == "bf16" and runtime.compute_dtype("fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown compute dtype"):
        runtime.compute_dtype("fp8")
    assert TrimConfig.from_profile("ci").dtype == "fp32"  # exact outputs for nbval
    assert TrimConfig.from_profile("cpu").dtype == "auto"
    with pytest.raises(ValueError, match="unknown dtype"):
        TrimConfig.from_profile("ci", dtype="fp8")


def test_autocast_is_bf16_only_when_asked():
    from trimlab.runtime import autocast

    a = torch.randn(4, 8)
    with autocast("fp32"):
        assert (a @ a.T).dtype == torch.float32
    with autocast("bf16"):
        assert (a @ a.T).dtype == torch.bfloat16


def test_the_run_records_its_compute_dtype(toy_domain):
    model, tok = tiny_model("llama")
    res = trim(model, tok, toy_domain, 1, cfg(), log=None)
    assert res.history.initial["compute_dtype"] == "fp32"
    assert res.history.settings["dtype"] == "fp32"


@pytest.mark.skipif(
    not fast_bf16(),
    reason="this CPU has no AMX-BF16/AVX512-BF16 units: bf16 would be far slower than fp32",
)
def test_a_bf16_run_trains_in_mixed_precision_over_fp32_weights(toy_domain):
    model, tok = tiny_model("llama")
    res = trim(model, tok, toy_domain, 2, cfg(dtype="bf16"), log=None)
    assert res.history.initial["compute_dtype"] == "bf16"
    assert all(r.train_loss is not None for r in res.history.rounds)
    assert next(res.model.parameters()).dtype == torch.float32  # fp32 master weights
