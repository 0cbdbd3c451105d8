"""Surgery: exact skips, KV cache, accounting, save/load and export, on every family."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from trimlab import accounting, checkpoint, surgery
from trimlab.tiny import TINY_ARCHS, tiny_model

PROMPTS = ["Question: what is the boiling point of water?\nAnswer:", "Hi"]


def batch(tok, prompts=PROMPTS):
    return tok(prompts, return_tensors="pt", padding=True, padding_side="left")


def logits(model, enc):
    with torch.no_grad():
        return model(**enc).logits


def assert_cache_agrees(model, enc, new_tokens, **extra):
    """Greedy generation with and without the KV cache: same tokens, logits within 1e-4."""
    kw = dict(max_new_tokens=new_tokens, do_sample=False, output_scores=True)
    kw |= dict(return_dict_in_generate=True, **extra)
    with torch.no_grad():
        cached = model.generate(**enc, use_cache=True, **kw)
        plain = model.generate(**enc, use_cache=False, **kw)
    assert torch.equal(cached.sequences, plain.sequences)
    for a, b in zip(cached.scores, plain.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def zero_out(model, name):
    """The oracle: zero the output projection (weight and bias) of sub-layer ``name``."""
    block, sub = surgery.locate(model, name)
    out = getattr(block, sub.out)
    proj = {
        "self_attn": ("o_proj", "out_proj", "dense"),
        "attn": ("c_proj",),
        "attention": ("dense",),
        "mlp": ("down_proj", "c_proj", "dense_4h_to_h", "fc2"),
    }.get(sub.out, ())
    target = out
    for cand in proj:
        if hasattr(out, cand):
            target = getattr(out, cand)
            break
    with torch.no_grad():
        for p in target.parameters(recurse=False):
            p.zero_()


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_drop_nothing_is_identity(arch):
    model, tok = tiny_model(arch)
    enc = batch(tok)
    before = logits(model, enc)
    surgery.drop(model, [])
    assert torch.equal(logits(model, enc), before)


@pytest.mark.parametrize("arch", TINY_ARCHS)
@pytest.mark.parametrize("name", ["0.attn", "0.mlp", "2.attn", "3.attn", "3.mlp"])
def test_drop_equals_zeroed_output_projection(arch, name):
    model, tok = tiny_model(arch)
    oracle, _ = tiny_model(arch)
    enc = batch(tok)
    zero_out(oracle, name)
    surgery.drop(model, [name])
    assert name not in surgery.sublayers(model)
    torch.testing.assert_close(logits(model, enc), logits(oracle, enc), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_params_fall_by_exactly_the_removed_sublayers(arch):
    model, _ = tiny_model(arch)
    before = accounting.param_count(model)
    per = accounting.sublayer_params(model)
    names = ["1.mlp", "0.attn", "2.attn", "2.mlp"]
    surgery.drop(model, names)
    assert accounting.param_count(model) == before - sum(per[n] for n in names)
    # the parameters are gone from the module tree, not zeroed
    stand_ins = surgery.modules_of(model, "0.attn")
    assert isinstance(stand_ins[0], surgery.DroppedAttention)
    assert all(sum(p.numel() for p in m.parameters()) == 0 for m in stand_ins)
    assert model.config.num_hidden_layers == 3
    assert surgery.sublayers(model) == ["0.mlp", "1.attn", "3.attn", "3.mlp"]
    assert surgery.block_ids(model) == [0, 1, 3]


@pytest.mark.parametrize("arch", TINY_ARCHS)
@pytest.mark.parametrize("names", [["0.attn"], ["0.attn", "1.attn", "1.mlp", "3.mlp"]])
def test_cached_generation_matches_uncached(arch, names):
    model, tok = tiny_model(arch)
    surgery.drop(model, names)
    for prompts in (PROMPTS[:1], PROMPTS):  # batch 1 and a left-padded batch
        assert_cache_agrees(model, batch(tok, prompts), 12, pad_token_id=tok.pad_token_id)


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_cache_holds_only_remaining_attention(arch):
    model, tok = tiny_model(arch)
    surgery.drop(model, ["0.attn", "2.attn", "2.mlp"])  # block 2 leaves; block 0 keeps its MLP
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(**batch(tok, PROMPTS[:1]), cache=cache, use_cache=True)
    filled = [layer.keys is not None and layer.keys.numel() > 0 for layer in cache.layers]
    assert filled == [False, True, True]  # blocks 0 (no attention), 1, 3
    assert cache.get_seq_length() == batch(tok, PROMPTS[:1])["input_ids"].shape[1]


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_trial_drop_restores_bit_exactly(arch):
    model, tok = tiny_model(arch)
    enc = batch(tok)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = logits(model, enc)
    with surgery.trial_drop(model, ["0.attn", "1.mlp"]):
        changed = logits(model, enc)
        assert surgery.sublayers(model)[:2] == ["0.mlp", "1.attn"]
    assert not torch.equal(changed, before)
    assert torch.equal(logits(model, enc), before)
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert not hasattr(model.config, "kv_sharing_modes")


@pytest.mark.parametrize(
    "bad, match",
    [
        (["3.ffn"], "malformed"),
        (["attn"], "malformed"),
        (["9.attn"], "does not exist"),
        (["1.mlp", "1.mlp"], "twice"),
        ([7], "malformed"),
    ],
)
def test_bad_names_raise_and_leave_model_unchanged(bad, match):
    model, tok = tiny_model("llama")
    enc = batch(tok)
    before, subs = logits(model, enc), surgery.sublayers(model)
    with pytest.raises(ValueError, match=match):
        surgery.drop(model, ["0.mlp", *bad])
    assert surgery.sublayers(model) == subs
    assert torch.equal(logits(model, enc), before)


def test_already_dropped_name_raises():
    model, _ = tiny_model("llama")
    surgery.drop(model, ["2.mlp"])
    with pytest.raises(ValueError, match="already dropped"):
        surgery.drop(model, ["2.mlp"])
    with pytest.raises(ValueError, match="already dropped"):
        with surgery.trial_drop(model, ["2.mlp"]):
            pass


def test_unsupported_model_names_the_supported_ones():
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(ValueError, match="llama"):
        surgery.sublayers(model)


def test_post_norm_opt_is_refused():
    model, _ = tiny_model("opt", do_layer_norm_before=False)
    with pytest.raises(ValueError, match="post-norm"):
        surgery.drop(model, ["0.mlp"])


def test_accounting_flops_and_compression():
    model, _ = tiny_model("llama")
    full, _ = tiny_model("llama")
    flops = accounting.sublayer_flops(model, context=10)
    cfg = model.config
    attn_w = 2 * cfg.hidden_size * (cfg.num_attention_heads + cfg.num_key_value_heads) * 16
    assert flops["0.attn"] == 2 * attn_w + 4 * 4 * 16 * 10
    assert flops["0.mlp"] == 2 * 3 * cfg.hidden_size * cfg.intermediate_size
    assert accounting.lm_head_flops(model) == 2 * cfg.vocab_size * cfg.hidden_size
    assert accounting.lm_head_params(model) == 0  # tied
    surgery.drop(model, ["0.attn", "0.mlp", "1.attn", "1.mlp"])
    comp = accounting.compression(model)
    assert comp["decoder_kept"] == pytest.approx(0.5)
    assert comp["bytes_kept"] > comp["decoder_kept"]  # embeddings stay
    ideal = accounting.ideal_speedup(full, model)
    assert 1.0 < ideal["flops"] < 2.0 and 1.0 < ideal["bytes"] < 2.0


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma3", "opt", "gpt2", "gpt_neox"])
def test_save_load_roundtrip(arch, tmp_path):
    model, tok = tiny_model(arch)
    enc = batch(tok)
    surgery.drop(model, ["1.attn", "1.mlp"])
    checkpoint.save_trimmed(model, tok, tmp_path / "blocks", domain="science")
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / "blocks")  # a standard checkpoint
    assert torch.equal(logits(stock, enc), logits(model, enc))
    surgery.drop(model, ["0.attn", "3.mlp"])
    checkpoint.save_trimmed(model, tok, tmp_path / "sub", domain="science")
    loaded, tok2 = checkpoint.load_trimmed(tmp_path / "sub")
    assert torch.equal(logits(loaded, enc), logits(model, enc))
    assert surgery.dropped(loaded) == ["1.attn", "1.mlp", "0.attn", "3.mlp"]
    assert surgery.sublayers(loaded) == surgery.sublayers(model)
    meta = json.loads((tmp_path / "sub" / "trimlab.json").read_text())
    assert meta["dropped"] == ["1.attn", "1.mlp", "0.attn", "3.mlp"] and meta["domain"] == "science"
    card = (tmp_path / "sub" / "README.md").read_text()
    assert "0.attn" in card and "science" in card
    # a stock loader must not silently re-initialise the missing sub-layers
    with pytest.raises((OSError, ValueError, KeyError)):
        AutoModelForCausalLM.from_pretrained(tmp_path / "sub")


def test_save_prints_no_progress_bar(tmp_path, capfd):
    """The trim loop checkpoints mid-run; a "Writing model shards" bar would change the
    committed notebook outputs (nbval). Bars stay enabled outside the save."""
    from transformers.utils import logging as hf_logging

    model, tok = tiny_model("llama")
    capfd.readouterr()
    checkpoint.save_trimmed(model, tok, tmp_path / "whole")  # save_pretrained's path
    err = capfd.readouterr().err
    assert "Writing" not in err and "%|" not in err, err
    assert hf_logging.is_progress_bar_enabled()


def test_save_is_atomic(tmp_path, monkeypatch):
    model, tok = tiny_model("llama")
    target = tmp_path / "ckpt"
    checkpoint.save_trimmed(model, tok, target)
    before = sorted(p.name for p in target.iterdir())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(tok), "save_pretrained", boom)
    surgery.drop(model, ["0.mlp"])
    with pytest.raises(RuntimeError):
        checkpoint.save_trimmed(model, tok, target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert json.loads((target / "trimlab.json").read_text())["dropped"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp dirs left


def test_decilm_export_reference_forward(tmp_path):
    model, tok = tiny_model("llama", intermediate_size=256)  # DeciLM widths are multiples of 256
    surgery.drop(model, ["0.attn", "1.attn", "1.mlp", "2.mlp"])
    checkpoint.save_trimmed(model, tok, tmp_path / "deci")
    cfg = json.loads((tmp_path / "deci" / "config.json").read_text())
    assert cfg["architectures"] == ["DeciLMForCausalLM"]
    flags = [(b["attention"]["no_op"], b["ffn"]["no_op"]) for b in cfg["block_configs"]]
    assert flags == [(True, False), (False, True), (False, False)]
    ids = tok(["Question: why is the sky blue?\nAnswer:"], return_tensors="pt").input_ids
    ref = checkpoint.decilm_reference_forward(tmp_path / "deci", ids)
    torch.testing.assert_close(ref, logits(model, {"input_ids": ids}), atol=1e-4, rtol=1e-4)


def test_decilm_export_refuses_other_families():
    model, _ = tiny_model("gpt2")
    with pytest.raises(ValueError, match="DeciLM"):
        checkpoint.decilm_config(model)


@pytest.mark.slow
def test_smollm2_drop_generate_save_reload(tmp_path):
    from trimlab.models import load_model

    model, tok = load_model("smollm2-135m", device="cpu")
    mlps = [f"{b}.mlp" for b in (3, 5, 7, 9, 11, 13, 15, 17, 19, 21)]
    attns = ["0.attn", "5.attn", "10.attn", "20.attn", "29.attn"]
    before = accounting.param_count(model)
    per = accounting.sublayer_params(model)
    surgery.drop(model, mlps + attns)
    assert accounting.param_count(model) == before - sum(per[n] for n in mlps + attns)
    assert model.config.num_hidden_layers == 29  # block 5 lost both sub-layers
    enc = tok(["Question: What do plants need for photosynthesis?\nAnswer:"], return_tensors="pt")
    assert_cache_agrees(model, enc, 20)
    checkpoint.save_trimmed(model, tok, tmp_path / "smol", domain="science")
    loaded, _ = checkpoint.load_trimmed(tmp_path / "smol")
    assert torch.equal(logits(loaded, enc), logits(model, enc))
    ref = checkpoint.decilm_reference_forward(tmp_path / "smol", enc["input_ids"])
    torch.testing.assert_close(ref, logits(model, enc), atol=1e-3, rtol=1e-4)
