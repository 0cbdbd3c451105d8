"""One run configuration: every setting of a TrimLLM run, in one frozen object.

:class:`TrimConfig` is built once, from a profile (:mod:`trimlab.profiles`) plus
overrides, and is what :func:`trimlab.trim`, the heal step, scoring, the CLI and the
benchmarks read. So one run has one token budget, batch size, context use and LR
schedule, and ``history.json`` stores exactly this object (``settings``).

The settings follow the paper's setup (Sec. 3.2-3.4, Sec. 4.1): the sparse update ratio
``r`` (Sec. 3.4), the drop rate ``k`` (sub-layers removed per round; 2 is the paper's
"adaptive" variant), the importance score (Eq. 3, Eq. 4 or both) and the training
between two drops.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from trimlab.profiles import Profile, get_profile
from trimlab.runtime import COMPUTE_DTYPES

SCORE_METHODS = (
    "both",
    "calibration",
    "loglik",
    "activation",
    "block_influence",
    "angular",
    "random",
    "top",
    "bottom",
)
HEALS = ("ce", "kd", "none")
LR_SCHEDULES = ("linear", "cosine", "constant")


@dataclass(frozen=True)
class TrimConfig:
    """The settings of one run (model, data budget, method, schedule)."""

    profile: str = "cpu"
    """Name of the profile the defaults came from."""
    model: str = "smollm2-135m"
    r: float = 0.25
    """Sparse update ratio: ceil(r*U) of the U units are trainable (Sec. 3.4)."""
    drop_rate: int = 1
    """Sub-layers removed per round (k)."""
    score: str = "both"
    """How the sub-layers to drop are ranked (see :mod:`trimlab.scoring`)."""
    select_score: str = "both"
    """How the trainable set is chosen before training (Sec. 3.4). It stays TrimLLM's
    (``both``) for every ``score``, so that rule-based baselines (Table 3) differ from
    TrimLLM in the drop order only."""
    granularity: str = "sublayer"
    """Trainable unit and drop unit: ``sublayer`` or ``block``."""
    train_embeddings: bool = False
    steps_per_round: int = 10
    """Optimizer steps of healing between two drops (one 'epoch' in the paper)."""
    calib_items: int = 32
    """Calibration items per scoring pass (a fresh sample of ``calib`` each round)."""
    eval_items: int = 300
    """Test items for the tables of a run (never used to choose anything)."""
    batch_size: int = 8
    use_context: bool = False
    """Whether prompts carry the support paragraph, in training, scoring and test alike."""
    max_length: int = 256
    """Token budget per sequence, in training, scoring and test alike."""
    lr: float = 1e-4
    lr_schedule: str = "linear"
    """Over the whole run: it reaches zero at the end of the rounds planned for the
    target (see :func:`trimlab.pipeline.planned_rounds`)."""
    warmup_steps: int = 0
    heal: str = "ce"
    """The heal step between drops: ``ce`` (answer cross-entropy, the paper's), ``kd``
    (distillation from ``teacher``: :mod:`trimlab.distill`) or ``none`` (score and drop
    only)."""
    teacher: str | None = None
    """``heal="kd"``: the saved model directory of the teacher, the full-fine-tuned model
    of the same setting (what ``save_trimmed`` or ``save_pretrained`` writes)."""
    kd_temperature: float = 1.0
    """Distillation temperature T (the KL term is scaled by T²)."""
    kd_ce_weight: float = 0.1
    """Weight of the answer cross-entropy added to the KL term."""
    kd_hidden_weight: float = 0.0
    """Weight of the final-hidden-state MSE term (0: off)."""
    kd_topk: int = 64
    """Teacher logits kept per position in the cache (the KL is over the teacher's top k)."""
    kd_cache: bool = True
    """Cache the teacher's outputs once per training example; False runs the teacher on
    every batch, over the full vocabulary."""
    dtype: str = "fp32"
    """Compute dtype of training, evaluation and scoring: ``fp32``, ``bf16`` (bf16
    autocast over fp32 master weights) or ``auto`` (bf16 where the hardware has fast
    bf16: :func:`trimlab.runtime.fast_bf16`). Exact-agreement runs pin ``fp32``."""
    scan_candidates: int | None = None
    """Re-scan only this many sub-layers per round: the least important by their latest
    measurement, the initial scores included (:func:`trimlab.schedule.candidates`);
    ``None`` re-scans all. It saves time for the drop-one scans (``calibration``,
    ``loglik``, ``both``); other methods measure all and choose among the candidates."""
    cost_aware: bool = False
    """``loglik`` only: rank by log-likelihood lost per decoder parameter removed
    (:func:`trimlab.schedule.cost_aware`), so an MLP must cost less than three attentions."""
    final_steps: int = 0
    """Healing steps after the last drop (a final heal phase; the LR schedule covers it)."""
    group_by_length: bool = False
    """Batch training examples of similar length (Trainer's length-grouped sampler):
    less padding, the same examples; a different order than the random sampler."""
    accuracy_floor: float | None = None
    """Never drop below this calibration accuracy: a drop that would go under it is
    refused and the run stops there."""
    seed: int = 0

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_profile(cls, profile: Profile | str | None = None, **overrides: object) -> TrimConfig:
        """The profile's settings, then ``overrides`` (``None`` values are ignored)."""
        prof = profile if isinstance(profile, Profile) else get_profile(profile)
        base = cls(
            profile=prof.name,
            model=prof.model,
            drop_rate=prof.drop_rate,
            steps_per_round=prof.train_steps_per_round,
            calib_items=prof.calib_items,
            eval_items=prof.eval_items,
            batch_size=prof.batch_size,
            use_context=prof.use_context,
            max_length=prof.max_length,
            dtype=prof.dtype,
            select_score=prof.select_score,
            scan_candidates=prof.scan_candidates,
        )
        return base.replace(**overrides)

    def replace(self, **overrides: object) -> TrimConfig:
        """A checked copy with ``overrides`` applied (``None`` values are ignored)."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown run settings {unknown}; known: {', '.join(sorted(names))}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes).check()

    @classmethod
    def from_settings(cls, settings: dict) -> TrimConfig:
        """The configuration stored in a ``history.json`` (older files lack new fields:
        those get their defaults; run-level keys such as ``domain`` are skipped)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ validation

    def check(self) -> TrimConfig:
        """ValueError naming the first bad setting; returns ``self``."""
        if isinstance(self.r, bool) or not isinstance(self.r, (int, float)) or not 0 < self.r <= 1:
            raise ValueError(f"r must be in (0, 1], got {self.r!r}")
        for name in ("drop_rate", "calib_items", "eval_items", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("steps_per_round", "warmup_steps", "seed", "final_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        for name, allowed in (
            ("score", SCORE_METHODS),
            ("select_score", SCORE_METHODS),
            ("heal", HEALS),
            ("lr_schedule", LR_SCHEDULES),
            ("dtype", COMPUTE_DTYPES),
            ("granularity", ("sublayer", "block")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )
        if _not_number(self.kd_temperature) or self.kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be > 0, got {self.kd_temperature!r}")
        for name in ("kd_ce_weight", "kd_hidden_weight"):
            value = getattr(self, name)
            if _not_number(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if isinstance(self.kd_topk, bool) or not isinstance(self.kd_topk, int) or self.kd_topk < 1:
            raise ValueError(f"kd_topk must be an integer >= 1, got {self.kd_topk!r}")
        if self.teacher is not None and not isinstance(self.teacher, str):
            raise ValueError(f"teacher must be a directory path (str), got {self.teacher!r}")
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.scan_candidates is not None and (
            isinstance(self.scan_candidates, bool)
            or not isinstance(self.scan_candidates, int)
            or self.scan_candidates < self.drop_rate
        ):
            raise ValueError(
                f"scan_candidates must be None or an integer >= drop_rate ({self.drop_rate}), "
                f"got {self.scan_candidates!r}"
            )
        if self.cost_aware and self.score != "loglik":
            raise ValueError(f"cost_aware needs score='loglik', got score={self.score!r}")
        if self.accuracy_floor is not None and not 0 <= self.accuracy_floor <= 1:
            raise ValueError(f"accuracy_floor must be in [0, 1], got {self.accuracy_floor!r}")
        return self


def _not_number(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float)) or value != value


# ----------------------------------------------------------------------------- command lines

CONFIG_FLAGS: dict[str, tuple[tuple[str, ...], dict]] = {
    "profile": (("--profile",), dict(help="ci, cpu or gpu (default: $TRIMLAB_PROFILE)")),
    "model": (("--model",), dict(help="model name, hub id or folder (default: the profile's)")),
    "r": (("--r",), dict(type=float, help="sparse update ratio (default 0.25)")),
    "drop_rate": (("--drop-rate",), dict(type=int, help="sub-layers dropped per round")),
    "score": (("--score",), dict(choices=SCORE_METHODS, help="drop order (default both)")),
    "select_score": (
        ("--select-score",),
        dict(choices=SCORE_METHODS, help="trainable-set order (default both)"),
    ),
    "steps_per_round": (("--steps-per-round", "--steps"), dict(type=int, help="heal steps")),
    "calib_items": (("--calib-items", "--calib"), dict(type=int, help="calibration items")),
    "eval_items": (("--eval-items", "--n"), dict(type=int, help="test items for the tables")),
    "batch_size": (("--batch-size",), dict(type=int, help="sequences per batch")),
    "use_context": (("--context",), dict(choices=("yes", "no"), help="support paragraphs")),
    "max_length": (("--max-length",), dict(type=int, help="token budget per sequence")),
    "lr": (("--lr",), dict(type=float, help="peak learning rate (default 1e-4)")),
    "heal": (("--heal",), dict(choices=HEALS, help="heal step between drops (default ce)")),
    "teacher": (("--teacher",), dict(help="heal kd: the teacher's saved model directory")),
    "kd_temperature": (("--kd-temperature",), dict(type=float, help="KD temperature (1)")),
    "kd_ce_weight": (("--kd-ce-weight",), dict(type=float, help="KD: answer CE weight (0.1)")),
    "kd_hidden_weight": (("--kd-hidden-weight",), dict(type=float, help="KD: hidden MSE (0)")),
    "kd_topk": (("--kd-topk",), dict(type=int, help="KD: teacher logits cached per token")),
    "kd_cache": (("--kd-cache",), dict(choices=("yes", "no"), help="KD: cache the teacher")),
    "scan_candidates": (("--scan-candidates",), dict(type=int, help="re-scan N per round")),
    "cost_aware": (("--cost-aware",), dict(choices=("yes", "no"), help="loglik per parameter")),
    "final_steps": (("--final-steps",), dict(type=int, help="heal steps after the last drop")),
    "group_by_length": (("--group-by-length",), dict(choices=("yes", "no"), help="length batches")),
    "dtype": (("--dtype",), dict(choices=COMPUTE_DTYPES, help="compute dtype (profile's)")),
    "seed": (("--seed",), dict(type=int, help="seed (default 0)")),
}


def add_config_args(parser, names: tuple[str, ...] | None = None) -> None:
    """Add the run-configuration flags (all, or ``names``) to an argparse parser. Unset
    flags fall back to the profile, so equal flags give equal configurations in the CLI
    and every benchmark script (:func:`config_from_args`)."""
    for name in names or tuple(CONFIG_FLAGS):
        flags, kw = CONFIG_FLAGS[name]
        parser.add_argument(*flags, dest=name, default=None, **kw)


def config_from_args(args) -> TrimConfig:
    """The :class:`TrimConfig` of parsed flags (see :func:`add_config_args`)."""
    values = {n: getattr(args, n) for n in CONFIG_FLAGS if hasattr(args, n)}
    for name in ("use_context", "kd_cache", "cost_aware", "group_by_length"):
        if values.get(name) is not None:
            values[name] = values[name] == "yes"
    return TrimConfig.from_profile(values.pop("profile", None), **values)
