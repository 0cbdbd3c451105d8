"""TrimLLM end to end: sparse fine-tuning with progressive layer dropping (Sec. 3.2, 3.4).

:func:`trim` is the paper's loop. Before any training the sub-layers are scored once
and only the ceil(r*U) most important units are trainable (sparse update, Sec. 3.4).
Then, round after round:

1. **heal**: train the trainable units for ``steps_per_round`` steps (:mod:`trimlab.heal`);
2. **score** the remaining sub-layers on a *fresh* sample of the ``calib`` split, never
   ``test`` (Eq. 3, Eq. 4 or both; :mod:`trimlab.scoring`);
3. **drop** the ``drop_rate`` least important ones (k = 1 in the paper; 2 is its
   "adaptive" variant), unless that would break the accuracy floor;
4. **check the target** (:mod:`trimlab.target`) and **checkpoint**.

Then, with ``final_steps``, one last heal. ``scan_candidates`` and ``cost_aware``: what a
round re-scores and how it ranks (:mod:`trimlab.schedule`).

Determinism and resume: round k heals with seed ``seed + k`` and samples calibration
items with seed ``seed + 1000 + k``; the optimizer is fresh each round and the LR
schedule is a function of the global step, planned over the rounds the target needs.
After every round ``latest/`` (weights and ``history.json``) is written atomically, plus
``final/`` at the end; pointing :func:`trim` at the same ``out_dir`` resumes and ends
with the same drop sequence and weights as an uninterrupted run. A run directory whose
checkpoint is missing is an error, never a silent fresh start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from accelerate import PartialState
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from trimlab import accounting, checkpoint, schedule, scoring, sparse, surgery
from trimlab.config import TrimConfig
from trimlab.data import load_domain
from trimlab.evaluate import evaluate
from trimlab.heal import Heal, HealRound, get_heal, prepare_heal
from trimlab.history import HISTORY_FILE, History, Round, round_record
from trimlab.profiles import Profile
from trimlab.runtime import autocast, compute_dtype, model_device
from trimlab.target import Target, check_target, parse_target, planned_rounds


@dataclass
class TrimResult:
    """The trimmed model, its tokenizer and the run's history."""

    model: PreTrainedModel
    tokenizer: object
    history: History


def trim(
    model: PreTrainedModel,
    tokenizer,
    domain: str,
    target: int | str,
    config: TrimConfig | None = None,
    *,
    heal: Heal | None = None,
    out_dir: str | os.PathLike | None = None,
    callback: Callable[[Round, History], None] | None = None,
    profile: Profile | str | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = print,
    **overrides: object,
) -> TrimResult:
    """Trim ``model`` in place for ``domain`` until ``target`` (:func:`parse_target`).

    ``config`` defaults to the profile's (``TRIMLAB_PROFILE``); keyword ``overrides``
    (``r=0.5``, ``score="loglik"``, ...) change single settings. Every setting is checked
    before any work starts. ``heal`` replaces the configured heal step.
    ``callback(round, history)`` runs after each round (live plots in notebooks).
    ``progress`` shows one bar over the rounds, with the loss and the size kept, and the
    round summaries above it (``log``); healing itself prints nothing.
    """
    cfg = (config or TrimConfig.from_profile(profile)).replace(**overrides)
    tgt = parse_target(target)
    load_domain(domain, "calib", n=1)  # unknown domain / missing data: fail now
    healer = heal or get_heal(cfg.heal)
    prepare_heal(healer, model, tokenizer, cfg)  # its own checks (e.g. KD's teacher), first
    say = log or (lambda _msg: None)
    out = Path(out_dir) if out_dir is not None else None
    settings = {"domain": domain, "target": str(tgt), **cfg.to_dict()}

    history = _resume(model, out, settings, say)
    if history is None:
        check_target(model, tgt)
        surgery.record_base(model)
        history = History(
            settings=settings,
            initial={
                "sizes": accounting.sizes(model),
                "compute_dtype": compute_dtype(cfg.dtype, model_device(model)),
            },
        )
    if history.stopped:
        _final_heal(model, tokenizer, domain, cfg, healer, history, out, say)
        return TrimResult(model, tokenizer, history)

    def calib_sample(k: int) -> list[dict]:
        return load_domain(domain, "calib", n=cfg.calib_items, seed=cfg.seed + 1000 + k)

    if not history.trainable:  # sparse update: score once before training (Sec. 3.4)
        initial = _score(model, tokenizer, calib_sample(0), cfg, cfg.select_score)
        history.initial_scores = dict(initial)
        history.trainable = sparse.select_trainable(initial, cfg.r, cfg.granularity)
        history.planned_rounds = planned_rounds(model, tgt, cfg.drop_rate)
        _checkpoint(model, tokenizer, history, out, domain)  # a long scan is not lost
    train_items = load_domain(domain, "train")
    bar = tqdm(
        total=history.planned_rounds,
        initial=len(history.rounds),
        desc=f"trim {domain} to {tgt}",
        unit="round",
        disable=not progress,
    )
    if progress and log is print:
        say = tqdm.write  # round summaries above the bar, not through it

    while not history.stopped:
        k = len(history.rounds) + 1
        t0 = time.perf_counter()
        if k > history.planned_rounds:  # the target needs more rounds than planned
            history.planned_rounds = k - 1 + planned_rounds(model, tgt, cfg.drop_rate)
            bar.total = history.planned_rounds
        fit = _heal(model, tokenizer, train_items, cfg, healer, history, k)
        train_seconds = time.perf_counter() - t0
        scores, calib, after, to_drop, refused = _score_and_drop(
            model, tokenizer, calib_sample(k), cfg, tgt, history
        )
        rnd = round_record(
            model,
            round=k,
            dropped=to_drop,
            scores={n: float(v) for n, v in scores.items()},
            calib={m: calib[m] for m in ("acc", "acc_norm", "ll", "n")},
            calib_after=after,
            train_loss=fit["train_loss"],
            steps=fit["steps"],
            seconds=time.perf_counter() - t0,
            train_seconds=train_seconds,
            refused=refused,
            lr=fit["lr"],
            heal={k: v for k, v in fit.items() if k not in ("train_loss", "steps", "lr")},
        )
        history.rounds.append(rnd)
        history.stopped = _stop_reason(model, tgt, cfg, rnd)
        say(
            f"round {k}: dropped {', '.join(to_drop) or 'nothing'}; calib acc "
            f"{calib['acc']:.3f} -> {after['acc']:.3f}; decoder kept {rnd.decoder_kept:.1%}; "
            f"{rnd.seconds:.0f} s"
        )
        _checkpoint(model, tokenizer, history, out, domain)
        bar.set_postfix(loss=fit["train_loss"], kept=f"{rnd.decoder_kept:.1%}", refresh=False)
        bar.update(1)
        if callback is not None:
            callback(rnd, history)
    bar.close()
    _final_heal(model, tokenizer, domain, cfg, healer, history, out, say)
    return TrimResult(model, tokenizer, history)


# ----------------------------------------------------------------------------- the steps


def _score(model, tokenizer, items, cfg: TrimConfig, method: str, names=None) -> scoring.Scores:
    """``method``'s scores (of ``names`` only, if given), per parameter with ``cost_aware``."""
    with autocast(cfg.dtype, model_device(model)):
        scores = scoring.score(
            model,
            tokenizer,
            items,
            method=method,
            seed=cfg.seed,
            use_context=cfg.use_context,
            batch_size=cfg.batch_size,
            max_length=cfg.max_length,
            names=names,
        )
    if not (cfg.cost_aware and method == cfg.score):
        return scores
    lls = {n: d["ll"] for n, d in scores.details.items()}
    per_param = schedule.cost_aware(
        scores.info["base"]["ll"], lls, accounting.sublayer_params(model)
    )
    return scoring.Scores(per_param, "loglik_per_param", scores.details, **scores.info)


def _score_and_drop(model, tokenizer, items, cfg: TrimConfig, tgt: Target, history: History):
    """Steps 2-3: score the candidates on ``items``, drop the least important unless that
    breaks the accuracy floor; ``(scores, calib, after, dropped, refused)``."""
    measured = [r.scores for r in history.rounds]
    if schedule.preselects(cfg.select_score, cfg.score):  # the initial scan ranks round 1's
        measured.insert(0, history.initial_scores)
    names = schedule.candidates(measured, surgery.sublayers(model), cfg.scan_candidates)
    scores = _score(model, tokenizer, items, cfg, cfg.score, names)
    to_drop = scoring.rank(scores)[: _need(model, tgt, cfg)]
    calib = scores.info.get("base") or _evaluate(model, tokenizer, items, cfg)
    after = _after(model, tokenizer, items, cfg, scores, to_drop)
    refused = []
    if cfg.accuracy_floor is not None and after["acc"] < cfg.accuracy_floor:
        refused, to_drop = to_drop, []
    surgery.drop(model, to_drop)
    return scores, calib, after, to_drop, refused


def _evaluate(model, tokenizer, items, cfg: TrimConfig) -> dict:
    with autocast(cfg.dtype, model_device(model)):
        return evaluate(
            model,
            tokenizer,
            items,
            batch_size=cfg.batch_size,
            use_context=cfg.use_context,
            max_length=cfg.max_length,
        )


def _heal(model, tokenizer, items, cfg, healer: Heal, history: History, k: int, final=False):
    """Freeze all but the trainable units left, heal one round (or the final phase)."""
    sparse.freeze(model, history.trainable, cfg.granularity, cfg.train_embeddings)
    if not sparse.trainable_units(model, history.trainable, cfg.granularity):
        return {"train_loss": None, "steps": 0, "lr": None}  # every trainable unit dropped
    where = HealRound(
        round=k,
        global_step=history.steps_done,
        total_steps=cfg.steps_per_round * history.planned_rounds + cfg.final_steps,
    )
    if final:
        cfg = cfg.replace(steps_per_round=cfg.final_steps)
    return healer(model, tokenizer, items, cfg, where)


def _final_heal(model, tokenizer, domain, cfg, healer: Heal, history, out, say) -> None:
    """The final heal phase: ``final_steps`` steps after the last drop (once; a resumed
    run that stopped before it runs it), recorded in ``history.final_heal``."""
    if cfg.final_steps == 0 or history.final_heal is not None:
        return
    t0 = time.perf_counter()
    train = load_domain(domain, "train")
    fit = _heal(model, tokenizer, train, cfg, healer, history, len(history.rounds) + 1, True)
    history.final_heal = {**fit, "seconds": time.perf_counter() - t0}
    say(f"final heal: {fit['steps']} steps, loss {fit['train_loss']}")
    _checkpoint(model, tokenizer, history, out, domain)


def _need(model: PreTrainedModel, tgt: Target, cfg: TrimConfig) -> int:
    """Sub-layers to drop this round: the drop rate, or fewer to land on a count."""
    if tgt.count is None:
        return cfg.drop_rate
    return min(cfg.drop_rate, tgt.count - len(surgery.dropped(model)))


def _after(model, tokenizer, items, cfg, scores: scoring.Scores, names: list[str]) -> dict:
    """Calibration accuracy and ll with ``names`` dropped: from the scan when it measured
    exactly that (one name), else measured under a trial drop."""
    detail = scores.details.get(names[0], {}) if len(names) == 1 else {}
    if "acc" in detail and "ll" in detail:
        return {"acc": float(detail["acc"]), "ll": float(detail["ll"])}
    with surgery.trial_drop(model, names):
        res = _evaluate(model, tokenizer, items, cfg)
    return {"acc": res["acc"], "ll": res["ll"]}


def _stop_reason(model, tgt: Target, cfg: TrimConfig, rnd: Round) -> str | None:
    if rnd.refused:
        return (
            f"accuracy floor {cfg.accuracy_floor}: dropping {', '.join(rnd.refused)} would "
            f"give calibration accuracy {rnd.calib_after['acc']:.3f}; not dropped"
        )
    if tgt.met(model):
        return f"target {tgt} met"
    if not surgery.sublayers(model):
        return "no sub-layers left"
    return None


# ----------------------------------------------------------------------------- resume


def _resume(model, out: Path | None, settings: dict, say) -> History | None:
    """The run's history when ``out`` holds one (the model is brought to its checkpoint
    in place), else None. Refuses another run's settings and a lost checkpoint."""
    if out is None:
        return None
    latest = out / "latest"
    checkpoint.recover_directory(latest)
    if not (latest / checkpoint.META_FILE).exists():
        if (out / HISTORY_FILE).exists():
            raise ValueError(
                f"{out} holds a run's {HISTORY_FILE} but no checkpoint in {latest}; "
                "refusing to start over in its place (use another out_dir)"
            )
        return None
    history = History.from_json(latest / HISTORY_FILE)  # written with the weights
    if history.settings != settings:
        keys = sorted(set(history.settings) | set(settings))
        diff = {
            k: (history.settings.get(k), settings.get(k))
            for k in keys
            if history.settings.get(k) != settings.get(k)
        }
        raise ValueError(f"{out} holds a run with other settings (stored, asked): {diff}")
    folder = out / "final" if history.stopped else latest
    _restore(model, folder, history.drop_sequence)
    if history.stopped:
        say(f"trim: {out} already finished ({history.stopped})")
    else:
        say(f"trim: resuming {out} after round {len(history.rounds)}")
    return history


def _restore(model: PreTrainedModel, folder: Path, names: list[str]) -> None:
    """Bring ``model`` to the checkpoint in ``folder`` *in place*, as an uninterrupted
    run would have left it: drop the same ``names``, then load the saved weights."""
    saved, _ = checkpoint.load_trimmed(folder, device=model_device(model))
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


def _checkpoint(model, tokenizer, history: History, out: Path | None, domain: str) -> None:
    """Write ``latest/`` with its history atomically, ``final/`` when done, then
    ``out/history.json``; nothing without ``out``. The main process writes, others wait."""
    if out is None:
        return
    state = PartialState()
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        extra = {HISTORY_FILE: history.to_dict()}
        checkpoint.save_trimmed(model, tokenizer, out / "latest", domain=domain, extra=extra)
        if history.stopped:
            checkpoint.save_trimmed(model, tokenizer, out / "final", domain=domain, extra=extra)
        history.to_json(out / HISTORY_FILE)
    state.wait_for_everyone()
