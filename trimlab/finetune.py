"""Fine-tuning on a domain's train split, with Hugging Face ``Trainer``.

What is trained
    Each multiple-choice item becomes one sequence: the prompt of
    :func:`trimlab.prompts.build_prompt` followed by the continuation of the correct
    choice (:func:`trimlab.prompts.continuation`), tokenized exactly as
    :func:`trimlab.evaluate.encode_items` tokenizes it for scoring (so what training
    raises is the very log-likelihood that evaluation compares), then the EOS token.
    The loss is the causal-LM cross-entropy on the answer tokens and the EOS only; the
    prompt tokens (and padding) are labelled -100. The EOS target teaches the model to
    stop after an answer, which the generation demos need; evaluation scores only the
    continuation, so the EOS adds one token per item to the loss and nothing to the
    scoring (``add_eos=False`` leaves it out). Prompts longer than the budget are cut from
    the left so that prompt + answer + EOS fits in ``max_length`` tokens (HFLM's rule,
    applied to the answer alone). The loss is the mean over all answer tokens of an
    optimizer step (Trainer passes the token count of the whole accumulated step to the
    model), not a mean of per-sequence means.

The loop
    ``transformers.Trainer`` runs it: ``max_steps=steps`` optimizer steps of
    ``batch_size * grad_accum`` examples, drawn by Trainer's seeded random sampler and
    cycling through the items epoch after epoch when there are fewer items than that.
    Mixed precision, gradient accumulation, gradient clipping (norm 1.0, Trainer's
    default) and multiple devices come from Trainer and Accelerate. Nothing is written
    (``save_strategy="no"``, ``report_to=[]``) and Trainer evaluates nothing. On a CPU the
    model trains in its own dtype (float32); on a CUDA device with bfloat16 support
    ``bf16=True`` turns on bfloat16 autocast over float32 master weights (mixed
    precision; a model already loaded in bfloat16 simply trains in bfloat16). Only
    parameters with ``requires_grad`` train, so :func:`trimlab.sparse.freeze` makes the
    update sparse.

How the optimizer and learning-rate schedule carry across rounds
    Progressive dropping (Sec. 3.2) calls :func:`finetune` once per round, and the
    parameters of the sub-layers dropped in between no longer exist. Each call therefore
    builds a **fresh AdamW** over the parameters that are trainable now: its moment
    estimates start from zero every round (the authors' code likewise restarts training
    each epoch). The **learning-rate schedule is global**: a ``LambdaLR`` passed to
    Trainer through ``optimizers=(optimizer, scheduler)`` evaluates one schedule over the
    whole run at ``global_step + i``, i the step within the call. With
    ``lr_schedule="linear"``, ``total_steps`` the run's total optimizer steps and
    ``global_step`` the steps done in earlier rounds, the learning rate warms up over the
    first ``warmup_steps`` steps of the run and then decays linearly to 0 at
    ``total_steps``; round k starts where round k-1 stopped. :func:`finetune` returns the
    next ``global_step`` to pass on. ``"constant"`` (the default) keeps ``lr`` after the
    warm-up; ``"cosine"`` is also offered. The formulas are those of transformers'
    ``get_{constant,linear,cosine}_schedule_with_warmup``.

Determinism
    Trainer seeds Python, NumPy and torch with ``seed`` and the sampler with
    ``data_seed=seed``, so on a CPU the same seed and the same initial weights give
    bit-identical weights. ``deterministic=True`` sets Trainer's ``full_determinism``
    (deterministic CUDA kernels; it changes torch's global settings for the process).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback

from trimlab.evaluate import encode_items, validate_items
from trimlab.prompts import Item

IGNORE_INDEX = -100
"""Label of the tokens that carry no loss (prompt and padding)."""
LR_SCHEDULES = ("constant", "linear", "cosine")


# --------------------------------------------------------------------------- examples


def build_examples(
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    use_context: bool = True,
    max_length: int = 384,
    add_eos: bool = True,
) -> list[dict]:
    """One training example per item: ``{"input_ids", "labels"}`` (lists of ints).

    ``input_ids`` is ``prompt + answer (+ EOS)`` with the prompt and answer tokens of
    :func:`trimlab.evaluate.encode_items` (the item reduced to its correct choice, so the
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


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The padding token id: the tokenizer's pad, else its EOS, else 0 (always masked)."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


@dataclass
class AnswerCollator:
    """Right-pads a batch of :func:`build_examples` rows: ``input_ids`` with ``pad_id``,
    ``attention_mask`` 0 and ``labels`` -100 on padding."""

    pad_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[b, :n] = torch.tensor(r["input_ids"])
            mask[b, :n] = 1
            labels[b, :n] = torch.tensor(r["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --------------------------------------------------------------------------- schedule


def lr_factor(
    step: int, schedule: str = "constant", total_steps: int | None = None, warmup_steps: int = 0
) -> float:
    """The learning-rate multiplier at global optimizer step ``step`` (0-based).

    Linear warm-up from 0 over ``warmup_steps``, then ``constant`` 1, ``linear`` decay to
    0 at ``total_steps``, or ``cosine`` decay to 0 at ``total_steps`` (transformers'
    ``get_*_schedule_with_warmup`` formulas).
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(
            f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"
        )
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if schedule == "constant":
        return 1.0
    if total_steps is None:
        raise ValueError(f"lr_schedule={schedule!r} needs total_steps")
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def global_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "constant",
    global_step: int = 0,
    total_steps: int | None = None,
    warmup_steps: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` whose step i of this round is step ``global_step + i`` of one
    schedule over the whole run (see the module docstring)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda i: lr_factor(global_step + i, schedule, total_steps, warmup_steps),
    )


def build_optimizer(
    model: torch.nn.Module, args: TrainingArguments, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """A fresh AdamW (Trainer's choice for ``args.optim``) over the trainable parameters;
    weight decay only on matrices (not on biases and norm weights)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "finetune: the model has no trainable parameters (every requires_grad is False); "
            "check trimlab.sparse.freeze"
        )
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [
        {"params": g, "weight_decay": wd} for g, wd in ((decay, weight_decay), (rest, 0.0)) if g
    ]
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return optimizer_cls(groups, **optimizer_kwargs)


# --------------------------------------------------------------------------- training


class _AnswerTrainer(Trainer):
    """Trainer that also counts the examples and answer tokens it trains on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.examples_seen = 0
        self.answer_tokens = torch.zeros((), dtype=torch.long)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            labels = inputs["labels"]
            self.examples_seen += int(labels.shape[0])
            self.answer_tokens = (
                self.answer_tokens.to(labels.device) + labels.ne(IGNORE_INDEX).sum()
            )
        return super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )


def use_bf16(model: torch.nn.Module) -> bool:
    """bfloat16 autocast on CUDA when the device supports it and the weights are not
    float16; never on the CPU."""
    if not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
        return False
    return next(model.parameters()).dtype != torch.float16


def finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-4,
    seed: int = 0,
    use_context: bool = True,
    max_length: int = 384,
    grad_accum: int = 1,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    lr_schedule: str = "constant",
    global_step: int = 0,
    total_steps: int | None = None,
    callbacks: Sequence[TrainerCallback] | None = None,
    output_dir: str | None = None,
    progress: bool = False,
    logging_steps: int | None = None,
    add_eos: bool = True,
    bf16: bool | None = None,
    deterministic: bool = False,
    max_grad_norm: float = 1.0,
) -> dict:
    """Fine-tune ``model`` in place on ``items`` for ``steps`` optimizer steps.

    Args:
        items: multiple-choice items (a domain's train split); each trains its prompt
            followed by its correct answer (see :func:`build_examples`).
        steps: optimizer steps in this call (one round of progressive dropping).
        batch_size: sequences per device and micro-batch; an optimizer step sees
            ``batch_size * grad_accum`` (times the number of devices).
        lr: peak learning rate of AdamW.
        seed: seeds the data order and everything random (same seed, same weights).
        use_context, max_length, add_eos: as in :func:`build_examples`.
        weight_decay: AdamW weight decay on weight matrices.
        warmup_steps, lr_schedule, global_step, total_steps: one learning-rate schedule
            over the whole run (see the module docstring); ``total_steps`` defaults to
            ``global_step + steps``.
        callbacks: ``transformers.TrainerCallback`` objects, passed to Trainer (their
            ``on_log`` receives ``{"loss", "learning_rate", ...}`` every
            ``logging_steps`` steps; the step counter restarts at 0 each call).
        output_dir: Trainer's output directory (nothing is saved there); a temporary
            directory by default.
        progress: show Trainer's progress bar (and its log lines).
        logging_steps: log the loss every this many steps (default ``steps // 20``, at
            least 1).
        bf16: bfloat16 mixed precision; ``None`` turns it on where :func:`use_bf16` says.
        deterministic: Trainer's ``full_determinism`` (see the module docstring).
        max_grad_norm: gradient clipping norm (Trainer's default 1.0).

    Returns:
        ``{"train_loss", "steps", "seconds", "tokens", "examples_seen", "global_step",
        "lr_first", "lr_last", "history"}``: the mean of the per-step losses, the steps
        run, wall time, answer (+ EOS) tokens and examples trained on, the
        ``global_step`` for the next round, the learning rates of the first and last
        step, and Trainer's logged ``{"step", "loss", "learning_rate", ...}`` rows (steps
        counted globally).

    The model is returned to eval mode (on the device Trainer put it on) and its
    ``config.use_cache`` is restored.

    Raises:
        ValueError: for no trainable parameters, bad sizes, an unknown schedule, or a
            schedule whose ``total_steps`` ends before this round does.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("grad_accum", grad_accum)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if global_step < 0 or warmup_steps < 0:
        raise ValueError(
            f"global_step and warmup_steps must be >= 0, got {global_step}, {warmup_steps}"
        )
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"
        )
    if total_steps is None:
        total_steps = global_step + steps
    if global_step + steps > total_steps:
        raise ValueError(
            f"this round ends at global step {global_step + steps}, after total_steps="
            f"{total_steps}: the {lr_schedule} schedule would have ended"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "finetune: the model has no trainable parameters (every requires_grad is False); "
            "check trimlab.sparse.freeze"
        )
    examples = build_examples(tokenizer, items, use_context, max_length, add_eos)

    cuda = torch.cuda.is_available()
    if bf16 is None:
        bf16 = use_bf16(model)
    if logging_steps is None:
        logging_steps = max(1, steps // 20)
    tmp = tempfile.TemporaryDirectory(prefix="trimlab-ft-") if output_dir is None else None
    args = TrainingArguments(
        output_dir=output_dir if output_dir is not None else tmp.name,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=lr,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        seed=seed,
        data_seed=seed,
        full_determinism=deterministic,
        use_cpu=not cuda,
        bf16=bf16,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_strategy="steps",
        logging_steps=logging_steps,
        disable_tqdm=not progress,
        remove_unused_columns=False,
        dataloader_pin_memory=cuda,
        dataloader_num_workers=0,
    )
    optimizer = build_optimizer(model, args, weight_decay)
    scheduler = global_scheduler(optimizer, lr_schedule, global_step, total_steps, warmup_steps)
    use_cache = getattr(model.config, "use_cache", None)
    trainer = _AnswerTrainer(
        model=model,
        args=args,
        data_collator=AnswerCollator(pad_id(tokenizer), pad_to_multiple_of=8 if cuda else None),
        train_dataset=examples,
        callbacks=list(callbacks or []),
        optimizers=(optimizer, scheduler),
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    try:
        out = trainer.train()
    finally:
        model.eval()
        if use_cache is not None:
            model.config.use_cache = use_cache
        if tmp is not None:
            tmp.cleanup()
    seconds = time.perf_counter() - start
    tokens = trainer.answer_tokens
    examples_seen = torch.tensor(trainer.examples_seen, device=tokens.device)
    if trainer.accelerator.num_processes > 1:  # pragma: no cover - multi-device only
        tokens = trainer.accelerator.reduce(tokens, "sum")
        examples_seen = trainer.accelerator.reduce(examples_seen, "sum")
    history = [
        {**row, "step": global_step + row["step"]}
        for row in trainer.state.log_history
        if "loss" in row
    ]
    return {
        "train_loss": float(out.training_loss),
        "steps": int(out.global_step),
        "seconds": seconds,
        "tokens": int(tokens),
        "examples_seen": int(examples_seen),
        "global_step": global_step + int(out.global_step),
        "lr_first": lr * lr_factor(global_step, lr_schedule, total_steps, warmup_steps),
        "lr_last": lr
        * lr_factor(global_step + int(out.global_step) - 1, lr_schedule, total_steps, warmup_steps),
        "history": history,
    }


# --------------------------------------------------------------------------- evaluation


def answer_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Item],
    batch_size: int = 8,
    use_context: bool = True,
    max_length: int = 384,
    add_eos: bool = True,
) -> float:
    """The training loss without training: mean cross-entropy over all answer (+ EOS)
    tokens of ``items``, under the model's current weights."""
    examples = build_examples(tokenizer, items, use_context, max_length, add_eos)
    collate = AnswerCollator(pad_id(tokenizer))
    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = collate(examples[start : start + batch_size])
                n = int(batch["labels"][:, 1:].ne(IGNORE_INDEX).sum())
                out = model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False)
                total += float(out.loss) * n
                count += n
    finally:
        model.train(was_training)
    return total / count
