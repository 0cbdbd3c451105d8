"""bf16 does not change the science: the agreement checks of :mod:`trimlab.precision`.

The tiny-model tests check the measurements themselves and run everywhere (a tiny model
is cheap even where bf16 is slow). The SmolLM2 checks run on open-book SciQ on hardware
with fast bf16 (AMX-BF16 / AVX512-BF16 CPUs, CUDA), and skip elsewhere: on a CPU
without those units a bf16 matmul is tens of times slower than fp32.
"""

from __future__ import annotations

import pytest
import torch

from trimlab import TrimConfig, precision, surgery
from trimlab.data import load_domain
from trimlab.runtime import fast_bf16
from trimlab.tiny import tiny_model

NO_FAST_BF16 = "this CPU has no AMX-BF16/AVX512-BF16 units: bf16 would be far slower than fp32"


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_tiny_agreement_measures_and_leaves_the_model_alone(toy_domain):
    model, tok = tiny_model("llama")
    items = load_domain(toy_domain, "test", n=12, seed=0)
    before = _state(model)
    agree = precision.choice_agreement(model, tok, items, use_context=False, batch_size=4)
    assert agree["n"] == 12 and 0.0 <= agree["agree"] <= 1.0
    assert set(agree["acc"]) == {"fp32", "bf16"}
    same = precision.choice_agreement(model, tok, items, dtypes=("fp32", "fp32"), use_context=False)
    assert same["agree"] == 1.0  # one dtype against itself: identical predictions
    rho = precision.score_agreement(model, tok, items[:6], use_context=False, batch_size=4)
    assert set(rho["scores"]["fp32"]) == set(surgery.sublayers(model))
    assert -1.0 <= rho["rho"] <= 1.0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert next(model.parameters()).dtype == torch.float32


def test_agreement_refuses_unknown_dtypes(toy_domain):
    model, tok = tiny_model("llama")
    items = load_domain(toy_domain, "test", n=2, seed=0)
    with pytest.raises(ValueError, match="compare two of"):
        precision.choice_agreement(model, tok, items, dtypes=("fp32", "fp16"))


def test_tiny_drop_sequence_has_one_entry_per_dtype(toy_domain):
    cfg = TrimConfig.from_profile(
        "ci", steps_per_round=1, calib_items=6, batch_size=4, use_context=False, max_length=64
    )
    seqs = precision.drop_sequence(lambda: tiny_model("llama"), toy_domain, 2, cfg)
    assert set(seqs) == {"fp32", "bf16"} and all(len(s) == 2 for s in seqs.values())


# --------------------------------------------------------------------- SmolLM2, open-book


@pytest.fixture(scope="module")
def smollm2():
    from trimlab.models import load_model

    return load_model("smollm2-135m")


@pytest.mark.slow
@pytest.mark.skipif(not fast_bf16(), reason=NO_FAST_BF16)
def test_bf16_predicts_the_same_choice_as_fp32(smollm2):
    model, tok = smollm2
    items = load_domain("sciq", "test", n=200, seed=0)
    res = precision.choice_agreement(model, tok, items, use_context=True, max_length=512)
    assert res["agree"] >= 0.98, res


@pytest.mark.slow
@pytest.mark.skipif(not fast_bf16(), reason=NO_FAST_BF16)
def test_bf16_loglik_drop_one_ranks_like_fp32(smollm2):
    model, tok = smollm2
    items = load_domain("sciq", "calib", n=128, seed=0)
    res = precision.score_agreement(
        model, tok, items, method="loglik", use_context=True, max_length=512, batch_size=8
    )
    assert len(res["scores"]["bf16"]) == 60
    assert res["rho"] >= 0.95, res["rho"]


@pytest.mark.slow
@pytest.mark.skipif(not fast_bf16(), reason=NO_FAST_BF16)
def test_a_short_bf16_trim_run_drops_what_fp32_drops():
    from trimlab.models import load_model

    cfg = TrimConfig.from_profile(
        "cpu", score="loglik", drop_rate=2, steps_per_round=2, calib_items=16, batch_size=8
    ).replace(use_context=False, max_length=256)
    seqs = precision.drop_sequence(lambda: load_model("smollm2-135m"), "science", 4, cfg)
    assert seqs["bf16"][:4] == seqs["fp32"][:4], seqs
