"""What the measured models are fed: prompts, token batches, and a greedy answer.

The speed claims of TrimLLM (Sec. 4, Tables 1 and 7) are about the same work done by a
smaller model, so every candidate of a comparison gets the very same prompt:
:func:`make_input_ids` builds a fixed ``(batch, tokens)`` batch with no padding.
:func:`generate_text` answers one question through the chat template, to see with one's
own eyes what a trimmed model still says (notebook 03, ``trimlab demo``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

DEFAULT_TEXT = (
    "Question: What do plants need for photosynthesis? Plants use sunlight, water and "
    "carbon dioxide to make glucose and oxygen in their leaves, inside the chloroplasts.\n"
    "Answer:"
)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


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
    enc = enc.to(model_device(model))
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


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
