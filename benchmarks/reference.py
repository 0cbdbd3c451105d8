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
* ``random``, ``top``, ``bottom``: the paper's Table 3 rules, dropping progressively to
  the same size with the same fine-tuning;
* ``score_<method>``: trimming with another scoring method (``--methods``).

    python benchmarks/reference.py --domain science --target 50% --rows all
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from trimlab import scoring, sparse, surgery
from trimlab.checkpoint import save_trimmed, write_json
from trimlab.data import load_domain
from trimlab.finetune import finetune
from trimlab.models import load_model
from trimlab.profiles import get_profile
from trimlab.results import measure
from trimlab.trim import parse_target, trim

ROWS = ("zero_shot", "trimllm", "full_ft", "sparse_ft", "one_shot", "random", "top", "bottom")


def main(argv: list[str] | None = None) -> None:
    prof = get_profile()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=prof.model)
    p.add_argument("--domain", default="science")
    p.add_argument("--target", default="50%")
    p.add_argument("--sizes", nargs="*", default=["75%", "60%"], help="extra TrimLLM sizes")
    p.add_argument("--rows", nargs="*", default=["all"])
    p.add_argument("--methods", nargs="*", default=[], help="extra scoring methods to trim with")
    p.add_argument("--r", type=float, default=0.25)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--out", default=f"runs/reference-{prof.name}")
    p.add_argument("--steps-per-round", type=int, help="override the profile's value")
    p.add_argument("--calib-items", type=int, help="override the profile's value")
    p.add_argument("--drop-rate", type=int, help="override the profile's value")
    p.add_argument("--eval-items", type=int, help="override the profile's value")
    args = p.parse_args(argv)
    overrides = {
        field: value
        for field, value in (
            ("train_steps_per_round", args.steps_per_round),
            ("calib_items", args.calib_items),
            ("drop_rate", args.drop_rate),
            ("eval_items", args.eval_items),
        )
        if value is not None
    }
    prof = prof.replace(**overrides)
    rows = list(ROWS) + [f"score_{m}" for m in args.methods] if args.rows == ["all"] else args.rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = prof.use_context
    test = load_domain(args.domain, "test", n=prof.eval_items, seed=0)
    train = load_domain(args.domain, "train")
    common = dict(
        r=args.r,
        drop_rate=prof.drop_rate,
        steps_per_round=prof.train_steps_per_round,
        calib_items=prof.calib_items,
        batch_size=prof.batch_size,
        lr=args.lr,
        use_context=ctx,
        max_length=prof.max_length,
        profile=prof,
    )
    settings = {
        "profile": prof.name,
        "model": args.model,
        "domain": args.domain,
        "target": args.target,
        "test_items": len(test),
        **{k: v for k, v in common.items() if k != "profile"},
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

    def trim_row(row: str, score: str) -> dict:
        if (res := done(row)) is not None:
            return res
        t0 = time.perf_counter()
        model, tok = load_model(args.model)
        sizes = [parse_target(s) for s in args.sizes]
        snaps: dict[str, dict] = {}

        def snap_file(s) -> Path:
            tag = f"{s.kept:.2f}" if s.kept is not None else f"n{s.count}"
            return out / row / f"snapshot_{tag}.json"

        def snapshot(rnd, hist):  # trim changes `model` in place, resumed runs too
            for s in sizes:
                if str(s) not in snaps and s.met(model, len(surgery.dropped(model))):
                    snaps[str(s)] = {**measure(model, tok, test, prof, ctx), "round": rnd.round}
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
            score=score,
            out_dir=out / row / "run",
            callback=snapshot,
            **common,
        )
        h = res.history
        result = {
            **measure(res.model, tok, test, prof, ctx),
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
        model, tok = load_model(args.model)
        if drop:
            surgery.drop(model, drop)
        calib = load_domain(args.domain, "calib", n=prof.calib_items, seed=1000)
        if r < 1:
            s = scoring.score(
                model, tok, calib, method="both", use_context=ctx, batch_size=prof.batch_size
            )
            sparse.freeze(model, sparse.select_trainable(s, r), train_embeddings=False)
        else:
            for prm in model.parameters():
                prm.requires_grad_(True)
        fit = finetune(
            model,
            tok,
            train,
            steps=budget,
            batch_size=prof.batch_size,
            lr=args.lr,
            seed=1,
            use_context=ctx,
            max_length=prof.max_length,
            lr_schedule="linear",
            total_steps=budget,
            progress=False,
        )
        save_trimmed(model, tok, out / row / "model")  # for benchmarks/pareto.py
        finish(
            row,
            {
                **measure(model, tok, test, prof, ctx),
                "steps": budget,
                "train_loss": fit["train_loss"],
                "dropped": drop or [],
            },
            t0,
        )

    if "zero_shot" in rows and done("zero_shot") is None:
        t0 = time.perf_counter()
        model, tok = load_model(args.model)
        finish("zero_shot", measure(model, tok, test, prof, ctx), t0)
    ref = trim_row("trimllm", "both")
    budget = ref["steps"]
    if "full_ft" in rows:
        ft_row("full_ft", budget, 1.0)
    if "sparse_ft" in rows:
        ft_row("sparse_ft", budget, args.r)
    if "one_shot" in rows:
        ft_row("one_shot", budget, args.r, drop=ref["dropped"])
    for rule in ("random", "top", "bottom"):
        if rule in rows:
            trim_row(rule, rule)
    for row in rows:
        if row.startswith("score_"):
            trim_row(row, row.removeprefix("score_"))
    print(
        f"budget: {budget} steps per row ({math.ceil(budget / max(1, prof.train_steps_per_round))} rounds)"
    )


if __name__ == "__main__":
    main()
