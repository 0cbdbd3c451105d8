"""Healing by distillation (``heal="kd"``): the loss against a hand computation, the
teacher cache against a live teacher, resume, and bad settings refused before any work."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from tests.test_finetune import ITEMS
from trimlab import TrimConfig, checkpoint, distill, surgery, trim
from trimlab import finetune as ft
from trimlab.heal import Distill, get_heal
from trimlab.tiny import VOCAB, tiny_model

FAST = dict(
    steps_per_round=2, calib_items=8, batch_size=4, lr=1e-3, use_context=False, max_length=96
)


def cfg(**kw) -> TrimConfig:
    return TrimConfig.from_profile("ci", **FAST).replace(**kw)


def batch_of(tok, items):
    examples = ft.build_examples(tok, items, use_context=True, max_length=512)
    return examples, ft.answer_collator(tok)(examples)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A saved tiny teacher (another seed than the students), as save_trimmed writes it."""
    model, tok = tiny_model("llama", seed=11)
    return str(checkpoint.save_trimmed(model, tok, tmp_path_factory.mktemp("t") / "teacher"))


# ----------------------------------------------------------------------------- the loss


def hand_loss(student, teacher, examples, t: float, w_ce: float, w_h: float) -> dict:
    """The KD loss written out in float64, one unpadded example at a time."""
    kls, ces, sq, n_hidden = [], [], 0.0, 0
    for ex in examples:
        ids = torch.tensor([ex["input_ids"]])
        with torch.no_grad():
            s_h = student.model(input_ids=ids).last_hidden_state[0].double()  # LM-head input
            t_h = teacher.model(input_ids=ids).last_hidden_state[0].double()
            s = student(input_ids=ids).logits[0].double()
            z = teacher(input_ids=ids).logits[0].double()
        for pos in range(ids.shape[1]):  # every position of prompt and answer
            p = torch.softmax(z[pos] / t, -1)
            q = torch.softmax(s[pos] / t, -1)
            kls.append(float(sum(p[i] * torch.log(p[i] / q[i]) for i in range(len(p)))))
        for pos, label in enumerate(ex["labels"][1:]):  # position pos predicts pos + 1
            if label != -100:
                ces.append(-float(torch.log_softmax(s[pos], -1)[label]))
        sq += float(((s_h - t_h) ** 2).sum())
        n_hidden += s_h.numel()
    kl = t * t * sum(kls) / len(kls)
    ce = sum(ces) / len(ces)
    hidden = sq / n_hidden
    return {"loss": kl + w_ce * ce + w_h * hidden, "kl": kl, "ce": ce, "hidden": hidden}


@pytest.mark.parametrize("source", ["live", "cache"])
def test_kd_loss_matches_a_hand_computation(source):
    student, tok = tiny_model("llama", seed=1)
    teacher, _ = tiny_model("llama", seed=2)
    examples, batch = batch_of(tok, ITEMS[:3])  # padded: lengths differ
    assert batch["attention_mask"].eq(0).any()
    t, w_ce, w_h = 2.0, 0.3, 0.5
    targets = (
        distill.LiveTeacher(teacher, hidden=True)
        if source == "live"
        else distill.TeacherCache(teacher, topk=VOCAB, hidden=True, value_dtype=torch.float32)
    )
    loss, parts = distill.KDLoss(targets, t, w_ce, w_h)(student, batch)
    want = hand_loss(student, teacher, examples, t, w_ce, w_h)
    assert float(loss.detach()) == pytest.approx(want["loss"], rel=1e-5)
    for name in ("kl", "ce", "hidden"):
        assert float(parts[name]) == pytest.approx(want[name], rel=1e-5)


def test_a_student_equal_to_its_teacher_has_zero_kl():
    student, tok = tiny_model("llama", seed=3)
    _, batch = batch_of(tok, ITEMS[:4])
    cache = distill.TeacherCache(copy.deepcopy(student), topk=VOCAB, value_dtype=torch.float32)
    _, parts = distill.KDLoss(cache, 1.0, 0.0)(student, batch)
    assert float(parts["kl"]) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- the cache


def test_the_cache_gives_the_live_teachers_loss_and_gradients():
    student, tok = tiny_model("llama", seed=4)
    teacher, _ = tiny_model("llama", seed=5)
    _, batch = batch_of(tok, ITEMS)

    def loss_and_grad(targets):
        student.zero_grad()
        loss, _ = distill.KDLoss(targets, 1.5, 0.1, 0.2)(student, batch)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in student.parameters()]

    live = loss_and_grad(distill.LiveTeacher(teacher, hidden=True))
    exact = distill.TeacherCache(teacher, topk=VOCAB, hidden=True, value_dtype=torch.float32)
    cached = loss_and_grad(exact)
    assert cached[0] == pytest.approx(live[0], rel=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(cached[1], live[1]))
    # the compact cache (float16 values) is close; a top-k one is a well-defined loss
    compact = distill.TeacherCache(teacher, topk=VOCAB, hidden=True)
    assert loss_and_grad(compact)[0] == pytest.approx(live[0], rel=1e-3)
    top8 = distill.TeacherCache(teacher, topk=8)
    loss8, parts8 = distill.KDLoss(top8, 1.0, 0.0)(student, batch)
    assert torch.isfinite(loss8) and float(parts8["kl"]) >= 0
    stats = top8.stats()
    n_pos = int(batch["attention_mask"].sum())
    assert stats["examples"] == len(ITEMS) and stats["positions"] == n_pos
    assert stats["bytes"] == n_pos * 8 * (2 + 2)  # float16 values, int16 ids (260 tokens)


def test_the_teacher_runs_once_per_example_across_rounds():
    student, tok = tiny_model("llama", seed=6)
    teacher, _ = tiny_model("llama", seed=7)
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    cache = distill.TeacherCache(teacher, topk=16)
    loss = distill.KDLoss(cache, 1.0, 0.1)
    out = [
        ft.finetune(student, tok, ITEMS, steps=4, batch_size=8, lr=1e-3, seed=s, step_loss=loss)
        for s in (0, 1)
    ]
    assert len(calls) == len(ITEMS) == cache.stats()["examples"]  # 8 epochs, one pass each
    assert set(out[0]["loss_parts"]) == {"kl", "ce"}
    assert out[1]["loss_parts"]["kl"] < out[0]["loss_parts"]["kl"]  # the student learns
    assert out[0]["train_loss"] == pytest.approx(
        out[0]["loss_parts"]["kl"] + 0.1 * out[0]["loss_parts"]["ce"], rel=1e-5
    )
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


# ----------------------------------------------------------------------------- the run


@pytest.mark.parametrize(
    "settings",
    [dict(), dict(kd_cache=False, kd_hidden_weight=0.5, kd_temperature=2.0)],
    ids=["cache", "live+hidden"],
)
def test_a_killed_kd_run_resumes_to_identical_weights(toy_domain, tmp_path, teacher_dir, settings):
    c = cfg(heal="kd", teacher=teacher_dir, kd_topk=32, drop_rate=1, **settings)
    model, tok = tiny_model("llama")
    full = trim(model, tok, toy_domain, 3, c, out_dir=tmp_path / "a", log=None)

    class Killed(Exception):
        pass

    def kill(rnd, hist):
        if rnd.round == 2:
            raise Killed

    model, tok = tiny_model("llama")
    with pytest.raises(Killed):
        trim(model, tok, toy_domain, 3, c, out_dir=tmp_path / "b", callback=kill, log=None)
    fresh, tok = tiny_model("llama")
    resumed = trim(fresh, tok, toy_domain, 3, c, out_dir=tmp_path / "b", log=None)
    assert resumed.history.drop_sequence == full.history.drop_sequence
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the history records the settings and the loss parts of every round
    assert resumed.history.settings["teacher"] == teacher_dir
    for rnd in full.history.rounds:
        assert rnd.steps == 2 and rnd.heal["kd"]["kl"] >= 0 and "ce" in rnd.heal["kd"]
        assert ("teacher_cache" in rnd.heal) == c.kd_cache
        assert ("hidden" in rnd.heal["kd"]) == (c.kd_hidden_weight > 0)
    assert [r.heal["kd"] for r in resumed.history.rounds] == [
        r.heal["kd"] for r in full.history.rounds
    ]


def test_kd_is_a_registered_heal_step_and_an_explicit_teacher_works(toy_domain):
    assert isinstance(get_heal("kd"), Distill)
    teacher = tiny_model("llama", seed=9)
    model, tok = tiny_model("llama")
    res = trim(model, tok, toy_domain, 1, cfg(), heal=Distill(teacher), log=None)
    assert res.history.rounds[0].heal["kd"]["kl"] > 0


# ----------------------------------------------------------------------------- bad settings


def other_vocab_teacher(path) -> str:
    model, tok = tiny_model("llama", seed=2, vocab_size=VOCAB + 4)
    return str(checkpoint.save_trimmed(model, tok, path))


def other_tokenizer_teacher(path) -> str:
    model, tok = tiny_model("llama", seed=2)
    tok = copy.deepcopy(tok)
    tok.add_tokens(["<|extra|>"])
    return str(checkpoint.save_trimmed(model, tok, path))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "needs a teacher"),
        (lambda p: str(p / "nowhere"), "not a directory"),
        (lambda p: str(p), "no saved model"),
        (lambda p: other_vocab_teacher(p / "t"), "vocabulary has 264 tokens"),
        (lambda p: other_tokenizer_teacher(p / "t"), "tokenizer differs"),
    ],
    ids=["no-teacher", "missing-dir", "empty-dir", "other-vocab", "other-tokenizer"],
)
def test_bad_teachers_are_refused_before_any_work(toy_domain, tmp_path, make, match):
    teacher = make(tmp_path)
    model, tok = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        trim(model, tok, toy_domain, 2, cfg(heal="kd", teacher=teacher), out_dir=out, log=None)
    assert not out.exists() and surgery.dropped(model) == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # not even frozen


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(heal="distil"), "unknown heal"),
        (dict(kd_temperature=0), "kd_temperature must be > 0"),
        (dict(kd_temperature=-1.0), "kd_temperature must be > 0"),
        (dict(kd_ce_weight=-0.1), "kd_ce_weight must be a number >= 0"),
        (dict(kd_hidden_weight=-1), "kd_hidden_weight must be a number >= 0"),
        (dict(kd_topk=0), "kd_topk must be an integer >= 1"),
    ],
)
def test_bad_kd_numbers_are_refused_before_any_work(toy_domain, tmp_path, teacher_dir, bad, match):
    model, tok = tiny_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        TrimConfig.from_profile("ci", **{"heal": "kd", "teacher": teacher_dir, **bad})
    good = cfg(heal="kd", teacher=teacher_dir)
    if "heal" not in bad:  # trim's own heal= takes a Heal object, not a name
        with pytest.raises(ValueError, match=match):
            trim(model, tok, toy_domain, 2, good, out_dir=tmp_path / "run", log=None, **bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not os.listdir(tmp_path)


def test_kd_flags_reach_the_configuration():
    import argparse

    from trimlab.config import add_config_args, config_from_args

    parser = argparse.ArgumentParser()
    add_config_args(parser)
    argv = ["--profile", "ci", "--heal", "kd", "--teacher", "runs/ft", "--kd-temperature", "2"]
    argv += ["--kd-ce-weight", "0.5", "--kd-hidden-weight", "0.1", "--kd-topk", "8"]
    c = config_from_args(parser.parse_args([*argv, "--kd-cache", "no"]))
    assert (c.heal, c.teacher, c.kd_temperature, c.kd_ce_weight) == ("kd", "runs/ft", 2.0, 0.5)
    assert (c.kd_hidden_weight, c.kd_topk, c.kd_cache) == (0.1, 8, False)
    assert TrimConfig.from_settings(c.to_dict()) == c
