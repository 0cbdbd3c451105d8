"""The optimizer and the learning-rate schedule of one fine-tuning round.

Progressive dropping (Sec. 3.2) calls :func:`trimlab.finetune.finetune` once per round,
and the parameters of the sub-layers dropped in between no longer exist. Each call
therefore builds a **fresh AdamW** over the parameters that are trainable now
(:func:`build_optimizer`): its moment estimates start from zero every round (the
authors' code likewise restarts training each epoch).

The **learning-rate schedule is global**: :func:`global_scheduler` is a ``LambdaLR``
whose step i of this round is step ``global_step + i`` of one transformers schedule
(``transformers.get_scheduler``) over the whole run of ``total_steps`` optimizer steps.
With ``"linear"`` the learning rate warms up over the first ``warmup_steps`` steps of the
run and then decays linearly, to 0 after step ``total_steps - 1``; round k starts where
round k-1 stopped. ``"constant"`` (transformers' ``constant_with_warmup``) keeps ``lr``
after the warm-up; ``"cosine"`` is also offered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from transformers import Trainer, TrainingArguments, get_scheduler

LR_SCHEDULES = ("constant", "linear", "cosine")
_HF_SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def check_schedule(schedule: str) -> None:
    """ValueError unless ``schedule`` is one of :data:`LR_SCHEDULES`."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(
            f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"
        )


def schedule_factor(
    schedule: str = "constant", total_steps: int | None = None, warmup_steps: int = 0
) -> Callable[[int], float]:
    """transformers' learning-rate multiplier as a function of the global step (0-based).

    The function is the ``lr_lambda`` of ``get_scheduler(name, ...)``, taken from a
    scheduler over a throw-away optimizer so that no real optimizer is touched.
    """
    check_schedule(schedule)
    if schedule != "constant" and total_steps is None:
        raise ValueError(f"lr_schedule={schedule!r} needs total_steps")
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = get_scheduler(
        _HF_SCHEDULES[schedule],
        probe,
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
    )
    return scheduler.lr_lambdas[0]


def _shifted(factor: Callable[[int], float], offset: int, step: int) -> float:
    return factor(offset + step)


def global_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "constant",
    global_step: int = 0,
    total_steps: int | None = None,
    warmup_steps: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` whose step i of this round is step ``global_step + i`` of one
    transformers schedule over the whole run (see the module docstring)."""
    factor = schedule_factor(schedule, total_steps, warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(_shifted, factor, global_step)
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
