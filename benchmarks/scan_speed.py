"""Calibration scan speed (Eq. 3): trimlab's fast scan against the naive one.

Both scans drop every sub-layer of SmolLM2-135M in turn (60 candidates) and measure
accuracy on the same SciQ calibration items with support paragraphs.

* naive: ``trimlab.evaluate`` once per candidate (prompt sharing included);
* fast: ``trimlab.scoring.scan`` -- block inputs recorded once per chunk of items, each
  candidate re-runs only from its own block upward.

It checks the two give identical scores, then prints the time ratio naive/fast as its
last line. It also times a scan without prompt sharing (each choice re-reads its whole
prompt) on an evenly spaced subset of candidates, and scales it to all 60.

Limit: a candidate in block i re-runs blocks i..L-1, on average about half the model,
and the LM head and the record of block inputs are paid in full, so the gain is capped
near 2L / (L + 1) ~ 1.9x for L = 30 blocks with one candidate per sub-layer.

    python benchmarks/scan_speed.py            # cpu profile: 64 items, about 45 min on 2 cores
    python benchmarks/scan_speed.py --n 16     # a quick look
"""

from __future__ import annotations

import argparse
import time

import torch

from trimlab import scoring, surgery
from trimlab.data import load_domain
from trimlab.evaluate import choice_logliks, evaluate, summarize
from trimlab.models import load_model
from trimlab.profiles import get_profile


def flatten(items: list[dict]) -> list[dict]:
    """One single-choice item per (question, choice): no prompt is shared between choices."""
    return [{**it, "choices": [c], "answer": 0} for it in items for c in it["choices"]]


def base_naive_seconds(model, tok, items, kw) -> float:
    """Time of the naive scan's reference evaluation (the undropped model)."""
    t = time.perf_counter()
    evaluate(model, tok, items, **kw)
    return time.perf_counter() - t


def main() -> None:
    prof = get_profile()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=prof.batch_size)
    p.add_argument("--max-length", type=int, default=prof.max_length)
    p.add_argument("--unshared-candidates", type=int, default=6)
    p.add_argument("--chunk", type=int, default=64, help="items per recorded chunk (fast scan)")
    args = p.parse_args()
    torch.manual_seed(0)
    model, tok = load_model(args.model)
    items = load_domain("sciq", "calib", n=args.n, seed=0)
    names = surgery.sublayers(model)
    kw = dict(batch_size=args.batch_size, use_context=True, max_length=args.max_length)
    print(
        f"{args.model}: {len(names)} candidates, {len(items)} SciQ calib items with support, "
        f"batch {args.batch_size}, max_length {args.max_length}, {torch.get_num_threads()} threads"
    )
    choice_logliks(model, tok, items[:4], **kw)  # warm-up

    # Interleaved, so that a change in machine load hits both scans alike: per chunk of
    # items, the fast scan records block inputs once; then for every candidate the fast
    # trial (re-run from its block) and the naive trial (whole model via evaluate) are
    # timed back to back. scoring.scan(fast=True) does exactly the fast half.
    t_fast = t_naive = 0.0
    fast_ll: dict[str, list] = {n: [] for n in names}
    naive = {}
    base_naive = evaluate(model, tok, items, **kw)
    for start in range(0, len(items), args.chunk):
        part = items[start : start + args.chunk]
        t = time.perf_counter()
        with surgery.record_block_inputs(model) as record:
            base_fast = choice_logliks(model, tok, part, **kw)
        t_fast += time.perf_counter() - t
        for name in names:
            t = time.perf_counter()
            pos = scoring._scan_start(model, name)
            with surgery.trial_drop(model, [name]), surgery.run_from(model, pos, record[pos]):
                fast_ll[name] += choice_logliks(model, tok, part, **kw)
            t_fast += time.perf_counter() - t
            t = time.perf_counter()
            with surgery.trial_drop(model, [name]):
                naive.setdefault(name, []).extend(choice_logliks(model, tok, part, **kw))
            t_naive += time.perf_counter() - t
    t_naive += base_naive_seconds(model, tok, items, kw)
    fast = {n: summarize(items, fast_ll[n]) for n in names}
    naive = {n: summarize(items, naive[n]) for n in names}
    print(f"fast scan:  {t_fast:7.1f} s")
    print(f"naive scan: {t_naive:7.1f} s")

    same_acc = all(fast[n]["acc"] == naive[n]["acc"] for n in names)
    max_ll = max(abs(fast[n]["ll"] - naive[n]["ll"]) for n in names)
    print(f"identical scores: acc {same_acc}, max |ll difference| {max_ll:.2e}")
    if not same_acc:
        raise SystemExit("the fast and naive scans disagree")
    del base_fast, base_naive

    step = max(1, len(names) // args.unshared_candidates)
    subset = names[::step][: args.unshared_candidates]
    flat = flatten(items)
    t = time.perf_counter()
    choice_logliks(model, tok, flat, **kw)
    for name in subset:
        with surgery.trial_drop(model, [name]):
            choice_logliks(model, tok, flat, **kw)
    t_unshared = (time.perf_counter() - t) / (len(subset) + 1) * (len(names) + 1)
    print(
        f"scan without prompt sharing: {t_unshared:7.1f} s (timed on {len(subset)} candidates "
        f"{', '.join(subset)}, scaled to {len(names)})"
    )
    print(f"ratio unshared/fast: {t_unshared / t_fast:.2f}x")
    print(f"ratio naive/fast: {t_naive / t_fast:.2f}x")


if __name__ == "__main__":
    main()
