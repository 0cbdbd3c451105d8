"""The heal step: training between two drops (TrimLLM Sec. 3.2 and 3.4).

Progressive dropping alternates healing and dropping. A heal step is any callable with
the signature of :class:`Heal`: it trains the model's trainable units for one round and
reports what it did. :func:`trimlab.trim` calls it once per round and knows nothing
else about it, so another way of healing (distillation, say) plugs in without touching
the loop.

* :class:`AnswerCE` is the paper's: fine-tuning on the answer's cross-entropy (the
  tokens of the correct choice, prompt masked), through transformers' ``Trainer``, in
  the run's compute dtype (bf16: Trainer's mixed precision over fp32 master weights).
* :class:`NoHeal` trains nothing: a run that only scores and drops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from transformers import PreTrainedModel

from trimlab.config import TrimConfig
from trimlab.finetune import finetune
from trimlab.runtime import compute_dtype, model_device


@dataclass(frozen=True)
class HealRound:
    """Where one heal call sits in the run's schedule."""

    round: int
    """1-based round number."""
    global_step: int
    """Optimizer steps taken by earlier rounds (the LR schedule continues from here)."""
    total_steps: int
    """Steps the LR schedule is planned over (it reaches zero there)."""


class Heal(Protocol):
    """``heal(model, tokenizer, items, config, where) -> {"train_loss", "steps", "lr"}``."""

    name: str

    def __call__(
        self,
        model: PreTrainedModel,
        tokenizer: object,
        items: Sequence[dict],
        config: TrimConfig,
        where: HealRound,
        progress: bool = False,
    ) -> dict: ...


class NoHeal:
    """Train nothing: the round only scores and drops."""

    name = "none"

    def __call__(self, model, tokenizer, items, config, where, progress=False) -> dict:
        return {"train_loss": None, "steps": 0, "lr": None}


class AnswerCE:
    """The paper's heal step: ``steps_per_round`` steps on the answer cross-entropy of
    ``train`` items, with the run's LR schedule continued across rounds."""

    name = "ce"

    def __call__(self, model, tokenizer, items, config, where, progress=False) -> dict:
        if config.steps_per_round == 0:
            return NoHeal()(model, tokenizer, items, config, where)
        fit = finetune(
            model,
            tokenizer,
            items,
            steps=config.steps_per_round,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed + where.round,
            use_context=config.use_context,
            max_length=config.max_length,
            lr_schedule=config.lr_schedule,
            warmup_steps=config.warmup_steps,
            global_step=where.global_step,
            total_steps=where.total_steps,
            progress=progress,
            bf16=compute_dtype(config.dtype, model_device(model)) == "bf16",
        )
        return {"train_loss": fit["train_loss"], "steps": fit["steps"], "lr": fit.get("lr_last")}


HEALS: dict[str, type] = {"ce": AnswerCE, "none": NoHeal}


def get_heal(name: str) -> Heal:
    """The heal step called ``name`` (``config.heal``)."""
    if name not in HEALS:
        raise ValueError(f"unknown heal step {name!r}; choose one of {', '.join(HEALS)}")
    return HEALS[name]()
