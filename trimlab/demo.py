"""The main job of ``make demo``: TrimLLM in the paper's setting, healed by distillation.

A short run, end to end, on open-book SciQ (each prompt carries its support paragraph,
as in the paper's SciQ task):

1. the untrimmed model, zero-shot, on ``eval_items`` test items;
2. the **teacher**: the same model fully fine-tuned for ``teacher_steps`` steps on the
   same setting (the paper's full-FT row), saved under ``out/teacher``;
3. **TrimLLM with** ``heal="kd"``: sparse fine-tuning (Sec. 3.4) with progressive
   dropping (Sec. 3.2) to ``target``, every heal step distilling the teacher's
   next-token distributions into the student (:mod:`trimlab.distill`);
4. accuracy (with its 95% interval) and size of all three.

Every stage is resumable: a finished teacher is reused, and the trim run resumes from
``out/run``. ``python -m trimlab demo`` runs it; :func:`run` is the library call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from trimlab import stats
from trimlab.checkpoint import META_FILE, load_trimmed, save_trimmed, write_json
from trimlab.config import TrimConfig
from trimlab.data import load_domain
from trimlab.heal import train_budget
from trimlab.models import load_model
from trimlab.results import measure
from trimlab.runtime import compute_dtype, quiet_progress

DOMAIN = "science"
DEMO_SETTINGS = dict(
    use_context=True,
    max_length=512,
    heal="kd",
    score="loglik",
    select_score="activation",
    scan_candidates=8,
    group_by_length=True,
    calib_items=16,
    drop_rate=2,
    eval_items=100,
)
"""The demo's changes to the profile: open-book prompts (at most 512 tokens, the support
cut from the left if longer), KD healing, the continuous ``loglik`` drop-one score on 16
calibration items re-scanning the 8 best-ranked sub-layers per round, two sub-layers per
round, 100 test items. For time, the trainable set comes from Eq. 4's activation score
(one forward pass instead of a 60-candidate scan) and batches are grouped by length."""


def demo_config(profile: str | None = None, **overrides: object) -> TrimConfig:
    """The demo's run configuration: the profile's, with :data:`DEMO_SETTINGS` on top."""
    return TrimConfig.from_profile(profile, **{**DEMO_SETTINGS, **overrides})


def train_teacher(config: TrimConfig, folder: Path, steps: int, log=print) -> Path:
    """Full fine-tuning of ``config.model`` for ``steps`` steps in ``config``'s setting,
    saved to ``folder`` (atomically); an existing teacher there is reused."""
    if (folder / META_FILE).exists():
        log(f"teacher: reusing {folder}")
        return folder
    t = time.perf_counter()
    model, tok = load_model(config.model)
    for p in model.parameters():
        p.requires_grad_(True)
    fit = train_budget(model, tok, load_domain(DOMAIN, "train"), config.replace(heal="ce"), steps)
    save_trimmed(model, tok, folder, domain=DOMAIN)
    log(
        f"teacher: {steps} steps of full fine-tuning, loss {fit['train_loss']:.3f}, "
        f"{time.perf_counter() - t:.0f} s"
    )
    return folder


def run(
    out: str | Path = "runs/demo",
    config: TrimConfig | None = None,
    target: int | str = 4,
    teacher_steps: int = 20,
    log: Callable[[str], None] = print,
) -> dict:
    """The demo (see the module docstring); returns and writes ``out/report.json``."""
    with quiet_progress():  # no weight-loading bars between the demo's lines
        return _run(Path(out), config or demo_config(), target, teacher_steps, log)


def _run(out: Path, cfg: TrimConfig, target, teacher_steps: int, log) -> dict:
    from trimlab.pipeline import trim

    test = load_domain(DOMAIN, "test", n=cfg.eval_items, seed=0)
    t0 = time.perf_counter()
    log(
        f"TrimLLM demo: {cfg.model}, open-book SciQ, target {target}, heal {cfg.heal}, "
        f"score {cfg.score}, {len(test)} test items, compute dtype "
        f"{compute_dtype(cfg.dtype)}"
    )
    model, tok = load_model(cfg.model)
    rows = {"zero-shot": measure(model, tok, test, cfg, cfg.use_context)}
    teacher = train_teacher(cfg, out / "teacher", teacher_steps, log)
    tmodel, ttok = load_trimmed(teacher)
    rows["teacher (full fine-tuning)"] = measure(tmodel, ttok, test, cfg, cfg.use_context)
    del tmodel
    res = trim(
        model,
        tok,
        DOMAIN,
        target,
        cfg.replace(teacher=str(teacher)),
        out_dir=out / "run",
        log=log,
    )
    rows["TrimLLM + KD"] = measure(res.model, tok, test, cfg, cfg.use_context)
    report = {
        "settings": res.history.settings,
        "teacher_steps": teacher_steps,
        "dropped": res.history.drop_sequence,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    write_json(out / "report.json", report)
    log("\n| model | test acc [95% CI] | params | decoder kept | sub-layers removed |")
    log("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        log(
            f"| {name} | {stats.fmt_acc(r['acc'], r['n'])} | {r['params']:,} | "
            f"{r['decoder_kept']:.1%} | {r['sublayers_removed']} |"
        )
    log(f"dropped: {', '.join(report['dropped'])}; {report['seconds'] / 60:.1f} min in all")
    return report
