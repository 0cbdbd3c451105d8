"""GGUF export for llama.cpp: the DeciLM null convention, the exact stand-ins for the
engine's limits, bad input, and agreement of llama.cpp with trimlab's own forward.

The fast tests use tiny random Llama models; the engine tests among them give the tiny
model SmolLM2's tokenizer, because llama.cpp's converter recognises a BPE tokenizer by
its pre-tokenizer and knows no byte-level toy. The ``slow`` tests export SmolLM2-135M in
four forms as f32 GGUF and compare logits, greedy continuations and SciQ predictions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from trimlab import checkpoint, export, gguf_check, llamacpp, runtime, surgery, wheels
from trimlab.cli import main as cli_main
from trimlab.decilm import decilm_config, decilm_reference_forward
from trimlab.tiny import tiny_model

MIX = ["0.attn", "1.mlp", "2.attn"]  # block 0 without attention, block 1 without MLP


def smol_tokenizer():
    return AutoTokenizer.from_pretrained(wheels.checkpoint_path("smollm2-135m"))


def tiny(drops=(), vocab=None):
    kw = {"intermediate_size": 256}  # DeciLM widths are multiples of 256
    if vocab is not None:
        kw["vocab_size"] = vocab
    model, tok = tiny_model("llama", **kw)
    if drops:
        surgery.drop(model, list(drops))
    return model, tok


def torch_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()


# ----------------------------------------------------------------------------- the format


def test_decilm_config_writes_removed_sublayers_as_null():
    model, _ = tiny(["0.attn", "1.attn", "1.mlp", "2.mlp"])
    blocks = decilm_config(model)["block_configs"]
    assert [b["attention"]["n_heads_in_group"] for b in blocks] == [None, 2, 2]
    assert [b["ffn"]["ffn_mult"] is None for b in blocks] == [False, True, False]
    assert all(b["attention"]["replace_with_linear"] is False for b in blocks)
    # no_op stays beside the nulls and says the same
    assert [b["attention"]["no_op"] for b in blocks] == [True, False, False]


def test_reference_forward_reads_the_null_convention_alone(tmp_path):
    model, tok = tiny(MIX)
    checkpoint.save_trimmed(model, tok, tmp_path / "deci")
    cfg_path = tmp_path / "deci" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for block in cfg["block_configs"]:  # a published Nemotron-NAS config has nulls only
        block["attention"].pop("no_op")
        block["ffn"].pop("no_op")
    cfg_path.write_text(json.dumps(cfg))
    ids = torch.tensor([list(range(3, 40))])
    ref = decilm_reference_forward(tmp_path / "deci", ids)
    torch.testing.assert_close(
        ref[0].numpy(), torch_logits(model, ids[0].tolist()), atol=1e-4, rtol=1e-4
    )


# ----------------------------------------------------------------------------- the plan


def test_plan_puts_exact_stand_ins_where_the_engine_cannot_follow():
    model, _ = tiny(["0.attn", "1.mlp", "2.attn", "3.attn", "3.mlp"])
    layers = export.plan(model)
    assert layers == [
        {"attn": "zero", "mlp": "kept"},  # llama.cpp takes head sizes from layer 0
        {"attn": "kept", "mlp": "zero"},  # llama.cpp skips the residual of n_ff == 0
        {"attn": "none", "mlp": "kept"},  # an attention-free layer llama.cpp runs
    ]
    assert export.architecture(layers) == "deci"
    d, heads, kv, hd = 64, 4, 2, 16
    attn = d + 2 * heads * hd * d + 2 * kv * hd * d  # norm, q and o, k and v
    mlp = d + 3 * export.MIN_FFN * d
    assert export.stand_in_params(model, layers) == [attn, mlp, 0]
    want = export.expected_layout(model, layers)
    assert want["n_head"] == [heads, heads, 0] and want["n_ff"] == [256, export.MIN_FFN, 256]


def test_whole_block_drops_stay_the_llama_architecture():
    model, _ = tiny(["1.attn", "1.mlp"])
    layers = export.plan(model)
    assert export.architecture(layers) == "llama" and len(layers) == 3
    assert sum(export.stand_in_params(model, layers)) == 0


def test_the_staged_deci_folder_computes_the_model_exactly(tmp_path):
    """The stand-ins are zeros that add exactly nothing: the staged DeciLM folder (the
    converter's input) gives the trimmed model's logits, read by the reference forward."""
    model, tok = tiny(["0.attn", "1.mlp", "2.attn"])
    layers = export.plan(model)
    export.stage(model, tok, layers, tmp_path)
    ids = list(range(5, 60))
    ref = decilm_reference_forward(tmp_path, torch.tensor([ids]))[0].numpy()
    np.testing.assert_allclose(ref, torch_logits(model, ids), atol=1e-4, rtol=1e-4)
    blocks = json.loads((tmp_path / "config.json").read_text())["block_configs"]
    assert blocks[0]["attention"]["n_heads_in_group"] == 2
    assert (
        blocks[1]["ffn"]["ffn_mult"] is not None
        and blocks[2]["attention"]["n_heads_in_group"] is None
    )


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_and_writes_nothing(tmp_path, capsys):
    gpt2, tok = tiny_model("gpt2")
    checkpoint.save_trimmed(gpt2, tok, tmp_path / "gpt2")
    before = sorted(p.name for p in (tmp_path / "gpt2").iterdir())
    with pytest.raises(ValueError, match="model types llama, mistral"):
        export.export_dir(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="not a directory"):
        export.export_dir(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export.export_dir(tmp_path / "gpt2", fmt="onnx")
    with pytest.raises(ValueError, match="unknown GGUF type 'q3'"):
        export.export_dir(tmp_path / "gpt2", outtype="q3")
    with pytest.raises(ValueError, match="not a trimlab checkpoint"):
        export.export_dir(tmp_path)
    assert cli_main(["export", str(tmp_path / "missing"), "--format", "gguf"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "gpt2"), "--format", "onnx"]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "gpt2").iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]


def test_a_failed_conversion_leaves_no_file(tmp_path, monkeypatch):
    model, tok = tiny(MIX)

    def boom(hf_dir, out_file, outtype):
        out_file.write_bytes(b"GGUF half")
        raise RuntimeError("converter died")

    monkeypatch.setattr(llamacpp, "convert", boom)
    with pytest.raises(RuntimeError, match="converter died"):
        export.export_gguf(model, tok, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_does_not_match_the_model_is_refused(tmp_path):
    model, _ = tiny(MIX, vocab=49152)
    export.export_gguf(model, smol_tokenizer(), tmp_path / "m.gguf")
    want = export.expected_layout(model, export.plan(model))
    with pytest.raises(ValueError, match="n_ff"):
        gguf_check.check_layout(tmp_path / "m.gguf", want | {"n_ff": [256, 0, 256]})


# ----------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("drops", [(), ("1.attn", "1.mlp"), MIX], ids=["full", "blocks", "mix"])
def test_llamacpp_runs_the_tiny_export_as_trimlab_does(tmp_path, drops):
    model, _ = tiny(drops, vocab=49152)
    report = export.export_gguf(model, smol_tokenizer(), tmp_path / "m.gguf")
    assert report["arch"] == ("llama" if len(drops) < 3 else "deci")
    assert report["tensor_types"] == {"F32": report["tensor_types"]["F32"]}
    llm = llamacpp.load(tmp_path / "m.gguf", n_ctx=128, threads=1, kv_f32=True)
    ids = list(range(1000, 1060))
    diff = np.abs(llamacpp.logits(llm, ids) - torch_logits(model, ids)).max()
    assert diff < 1e-3, diff


def test_llamacpp_still_needs_the_stand_ins(tmp_path):
    """The two engine defects of docs/llamacpp-upstream.md, as they stand in the locked
    llama.cpp. When this test fails, the engine is fixed: export without stand-ins."""
    tok = smol_tokenizer()
    ids = list(range(1000, 1040))
    model, _ = tiny(["1.mlp"], vocab=49152)  # attention but no MLP: its output is lost
    export.export_gguf(model, tok, tmp_path / "mlp.gguf", stand_ins=False)
    llm = llamacpp.load(tmp_path / "mlp.gguf", n_ctx=128, threads=1, kv_f32=True)
    assert np.abs(llamacpp.logits(llm, ids) - torch_logits(model, ids)).max() > 0.1
    model, _ = tiny(["0.attn"], vocab=49152)  # head sizes taken from layer 0
    export.export_gguf(model, tok, tmp_path / "attn0.gguf", stand_ins=False)
    with pytest.raises(ValueError, match="Failed to load model"):
        llamacpp.load(tmp_path / "attn0.gguf", n_ctx=128, threads=1)


def test_amx_cpus_are_recognised_from_their_flags():
    assert llamacpp.amx_cpu({"fpu", "avx512f", "amx_bf16", "amx_tile", "amx_int8"})
    assert not llamacpp.amx_cpu({"fpu", "avx2", "fma"})
    assert not llamacpp.amx_cpu(set())  # no /proc/cpuinfo: no flags
    assert llamacpp.amx_cpu() == ("amx_int8" in runtime.cpu_flags())


def test_load_turns_the_extra_buffer_types_off_on_amx_cpus(monkeypatch):
    """On AMX CPUs the locked engine's AMX matmul crashes the process on quantized
    weights (this test file died with SIGSEGV on Q8_0 before the fix)."""
    import llama_cpp
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params
    seen = []
    monkeypatch.setattr(
        llama_cpp,
        "Llama",
        lambda **kw: seen.append(lib.llama_model_default_params().use_extra_bufts),
    )
    for amx in (True, False):
        monkeypatch.setattr(llamacpp, "amx_cpu", lambda amx=amx: amx)
        llamacpp.load("model.gguf")
    llamacpp.load("model.gguf", extra_bufts=False)
    assert seen == [False, True, False]
    assert lib.llama_model_default_params is default  # restored after each load


def test_quantized_exports_keep_the_layout(tmp_path):
    model, _ = tiny(MIX, vocab=49152)
    tok = smol_tokenizer()
    f32 = export.export_gguf(model, tok, tmp_path / "f32.gguf")
    q8 = export.export_gguf(model, tok, tmp_path / "q8.gguf", "q8_0")
    assert "Q8_0" in q8["tensor_types"] and q8["n_ff"] == f32["n_ff"]
    assert q8["bytes"] < f32["bytes"] / 2
    llm = llamacpp.load(tmp_path / "q8.gguf", n_ctx=128, threads=1)
    ids = list(range(1000, 1040))
    got, want = llamacpp.logits(llm, ids), torch_logits(model, ids)
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()


# ----------------------------------------------------------------------------- SmolLM2

FORMS = {
    "full": [],
    "blocks": ["10.attn", "10.mlp", "20.attn", "20.mlp"],
    "attention": ["5.attn", "12.attn", "13.attn", "25.attn"],
    # block 0 without attention, block 5 whole, blocks 9 and 17 without their MLP
    "mix": ["0.attn", "5.attn", "5.mlp", "9.mlp", "12.attn", "17.mlp"],
}
PROMPTS = [
    "Question: What do plants need for photosynthesis?\nAnswer:",
    "The three states of matter are",
    "Question: Why does ice float on water?\nAnswer:",
]


@pytest.fixture(scope="module")
def smol():
    from trimlab.models import load_model

    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def sciq():
    from trimlab.data import load_domain

    return load_domain("sciq", "test", n=100, seed=0)


@pytest.fixture(scope="module")
def exported(smol, tmp_path_factory):
    """``{form: (trimmed fp32 model, llama.cpp model)}``, each through save_trimmed and
    ``trimlab export DIR --format gguf`` (made on first use); llama.cpp runs f32 weights
    with an f32 KV cache, the setting that compares with trimlab's fp32 forward."""
    from trimlab.bench.variants import trimmed_copy

    base, tok = smol
    made = {}

    def get(form):
        if form not in made:
            model = trimmed_copy(base, FORMS[form])
            folder = checkpoint.save_trimmed(model, tok, tmp_path_factory.mktemp(form) / "ckpt")
            assert cli_main(["export", str(folder), "--format", "gguf"]) == 0
            llm = llamacpp.load(folder / "model-f32.gguf", n_ctx=512, threads=2, kv_f32=True)
            made[form] = (model, llm)
        return made[form]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_smollm2_llamacpp_logits_and_greedy_agree(form, smol, exported):
    _, tok = smol
    model, llm = exported(form)
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        diff = np.abs(llamacpp.logits(llm, ids) - torch_logits(model, ids)).max()
        print(f"{form}: max abs logit difference {diff:.4f} over {len(ids)} positions")
        assert diff < 0.05, f"{form}: max abs logit difference {diff:.4f} on {prompt!r}"
        with torch.no_grad():
            seq = model.generate(
                input_ids=torch.tensor([ids]),
                max_new_tokens=32,
                do_sample=False,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )[0, len(ids) :].tolist()
        assert llamacpp.greedy(llm, ids, 32, eos=tok.eos_token_id) == seq, form


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_smollm2_llamacpp_sciq_predictions_agree(form, smol, exported, sciq):
    from trimlab.encoding import encode_items
    from trimlab.evaluate import choice_logliks, predictions

    _, tok = smol
    model, llm = exported(form)
    ours = predictions(
        choice_logliks(model, tok, sciq, batch_size=8, use_context=False, max_length=256)
    )
    theirs = predictions(llamacpp.choice_logliks(llm, encode_items(tok, sciq, False, 256)))
    same = sum(a == b for a, b in zip(ours, theirs))
    print(f"{form}: llama.cpp and trimlab.evaluate pick the same choice on {same} of 100")
    assert same >= 99, f"{form}: llama.cpp agrees with trimlab.evaluate on {same} of 100"


def test_setup_says_which_compiler_to_install(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    (tmp_path / "cat").symlink_to(shutil.which("cat"))  # a PATH without any compiler
    script = Path(__file__).resolve().parents[1] / "scripts" / "check_compiler.sh"
    proc = subprocess.run(
        [shutil.which("bash"), str(script)],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "no C++ compiler" in proc.stderr and "build-essential" in proc.stderr
    assert subprocess.run([shutil.which("bash"), str(script)]).returncode == 0  # this machine
