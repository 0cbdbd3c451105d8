"""The ``trimlab`` command (also ``python -m trimlab``).

* ``trimlab demo`` -- the README's main job on the embedded default: load the profile's
  model and evaluate it zero-shot on each dataset's test split, printing a table.
* ``trimlab eval`` -- evaluate one model on one dataset or domain.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from trimlab.data import licence, load_domain
from trimlab.evaluate import evaluate
from trimlab.models import load_model
from trimlab.profiles import PROFILE_NAMES, get_profile

DEMO_DATASETS = ("sciq", "piqa", "arc_easy", "medmcqa", "pubmedqa", "mmlu_law", "mmlu_econ")


def _row(name: str, context: bool, r: dict, seconds: float) -> str:
    return (
        f"| {name} | {'yes' if context else 'no'} | {r['n']} | {r['acc']:.3f} | "
        f"{r['acc_norm']:.3f} | {r['ll']:.3f} | {seconds:.0f} |"
    )


def demo(args: argparse.Namespace) -> int:
    """Zero-shot accuracy of the profile's model on every dataset's test split."""
    prof = get_profile(args.profile)
    n = args.n or prof.eval_items
    t0 = time.perf_counter()
    model, tok = load_model(args.model or prof.model)
    print(
        f"profile {prof.name}: {args.model or prof.model} loaded in {time.perf_counter() - t0:.1f} s"
    )
    print(f"zero-shot, {n} test items per dataset (seed 0), batch size {prof.batch_size}\n")
    print("| dataset | context | n | acc | acc_norm | ll | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    results = []
    for name in args.datasets or DEMO_DATASETS:
        items = load_domain(name, "test", n=n, seed=0)
        settings = [True, False] if name == "sciq" else [prof.use_context]
        for ctx in settings:
            t = time.perf_counter()
            r = evaluate(
                model,
                tok,
                items,
                batch_size=prof.batch_size,
                use_context=ctx,
                max_length=prof.max_length,
            )
            secs = time.perf_counter() - t
            print(_row(name, ctx, r, secs), flush=True)
            results.append(
                {"dataset": name, "context": ctx, **r, "seconds": secs, "licence": licence(name)}
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"profile": prof.name, "model": args.model or prof.model, "rows": results},
                f,
                indent=2,
            )
    return 0


def eval_cmd(args: argparse.Namespace) -> int:
    prof = get_profile(args.profile)
    model, tok = load_model(args.model or prof.model)
    items = load_domain(args.domain, args.split, n=args.n or prof.eval_items, seed=args.seed)
    ctx = prof.use_context if args.context is None else args.context == "yes"
    r = evaluate(
        model,
        tok,
        items,
        batch_size=args.batch_size or prof.batch_size,
        use_context=ctx,
        max_length=prof.max_length,
        progress=True,
    )
    print(json.dumps(r))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trimlab", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--profile", choices=PROFILE_NAMES, help="default: $TRIMLAB_PROFILE or by device"
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="zero-shot table of the default model on every dataset")
    d.add_argument("--model", help="model name (default: the profile's)")
    d.add_argument("--n", type=int, help="test items per dataset (default: the profile's)")
    d.add_argument("--datasets", nargs="*", help=f"default: {' '.join(DEMO_DATASETS)}")
    d.add_argument("--json", help="also write the rows to this JSON file")
    d.set_defaults(func=demo)
    e = sub.add_parser("eval", help="evaluate a model on a dataset or domain")
    e.add_argument("--model")
    e.add_argument("--domain", required=True, help="dataset or domain name")
    e.add_argument("--split", default="test")
    e.add_argument("--n", type=int)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int)
    e.add_argument("--context", choices=("yes", "no"))
    e.set_defaults(func=eval_cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"trimlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
