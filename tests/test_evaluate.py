"""trimlab.evaluate: lm-eval agreement, batch independence, prompt sharing, all families."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from trimlab import runtime
from trimlab.evaluate import (
    choice_logliks,
    encode_items,
    evaluate,
    make_batches,
    predictions,
    summarize,
)
from trimlab.lmeval import lmeval_evaluate, lmeval_loglikelihoods, make_hflm
from trimlab.prompts import build_prompt, continuation
from trimlab.tiny import TINY_ARCHS, tiny_model

WORDS = (
    "the cell energy water light plant sun atom bond acid base heat wave mass force "
    "gene protein layer rock moon"
).split()


def make_items(n: int = 20, seed: int = 0) -> list[dict]:
    """Hand-made items, 2-5 choices, every other one with a context paragraph."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    items = []
    for i in range(n):
        k = rng.randint(2, 5)
        items.append(
            {
                "question": words(2, 8) + "?",
                "choices": [words(1, 3) for _ in range(k)],
                "answer": rng.randrange(k),
                "context": words(5, 25) + "." if i % 2 else "",
                "subject": "test",
            }
        )
    return items


ITEMS = make_items()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP
    threads that wait on each other make them up to ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama")


def reference_logliks(model, tokenizer, items, use_context=True, max_length=None):
    """Plain, unshared computation: one full forward of prompt + continuation per choice."""
    out = []
    with torch.no_grad():
        for item in items:
            ctx = build_prompt(item, use_context)
            ctx_enc = tokenizer(ctx)["input_ids"]
            row = []
            for choice in item["choices"]:
                whole = tokenizer(ctx + continuation(choice))["input_ids"]
                cont = whole[len(ctx_enc) :]
                seq = ctx_enc + cont
                if max_length is not None:
                    seq = seq[-(max_length + 1) :]
                inp = torch.tensor([seq[:-1]])
                logp = F.log_softmax(model(inp).logits[0].float(), dim=-1)
                n = len(cont)
                pos = torch.arange(inp.shape[1] - n, inp.shape[1])
                row.append(float(logp[pos, torch.tensor(cont)].sum()))
            out.append(row)
    return out


def max_gap(a, b) -> float:
    assert [len(r) for r in a] == [len(r) for r in b]
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("use_context", [True, False])
def test_agrees_with_lmeval_hflm(tiny, use_context):
    model, tok = tiny
    ours = choice_logliks(model, tok, ITEMS, batch_size=4, use_context=use_context)
    theirs = lmeval_loglikelihoods(model, tok, ITEMS, use_context=use_context, batch_size=5)
    assert max_gap(ours, theirs) < 1e-4
    same = sum(a == b for a, b in zip(predictions(ours), predictions(theirs)))
    assert same / len(ITEMS) >= 0.99


def test_batch_size_does_not_matter(tiny):
    model, tok = tiny
    one = choice_logliks(model, tok, ITEMS, batch_size=1)
    seven = choice_logliks(model, tok, ITEMS, batch_size=7)
    assert max_gap(one, seven) < 1e-4
    assert predictions(one) == predictions(seven)
    assert evaluate(model, tok, ITEMS, batch_size=1) == pytest.approx(
        evaluate(model, tok, ITEMS, batch_size=7), abs=1e-5
    )


def test_prompt_sharing_equals_full_sequences(tiny):
    model, tok = tiny
    ours = choice_logliks(model, tok, ITEMS, batch_size=6)
    assert max_gap(ours, reference_logliks(model, tok, ITEMS)) < 1e-4


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_every_tiny_family(arch):
    model, tok = tiny_model(arch)
    items = ITEMS[:8]
    ours = choice_logliks(model, tok, items, batch_size=3)
    assert all(torch.isfinite(torch.tensor(r)).all() for r in ours)
    assert max_gap(ours, reference_logliks(model, tok, items)) < 1e-4


def test_left_truncation_matches_lmeval(tiny):
    model, tok = tiny
    # Equal-length choices: then sharing the prompt truncates exactly as HFLM does.
    items = [dict(it, choices=[c[:1] + "x" for c in it["choices"]]) for it in ITEMS[:6]]
    ours = choice_logliks(model, tok, items, batch_size=4, max_length=24)
    lm = make_hflm(model, tok, batch_size=4, max_length=24)
    theirs = lmeval_loglikelihoods(model, tok, items, lm=lm)
    assert max_gap(ours, theirs) < 1e-4
    for enc in encode_items(tok, items, max_length=24):
        assert len(enc.prompt) + max(len(c) for c in enc.conts) - 1 <= 24


def test_simple_evaluate_bridge_gives_the_same_metrics(tiny):
    model, tok = tiny
    ours = evaluate(model, tok, ITEMS, batch_size=4)
    theirs = lmeval_evaluate(model, tok, ITEMS, batch_size=4)
    assert theirs["n"] == ours["n"] == len(ITEMS)
    assert theirs["acc"] == pytest.approx(ours["acc"])
    assert theirs["acc_norm"] == pytest.approx(ours["acc_norm"])


# --------------------------------------------------------------------------- metrics


def test_metric_definitions_on_a_hand_case():
    items = [
        {"question": "q1", "choices": ["a", "bbbb"], "answer": 1},
        {"question": "q2", "choices": ["cc", "d", "e"], "answer": 0},
    ]
    logliks = [[-2.0, -4.0], [-1.0, -3.0, -0.5]]
    # item 1: argmax -> 0 (wrong); per char -2/1 vs -4/4 -> 1 (right); ll = -4
    # item 2: argmax -> 2 (wrong); per char -1/2, -3, -0.5 -> 0 (right); ll = -1
    assert summarize(items, logliks) == {"acc": 0.0, "acc_norm": 1.0, "ll": -2.5, "n": 2}
    assert predictions(logliks) == [0, 2]


def test_evaluate_is_summarize_of_choice_logliks(tiny):
    model, tok = tiny
    result = evaluate(model, tok, ITEMS, batch_size=5)
    assert set(result) == {"acc", "acc_norm", "ll", "n"}
    assert result == pytest.approx(summarize(ITEMS, choice_logliks(model, tok, ITEMS, 5)))


def test_training_flag_restored_and_no_grad(tiny):
    model, tok = tiny
    model.train()
    try:
        evaluate(model, tok, ITEMS[:3], batch_size=2, progress=True)
        assert model.training
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
    evaluate(model, tok, ITEMS[:3], batch_size=2)
    assert not model.training


def test_default_batch_size_comes_from_profile(tiny, monkeypatch):
    monkeypatch.setenv("TRIMLAB_PROFILE", "ci")
    model, tok = tiny
    assert evaluate(model, tok, ITEMS[:4])["n"] == 4


def test_make_batches_caps_size_and_padding():
    lengths = [100, 10, 95, 12, 90, 11, 300, 9]
    batches = make_batches(lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)
    for b in batches:
        padded = len(b) * max(lengths[i] for i in b)
        assert padded <= 1.15 * sum(lengths[i] for i in b) or len(b) == 1


# --------------------------------------------------------------------------- bad input


class NoModel:
    """Fails the test if evaluate touches the model before validating the items."""

    def __getattr__(self, name):
        raise AssertionError(f"model used before validation ({name})")

    def __call__(self, *a, **k):
        raise AssertionError("model called before validation")


@pytest.mark.parametrize(
    "items, match",
    [
        ([], "no items"),
        ([{"question": "q", "choices": ["a", "b"], "answer": 2}], "item 0"),
        (
            [
                {"question": "q", "choices": ["a", "b"], "answer": 0},
                {"question": "q", "choices": ["a", "b"], "answer": -1},
            ],
            "item 1.*out of range",
        ),
        ([{"question": "q", "choices": [], "answer": 0}], "item 0.*choices"),
    ],
)
def test_bad_items_raise_before_model_work(tiny, items, match):
    _, tok = tiny
    with pytest.raises(ValueError, match=match):
        evaluate(NoModel(), tok, items)
    with pytest.raises(ValueError, match=match):
        choice_logliks(NoModel(), tok, items)


# --------------------------------------------------------------------------- modules


def test_split_modules_are_reexported():
    import importlib

    import trimlab
    from trimlab import encoding, loglik

    module = importlib.import_module("trimlab.evaluate")
    assert trimlab.evaluate is module.evaluate is evaluate
    assert module.encode_items is encoding.encode_items
    assert module.resolve_max_length is encoding.resolve_max_length
    assert module.EncodedItem is encoding.EncodedItem
    assert module.make_batches is loglik.make_batches is make_batches
    assert all(hasattr(module, name) for name in module.__all__)


def test_runtime_device_pad_id_and_process_role(tiny):
    import copy

    model, tok = tiny
    assert runtime.model_device(model) == next(model.parameters()).device
    assert runtime.model_device(torch.nn.ReLU()) == torch.device("cpu")
    assert runtime.pad_id(tok) == tok.pad_token_id
    odd = copy.deepcopy(tok)
    odd.pad_token = None
    assert runtime.pad_id(odd) == tok.eos_token_id
    odd.eos_token = None
    odd.bos_token = None
    assert runtime.pad_id(odd) == 0
    assert runtime.is_main_process()  # one process
    runtime.wait_for_everyone()  # returns at once
