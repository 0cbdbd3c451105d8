"""Memory: weight bytes in any storage form and peak run-time memory (TrimLLM Sec. 4, the
memory panel of Fig. 2).

The paper's other claim besides speed is that a trimmed model is smaller: its memory is
the remaining weights plus what a run needs on top. :func:`weight_bytes` counts the
weights as stored (floating point parameters, torchao quantized tensors, the packed int8
weights of dynamic quantized linears), so trimmed and quantized models compare on one
axis. :func:`peak_memory_bytes` measures the extra memory of one run (activations, KV
cache, scratch) on the GPU or the CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import sys
import threading
import time
from collections.abc import Callable

import torch
from torch import nn

from trimlab.bench.timing import synchronize

# ----------------------------------------------------------------------------- weights


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of ``t``; a tensor subclass (torchao) is the sum of its inner tensors."""
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of all weights, in whatever form they are stored: parameters (tied ones
    once), torchao quantized tensors (int8 data plus scales), and the packed int8
    weights and biases of dynamic quantized linears, which are not parameters."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += tensor_bytes(p)
    for m in model.modules():
        packed = getattr(m, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            w, b = packed._weight_bias()
            total += w.numel() * w.element_size() + (0 if b is None else tensor_bytes(b))
    return total


# ----------------------------------------------------------------------------- peak memory


def _proc_status() -> dict[str, int] | None:
    try:
        text = open("/proc/self/status").read()
    except OSError:
        return None
    return {k: int(v) * 1024 for k, v in re.findall(r"^Vm(HWM|RSS):\s+(\d+) kB", text, re.M)}


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cpu_memory_method() -> str:
    """Which method :func:`peak_memory_bytes` uses on the CPU here (see its docstring)."""
    if sys.platform.startswith("linux") and _proc_status() and _reset_hwm():
        return "linux-hwm"
    try:
        import psutil  # noqa: F401

        return "psutil-poll"
    except ImportError:
        return "ru_maxrss"


def _psutil_peak(fn: Callable[[], object]) -> int:
    import psutil

    proc, peak, done = psutil.Process(), [0], threading.Event()
    base = proc.memory_info().rss

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        fn()
    finally:
        done.set()
        th.join()
    return max(peak[0], proc.memory_info().rss) - base


def peak_memory_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak memory that ``fn()`` needs *on top of* what is resident when it starts.

    Add the weights (:func:`weight_bytes`) for the memory a model needs to run.

    * CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
      minus ``memory_allocated`` at the start: exact for tensors of the caching allocator
      (it misses the CUDA context and cuBLAS workspaces).
    * CPU, Linux (``"linux-hwm"``): the kernel's peak resident set size. Freed heap is
      first handed back (``gc.collect`` and glibc ``malloc_trim``), the peak is reset
      (``/proc/self/clear_refs`` = 5), and the result is ``VmHWM`` after ``fn`` minus
      ``VmRSS`` before. It sees every allocation that touched memory (torch's CPU
      allocator, oneDNN scratch, Python), which ``tracemalloc`` does not: torch
      allocates outside Python's allocator. Limits: it is process-wide (another thread
      allocating at the same time counts), it counts pages, and memory the allocator
      kept from earlier calls and reuses is not new resident memory, so it can read low.
    * CPU elsewhere: psutil polling of RSS every millisecond (can miss short peaks), or
      else ``resource.getrusage`` max RSS, which only moves when the process's
      lifetime peak does (reads 0 once a bigger run has happened).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        fn()
        synchronize(dev)
        return max(int(torch.cuda.max_memory_allocated(dev)) - base, 0)
    gc.collect()
    _malloc_trim()
    method = cpu_memory_method()
    if method == "linux-hwm":
        _reset_hwm()
        base = _proc_status()["RSS"]
        fn()
        return max(_proc_status()["HWM"] - base, 0)
    if method == "psutil-poll":
        return _psutil_peak(fn)
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    fn()
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - before, 0)
