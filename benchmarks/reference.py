"""The results table of the reference run, built row by row (issue: TrimLLM end to end).

Every row is its own resumable run under ``--out/<row>/`` that writes ``result.json``
when it is done; rerunning skips finished rows and resumes trim runs from their last
round. All rows use the same data, the same test items, the same step budget and, for
the compressed rows, the same final size (decoder-layer parameters kept).

Rows:

* ``zero_shot``: the untrimmed model;
* ``trimllm``: sparse fine-tuning with progressive dropping to ``--target``, with the
  model evaluated each time it first crosses one of ``--sizes`` (a trim run to that
  size is deterministic and stops there, so this is exactly that run's model);
* ``full_ft`` and ``sparse_ft``: fine-tuning without dropping, same total steps;
* ``one_shot``: the trimllm run's sub-layers removed at once at the start, then the
  same sparse fine-tuning for the same total steps;
* ``trimllm_kd``: the trimllm run healed by distillation (``heal="kd"``) from the
  ``full_ft`` row's model, the teacher of the same setting;
* ``random``, ``top``, ``bottom``: the paper's Table 3 rules, dropping progressively to
  the same size with the same fine-tuning;
* ``score_<method>``: trimming with another scoring method (``--methods``).

    python benchmarks/reference.py --domain science --target 50% --rows all
    python benchmarks/reference.py --context yes --max-length 512 ...   # open-book SciQ
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from trimlab import parse_target, scoring, sparse, surgery, trim
from trimlab.checkpoint import save_trimmed, write_json
from trimlab.config import add_config_args, config_from_args
from trimlab.data import load_domain
from trimlab.finetune import finetune
from trimlab.models import load_model
from trimlab.results import measure

ROWS = (
    "zero_shot",
    "trimllm",
    "full_ft",
    "sparse_ft",
    "one_shot",
    "trimllm_kd",
    "random",
    "top",
    "bottom",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", default="science")
    p.add_argument("--target", default="50%")
    p.add_argument("--sizes", nargs="*", default=["75%", "60%"], help="extra TrimLLM sizes")
    p.add_argument("--rows", nargs="*", default=["all"])
    p.add_argument("--methods", nargs="*", default=[], help="extra scoring methods to trim with")
    p.add_argument("--out", help="default: runs/reference-<profile>")
    add_config_args(p)  # --profile, --model, --r, --steps-per-round, ... (trimlab.config)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    rows = list(ROWS) + [f"score_{m}" for m in args.methods] if args.rows == ["all"] else args.rows
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

    def trim_row(row: str, score: str, **changes: object) -> dict:
        if (res := done(row)) is not None:
            return res
        t0 = time.perf_counter()
        model, tok = load_model(cfg.model)
        sizes = [parse_target(s) for s in args.sizes]
        snaps: dict[str, dict] = {}

        def snap_file(s) -> Path:
            tag = f"{s.kept:.2f}" if s.kept is not None else f"n{s.count}"
            return out / row / f"snapshot_{tag}.json"

        def snapshot(rnd, hist):  # trim changes `model` in place, resumed runs too
            for s in sizes:
                if str(s) not in snaps and s.met(model, len(surgery.dropped(model))):
                    snaps[str(s)] = {**measure(model, tok, test, cfg, ctx), "round": rnd.round}
                    write_json(snap_file(s), snaps[str(s)])

        (out / row).mkdir(parents=True, exist_ok=True)
        for s in sizes:
            if snap_file(s).exists():
                snaps[str(s)] = json.loads(snap_file(s).read_text())
        res = trim(
            model,
            tok,
            args.domain,
            args.target,
            cfg.replace(score=score, **changes),
            out_dir=out / row / "run",
            callback=snapshot,
        )
        h = res.history
        result = {
            **measure(res.model, tok, test, cfg, ctx),
            "rounds": len(h.rounds),
            "steps": sum(r.steps for r in h.rounds),
            "dropped": h.drop_sequence,
            "trim_seconds": round(sum(r.seconds for r in h.rounds), 1),
            "snapshots": snaps,
        }
        finish(row, result, t0)
        return result

    def ft_row(row: str, budget: int, r: float, drop: list[str] | None = None) -> None:
        if done(row) is not None:
            return
        t0 = time.perf_counter()
        model, tok = load_model(cfg.model)
        if drop:
            surgery.drop(model, drop)
        calib = load_domain(args.domain, "calib", n=cfg.calib_items, seed=cfg.seed + 1000)
        if r < 1:  # the trainable set a TrimLLM run would choose (Sec. 3.4)
            s = scoring.score(
                model,
                tok,
                calib,
                method=cfg.select_score,
                seed=cfg.seed,
                use_context=ctx,
                batch_size=cfg.batch_size,
                max_length=cfg.max_length,
            )
            sparse.freeze(model, sparse.select_trainable(s, r), train_embeddings=False)
        else:
            for prm in model.parameters():
                prm.requires_grad_(True)
        # the same schedule as the trim rows: cfg.lr_schedule over the whole budget
        fit = finetune(
            model,
            tok,
            train,
            steps=budget,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=cfg.seed + 1,
            use_context=ctx,
            max_length=cfg.max_length,
            lr_schedule=cfg.lr_schedule,
            warmup_steps=cfg.warmup_steps,
            total_steps=budget,
            progress=False,
        )
        save_trimmed(model, tok, out / row / "model")  # for benchmarks/pareto.py
        finish(
            row,
            {
                **measure(model, tok, test, cfg, ctx),
                "steps": budget,
                "train_loss": fit["train_loss"],
                "dropped": drop or [],
            },
            t0,
        )

    if "zero_shot" in rows and done("zero_shot") is None:
        t0 = time.perf_counter()
        model, tok = load_model(cfg.model)
        finish("zero_shot", measure(model, tok, test, cfg, ctx), t0)
    ref = trim_row("trimllm", "both")
    budget = ref["steps"]
    if "full_ft" in rows:
        ft_row("full_ft", budget, 1.0)
    if "sparse_ft" in rows:
        ft_row("sparse_ft", budget, cfg.r)
    if "one_shot" in rows:
        ft_row("one_shot", budget, cfg.r, drop=ref["dropped"])
    if "trimllm_kd" in rows:
        teacher = out / "full_ft" / "model"
        if done("full_ft") is None or not teacher.exists():
            raise SystemExit("trimllm_kd needs the full_ft row (its model is the teacher)")
        trim_row("trimllm_kd", cfg.score, heal="kd", teacher=str(teacher))
    for rule in ("random", "top", "bottom"):
        if rule in rows:
            trim_row(rule, rule)
    for row in rows:
        if row.startswith("score_"):
            trim_row(row, row.removeprefix("score_"))
    print(
        f"budget: {budget} steps per row ({math.ceil(budget / max(1, cfg.steps_per_round))} rounds)"
    )


if __name__ == "__main__":
    main()
