"""TrimLLM end to end on a tiny model: targets, history, resume, bad settings."""

from __future__ import annotations

import pytest
import torch

from trimlab import History, data, parse_target, surgery, trim
from trimlab.tiny import tiny_model

FAST = dict(
    steps_per_round=2,
    calib_items=8,
    batch_size=4,
    lr=1e-3,
    use_context=False,
    max_length=96,
    profile="ci",
    log=None,
)


def params_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_parse_target_forms():
    assert parse_target(3).count == 3 and parse_target("12").count == 12
    t = parse_target("50%")
    assert t.kept == 0.5 and t.of == "decoder" and str(t) == "50%"
    assert parse_target("60%mem").of == "bytes"
    for bad in ("0", "150%", "abc", "0%", -2):
        with pytest.raises(ValueError):
            parse_target(bad)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(r=0.0), "r must be"),
        (dict(r=1.5), "r must be"),
        (dict(drop_rate=0), "drop_rate"),
        (dict(score="magic"), "unknown score"),
        (dict(target=99), "only 8 sub-layers"),
        (dict(target="100%"), "between"),
        (dict(target="10%mem"), "impossible"),
        (dict(domain="nope"), "unknown dataset or domain"),
    ],
)
def test_bad_settings_fail_before_any_work(toy_domain, kw, match):
    model, tok = tiny_model("llama")
    before = params_of(model)
    args = dict(domain=toy_domain, target=2, **FAST) | kw
    with pytest.raises(ValueError, match=match):
        trim(model, tok, **args)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert surgery.dropped(model) == []


def test_trim_runs_rounds_to_the_target(toy_domain, tmp_path):
    model, tok = tiny_model("llama")
    seen = []
    res = trim(
        model,
        tok,
        toy_domain,
        3,
        drop_rate=2,
        out_dir=tmp_path / "run",
        callback=lambda rnd, hist: seen.append(rnd.round),
        **FAST,
    )
    h = res.history
    assert [len(r.dropped) for r in h.rounds] == [2, 1]  # never overshoots an int target
    assert seen == [1, 2] and h.stopped.startswith("target 3")
    assert surgery.dropped(res.model) == h.drop_sequence
    assert h.rounds[-1].sublayers_left == 5 and h.rounds[0].params > h.rounds[1].params
    assert len(h.trainable) == 2  # ceil(0.25 * 8)
    assert all(r.train_loss is not None and r.steps == 2 for r in h.rounds)
    saved = History.from_json(tmp_path / "run" / "history.json")
    assert saved.drop_sequence == h.drop_sequence
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


def test_percentage_target_and_rule_scores(toy_domain):
    model, tok = tiny_model("llama")
    res = trim(
        model,
        tok,
        toy_domain,
        "75%",
        score="top",
        steps_per_round=0,
        **{k: v for k, v in FAST.items() if k != "steps_per_round"},
    )
    assert res.history.drop_sequence == ["3.mlp", "3.attn"]
    assert res.history.rounds[-1].decoder_kept <= 0.75


def test_same_seed_same_drops(toy_domain):
    runs = []
    for _ in range(2):
        model, tok = tiny_model("llama")
        runs.append(
            trim(model, tok, toy_domain, 2, score="calibration", **FAST).history.drop_sequence
        )
    assert runs[0] == runs[1]


def test_killed_run_resumes_to_the_same_result(toy_domain, tmp_path):
    model, tok = tiny_model("llama")
    full = trim(model, tok, toy_domain, 3, out_dir=tmp_path / "a", **FAST)

    class Killed(Exception):
        pass

    def kill_after_first(rnd, hist):
        if rnd.round == 1:
            raise Killed

    model, tok = tiny_model("llama")
    with pytest.raises(Killed):
        trim(model, tok, toy_domain, 3, out_dir=tmp_path / "b", callback=kill_after_first, **FAST)
    fresh, tok = tiny_model("llama")  # a new process would start from the base model again
    resumed = trim(fresh, tok, toy_domain, 3, out_dir=tmp_path / "b", **FAST)
    assert resumed.history.drop_sequence == full.history.drop_sequence
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.model is fresh  # trimmed in place, as an uninterrupted run does
    # pointing at a finished run returns it without more work, also in place
    other, tok = tiny_model("llama")
    again = trim(other, tok, toy_domain, 3, out_dir=tmp_path / "b", **FAST)
    assert again.history.drop_sequence == full.history.drop_sequence
    assert again.model is other and surgery.dropped(other) == surgery.dropped(full.model)
    with pytest.raises(ValueError, match="never dropped"):
        odd, tok = tiny_model("llama")
        surgery.drop(
            odd, [n for n in surgery.sublayers(odd) if n not in full.history.drop_sequence][:1]
        )
        trim(odd, tok, toy_domain, 3, out_dir=tmp_path / "b", **FAST)
    wide, tok = tiny_model("llama", hidden_size=48)  # another model: refused, untouched
    names = surgery.sublayers(wide)
    with pytest.raises(ValueError, match="another model"):
        trim(wide, tok, toy_domain, 3, out_dir=tmp_path / "b", **FAST)
    assert surgery.sublayers(wide) == names
    with pytest.raises(ValueError, match="other settings"):
        trim(
            *tiny_model("llama"),
            toy_domain,
            3,
            out_dir=tmp_path / "b",
            seed=5,
            **{k: v for k, v in FAST.items()},
        )


def test_history_plots_and_live_plot_outside_jupyter(toy_domain, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from trimlab import plots

    model, tok = tiny_model("llama")
    live = plots.LivePlot()
    res = trim(model, tok, toy_domain, 2, drop_rate=1, out_dir=tmp_path, callback=live, **FAST)
    assert live.fig is None  # no IPython here: the callback does nothing
    pts = plots.history_points(tmp_path / "history.json")
    assert pts["removed"] == [0, 1] and len(pts["calib_acc"]) == 2
    assert pts["decoder_kept"] == [r.decoder_kept for r in res.history.rounds]
    fig = plots.plot_history(res.history)
    assert len(fig.axes) == 2  # accuracy and, on a twin axis, the training loss
    n = res.history.rounds[0].calib["n"]
    assert pts["calib_n"] == [n, n]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"95% interval ({n} items)" in legend  # the calibration sample's noise, drawn
    matplotlib.pyplot.close(fig)


def test_trim_variants_start_from_the_same_weights(toy_domain):
    from trimlab import results

    model, tok = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test = data.load_domain(toy_domain, "test", n=6)
    variants = {"top": {"score": "top"}, "bottom": {"score": "bottom"}}
    fast = {k: v for k, v in FAST.items() if k not in ("profile", "log")}
    rows = results.trim_variants(model, tok, toy_domain, 2, variants, test, "ci", **fast)
    assert rows["bottom"]["dropped"] == ["0.attn", "0.mlp"]
    assert rows["top"]["dropped"] == ["3.mlp", "3.attn"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert "| rule-based: top | " in results.markdown(rows, reference="top")


def test_a_run_killed_in_round_one_keeps_its_initial_scan(toy_domain, tmp_path, monkeypatch):
    """The initial scan (minutes to half an hour on a real model) is checkpointed before
    round 1, so a run killed in round 1 resumes without it, to the same result."""
    from trimlab import pipeline

    model, tok = tiny_model("llama")
    full = trim(model, tok, toy_domain, 3, out_dir=tmp_path / "a", **FAST)

    class Killed(Exception):
        pass

    real, real_score = pipeline._score_and_drop, pipeline._score
    monkeypatch.setattr(pipeline, "_score_and_drop", lambda *a, **k: (_ for _ in ()).throw(Killed))
    model, tok = tiny_model("llama")
    with pytest.raises(Killed):
        trim(model, tok, toy_domain, 3, out_dir=tmp_path / "b", **FAST)
    saved = History.from_json(tmp_path / "b" / "history.json")
    assert saved.trainable == full.history.trainable and saved.rounds == []
    assert saved.initial_scores == full.history.initial_scores
    monkeypatch.setattr(pipeline, "_score_and_drop", real)
    calls = []
    monkeypatch.setattr(
        pipeline, "_score", lambda *a, **k: calls.append(a[4]) or real_score(*a, **k)
    )
    fresh, tok = tiny_model("llama")
    resumed = trim(fresh, tok, toy_domain, 3, out_dir=tmp_path / "b", **FAST)
    assert len(calls) == len(full.history.rounds)  # the rounds' scans only, no initial one
    assert resumed.history.drop_sequence == full.history.drop_sequence
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
