"""Accuracy against memory and against speed: the paper's Figure 2 for our models.

For every ``--model NAME=DIR`` (a ``trimlab.save_trimmed`` folder: a trim run's
``final/``, a fine-tuned row's ``model/``; or a model name such as ``smollm2-135m``),
and for its dynamic-int8 copy (``trimlab.bench.quantize_int8``): test accuracy on the
profile's test items, weight bytes, and batch-1 greedy decode tokens/s. The speeds are
measured side by side in one run (interleaved round-robin after warm-up, medians;
``trimlab.bench.interleaved``). Accuracy cells are kept in ``--out`` as they finish, so
a killed run resumes; the speeds are always measured again together.

    TRIMLAB_PROFILE=cpu python benchmarks/pareto.py \\
        --model "zero-shot=smollm2-135m" \\
        --model "TrimLLM 50%=runs/reference-cpu/trimllm/run/final" \\
        --out docs/results/pareto.json --figure docs/figures/pareto.png
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from trimlab import accounting, bench
from trimlab.checkpoint import load_trimmed, write_json
from trimlab.data import load_domain
from trimlab.models import load_model
from trimlab.profiles import get_profile
from trimlab.results import eval_metrics


def main(argv: list[str] | None = None) -> int:
    prof = get_profile()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR_OR_MODEL")
    p.add_argument("--dataset", default="sciq")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 copies")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--out", default=f"runs/pareto-{prof.name}.json")
    p.add_argument("--figure", help="also save the plot here (png)")
    args = p.parse_args(argv)
    specs = {}
    for spec in args.model:
        name, sep, src = spec.partition("=")
        if not sep or not name:
            p.error(f"--model wants NAME=DIR_OR_MODEL, got {spec!r}")
        specs[name] = src
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {}
    acc = saved.get("acc", {})
    test = load_domain(args.dataset, "test", n=prof.eval_items, seed=0)
    models, tok = {}, None
    for name, src in specs.items():
        model, tok = load_trimmed(src) if Path(src).is_dir() else load_model(src)
        models[name] = model
        if not args.no_int8:
            models[f"{name} + int8"] = bench.quantize_int8(model)
    result = {
        "settings": {
            "profile": prof.name,
            "dataset": args.dataset,
            "test_items": len(test),
            "use_context": prof.use_context,
            "sources": specs,
            "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
            "repeats": args.repeats,
            "new_tokens": args.new_tokens,
        },
        "acc": acc,
    }
    for name, model in models.items():
        if name in acc:
            continue
        t0 = time.perf_counter()
        acc[name] = eval_metrics(model, tok, test, prof)["acc"]
        write_json(out, result)
        print(f"{name:28} acc {acc[name]:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    fns = {n: bench.decode_fn(m, tok, new_tokens=args.new_tokens) for n, m in models.items()}
    times = bench.interleaved(fns, repeats=args.repeats, warmup=1)
    rows = []
    for name, model in models.items():
        secs = bench.median(times[name])
        row = {
            "name": name,
            "acc": acc[name],
            "bytes": bench.weight_bytes(model),
            "decode_tokens_per_s": (args.new_tokens - 1) / secs,
        }
        if "int8" not in name:
            row["decoder_kept"] = accounting.compression(model)["decoder_kept"]
        rows.append(row)
    result["rows"] = rows
    write_json(out, result)
    print("| model | test acc | weights (MiB) | decode tokens/s (batch 1) |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['acc']:.3f} | {r['bytes'] / 2**20:.0f} | "
            f"{r['decode_tokens_per_s']:.1f} |"
        )
    if args.figure:
        fig = bench.pareto_plot(rows, title=f"{args.dataset}, {prof.name} profile")
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
