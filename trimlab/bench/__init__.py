"""Measuring speed and memory honestly (TrimLLM Sec. 4: Tables 1 and 7, Fig. 2).

The paper claims a shallower model is smaller and faster on any hardware with no special
kernels, while quantization and sparsity need kernel support. This package holds small,
pure measuring functions, one concept per module; ``benchmarks/speed.py`` builds the
side-by-side comparison and ``notebooks/07_speed.ipynb`` teaches it.

* :mod:`~trimlab.bench.timing`: the harness (interleaved round-robin, warm-up,
  medians) and the rules every measurement follows;
* :mod:`~trimlab.bench.inputs`: the prompts and token batches the models are fed;
* :mod:`~trimlab.bench.speed`: prefill and decode timers and tokens/s;
* :mod:`~trimlab.bench.memory`: weight bytes in any storage form, peak run-time memory;
* :mod:`~trimlab.bench.variants`: the candidates (trimmed, int8, compiled copies);
* :mod:`~trimlab.bench.costs`: bytes read and FLOPs per decoded token and per prefill;
* :mod:`~trimlab.bench.ideal`: ideal speedups, and why measured ones fall short.

The accuracy-against-memory-and-speed plot (Fig. 2) lives in :mod:`trimlab.plots` and
is re-exported here, so ``trimlab.bench.X`` keeps working for every name.
"""

from __future__ import annotations

from trimlab.bench.costs import bytes_read_per_step, decode_cost, kv_bytes_per_token, prefill_flops
from trimlab.bench.ideal import fit_step_time, ideal_decode_speedup, ideal_prefill_speedup
from trimlab.bench.inputs import (
    DEFAULT_TEXT,
    chat_prompt,
    generate_text,
    make_input_ids,
    model_device,
)
from trimlab.bench.memory import cpu_memory_method, peak_memory_bytes, tensor_bytes, weight_bytes
from trimlab.bench.speed import (
    ENGINES,
    decode_fn,
    decode_tokens_per_second,
    generate_decode,
    greedy_decode,
    prefill,
    prefill_fn,
    prefill_tokens_per_second,
)
from trimlab.bench.timing import interleaved, median, speedup, synchronize
from trimlab.bench.variants import (
    block_drop_names,
    compile_blocks,
    prefix_for,
    quantize_int8,
    quantize_int8_torchao,
    torchao_available,
    trimmed_copies,
    trimmed_copy,
)
from trimlab.plots import pareto_front, pareto_plot

__all__ = [
    # timing
    "interleaved",
    "median",
    "speedup",
    "synchronize",
    # inputs
    "DEFAULT_TEXT",
    "chat_prompt",
    "generate_text",
    "make_input_ids",
    "model_device",
    # speed
    "ENGINES",
    "decode_fn",
    "decode_tokens_per_second",
    "generate_decode",
    "greedy_decode",
    "prefill",
    "prefill_fn",
    "prefill_tokens_per_second",
    # memory
    "cpu_memory_method",
    "peak_memory_bytes",
    "tensor_bytes",
    "weight_bytes",
    # variants
    "block_drop_names",
    "compile_blocks",
    "prefix_for",
    "quantize_int8",
    "quantize_int8_torchao",
    "torchao_available",
    "trimmed_copies",
    "trimmed_copy",
    # costs
    "bytes_read_per_step",
    "decode_cost",
    "kv_bytes_per_token",
    "prefill_flops",
    # ideal
    "fit_step_time",
    "ideal_decode_speedup",
    "ideal_prefill_speedup",
    # plots (Fig. 2)
    "pareto_front",
    "pareto_plot",
]
