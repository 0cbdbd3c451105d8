"""Timing harness: side by side, warm-up, repeats, medians (TrimLLM Sec. 4, Tables 1 and 7).

The paper claims a shallower model is faster on any hardware with no special kernels,
while quantization and sparsity need kernel support. A speedup is the ratio of two
timings, so both must be taken under the same conditions. Every measurement in
:mod:`trimlab.bench` follows these rules:

* **Side by side, in one process, interleaved.** :func:`interleaved` runs the candidates
  round-robin (``a b c, b c a, c a b, ...``) so that a background job, a thermal change or
  a cache state hurts every candidate alike, instead of whichever ran last.
* **Warm-up first.** The first calls pay for lazy initialisation, allocator growth, oneDNN
  kernel selection and (with ``torch.compile``) compilation; they are not timed.
* **Medians, not means.** One descheduled call can double a sample; the median ignores it.
* **Time only the phase you name.** *Prefill* is one forward pass over the prompt that
  fills the KV cache (only the last position goes through the LM head, as in
  ``generate``). *Decode* is the ``N - 1`` one-token forward passes after it (greedy,
  KV cache on, exactly ``N`` new tokens: no early stop at EOS). Decode tokens/s is
  ``batch * (N - 1) / decode seconds``; the prefill is not in it. The phase timers are
  in :mod:`trimlab.bench.speed`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

import torch


def median(xs: Iterable[float]) -> float:
    """Median of ``xs`` (ValueError when empty)."""
    xs = list(xs)
    if not xs:
        raise ValueError("median of no samples")
    return float(statistics.median(xs))


def speedup(times: dict[str, list[float]], base: str, other: str) -> float:
    """How many times faster ``other`` ran than ``base``: the ratio of their median
    times, from :func:`interleaved`'s output (or any ``{name: seconds}`` lists)."""
    for name in (base, other):
        if name not in times:
            raise KeyError(f"no timings for {name!r}; have {sorted(times)}")
    return median(times[base]) / median(times[other])


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work (a no-op on the CPU), so a timer sees finished work."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(dev)


def interleaved(
    fns: dict[str, Callable[[], float | None]],
    repeats: int = 5,
    warmup: int = 1,
    rotate: bool = True,
    log: list[str] | None = None,
) -> dict[str, list[float]]:
    """Run the candidates ``fns`` round-robin and return each one's timings in seconds.

    First ``warmup`` untimed rounds, then ``repeats`` timed rounds. In each round every
    candidate runs once; with ``rotate`` round ``k`` starts at candidate ``k`` (``a b c,
    b c a, c a b``), so none always runs right after the same neighbour. A candidate
    that returns a number has timed itself (e.g. only the decode after an untimed
    prefill) and that number is recorded; one that returns ``None`` is timed whole
    with ``time.perf_counter``. ``log``, when given, receives the name of every call in
    order (warm-up included), for checking the schedule.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    names = list(fns)
    out: dict[str, list[float]] = {n: [] for n in names}
    for k in range(warmup + repeats):
        start = k % len(names) if rotate and names else 0
        for name in names[start:] + names[:start]:
            if log is not None:
                log.append(name)
            t0 = time.perf_counter()
            got = fns[name]()
            seconds = time.perf_counter() - t0 if got is None else float(got)
            if k >= warmup:
                out[name].append(seconds)
    return out
