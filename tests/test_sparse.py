"""Sparse update (Sec. 3.4): unit selection, freezing, and freezing across drops."""

from __future__ import annotations

import pytest

from trimlab import sparse, surgery
from trimlab.tiny import tiny_model


def hand_scores() -> dict[str, float]:
    """8 sub-layers of a 4-block model; most important: 3.mlp, 0.attn, 2.mlp, 1.attn."""
    return {
        "0.attn": 7.0,
        "0.mlp": 1.0,
        "1.attn": 4.0,
        "1.mlp": 2.0,
        "2.attn": 0.5,
        "2.mlp": 5.0,
        "3.attn": 3.0,
        "3.mlp": 9.0,
    }


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def module_param_names(model, modules) -> set[str]:
    ids = {id(p) for m in modules for p in m.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_units_sublayer_and_block():
    model, _ = tiny_model("llama")
    assert sparse.units(model) == [f"{b}.{k}" for b in range(4) for k in ("attn", "mlp")]
    assert sparse.units(model, "block") == ["0", "1", "2", "3"]
    surgery.drop(model, ["1.attn", "1.mlp", "2.mlp"])
    assert sparse.units(model) == ["0.attn", "0.mlp", "2.attn", "3.attn", "3.mlp"]
    assert sparse.units(model, "block") == ["0", "2", "3"]
    with pytest.raises(ValueError, match="granularity"):
        sparse.units(model, "layer")


def test_select_picks_ceil_r_u_most_important():
    scores = hand_scores()
    assert sparse.select_trainable(scores, 0.25) == ["0.attn", "3.mlp"]
    assert sparse.select_trainable(scores, 0.3) == ["0.attn", "2.mlp", "3.mlp"]  # ceil(2.4)
    assert sparse.select_trainable(scores, 0.5) == ["0.attn", "1.attn", "2.mlp", "3.mlp"]
    assert sparse.select_trainable(scores, 1.0) == sorted(scores, key=sparse._unit_key)
    assert len(sparse.select_trainable(scores, 0.01)) == 1
    # ceil is robust to float rounding: 0.1 * 30 = 3.0000000000000004 -> 3 units
    assert sparse.n_trainable(0.1, 30) == 3
    assert sparse.n_trainable(0.25, 60) == 15  # SmolLM2-135M at the paper's r


def test_select_ties_follow_scoring_rank():
    scores = {"0.attn": 1.0, "0.mlp": 1.0, "1.attn": 1.0, "1.mlp": 1.0}
    # rank() puts the earlier sub-layer first among equals, so the later ones are chosen
    assert sparse.select_trainable(scores, 0.5) == ["1.attn", "1.mlp"]


def test_block_granularity():
    scores = hand_scores()
    # rank positions: 2.attn 0, 0.mlp 1, 1.mlp 2, 3.attn 3, 1.attn 4, 2.mlp 5, 0.attn 6, 3.mlp 7
    assert sparse.block_importance(scores) == {"0": 3.5, "1": 3.0, "2": 2.5, "3": 5.0}
    assert sparse.select_trainable(scores, 0.25, "block") == ["3"]
    assert sparse.select_trainable(scores, 0.5, "block") == ["0", "3"]
    assert sparse.select_trainable(scores, 0.75, "block") == ["0", "1", "3"]


@pytest.mark.parametrize("r", [0, -0.25, 1.5, float("nan"), "0.5", True, None])
def test_r_validation(r):
    with pytest.raises(ValueError, match=r"r="):
        sparse.select_trainable(hand_scores(), r)


def test_select_rejects_empty_scores_and_bad_granularity():
    with pytest.raises(ValueError, match="no scores"):
        sparse.select_trainable({}, 0.25)
    with pytest.raises(ValueError, match="granularity"):
        sparse.select_trainable(hand_scores(), 0.25, "head")


def test_freeze_sublayers_embeddings_frozen_by_default_tied():
    model, _ = tiny_model("llama")
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    info = sparse.freeze(model, ["0.attn", "2.mlp"])
    expected = module_param_names(
        model, surgery.modules_of(model, "0.attn") + surgery.modules_of(model, "2.mlp")
    )
    assert trainable_names(model) == expected
    assert "model.layers.0.input_layernorm.weight" in expected  # the norm goes with it
    assert "model.layers.0.post_attention_layernorm.weight" not in expected
    assert not model.get_input_embeddings().weight.requires_grad
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert info == {
        "trainable_params": trainable,
        "total_params": total,
        "units": 2,
        "names": ["0.attn", "2.mlp"],
    }

    info_e = sparse.freeze(model, ["0.attn", "2.mlp"], train_embeddings=True)
    emb = model.get_input_embeddings().weight
    assert emb.requires_grad and model.get_output_embeddings().weight.requires_grad
    assert model.model.norm.weight.requires_grad  # everything outside the blocks
    outside = sum(p.numel() for p in sparse.outside_blocks(model))
    assert outside == emb.numel() + model.model.norm.weight.numel()  # tied weight once
    assert info_e["trainable_params"] == trainable + outside
    assert info_e["total_params"] == total


def test_freeze_untied_embeddings():
    model, _ = tiny_model("llama", tie_word_embeddings=False)
    assert model.get_input_embeddings().weight is not model.get_output_embeddings().weight
    sparse.freeze(model, ["1.mlp"])
    assert not model.get_output_embeddings().weight.requires_grad
    info = sparse.freeze(model, ["1.mlp"], train_embeddings=True)
    assert model.get_input_embeddings().weight.requires_grad
    assert model.get_output_embeddings().weight.requires_grad
    head = model.get_output_embeddings().weight.numel()
    mlp = sum(p.numel() for m in surgery.modules_of(model, "1.mlp") for p in m.parameters())
    assert info["trainable_params"] == mlp + 2 * head + model.model.norm.weight.numel()


def test_freeze_blocks():
    model, _ = tiny_model("llama")
    info = sparse.freeze(model, ["2"], granularity="block")
    assert trainable_names(model) == {
        n for n, _ in model.named_parameters() if n.startswith("model.layers.2.")
    }
    assert info["units"] == 1
    with pytest.raises(ValueError, match="malformed block"):
        sparse.freeze(model, ["2.attn"], granularity="block")


def test_dropping_a_trainable_unit_unfreezes_nothing():
    model, _ = tiny_model("llama")
    trainable = ["1.mlp", "2.attn", "3.mlp"]
    before = sparse.freeze(model, trainable)
    frozen_before = {n for n, p in model.named_parameters() if not p.requires_grad}
    surgery.drop(model, ["1.mlp", "0.mlp"])  # one trainable, one frozen
    assert sparse.trainable_units(model, trainable) == ["2.attn", "3.mlp"]
    after = sparse.counts(model)
    gone = sum(
        p.numel()
        for n, p in tiny_model("llama")[0].named_parameters()
        if n.startswith(("model.layers.1.mlp.", "model.layers.1.post_attention_layernorm"))
    )
    assert after["trainable_params"] == before["trainable_params"] - gone
    # no parameter that was frozen became trainable
    frozen_after = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen_after == {n for n in frozen_before if n in dict(model.named_parameters())}
    # re-freezing with the original list gives the same state (dropped units skipped)
    again = sparse.freeze(model, trainable)
    assert again["trainable_params"] == after["trainable_params"]
    assert again["units"] == 2 and again["names"] == ["2.attn", "3.mlp"]
    # a whole trainable block gone: block granularity skips it too
    sparse.freeze(model, ["1", "3"], granularity="block")
    surgery.drop(model, "1.attn")
    assert sparse.trainable_units(model, ["1", "3"], "block") == ["3"]


def test_unknown_units_are_errors():
    model, _ = tiny_model("llama")
    with pytest.raises(ValueError, match="does not exist"):
        sparse.freeze(model, ["9.attn"])
    with pytest.raises(ValueError, match="does not exist"):
        sparse.trainable_units(model, ["7"], "block")
    with pytest.raises(ValueError, match="malformed"):
        sparse.freeze(model, ["0.ffn"])


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_freeze_other_families(arch):
    model, _ = tiny_model(arch)
    info = sparse.freeze(model, ["1.mlp"])
    names = trainable_names(model)
    assert names == module_param_names(model, surgery.modules_of(model, "1.mlp"))
    if arch == "opt":  # fc1 and its norm train with fc2
        assert {"model.decoder.layers.1.fc1.weight", "model.decoder.layers.1.fc2.weight"} <= names
        assert "model.decoder.layers.1.final_layer_norm.weight" in names
    else:
        assert "transformer.h.1.ln_2.weight" in names
    emb = sparse.freeze(model, ["1.mlp"], train_embeddings=True)
    pos = model.transformer.wpe if arch == "gpt2" else model.model.decoder.embed_positions
    assert pos.weight.requires_grad
    assert emb["trainable_params"] > info["trainable_params"]
