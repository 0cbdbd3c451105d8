"""Prefill and decode speed: the tokens/s behind TrimLLM's speedup claims (Sec. 4, Tables 1
and 7, the speed panel of Fig. 2).

The paper reports that a model with fewer sub-layers generates faster with no special
kernels. This module times the two phases of generation apart (see
:mod:`trimlab.bench.timing` for the rules): the prefill, one forward pass over the prompt
that fills the KV cache, and the decode, the one-token steps after it.
:func:`greedy_decode` is a plain loop (the model's own cost); :func:`generate_decode`
goes through ``model.generate`` (its per-step bookkeeping included). :func:`decode_fn`
and :func:`prefill_fn` make self-timing candidates for
:func:`trimlab.bench.timing.interleaved`; the ``*_tokens_per_second`` functions measure
one model alone.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import torch
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel

from trimlab.bench.inputs import make_input_ids, model_device
from trimlab.bench.timing import interleaved, median, synchronize

ENGINES = ("loop", "generate")


def _takes_logits_to_keep(model: nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def prefill(model: PreTrainedModel, input_ids: torch.Tensor):
    """One forward pass over the prompt with the KV cache on; only the last position's
    logits are computed (``logits_to_keep=1``, as ``generate`` does). Returns the output."""
    kw = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}
    return model(input_ids=input_ids, use_cache=True, **kw)


@torch.no_grad()
def greedy_decode(
    model: PreTrainedModel, input_ids: torch.Tensor, new_tokens: int
) -> tuple[torch.Tensor, float, float]:
    """Greedy decoding with the KV cache in a plain loop: exactly ``new_tokens`` tokens.

    Returns ``(tokens, prefill_seconds, decode_seconds)``: ``tokens`` is
    ``(batch, new_tokens)``; the prefill (which yields the first token) and the
    ``new_tokens - 1`` one-token steps after it are timed apart. No attention mask is
    passed (the prompts carry no padding), so each step is just the model. This is the
    model's own cost, without ``generate``'s per-step bookkeeping.
    """
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    dev = input_ids.device
    synchronize(dev)
    t0 = time.perf_counter()
    out = prefill(model, input_ids)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    synchronize(dev)
    t1 = time.perf_counter()
    cache, toks = out.cache, [nxt]
    for _ in range(new_tokens - 1):
        out = model(input_ids=nxt, cache=cache, use_cache=True)
        cache = out.cache
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        toks.append(nxt)
    synchronize(dev)
    t2 = time.perf_counter()
    return torch.cat(toks, dim=1), t1 - t0, t2 - t1


class _StepClock(LogitsProcessor):
    """Records the time of every decoding step inside ``generate`` (it changes nothing)."""

    def __init__(self, device: torch.device):
        self.device, self.times = device, []

    def __call__(self, input_ids, scores):
        synchronize(self.device)
        self.times.append(time.perf_counter())
        return scores


@torch.no_grad()
def generate_decode(
    model: PreTrainedModel, input_ids: torch.Tensor, new_tokens: int, pad_token_id: int | None
) -> tuple[torch.Tensor, float, float]:
    """As :func:`greedy_decode` but through ``model.generate`` (greedy, KV cache, no early
    stop). The step times come from a logits processor that only reads the clock: the
    first call follows the prefill, the last follows the final step."""
    if new_tokens < 2:
        raise ValueError(f"generate timing needs new_tokens >= 2, got {new_tokens}")
    clock = _StepClock(input_ids.device)
    synchronize(input_ids.device)
    t0 = time.perf_counter()
    out = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=pad_token_id,
        logits_processor=LogitsProcessorList([clock]),
    )
    times = clock.times
    return out[:, input_ids.shape[1] :], times[0] - t0, times[-1] - times[0]


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


def _decode_run(
    model: PreTrainedModel, ids: torch.Tensor, new_tokens: int, engine: str, pad: int | None
) -> Callable[[], float]:
    """One decode with ``engine``, returning its decode seconds (prefill excluded)."""

    def run() -> float:
        if engine == "loop":
            return greedy_decode(model, ids, new_tokens)[2]
        return generate_decode(model, ids, new_tokens, pad)[2]

    return run


def decode_fn(
    model: PreTrainedModel,
    tokenizer,
    batch_size: int = 1,
    new_tokens: int = 32,
    prompt_tokens: int = 64,
    engine: str = "loop",
) -> Callable[[], float]:
    """A self-timing candidate for :func:`interleaved`: one decode run, returning the
    decode seconds (prefill excluded). Tokens/s is ``batch * (new_tokens - 1) / s``."""
    _check_engine(engine)
    if new_tokens < 2:
        raise ValueError(f"decode timing needs new_tokens >= 2, got {new_tokens}")
    ids = make_input_ids(tokenizer, prompt_tokens, batch_size, device=model_device(model))
    return _decode_run(model, ids, new_tokens, engine, tokenizer.pad_token_id)


def prefill_fn(
    model: PreTrainedModel, tokenizer, prompt_tokens: int = 128, batch_size: int = 1
) -> Callable[[], float]:
    """A self-timing candidate for :func:`interleaved`: one prefill, returning seconds."""
    ids = make_input_ids(tokenizer, prompt_tokens, batch_size, device=model_device(model))
    dev = ids.device

    def run() -> float:
        synchronize(dev)
        t0 = time.perf_counter()
        prefill(model, ids)
        synchronize(dev)
        return time.perf_counter() - t0

    return run


def decode_tokens_per_second(
    model: PreTrainedModel,
    tokenizer,
    prompt: str = "Question: What do plants need for photosynthesis?\nAnswer:",
    new_tokens: int = 32,
    batch_size: int = 1,
    repeats: int = 3,
    *,
    engine: str = "generate",
    warmup: int = 1,
) -> float:
    """Median greedy decode speed (tokens per second, KV cache on) of one model, after
    ``warmup`` untimed runs. Exactly ``new_tokens`` tokens per sequence are generated (no
    early stop); the rate counts the ``new_tokens - 1`` steps after the prefill and their
    time only. ``engine="generate"`` goes through ``model.generate``, ``"loop"`` through
    :func:`greedy_decode`. To compare models use :func:`interleaved` on :func:`decode_fn`s.
    """
    _check_engine(engine)
    new_tokens = max(int(new_tokens), 2)
    enc = tokenizer([prompt] * batch_size, return_tensors="pt")
    ids = enc["input_ids"].to(model_device(model))
    run = _decode_run(model, ids, new_tokens, engine, tokenizer.pad_token_id)
    times = interleaved({"model": run}, repeats=repeats, warmup=warmup)["model"]
    return batch_size * (new_tokens - 1) / median(times)


def prefill_tokens_per_second(
    model: PreTrainedModel,
    tokenizer,
    prompt_tokens: int = 128,
    batch_size: int = 1,
    repeats: int = 3,
    warmup: int = 1,
) -> float:
    """Median prefill speed: prompt tokens processed per second (``batch * prompt_tokens /
    seconds`` of one forward pass that fills the KV cache), after ``warmup`` runs."""
    fn = prefill_fn(model, tokenizer, prompt_tokens, batch_size)
    times = interleaved({"model": fn}, repeats=repeats, warmup=warmup)["model"]
    return batch_size * prompt_tokens / median(times)
