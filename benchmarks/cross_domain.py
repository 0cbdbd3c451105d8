"""Cross-domain behaviour of trimmed models (the paper's Tables 4 and 5).

A model trimmed for one domain keeps the sub-layers *that* domain needs. How does it
do on the others? For every ``--trimmed NAME=DIR`` (a ``trimlab.save_trimmed`` folder,
e.g. a trim run's ``final/``) and the untrimmed model, evaluate the test items of every
``--datasets`` entry; the same items for every model. Resumable: finished cells are kept
in ``--out`` (written atomically after each one).

    TRIMLAB_PROFILE=cpu python benchmarks/cross_domain.py \\
        --trimmed science=runs/reference-cpu/trimllm/run/final \\
        --trimmed piqa=runs/reference-cpu-piqa/trimllm/run/final \\
        --datasets sciq arc_easy piqa medmcqa --out docs/results/cross_domain.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trimlab import accounting
from trimlab.checkpoint import load_trimmed, write_json
from trimlab.data import load_domain
from trimlab.models import load_model
from trimlab.profiles import get_profile
from trimlab.results import eval_metrics


def main(argv: list[str] | None = None) -> int:
    prof = get_profile()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=prof.model, help="the untrimmed model")
    p.add_argument("--trimmed", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--datasets", nargs="+", default=["sciq", "arc_easy", "piqa", "medmcqa"])
    p.add_argument("--out", default=f"runs/cross_domain-{prof.name}.json")
    args = p.parse_args(argv)
    models = {"untrimmed": None}
    for spec in args.trimmed:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            p.error(f"--trimmed wants NAME=DIR with an existing DIR, got {spec!r}")
        models[name] = folder
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.setdefault(
        "settings",
        {
            "profile": prof.name,
            "model": args.model,
            "test_items": prof.eval_items,
            "use_context": prof.use_context,
            "max_length": prof.max_length,
        },
    )
    cells = result.setdefault("acc", {})
    result.setdefault("decoder_kept", {})
    for name, folder in models.items():
        todo = [d for d in args.datasets if d not in cells.get(name, {})]
        if not todo:
            continue
        model, tok = load_model(args.model) if folder is None else load_trimmed(folder)
        result["decoder_kept"][name] = accounting.compression(model)["decoder_kept"]
        result.setdefault("sources", {})[name] = folder or args.model
        for ds in todo:
            t0 = time.perf_counter()
            items = load_domain(ds, "test", n=prof.eval_items, seed=0)
            r = eval_metrics(model, tok, items, prof)
            cells.setdefault(name, {})[ds] = r["acc"]
            write_json(out, result)
            print(
                f"{name:12} {ds:10} acc {r['acc']:.3f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    print("| model | decoder kept | " + " | ".join(args.datasets) + " |")
    print("|---|---:|" + "---:|" * len(args.datasets))
    for name in models:
        accs = " | ".join(f"{cells[name][d]:.3f}" for d in args.datasets)
        print(f"| {name} | {result['decoder_kept'][name]:.1%} | {accs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
