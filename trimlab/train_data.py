"""Training examples for fine-tuning: each item's prompt followed by its correct answer.

Each multiple-choice item becomes one sequence: the prompt of
:func:`trimlab.prompts.build_prompt` followed by the continuation of the correct choice
(:func:`trimlab.prompts.continuation`), tokenized exactly as
:func:`trimlab.encoding.encode_items` tokenizes it for scoring (so what training raises
is the very log-likelihood that evaluation compares), then the EOS token. The loss is on
the answer tokens and the EOS only: the prompt tokens (and padding) are labelled -100.
The EOS target teaches the model to stop after an answer, which the generation demos
need; evaluation scores only the continuation, so the EOS adds one token per item to the
loss and nothing to the scoring (``add_eos=False`` leaves it out). Prompts longer than
the budget are cut from the left so that prompt + answer + EOS fits in ``max_length``
tokens (HFLM's rule, applied to the answer alone).

Batches are padded by transformers' ``DataCollatorForSeq2Seq`` (:func:`answer_collator`):
on the right, ``attention_mask`` 0 and label -100 on the padding.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from trimlab.encoding import encode_items
from trimlab.evaluate import validate_items
from trimlab.prompts import Item
from trimlab.runtime import pad_id

IGNORE_INDEX = -100
"""Label of the tokens that carry no loss (prompt and padding)."""


def build_examples(
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    use_context: bool = True,
    max_length: int = 384,
    add_eos: bool = True,
) -> list[dict]:
    """One training example per item: ``{"input_ids", "labels"}`` (lists of ints).

    ``input_ids`` is ``prompt + answer (+ EOS)`` with the prompt and answer tokens of
    :func:`trimlab.encoding.encode_items` (the item reduced to its correct choice, so the
    prompt is cut from the left only as far as that answer needs); ``labels`` repeats
    the answer and EOS tokens and has -100 on the prompt. At most ``max_length`` tokens.
    """
    items = validate_items(items)
    eos = tokenizer.eos_token_id if add_eos else None
    extra = 1 if eos is not None else 0
    if max_length < 2 + extra:
        raise ValueError(f"max_length must be at least {2 + extra}, got {max_length}")
    answers = [
        {**item, "choices": [item["choices"][int(item["answer"])]], "answer": 0} for item in items
    ]
    # encode_items keeps prompt + answer - 1 <= its budget; the model reads all of
    # prompt + answer (+ EOS), hence the budget max_length - 1 - extra.
    encoded = encode_items(tokenizer, answers, use_context, max_length - 1 - extra)
    examples = []
    for enc in encoded:
        answer = list(enc.conts[0])
        if eos is not None and answer[-1] != eos:
            answer.append(eos)
        prompt = list(enc.prompt)
        examples.append(
            {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}
        )
    return examples


def answer_collator(
    tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None
) -> DataCollatorForSeq2Seq:
    """transformers' ``DataCollatorForSeq2Seq`` for :func:`build_examples` rows.

    It right-pads ``input_ids`` with :func:`trimlab.runtime.pad_id`, sets
    ``attention_mask`` 0 and ``labels`` -100 on the padding, and returns tensors. The
    collator pads on the tokenizer's side with its pad token, so a tokenizer that pads on
    the left, has no pad token or returns no attention mask is first copied and set
    right (the caller's is left as it is; :func:`trimlab.models.load_model`'s tokenizers
    need no copy).
    """
    if (
        tokenizer.padding_side != "right"
        or tokenizer.pad_token_id is None
        or "attention_mask" not in tokenizer.model_input_names
    ):
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.padding_side = "right"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token_id = pad_id(tokenizer)
        if "attention_mask" not in tokenizer.model_input_names:
            tokenizer.model_input_names = [*tokenizer.model_input_names, "attention_mask"]
    return DataCollatorForSeq2Seq(
        tokenizer,
        padding=True,
        pad_to_multiple_of=pad_to_multiple_of,
        label_pad_token_id=IGNORE_INDEX,
        return_tensors="pt",
    )


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """``[batch, seq]`` booleans: the positions whose logits predict a labelled token
    (position ``t`` predicts token ``t + 1``), for a boolean ``logits_to_keep``."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:].ne(IGNORE_INDEX)
    return keep


def answer_ce(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """The answer cross-entropy from a forward pass whose LM head ran on the answer
    positions only (``logits_to_keep=answer_positions(labels)``: logits ``[N, vocab]``)
    or on every position (``[batch, seq, vocab]``).

    It is transformers' causal-LM loss (``ForCausalLMLoss``): the float32 cross-entropy
    of the shifted labels, summed and divided by ``num_items_in_batch`` when Trainer
    passes it (every labelled token of the accumulated batch), else averaged. With the
    LM head on answer positions only, a long prompt costs no LM-head product and no
    log-softmax over the vocabulary: on open-book SciQ most positions are prompt.
    """
    target = labels[:, 1:]
    real = target.ne(IGNORE_INDEX)
    logits = outputs.logits
    if logits.dim() == 3:
        logits = logits[:, :-1][real]
    tgt = target[real]
    loss = F.cross_entropy(logits.float(), tgt.to(logits.device), reduction="sum")
    if num_items_in_batch is None:
        return loss / max(1, tgt.numel())
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch
