"""The heal step: training between two drops (TrimLLM Sec. 3.2 and 3.4).

Progressive dropping alternates healing and dropping. A heal step is any callable with
the signature of :class:`Heal`: it trains the model's trainable units for one round and
reports what it did. :func:`trimlab.trim` calls it once per round and knows nothing
else about it, so another way of healing (distillation, say) plugs in without touching
the loop.

* :class:`AnswerCE` is the paper's: fine-tuning on the answer's cross-entropy (the
  tokens of the correct choice, prompt masked), through transformers' ``Trainer``, in
  the run's compute dtype (bf16: Trainer's mixed precision over fp32 master weights).
* :class:`Distill` (``heal="kd"``) distils the full-fine-tuned teacher into the model:
  KL to the teacher over every position, plus the answer cross-entropy at a small
  weight and an optional hidden-state term, from a teacher cache
  (:mod:`trimlab.distill`).
* :class:`NoHeal` trains nothing: a run that only scores and drops.

A heal step may also have ``prepare(model, tokenizer, config)``, which :func:`prepare_heal`
calls at the start of :func:`trimlab.trim`, before any work: it checks its settings
(ValueError) and loads what it needs once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from transformers import PreTrainedModel

from trimlab import distill
from trimlab.config import TrimConfig
from trimlab.finetune import StepLoss, finetune
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


def train_round(
    model, tokenizer, items, config: TrimConfig, where: HealRound, progress=False, **kw
) -> dict:
    """One round of :func:`trimlab.finetune.finetune` with the run's settings (``kw``:
    e.g. ``step_loss``)."""
    return finetune(
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
        group_by_length=config.group_by_length,
        **kw,
    )


class AnswerCE:
    """The paper's heal step: ``steps_per_round`` steps on the answer cross-entropy of
    ``train`` items, with the run's LR schedule continued across rounds."""

    name = "ce"

    def __call__(self, model, tokenizer, items, config, where, progress=False) -> dict:
        if config.steps_per_round == 0:
            return NoHeal()(model, tokenizer, items, config, where)
        fit = train_round(model, tokenizer, items, config, where, progress)
        return {"train_loss": fit["train_loss"], "steps": fit["steps"], "lr": fit.get("lr_last")}


class Distill:
    """Healing by distillation (``heal="kd"``): the same rounds, sampler, seeds and LR
    schedule as :class:`AnswerCE`, on :class:`trimlab.distill.KDLoss`.

    The teacher is ``config.teacher`` (a saved model directory), or ``teacher``, a
    ``(model, tokenizer)`` pair given here. It is loaded once, frozen, and (with
    ``config.kd_cache``) its top-``kd_topk`` outputs are cached per training example for
    the whole run. The report adds ``"kd"``, the mean loss parts of the round, and
    ``"teacher_cache"``, the cache's size so far."""

    name = "kd"

    def __init__(self, teacher: tuple | None = None):
        self.teacher = teacher
        self.source: distill.TeacherCache | distill.LiveTeacher | None = None

    def prepare(self, model, tokenizer, config: TrimConfig) -> None:
        """Load the teacher (once) and check it; ValueError for a missing teacher or
        another vocabulary. Nothing of ``model`` is changed."""
        if self.teacher is None:
            if not config.teacher:
                raise ValueError("heal='kd' needs a teacher: set TrimConfig.teacher (--teacher)")
            self.teacher = distill.load_teacher(config.teacher, model_device(model))
        teacher, teacher_tok = self.teacher
        distill.check_teacher(teacher, teacher_tok, model, tokenizer)
        if self.source is None:
            hidden = config.kd_hidden_weight > 0
            dtype = compute_dtype(config.dtype, model_device(model))
            self.source = (
                distill.TeacherCache(teacher, config.kd_topk, hidden, dtype)
                if config.kd_cache
                else distill.LiveTeacher(teacher, hidden, dtype)
            )

    def loss(self, config: TrimConfig) -> StepLoss:
        return distill.KDLoss(
            self.source, config.kd_temperature, config.kd_ce_weight, config.kd_hidden_weight
        )

    def __call__(self, model, tokenizer, items, config, where, progress=False) -> dict:
        if config.steps_per_round == 0:
            return NoHeal()(model, tokenizer, items, config, where)
        self.prepare(model, tokenizer, config)
        fit = train_round(
            model, tokenizer, items, config, where, progress, step_loss=self.loss(config)
        )
        report = {"train_loss": fit["train_loss"], "steps": fit["steps"], "lr": fit.get("lr_last")}
        report["kd"] = fit["loss_parts"]
        if isinstance(self.source, distill.TeacherCache):
            report["teacher_cache"] = self.source.stats()
        return report


HEALS: dict[str, type] = {"ce": AnswerCE, "kd": Distill, "none": NoHeal}


def get_heal(name: str) -> Heal:
    """The heal step called ``name`` (``config.heal``)."""
    if name not in HEALS:
        raise ValueError(f"unknown heal step {name!r}; choose one of {', '.join(HEALS)}")
    return HEALS[name]()


def prepare_heal(healer: Heal, model, tokenizer, config: TrimConfig) -> None:
    """Call ``healer.prepare(model, tokenizer, config)`` where the heal step has one."""
    prepare = getattr(healer, "prepare", None)
    if prepare is not None:
        prepare(model, tokenizer, config)


def train_budget(model, tokenizer, items, config: TrimConfig, steps: int) -> dict:
    """Fine-tuning without dropping: ``steps`` steps of ``config.heal`` as one round with
    its own LR schedule (the full-FT, sparse-FT and one-shot rows, and a KD teacher).
    Trains what is trainable now; seed ``config.seed + 1``, as round 1 of a trim run."""
    healer = get_heal(config.heal)
    prepare_heal(healer, model, tokenizer, config)
    where = HealRound(round=1, global_step=0, total_steps=steps)
    return healer(model, tokenizer, items, config.replace(steps_per_round=steps), where)
