"""Fine-tuning on a domain's train split, with Hugging Face ``Trainer``.

What is trained
    Each item's prompt followed by its correct answer (and EOS), with the loss on the
    answer tokens only: see :mod:`trimlab.train_data`. The loss is the mean over all
    answer tokens of an optimizer step (Trainer passes the token count of the whole
    accumulated step to the model), not a mean of per-sequence means.

The loop
    ``transformers.Trainer`` runs it: ``max_steps=steps`` optimizer steps of
    ``batch_size * grad_accum`` examples, drawn by Trainer's seeded random sampler and
    cycling through the items epoch after epoch when there are fewer items than that.
    Batches come from transformers' ``DataCollatorForSeq2Seq``
    (:func:`trimlab.train_data.answer_collator`). Mixed precision, gradient
    accumulation, gradient clipping (norm 1.0, Trainer's default) and multiple devices
    come from Trainer and Accelerate. Nothing is written (``save_strategy="no"``,
    ``report_to=[]``) and Trainer evaluates nothing. On a CPU the model trains in its own
    dtype (float32); on a CUDA device with bfloat16 support ``bf16=True`` turns on
    bfloat16 autocast over float32 master weights (mixed precision; a model already
    loaded in bfloat16 simply trains in bfloat16). Only parameters with
    ``requires_grad`` train, so :func:`trimlab.sparse.freeze` makes the update sparse.

How the optimizer and learning-rate schedule carry across rounds
    Each call builds a fresh AdamW over the parameters trainable now; the learning-rate
    schedule is one ``transformers.get_scheduler`` schedule over the whole run, which
    round k continues at ``global_step`` where round k-1 stopped (see
    :mod:`trimlab.optim`). :func:`finetune` returns the next ``global_step`` to pass on.

Determinism
    Trainer seeds Python, NumPy and torch with ``seed`` and the sampler with
    ``data_seed=seed``, so on a CPU the same seed and the same initial weights give
    bit-identical weights. ``deterministic=True`` sets Trainer's ``full_determinism``
    (deterministic CUDA kernels; it changes torch's global settings for the process).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback

from trimlab.loglik import supports
from trimlab.optim import (
    LR_SCHEDULES,
    build_optimizer,
    check_schedule,
    global_scheduler,
    schedule_factor,
)
from trimlab.prompts import Item
from trimlab.runtime import model_device, pad_id
from trimlab.train_data import (
    IGNORE_INDEX,
    answer_ce,
    answer_collator,
    answer_positions,
    build_examples,
)

__all__ = [
    "IGNORE_INDEX",
    "LR_SCHEDULES",
    "StepLoss",
    "answer_collator",
    "answer_loss",
    "build_examples",
    "build_optimizer",
    "finetune",
    "global_scheduler",
    "pad_id",
    "schedule_factor",
    "use_bf16",
]


# --------------------------------------------------------------------------- training


StepLoss = Callable[[PreTrainedModel, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""A training loss other than the answer cross-entropy: ``loss(model, batch) -> (loss,
parts)``, a per-micro-batch mean and its named, detached parts (see :mod:`trimlab.distill`)."""


class _AnswerTrainer(Trainer):
    """Trainer that also counts the examples and answer tokens it trains on, and trains
    on ``step_loss`` instead of the model's own loss when one is given."""

    def __init__(self, *args, step_loss: StepLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.examples_seen = 0
        self.answer_tokens = torch.zeros((), dtype=torch.long)
        self.step_loss = step_loss
        self.loss_parts: dict[str, torch.Tensor] = {}
        self.micro_batches = 0
        if step_loss is not None:
            self.loss_is_scaled_for_ga = False  # a per-micro-batch mean: Trainer divides
        # The answer CE with the LM head on answer positions only (train_data.answer_ce,
        # Trainer's compute_loss_func), where the model takes a boolean logits_to_keep.
        self.answer_head = step_loss is None and self.compute_loss_func is answer_ce

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            labels = inputs["labels"]
            self.examples_seen += int(labels.shape[0])
            self.answer_tokens = (
                self.answer_tokens.to(labels.device) + labels.ne(IGNORE_INDEX).sum()
            )
        if self.step_loss is None:
            if self.answer_head and not return_outputs:  # the LM head on answer positions only
                inputs = {**inputs, "logits_to_keep": answer_positions(inputs["labels"])}
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        loss, parts = self.step_loss(model, inputs)
        if model.training:
            self.micro_batches += 1
            for name, value in parts.items():
                self.loss_parts[name] = self.loss_parts.get(name, 0) + value.detach().float()
        return (loss, None) if return_outputs else loss


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
    step_loss: StepLoss | None = None,
    group_by_length: bool = False,
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
        step_loss: train on this loss instead of the answer cross-entropy (e.g.
            :class:`trimlab.distill.KDLoss`); it gets each micro-batch as collated here
            and returns its mean, which Trainer divides by ``grad_accum``.
        group_by_length: Trainer's ``LengthGroupedSampler`` instead of the random sampler:
            each batch holds examples of similar length, so far less padding (open-book
            prompts range from 30 to 700 tokens); the order is seeded the same way.

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
    check_schedule(lr_schedule)
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
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )
    optimizer = build_optimizer(model, args, weight_decay)
    scheduler = global_scheduler(optimizer, lr_schedule, global_step, total_steps, warmup_steps)
    factor = schedule_factor(lr_schedule, total_steps, warmup_steps)
    use_cache = getattr(model.config, "use_cache", None)
    trainer = _AnswerTrainer(
        model=model,
        args=args,
        data_collator=answer_collator(tokenizer, pad_to_multiple_of=8 if cuda else None),
        train_dataset=examples,
        callbacks=list(callbacks or []),
        optimizers=(optimizer, scheduler),
        step_loss=step_loss,
        compute_loss_func=answer_ce if supports(model, "logits_to_keep") else None,
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
    parts = {n: float(v) / max(1, trainer.micro_batches) for n, v in trainer.loss_parts.items()}
    return {
        **({"loss_parts": parts} if step_loss is not None else {}),
        "train_loss": float(out.training_loss),
        "steps": int(out.global_step),
        "seconds": seconds,
        "tokens": int(tokens),
        "examples_seen": int(examples_seen),
        "global_step": global_step + int(out.global_step),
        "lr_first": lr * factor(global_step),
        "lr_last": lr * factor(global_step + int(out.global_step) - 1),
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
    collate = answer_collator(tokenizer)
    device = model_device(model)
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
