"""Small runtime facts shared by the modules that run a model: where it lives (and where
and in which dtype to load one), which id pads a batch, and which process this is under ``torchrun`` / ``accelerate launch``.

The process role comes from ``accelerate.PartialState`` (the state Trainer itself uses),
created only when asked for: in a single process it is the main one and the barrier
returns at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging


@contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence transformers' progress bars (loading and "Writing model shards") inside the
    block, and restore the previous setting afterwards. Keeps notebook outputs stable."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The padding token id: the tokenizer's pad, else its EOS, else 0.

    Padding is always masked (``attention_mask`` 0, label -100), so the id only has to be
    a valid one; :func:`trimlab.models.load_model` already sets pad to EOS where missing.
    """
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def is_main_process() -> bool:
    """Rank 0 of a distributed run (``PartialState().is_main_process``); True alone."""
    from accelerate import PartialState

    return PartialState().is_main_process


def wait_for_everyone() -> None:
    """A barrier across the processes of a distributed run (``PartialState``'s)."""
    from accelerate import PartialState

    PartialState().wait_for_everyone()


# ----------------------------------------------------------------------------- devices

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


# ----------------------------------------------------------------------------- compute dtype

COMPUTE_DTYPES = ("auto", "bf16", "fp32")
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fast_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` runs bf16 matmuls fast: a CUDA device with bf16, or a CPU with
    AMX-BF16 or AVX512-BF16 units (most other laptops are slower in bf16 than fp32)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & set(FAST_BF16_CPU_FLAGS))


def compute_dtype(name: str, device: str | torch.device = "cpu") -> str:
    """``"bf16"`` or ``"fp32"``: ``auto`` picks bf16 where :func:`fast_bf16` says so."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute dtype {name!r}; choose one of {COMPUTE_DTYPES}")
    if name == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return name


def autocast(name: str, device: str | torch.device = "cpu"):
    """A ``torch.autocast`` context for compute dtype ``name`` (bf16 over fp32 weights),
    or a no-op for fp32: for evaluation, the calibration scan and activation passes."""
    dev = torch.device(device).type
    if compute_dtype(name, device) == "bf16":
        return torch.autocast(dev, dtype=torch.bfloat16)
    return torch.autocast(dev, enabled=False)
