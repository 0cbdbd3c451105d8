"""TrimLLM end to end: sparse fine-tuning with progressive layer dropping (Sec. 3.2, 3.4).

``trim`` runs rounds of:

1. fine-tune the trainable units for ``steps_per_round`` steps (one "epoch" in the
   paper's language; a whole epoch where the profile affords it);
2. score the remaining sub-layers on a *fresh* sample of the ``calib`` split (never
   ``test``);
3. drop the ``drop_rate`` least important ones (k = 1 in the paper, 2 is its
   "adaptive" variant),

until the target is met. Before any training, the sub-layers are scored once and only
the ceil(r*U) most important units are trainable (sparse update, Sec. 3.4); a dropped
trainable unit is not replaced.

Determinism and resume: round k trains with seed ``seed + k`` and samples calibration
items with seed ``seed + 1000 + k``, the optimizer is fresh each round and the
learning-rate schedule is a function of the global step, so the whole run is a function
of the weights at the start of a round. A checkpoint is written atomically after every
round (``latest/``, plus ``final/`` at the end) with ``history.json``; pointing ``trim``
at the same ``out_dir`` resumes and ends with the same drop sequence and weights as an
uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import PreTrainedModel

from trimlab import accounting, checkpoint, scoring, sparse, surgery
from trimlab.data import load_domain
from trimlab.evaluate import evaluate
from trimlab.finetune import finetune
from trimlab.profiles import Profile, get_profile

HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class Target:
    """How far to trim: ``count`` sub-layers removed, or a share ``kept`` of the
    decoder-layer parameters (``"50%"``) or of all parameter bytes (``"60%mem"``)."""

    count: int | None = None
    kept: float | None = None
    of: str = "decoder"  # or "bytes"

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.kept * 100:g}%" + ("mem" if self.of == "bytes" else "")

    def met(self, model: PreTrainedModel, removed: int) -> bool:
        if self.count is not None:
            return removed >= self.count
        comp = accounting.compression(model)
        share = comp["decoder_kept"] if self.of == "decoder" else comp["bytes_kept"]
        return share <= self.kept + 1e-9


def parse_target(target: int | str) -> Target:
    """``12`` -> 12 sub-layers; ``"50%"`` -> keep 50% of decoder-layer parameters;
    ``"60%mem"`` -> keep 60% of all parameter bytes."""
    if isinstance(target, bool):
        raise ValueError(f"invalid target {target!r}")
    if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
        count = int(target)
        if count < 1:
            raise ValueError(f"target must remove at least one sub-layer, got {target!r}")
        return Target(count=count)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*(mem)?\s*", str(target))
    if m is None:
        raise ValueError(f"invalid target {target!r}; use an int (sub-layers), 'P%' or 'P%mem'")
    kept = float(m.group(1)) / 100
    if not 0 < kept < 1:
        raise ValueError(f"target {target!r}: the share kept must be between 0% and 100%")
    return Target(kept=kept, of="bytes" if m.group(2) else "decoder")


def check_target(model: PreTrainedModel, target: Target) -> None:
    """ValueError if ``target`` is already met or cannot be met by dropping sub-layers."""
    left = len(surgery.sublayers(model))
    if target.count is not None:
        if target.count > left:
            raise ValueError(f"target {target}: only {left} sub-layers remain")
        return
    if target.met(model, 0):
        raise ValueError(f"target {target} is already met by this model")
    if target.of == "bytes":
        base = accounting.base_sizes(model)
        floor = (base["bytes"] - accounting.param_bytes(surgery.layer_list(model))) / base["bytes"]
        if floor > target.kept:
            raise ValueError(
                f"target {target} is impossible: embeddings, head and norms alone are "
                f"{floor:.1%} of the bytes"
            )


@dataclass
class Round:
    """One round of the run, as recorded in ``history.json``."""

    round: int
    dropped: list[str]
    """Names removed at the end of this round."""
    scores: dict[str, float]
    """Importance of every sub-layer remaining before the drop."""
    calib: dict
    """Calibration metrics before the drop (``acc, acc_norm, ll, n``)."""
    calib_after: dict | None
    """Calibration accuracy and ll with the dropped names removed (from the scan), or None."""
    train_loss: float | None
    steps: int
    seconds: float
    """Wall time of the round: training, scoring and dropping."""
    train_seconds: float
    params: int
    bytes: int
    decoder_kept: float
    bytes_kept: float
    sublayers_left: int


@dataclass
class History:
    """Settings, sparse-update choice and rounds of one ``trim`` run."""

    settings: dict
    trainable: list[str] = field(default_factory=list)
    initial_scores: dict[str, float] = field(default_factory=dict)
    initial: dict = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    stopped: str | None = None

    @property
    def drop_sequence(self) -> list[str]:
        return [n for r in self.rounds for n in r.dropped]

    def to_json(self, path: str | os.PathLike) -> None:
        """Write atomically."""
        checkpoint.write_json(path, asdict(self))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> History:
        data = json.loads(Path(path).read_text())
        data["rounds"] = [Round(**r) for r in data["rounds"]]
        return cls(**data)


@dataclass
class TrimResult:
    """The trimmed model, its tokenizer and the run's history."""

    model: PreTrainedModel
    tokenizer: object
    history: History


def _settings(**kw) -> dict:
    return {k: (str(v) if isinstance(v, Target) else v) for k, v in kw.items()}


def trim(
    model: PreTrainedModel,
    tokenizer,
    domain: str,
    target: int | str,
    r: float = 0.25,
    drop_rate: int | None = None,
    score: str = "both",
    steps_per_round: int | None = None,
    calib_items: int | None = None,
    batch_size: int | None = None,
    lr: float = 1e-4,
    use_context: bool | None = None,
    max_length: int | None = None,
    granularity: str = "sublayer",
    train_embeddings: bool = False,
    accuracy_floor: float | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    callback: Callable[[Round, History], None] | None = None,
    profile: Profile | str | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = print,
) -> TrimResult:
    """Trim ``model`` for ``domain`` until ``target`` (see :func:`parse_target`).

    Unset settings come from the profile (``TRIMLAB_PROFILE``). Every setting is checked
    before any work starts. ``callback(round, history)`` runs after each round (live
    plots in notebooks). With ``out_dir`` the run checkpoints after every round and
    resumes from ``out_dir/latest`` when it exists.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    drop_rate = prof.drop_rate if drop_rate is None else drop_rate
    steps = prof.train_steps_per_round if steps_per_round is None else steps_per_round
    n_calib = calib_items or prof.calib_items
    bs = batch_size or prof.batch_size
    ctx = prof.use_context if use_context is None else use_context
    max_len = max_length or prof.max_length
    # --- validate everything before any work ----------------------------------------
    if not isinstance(r, (int, float)) or not 0 < r <= 1:
        raise ValueError(f"r must be in (0, 1], got {r!r}")
    if not isinstance(drop_rate, int) or drop_rate < 1:
        raise ValueError(f"drop_rate must be an integer >= 1, got {drop_rate!r}")
    if score not in scoring.METHODS:
        raise ValueError(
            f"unknown score method {score!r}; choose one of {', '.join(scoring.METHODS)}"
        )
    if steps < 0:
        raise ValueError(f"steps_per_round must be >= 0, got {steps}")
    if granularity not in ("sublayer", "block"):
        raise ValueError(f"granularity must be 'sublayer' or 'block', got {granularity!r}")
    tgt = parse_target(target)
    load_domain(domain, "calib", n=1)  # unknown domain / missing data: fail now
    out = Path(out_dir) if out_dir is not None else None
    settings = _settings(
        domain=domain,
        target=tgt,
        r=r,
        drop_rate=drop_rate,
        score=score,
        steps_per_round=steps,
        calib_items=n_calib,
        batch_size=bs,
        lr=lr,
        use_context=ctx,
        max_length=max_len,
        granularity=granularity,
        train_embeddings=train_embeddings,
        accuracy_floor=accuracy_floor,
        seed=seed,
        profile=prof.name,
    )
    say = log or (lambda _msg: None)

    history = None
    if out is not None and (out / "latest" / checkpoint.META_FILE).exists():
        history = History.from_json(out / "latest" / HISTORY_FILE)  # written with the weights
        if history.settings != settings:
            diff = {
                k: (history.settings.get(k), v)
                for k, v in settings.items()
                if history.settings.get(k) != v
            }
            raise ValueError(f"{out} holds a run with other settings: {diff}")
        if history.stopped:
            _restore(model, out / "final", history.drop_sequence)
            say(f"trim: {out} already finished ({history.stopped})")
            return TrimResult(model, tokenizer, history)
        _restore(model, out / "latest", history.drop_sequence)
        say(f"trim: resuming {out} after round {len(history.rounds)}")
    else:
        check_target(model, tgt)
        surgery._record_base(model)
        history = History(settings=settings, initial={"sizes": accounting.sizes(model)})

    def calib_sample(k: int) -> list[dict]:
        return load_domain(domain, "calib", n=n_calib, seed=seed + 1000 + k)

    def run_score(items: list[dict]) -> scoring.Scores:
        return scoring.score(
            model, tokenizer, items, method=score, seed=seed, use_context=ctx, batch_size=bs
        )

    if not history.trainable:  # sparse update: score once before training (Sec. 3.4)
        initial = run_score(calib_sample(0))
        history.initial_scores = dict(initial)
        history.trainable = sparse.select_trainable(initial, r, granularity)
    train_items = load_domain(domain, "train")
    max_rounds = math.ceil(len(surgery.sublayers(model)) / drop_rate) + len(history.rounds)
    total_steps = steps * max_rounds

    while True:
        k = len(history.rounds) + 1
        t0 = time.perf_counter()
        sparse.freeze(model, history.trainable, granularity, train_embeddings)
        fit = {"train_loss": None, "seconds": 0.0}
        if steps > 0 and sparse.trainable_units(model, history.trainable, granularity):
            fit = finetune(
                model,
                tokenizer,
                train_items,
                steps=steps,
                batch_size=bs,
                lr=lr,
                seed=seed + k,
                use_context=ctx,
                max_length=max_len,
                lr_schedule="linear",
                global_step=steps * (k - 1),
                total_steps=total_steps,
                progress=progress,
            )
        train_seconds = time.perf_counter() - t0
        items = calib_sample(k)
        scores = run_score(items)
        removed = len(surgery.dropped(model))
        need = drop_rate if tgt.count is None else min(drop_rate, tgt.count - removed)
        to_drop = scoring.rank(scores)[:need]
        calib = scores.info.get("base") or evaluate(
            model, tokenizer, items, batch_size=bs, use_context=ctx
        )
        after = None
        if (
            len(to_drop) == 1
            and to_drop[0] in scores.details
            and "acc" in scores.details[to_drop[0]]
        ):
            after = {m: scores.details[to_drop[0]][m] for m in ("acc", "ll")}
        surgery.drop(model, to_drop)
        comp, sizes = accounting.compression(model), accounting.sizes(model)
        rnd = Round(
            round=k,
            dropped=to_drop,
            scores={n: float(v) for n, v in scores.items()},
            calib={m: calib[m] for m in ("acc", "acc_norm", "ll", "n")},
            calib_after=after,
            train_loss=fit["train_loss"],
            steps=steps if fit["train_loss"] is not None else 0,
            seconds=time.perf_counter() - t0,
            train_seconds=train_seconds,
            params=sizes["params"],
            bytes=sizes["bytes"],
            decoder_kept=comp["decoder_kept"],
            bytes_kept=comp["bytes_kept"],
            sublayers_left=len(surgery.sublayers(model)),
        )
        history.rounds.append(rnd)
        say(
            f"round {k}: dropped {', '.join(to_drop)}; calib acc {calib['acc']:.3f}; "
            f"decoder kept {comp['decoder_kept']:.1%}; {rnd.seconds:.0f} s"
        )
        if tgt.met(model, len(surgery.dropped(model))):
            history.stopped = f"target {tgt} met"
        elif accuracy_floor is not None and calib["acc"] < accuracy_floor:
            history.stopped = (
                f"calibration accuracy {calib['acc']:.3f} below the floor {accuracy_floor}"
            )
        elif not surgery.sublayers(model):
            history.stopped = "no sub-layers left"
        if out is not None:
            _checkpoint(model, tokenizer, history, out, domain)
        if callback is not None:
            callback(rnd, history)
        if history.stopped:
            return TrimResult(model, tokenizer, history)


def _restore(model: PreTrainedModel, folder: Path, names: list[str]) -> None:
    """Bring ``model`` to the checkpoint in ``folder`` *in place*, as an uninterrupted
    run would have left it: drop the same ``names``, then load the saved weights."""
    saved, _ = checkpoint.load_trimmed(folder, device=next(model.parameters()).device)
    gone = set(surgery.dropped(model))
    if not gone <= set(names):
        raise ValueError(
            f"cannot resume {folder}: the model lacks {sorted(gone - set(names))}, "
            "which the run never dropped; pass the model the run started from"
        )
    have = model.state_dict()
    odd = [k for k, v in saved.state_dict().items() if k not in have or have[k].shape != v.shape]
    if odd:  # checked before the model is touched
        raise ValueError(f"cannot resume {folder}: it holds another model (e.g. {odd[:3]})")
    surgery.drop(model, [n for n in names if n not in gone])
    model.load_state_dict(saved.state_dict(), strict=True)


def _is_main_process() -> bool:
    """Rank 0 under ``torchrun`` / ``accelerate launch`` (and a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _checkpoint(model, tokenizer, history: History, out: Path, domain: str) -> None:
    """Write ``latest/`` with its history in one atomic step, ``final/`` when done, then a
    copy of the history at ``out/history.json``. Only the main process writes; the
    others wait for it (every process holds the same model)."""
    if not _is_main_process():
        _barrier()
        return
    out.mkdir(parents=True, exist_ok=True)
    extra = {HISTORY_FILE: asdict(history)}
    checkpoint.save_trimmed(model, tokenizer, out / "latest", domain=domain, extra=extra)
    if history.stopped:
        checkpoint.save_trimmed(model, tokenizer, out / "final", domain=domain, extra=extra)
    history.to_json(out / HISTORY_FILE)
    _barrier()
