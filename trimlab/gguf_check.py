"""Reading an exported GGUF file back: the per-layer shape llama.cpp will build from it.

:func:`read_layout` uses ``gguf.GGUFReader`` (memory-mapped, nothing is loaded) to get the
architecture, each layer's query and key/value head counts and MLP width, the parameter
count and the tensor types. :func:`check_layout` compares that with what the exported
model has, so a converter that silently drops or reshapes a sub-layer is caught at export
time, not by a wrong answer later.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
from gguf import GGUFReader


def _per_layer(reader: GGUFReader, key: str, n: int) -> list[int]:
    field = reader.get_field(key)
    if field is None:
        raise ValueError(f"GGUF has no {key}")
    value = field.contents()
    return [int(v) for v in value] if isinstance(value, list) else [int(value)] * n


def read_layout(path: str | os.PathLike) -> dict:
    """What a GGUF file says about its model: arch, per-layer heads and widths, sizes."""
    reader = GGUFReader(path)
    arch = reader.get_field("general.architecture").contents()
    n = int(reader.get_field(f"{arch}.block_count").contents())
    return {
        "arch": arch,
        "block_count": n,
        "n_head": _per_layer(reader, f"{arch}.attention.head_count", n),
        "n_head_kv": _per_layer(reader, f"{arch}.attention.head_count_kv", n),
        "n_ff": _per_layer(reader, f"{arch}.feed_forward_length", n),
        "params": int(sum(int(np.prod(t.shape)) for t in reader.tensors)),
        "tensor_types": dict(Counter(t.tensor_type.name for t in reader.tensors)),
        "tensors": {t.name for t in reader.tensors},
    }


def check_layout(path: str | os.PathLike, expected: dict) -> dict:
    """Read ``path`` and raise ValueError where it differs from ``expected``.

    ``expected`` holds ``arch``, per-layer ``n_head``, ``n_head_kv`` and ``n_ff`` lists
    and ``params``. Each layer with heads must hold ``attn_q``, each with a width
    ``ffn_down``, and no other. Returns the layout read.
    """
    got = read_layout(path)
    problems = []
    for key in ("arch", "n_head", "n_head_kv", "n_ff", "params"):
        if got[key] != expected[key]:
            problems.append(f"{key}: file has {got[key]}, the model {expected[key]}")
    for i, (heads, width) in enumerate(zip(expected["n_head"], expected["n_ff"])):
        for name, want in (
            (f"blk.{i}.attn_q.weight", heads > 0),
            (f"blk.{i}.ffn_down.weight", width > 0),
        ):
            if (name in got["tensors"]) != want:
                problems.append(f"{name} {'missing' if want else 'unexpected'}")
    if problems:
        raise ValueError(f"{path} does not describe the exported model: " + "; ".join(problems))
    return got
