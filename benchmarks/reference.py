"""The results table of the reference run, built row by row (issue: TrimLLM end to end).

Every row is its own resumable run under ``--out/<row>/`` that writes ``result.json``
when it is done; rerunning skips finished rows and resumes trim runs from their last
round. All rows use the same data, the same test items, the same step budget and, for
the compressed rows, the same final size (decoder-layer parameters kept).

Rows:

* ``zero_shot``: the untrimmed model;
* ``full_ft`` and ``sparse_ft``: fine-tuning without dropping, the same total steps as
  ``trimlab`` (its planned rounds times ``--steps-per-round``, plus ``--final-steps``);
  ``full_ft``'s model is the teacher of every ``heal="kd"`` row;
* ``trimllm``: the paper's TrimLLM: sparse fine-tuning with progressive dropping to
  ``--target`` by the ``both`` score, healed by the answer CE, every sub-layer re-scored
  every round, no final heal. The model is evaluated each time it first crosses one of
  ``--sizes`` (a trim run to that size is deterministic and stops there, so this is
  exactly that run's model);
* ``trimllm_kd``: the same run healed by distillation (``heal="kd"``);
* ``trimlab``: the run the flags configure (``--score``, ``--heal``,
  ``--scan-candidates``, ``--cost-aware``, ``--final-steps``, ...): trimlab's best;
* ``one_shot``: ``trimlab``'s sub-layers (``trimllm``'s when ``trimlab`` is not among
  the rows, or those of ``--one-shot-drops``, another run's ``result.json``) removed at
  once at the start, then the flags' healing for the same steps. With a larger
  ``--final-steps`` this is the healing-budget lever: the same removals, more healing;
* ``random``, ``top``, ``bottom``: the paper's Table 3 rules, dropping progressively to
  the same size with the flags' healing;
* ``score_<method>``: the flags' run with another scoring method (``--methods``);
* ``ablate_score``, ``ablate_heal``: the ablation from ``trimllm`` to ``trimlab``, one
  lever at a time (:data:`LEVERS`); not part of ``--rows all``.

    python benchmarks/reference.py --domain science --target 50% --rows all
    python benchmarks/reference.py --context yes --max-length 512 ...   # open-book SciQ
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from trimlab import parse_target, scoring, sparse, surgery, trim
from trimlab.checkpoint import save_trimmed, write_json
from trimlab.config import TrimConfig, add_config_args, config_from_args
from trimlab.data import load_domain
from trimlab.heal import train_budget
from trimlab.history import History
from trimlab.models import load_model
from trimlab.results import measure
from trimlab.target import Target, planned_rounds

ROWS = (
    "zero_shot",
    "full_ft",
    "sparse_ft",
    "trimllm",
    "trimllm_kd",
    "trimlab",
    "one_shot",
    "random",
    "top",
    "bottom",
)
PAPER = dict(
    score="both",
    select_score="both",
    heal="ce",
    scan_candidates=None,
    cost_aware=False,
    final_steps=0,
)
"""The paper's TrimLLM (the ``trimllm`` row), whatever the flags say."""
LEVERS = {
    "ablate_score": ("score", "select_score", "scan_candidates", "cost_aware"),
    "ablate_heal": ("score", "select_score", "scan_candidates", "cost_aware", "heal"),
}
"""The ablation, one lever at a time from the paper's configuration (``trimllm``) to the
flags' (``trimlab``): each row takes the flags' value of the settings listed (and the
paper's for the rest). ``ablate_score``: the flags' scoring (of the drops and of the
trainable set) and its scan budget;
``ablate_heal``: also their heal step; ``trimlab``: also the final heal phase. The
support paragraphs are the fourth lever: the same rows with ``--context no``."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", default="science")
    p.add_argument("--target", default="50%")
    p.add_argument("--sizes", nargs="*", default=["75%", "60%"], help="extra TrimLLM sizes")
    p.add_argument("--rows", nargs="*", default=["all"])
    p.add_argument("--methods", nargs="*", default=[], help="extra scoring methods to trim with")
    p.add_argument("--out", help="default: runs/reference-<profile>")
    p.add_argument(
        "--one-shot-drops",
        type=Path,
        help="one_shot removes the sub-layers this result.json lists (another run's row)",
    )
    add_config_args(p)  # --profile, --model, --r, --steps-per-round, ... (trimlab.config)
    return p


def read_drops(path: Path) -> list[str]:
    """The ``dropped`` list of a row's ``result.json``; SystemExit naming what is wrong."""
    try:
        dropped = json.loads(Path(path).read_text())["dropped"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(
            f"--one-shot-drops {path}: not a result.json with 'dropped' ({e!r})"
        ) from e
    if not isinstance(dropped, list) or not dropped or not all(isinstance(n, str) for n in dropped):
        raise SystemExit(f"--one-shot-drops {path}: 'dropped' is not a list of sub-layer names")
    return dropped


def first_round(size: Target, history: History) -> int | None:
    """The first round of ``history`` whose model met ``size`` (a :class:`Target`)."""
    removed = 0
    for r in history.rounds:
        removed += len(r.dropped)
        if size.met_by(removed, r.decoder_kept, r.bytes_kept):
            return r.round
    return None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    drops_of = read_drops(args.one_shot_drops) if args.one_shot_drops else None
    rows = list(ROWS) + [f"score_{m}" for m in args.methods] if args.rows == ["all"] else args.rows
    unknown = [r for r in rows if r not in ROWS and r not in LEVERS and not r.startswith("score_")]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}, score_<method>")
    model, tok = load_model(cfg.model)
    try:
        surgery.check_names(model, drops_of or [])
    except ValueError as e:
        raise SystemExit(
            f"--one-shot-drops {args.one_shot_drops}: not sub-layers of {cfg.model}: {e}"
        ) from e
    budget = cfg.steps_per_round * planned_rounds(model, parse_target(args.target), cfg.drop_rate)
    budget += cfg.final_steps
    book = "-open" if cfg.use_context else ""
    out = Path(args.out or f"runs/reference-{cfg.profile}{book}")
    out.mkdir(parents=True, exist_ok=True)
    ctx = cfg.use_context
    test = load_domain(args.domain, "test", n=cfg.eval_items, seed=0)
    train = load_domain(args.domain, "train")
    settings = {
        "domain": args.domain,
        "target": args.target,
        "test_items": len(test),
        **cfg.to_dict(),
    }
    if drops_of is not None:
        settings["one_shot_drops"] = str(args.one_shot_drops)
    write_json(out / "settings.json", settings)
    print(json.dumps(settings))

    def done(row: str) -> dict | None:
        f = out / row / "result.json"
        return json.loads(f.read_text()) if f.exists() else None

    def finish(row: str, result: dict, t0: float) -> None:
        (out / row).mkdir(parents=True, exist_ok=True)
        result = {"row": row, "seconds": round(time.perf_counter() - t0, 1), **result}
        write_json(out / row / "result.json", result)
        print(
            f"{row}: acc {result.get('acc', float('nan')):.3f} "
            f"decoder kept {result.get('decoder_kept', 1):.1%} in {result['seconds']:.0f} s",
            flush=True,
        )

    teacher = str(out / "full_ft" / "model")

    def row_config(row: str, **changes: object) -> TrimConfig:
        """The row's run configuration; a KD row's teacher is the full_ft row's model."""
        base = cfg
        if row.startswith("trimllm"):
            base = dataclasses.replace(cfg, **PAPER)
        elif row in LEVERS:
            paper = {k: v for k, v in PAPER.items() if k not in LEVERS[row]}
            base = dataclasses.replace(cfg, **paper)
        run = base.replace(**changes)
        if run.heal == "kd" and run.teacher is None:
            if done("full_ft") is None:
                raise SystemExit(f"{row} heals by KD: it needs the full_ft row (the teacher)")
            run = run.replace(teacher=teacher)
        return run

    def trim_row(row: str, **changes: object) -> dict:
        if (res := done(row)) is not None:
            return res
        run = row_config(row, **changes)
        t0 = time.perf_counter()
        model, tok = load_model(cfg.model)
        sizes = [parse_target(s) for s in args.sizes]
        snaps: dict[str, dict] = {}
        missed: set[str] = set()

        def snap_file(s) -> Path:
            tag = f"{s.kept:.2f}" if s.kept is not None else f"n{s.count}"
            return out / row / f"snapshot_{tag}.json"

        def snapshot(rnd, hist):  # trim changes `model` in place, resumed runs too
            for s in sizes:
                if str(s) in snaps or str(s) in missed:
                    continue
                if not s.met(model, len(surgery.dropped(model))):
                    continue
                first = first_round(s, hist)
                if first != rnd.round:  # killed after that round's checkpoint, before this
                    missed.add(str(s))  # never a smaller model's accuracy under that size
                    print(
                        f"{row}: the model at <= {s} (round {first}) was not measured before "
                        "the run stopped; rerun the row from scratch for that snapshot"
                    )
                    continue
                snaps[str(s)] = {**measure(model, tok, test, cfg, ctx), "round": rnd.round}
                write_json(snap_file(s), snaps[str(s)])

        (out / row).mkdir(parents=True, exist_ok=True)
        for s in sizes:
            if snap_file(s).exists():
                snaps[str(s)] = json.loads(snap_file(s).read_text())
        res = trim(
            model, tok, args.domain, args.target, run, out_dir=out / row / "run", callback=snapshot
        )
        h = res.history
        save_trimmed(res.model, tok, out / row / "model")  # for llamacpp_speed.py --checkpoint
        result = {
            **measure(res.model, tok, test, cfg, ctx),
            "rounds": len(h.rounds),
            "steps": h.steps_done,
            "dropped": h.drop_sequence,
            "trim_seconds": round(
                sum(r.seconds for r in h.rounds) + (h.final_heal or {}).get("seconds", 0), 1
            ),
            "snapshots": snaps,
        }
        finish(row, result, t0)
        return result

    def ft_row(row: str, run: TrimConfig, drop: list[str] | None = None) -> None:
        """Fine-tuning without dropping (after removing ``drop`` at once), ``budget``
        steps of ``run``'s heal step: all weights when ``run.r`` is 1, else the
        trainable set a TrimLLM run would choose (Sec. 3.4)."""
        if done(row) is not None:
            return
        t0 = time.perf_counter()
        model, tok = load_model(cfg.model)
        if drop:
            surgery.drop(model, drop)
        if run.r < 1:
            calib = load_domain(args.domain, "calib", n=cfg.calib_items, seed=cfg.seed + 1000)
            s = scoring.score(
                model,
                tok,
                calib,
                method=run.select_score,
                seed=run.seed,
                use_context=ctx,
                batch_size=run.batch_size,
                max_length=run.max_length,
            )
            sparse.freeze(model, sparse.select_trainable(s, run.r), train_embeddings=False)
        else:
            for prm in model.parameters():
                prm.requires_grad_(True)
        fit = train_budget(model, tok, train, run, budget)  # one round: its LR schedule, seed + 1
        save_trimmed(model, tok, out / row / "model")  # for benchmarks/pareto.py, the teacher
        finish(
            row,
            {
                **measure(model, tok, test, cfg, ctx),
                "steps": budget,
                "heal": run.heal,
                "train_loss": fit["train_loss"],
                "dropped": drop or [],
            },
            t0,
        )

    if "zero_shot" in rows and done("zero_shot") is None:
        t0 = time.perf_counter()
        finish("zero_shot", measure(model, tok, test, cfg, ctx), t0)
    del model
    if "full_ft" in rows:
        ft_row("full_ft", cfg.replace(r=1.0, heal="ce"))
    if "sparse_ft" in rows:
        ft_row("sparse_ft", cfg.replace(heal="ce"))
    ref = trim_row("trimllm") if "trimllm" in rows else None
    if "trimllm_kd" in rows:
        trim_row("trimllm_kd", heal="kd")
    for row in LEVERS:
        if row in rows:
            trim_row(row)
    best = trim_row("trimlab") if "trimlab" in rows else ref
    if "one_shot" in rows:
        if best is None and drops_of is None:
            raise SystemExit(
                "one_shot removes trimlab's (or trimllm's) sub-layers: add that row "
                "or give --one-shot-drops"
            )
        ft_row("one_shot", row_config("one_shot"), drop=drops_of or best["dropped"])
    for rule in ("random", "top", "bottom"):
        if rule in rows:
            trim_row(rule, score=rule)
    for row in rows:
        if row.startswith("score_"):
            trim_row(row, score=row.removeprefix("score_"))
    print(f"budget: {budget} steps per fine-tuning row")


if __name__ == "__main__":
    main()
