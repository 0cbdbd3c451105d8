"""Measuring speed honestly: warm-up, repeats, medians (the paper's Tables 1 and 7).

Only the small measuring functions live here so far; ``benchmarks/speed.py`` (issue 6)
builds the side-by-side comparisons from them.
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import PreTrainedModel


def chat_prompt(tokenizer, text: str) -> str:
    """``text`` as a user turn in the tokenizer's chat template, ready for the answer."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


@torch.no_grad()
def generate_text(model: PreTrainedModel, tokenizer, text: str, max_new_tokens: int = 64) -> str:
    """Greedy answer of ``model`` to ``text`` through the chat template (KV cache on)."""
    enc = tokenizer(chat_prompt(tokenizer, text), return_tensors="pt", add_special_tokens=False)
    enc = enc.to(next(model.parameters()).device)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def decode_tokens_per_second(
    model: PreTrainedModel,
    tokenizer,
    prompt: str = "Question: What do plants need for photosynthesis?\nAnswer:",
    new_tokens: int = 32,
    batch_size: int = 1,
    repeats: int = 3,
) -> float:
    """Median greedy decode speed (generated tokens per second, KV cache on), after a
    warm-up. Generation is forced to run ``new_tokens`` steps (no early stop)."""
    enc = tokenizer([prompt] * batch_size, return_tensors="pt").to(next(model.parameters()).device)
    kw = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.generate(**enc, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.generate(**enc, **kw)
        times.append(time.perf_counter() - t)
    return new_tokens * batch_size / statistics.median(times)
