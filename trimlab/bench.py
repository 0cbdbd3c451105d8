"""Measuring speed honestly: side by side, warm-up, repeats, medians (TrimLLM Tables 1 and 7).

The paper claims a shallower model is faster on any hardware with no special kernels,
while quantization and sparsity need kernel support. This module holds small, pure
measuring functions; ``benchmarks/speed.py`` builds the side-by-side comparison.

How to measure (what every function here follows):

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
  ``batch * (N - 1) / decode seconds``; the prefill is not in it.

Ideal speedups come from :mod:`trimlab.accounting`: per-token FLOPs of the remaining
sub-layers plus the LM head (:func:`decode_cost`), and bytes read per decoded token
(every remaining weight once per step, shared by the batch, plus each sequence's KV
cache). Which one is "the" ideal (:func:`ideal_decode_speedup`): decode with a KV cache
multiplies each weight once per sequence in the batch, 2 FLOPs per 4 bytes in fp32 at
batch 1, far below what a CPU core can compute per byte it loads, so decode is limited by
memory traffic and the *bytes* ratio is the ideal; prefill multiplies every weight by
hundreds of tokens and is limited by arithmetic, so the *FLOPs* ratio is its ideal. When
whole blocks are removed the two ratios agree to a percent; they part when attention and
MLP sub-layers are removed unevenly, or when weights change precision (int8).

Where measured falls short of ideal: FLOPs and bytes count only matrix work, but every
sub-layer call also pays a fixed cost per step that neither counts: Python dispatch of a
dozen small ops, rotary embeddings, the KV-cache append (``torch.cat``), the attention
call itself (SDPA) and the norms. At batch 1 on a CPU that is tens of microseconds per
attention sub-layer, comparable to its matrix work (an attention sub-layer of
SmolLM2-135M has a quarter of an MLP's weights). Dropping whole blocks removes those
costs in proportion, so measured/ideal stays near 1 or above; dropping mostly MLPs
removes most of the FLOPs and bytes but keeps nearly every attention call and its fixed
cost, so the measured speedup falls behind the ideal (ratios near 0.8). The per-step
work outside the blocks (embedding lookup, final norm, LM head, argmax, and with
``generate`` its logits processors and stopping checks) does not shrink at all.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel

from trimlab import accounting, surgery

DEFAULT_TEXT = (
    "Question: What do plants need for photosynthesis? Plants use sunlight, water and "
    "carbon dioxide to make glucose and oxygen in their leaves, inside the chloroplasts.\n"
    "Answer:"
)

# ----------------------------------------------------------------------------- chat helpers


def chat_prompt(tokenizer, text: str) -> str:
    """``text`` as a user turn in the tokenizer's chat template, ready for the answer."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def generate_text(model: PreTrainedModel, tokenizer, text: str, max_new_tokens: int = 64) -> str:
    """Greedy answer of ``model`` to ``text`` through the chat template (KV cache on)."""
    enc = tokenizer(chat_prompt(tokenizer, text), return_tensors="pt", add_special_tokens=False)
    enc = enc.to(_device(model))
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


# ----------------------------------------------------------------------------- timing


def median(xs: Iterable[float]) -> float:
    """Median of ``xs`` (ValueError when empty)."""
    xs = list(xs)
    if not xs:
        raise ValueError("median of no samples")
    return float(statistics.median(xs))


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


# ----------------------------------------------------------------------------- inputs


def make_input_ids(
    tokenizer,
    prompt_tokens: int = 128,
    batch_size: int = 1,
    text: str = DEFAULT_TEXT,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A ``(batch_size, prompt_tokens)`` prompt: ``text``'s tokens repeated to length.

    Every row is the same prompt, so no padding (and no attention mask) is needed.
    """
    if prompt_tokens < 1 or batch_size < 1:
        raise ValueError(f"need prompt_tokens >= 1 and batch_size >= 1, got {prompt_tokens}")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    reps = -(-prompt_tokens // len(ids))
    row = torch.tensor((ids * reps)[:prompt_tokens], dtype=torch.long)
    return row.unsqueeze(0).repeat(batch_size, 1).to(device or "cpu")


# ----------------------------------------------------------------------------- measuring


@torch.no_grad()
def prefill(model: PreTrainedModel, input_ids: torch.Tensor):
    """One forward pass over the prompt with the KV cache on; only the last position's
    logits are computed (``logits_to_keep=1``, as ``generate`` does). Returns the output."""
    kw = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}
    return model(input_ids=input_ids, use_cache=True, **kw)


def _takes_logits_to_keep(model: nn.Module) -> bool:
    import inspect

    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


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


ENGINES = ("loop", "generate")


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
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if new_tokens < 2:
        raise ValueError(f"decode timing needs new_tokens >= 2, got {new_tokens}")
    ids = make_input_ids(tokenizer, prompt_tokens, batch_size, device=_device(model))
    pad = tokenizer.pad_token_id

    def run() -> float:
        if engine == "loop":
            return greedy_decode(model, ids, new_tokens)[2]
        return generate_decode(model, ids, new_tokens, pad)[2]

    return run


def prefill_fn(
    model: PreTrainedModel, tokenizer, prompt_tokens: int = 128, batch_size: int = 1
) -> Callable[[], float]:
    """A self-timing candidate for :func:`interleaved`: one prefill, returning seconds."""
    ids = make_input_ids(tokenizer, prompt_tokens, batch_size, device=_device(model))
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
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    new_tokens = max(int(new_tokens), 2)
    enc = tokenizer([prompt] * batch_size, return_tensors="pt")
    ids = enc["input_ids"].to(_device(model))

    def run() -> float:
        if engine == "loop":
            return greedy_decode(model, ids, new_tokens)[2]
        return generate_decode(model, ids, new_tokens, tokenizer.pad_token_id)[2]

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


# ----------------------------------------------------------------------------- memory


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
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    fn()
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - before, 0)


# ----------------------------------------------------------------------------- candidates


def block_drop_names(model: PreTrainedModel, fraction: float) -> list[str]:
    """Sub-layer names that remove ``round(fraction * blocks)`` whole blocks of ``model``.

    The blocks are spread evenly over the interior (block 0 and the last block are kept
    while others remain, as layer-removal studies find the first and last blocks the
    least dispensable). For speed all blocks of a model cost the same, so which ones go
    does not matter; for accuracy use a trim run's drops (``--history``).
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    fam = surgery.family_of(model)
    ids = [
        bid
        for bid, block in zip(surgery.block_ids(model), surgery._real_blocks(model))
        if surgery._present(block, fam.attn) and surgery._present(block, fam.mlp)
    ]
    k = round(fraction * len(ids))
    inner = ids[1:-1] if len(ids) - 2 >= k else ids
    picked = [inner[(2 * i + 1) * len(inner) // (2 * k)] for i in range(k)] if k else []
    return [f"{b}.{kind}" for b in sorted(picked) for kind in surgery.KINDS]


def trimmed_copy(model: PreTrainedModel, names: Sequence[str]) -> PreTrainedModel:
    """A deep copy of ``model`` with sub-layers ``names`` dropped (the original is kept)."""
    clone = copy.deepcopy(model)
    if names:
        surgery.drop(clone, list(names))
    return clone.eval()


def trimmed_copies(
    model: PreTrainedModel, fractions: Sequence[float]
) -> dict[float, PreTrainedModel]:
    """``{fraction: copy with round(fraction * blocks) whole blocks dropped}``
    (:func:`block_drop_names`); ``fraction`` is the share of sub-layers removed."""
    return {f: trimmed_copy(model, block_drop_names(model, f)) for f in fractions}


def prefix_for(sequence: Sequence[str], count: int) -> list[str]:
    """The first ``count`` names of a drop sequence (all of it when shorter)."""
    return list(sequence[: max(count, 0)])


def quantize_int8(model: PreTrainedModel) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` (LM head included) replaced by PyTorch's
    dynamic int8 quantized linear (``torch.ao.quantization.quantize_dynamic``): int8
    weights, activations quantized on the fly per call. CPU only (fbgemm/onednn/qnnpack
    kernels); embeddings and norms stay in floating point. The copy shares nothing with
    ``model``; surgery and accounting no longer apply to it (no ``nn.Linear`` left)."""
    if _device(model).type != "cpu":
        raise ValueError("dynamic int8 quantization runs on the CPU only")
    import warnings

    from torch.ao.quantization import quantize_dynamic

    clone = copy.deepcopy(model).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(clone, {nn.Linear}, dtype=torch.qint8)


def torchao_available() -> bool:
    """Whether torchao imports (``pip install torchao``; it is optional)."""
    try:
        import torchao.quantization  # noqa: F401
    except Exception:  # ImportError, or a torchao built for another torch
        return False
    return True


def quantize_int8_torchao(model: PreTrainedModel) -> nn.Module:
    """A copy of ``model`` with weight-only int8 linears from torchao (``quantize_`` with
    ``Int8WeightOnlyConfig``; activations stay in floating point). ImportError without
    torchao. The LM head is quantized too (it is untied from the embedding)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    clone = copy.deepcopy(model).eval()
    head = clone.get_output_embeddings()
    if head is not None and head.weight is clone.get_input_embeddings().weight:
        head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    quantize_(clone, Int8WeightOnlyConfig())
    return clone


def compile_blocks(model: PreTrainedModel, **kwargs) -> PreTrainedModel:
    """Compile every decoder block in place with ``torch.compile`` (``dynamic=True``:
    the KV cache grows each step). Fuses each block's small ops (norms, rotary, SiLU,
    residual adds), cutting the per-call overhead that FLOPs do not count. Needs a C++
    compiler on the CPU; the first calls compile (use warm-up)."""
    import torch._dynamo

    # Each block guards on its own ``layer_idx`` (it indexes the KV cache), so there is
    # one compiled graph per block position: raise dynamo's per-function limit above it.
    need = 2 * len(surgery.layer_list(model)) + 8
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), need))
    for block in surgery.layer_list(model):
        block.compile(dynamic=True, **kwargs)
    return model


# ----------------------------------------------------------------------------- accounting


def _tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of ``t``; a tensor subclass (torchao) is the sum of its inner tensors."""
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(t, n)) for n in names)
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
            total += _tensor_bytes(p)
    for m in model.modules():
        packed = getattr(m, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            w, b = packed._weight_bias()
            total += w.numel() * w.element_size() + (0 if b is None else _tensor_bytes(b))
    return total


def bytes_read_per_step(model: nn.Module) -> int:
    """Weight bytes one decoding step reads: every weight except the input embedding
    (only one row of it per token), with a tied LM head's matrix counted once."""
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    total = weight_bytes(model) - weight_bytes(emb)
    if head is not None and getattr(head, "weight", None) is emb.weight:
        total += _tensor_bytes(emb.weight)
    return total


def kv_bytes_per_token(
    model: PreTrainedModel, context: int, dtype: torch.dtype | None = None
) -> int:
    """Bytes of KV cache one sequence reads per decoded token at ``context`` cached
    tokens: keys and values of every remaining attention sub-layer, in ``dtype``
    (default: the model's floating dtype)."""
    cfg = model.config.get_text_config(decoder=True)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    n_attn = sum(n.endswith(".attn") for n in surgery.sublayers(model))
    dtype = dtype or getattr(model, "dtype", torch.float32)
    if not dtype.is_floating_point:
        dtype = torch.float32
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * n_attn * kv_heads * head_dim * context * elem


def decode_cost(
    model: nn.Module,
    context: int,
    batch_size: int = 1,
    structure: PreTrainedModel | None = None,
) -> dict[str, float]:
    """Per decoded token: forward FLOPs (remaining sub-layers at ``context`` plus the LM
    head, from :func:`trimlab.accounting.flops_per_token`) and bytes read (weights once
    per step shared by ``batch_size`` sequences, plus the sequence's KV cache).

    ``structure`` is an un-quantized model with the same sub-layers, for FLOPs and KV
    geometry when ``model`` is quantized (quantized linears are not ``nn.Linear``)."""
    ref = structure if structure is not None else model
    dtype = getattr(model, "dtype", None)
    kv = kv_bytes_per_token(ref, context, dtype if dtype is not None else None)
    return {
        "flops": float(accounting.flops_per_token(ref, context)),
        "bytes": bytes_read_per_step(model) / batch_size + kv,
    }


def ideal_decode_speedup(
    full: nn.Module,
    trimmed: nn.Module,
    context: int = 0,
    batch_size: int = 1,
    full_structure: PreTrainedModel | None = None,
    trimmed_structure: PreTrainedModel | None = None,
) -> dict[str, float]:
    """Ideal decode speedup of ``trimmed`` over ``full`` at ``context`` cached tokens.

    ``flops`` and ``bytes`` are the ratios of :func:`decode_cost`; ``ideal`` is the
    bytes ratio: decode multiplies each weight read once per sequence, so it is bound
    by memory traffic, not arithmetic (see the module docstring). With ``context=0``
    and ``batch_size=1`` the ratios equal :func:`trimlab.accounting.ideal_speedup`'s for
    models with a tied LM head. Use the mean context of a run (prompt + new/2).
    """
    a = decode_cost(full, context, batch_size, full_structure)
    b = decode_cost(trimmed, context, batch_size, trimmed_structure)
    r = {"flops": a["flops"] / b["flops"], "bytes": a["bytes"] / b["bytes"]}
    r["ideal"] = r["bytes"]
    return r


def prefill_flops(model: PreTrainedModel, prompt_tokens: int) -> float:
    """Forward FLOPs of a prefill of ``prompt_tokens``: each token's sub-layers at its
    own position (the mean context ``(P - 1) / 2``) and the LM head once."""
    ctx = (prompt_tokens - 1) / 2
    sub = sum(accounting.sublayer_flops(model, 0).values())
    heads, head_dim = accounting._head_geometry(model)
    n_attn = sum(n.endswith(".attn") for n in surgery.sublayers(model))
    per_token = sub + 4 * heads * head_dim * ctx * n_attn
    return prompt_tokens * per_token + accounting.lm_head_flops(model)


def ideal_prefill_speedup(
    full: PreTrainedModel, trimmed: PreTrainedModel, prompt_tokens: int
) -> float:
    """FLOPs ratio of a prefill (compute-bound, so FLOPs are its ideal)."""
    return prefill_flops(full, prompt_tokens) / prefill_flops(trimmed, prompt_tokens)


def fit_step_time(samples: Sequence[tuple[int, int, float]]) -> dict[str, float]:
    """Where a decode step's time goes: least squares of ``seconds = fixed + attn *
    n_attn + mlp * n_mlp`` over ``samples`` of ``(n_attn, n_mlp, seconds)`` (models of
    one family and dtype with different sub-layers left).

    ``fixed`` is the per-step work outside the blocks (embedding, final norm, LM head,
    loop); ``attn`` and ``mlp`` are the time of one attention / MLP sub-layer. Compare
    ``attn / mlp`` with their byte ratio: the excess of ``attn`` is its per-call
    overhead. When every sample keeps whole blocks (``n_attn == n_mlp``) the two
    cannot be told apart: ``attn`` and ``mlp`` are then both half a block's time, and
    ``separable`` is 0.
    """
    import numpy as np

    if len(samples) < 2:
        raise ValueError("need at least two samples")
    X = np.array([[1.0, a, m] for a, m, _ in samples])
    y = np.array([s for _, _, s in samples])
    if np.linalg.matrix_rank(X) >= 3:
        (fixed, attn, mlp), *_ = np.linalg.lstsq(X, y, rcond=None)
        return {"fixed": float(fixed), "attn": float(attn), "mlp": float(mlp), "separable": 1}
    Xb = np.array([[1.0, (a + m) / 2] for a, m, _ in samples])
    (fixed, block), *_ = np.linalg.lstsq(Xb, y, rcond=None)
    return {"fixed": float(fixed), "attn": block / 2, "mlp": block / 2, "separable": 0}


# ----------------------------------------------------------------------------- Pareto plot


def pareto_front(points: Sequence[tuple[float, float]], lower_x_better: bool) -> list[int]:
    """Indices of the points not dominated in (x, higher y), sorted by x.

    A point is dominated when another is at least as good in both and better in one;
    "good" x is small when ``lower_x_better`` (memory) and large otherwise (speed)."""
    idx = []
    for i, (x, y) in enumerate(points):
        dominated = False
        for j, (x2, y2) in enumerate(points):
            if j == i:
                continue
            bx = x2 <= x if lower_x_better else x2 >= x
            sx = x2 < x if lower_x_better else x2 > x
            if bx and y2 >= y and (sx or y2 > y):
                dominated = True
                break
        if not dominated:
            idx.append(i)
    return sorted(idx, key=lambda i: points[i][0])


def pareto_plot(rows: Sequence[dict], title: str | None = None):
    """The paper's Figure 2 for our models: accuracy against memory and against speed.

    ``rows`` are dicts with ``name``, ``acc`` (0..1 or percent), ``bytes`` (weights)
    and ``decode_tokens_per_s``; rows whose ``acc`` is None are skipped. The Pareto
    frontier of each panel is drawn as a line. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("acc") is not None]
    fig, (ax_mem, ax_speed) = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        (ax_mem, "bytes", 1 / 2**20, "weights (MiB)", True),
        (ax_speed, "decode_tokens_per_s", 1.0, "decode tokens/s (batch 1)", False),
    )
    for ax, key, scale, label, lower_better in panels:
        pts = [(r[key] * scale, r["acc"]) for r in rows]
        for r, (x, y) in zip(rows, pts):
            trim = "int8" not in r["name"] and r["name"] != "full"
            ax.scatter([x], [y], marker="o" if trim else "s", zorder=3)
            ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = pareto_front(pts, lower_x_better=lower_better)
        if front:
            ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    ax_mem.set_title("accuracy vs memory (left is better)")
    ax_speed.set_title("accuracy vs speed (right is better)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
