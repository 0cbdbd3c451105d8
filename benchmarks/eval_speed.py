"""Speed of trimlab.evaluate against lm-eval's HFLM on the same items and prompts.

Both score every choice of ``--n`` SciQ test items (with their support paragraphs) by
log-likelihood, side by side in one process after a short warm-up of each. Printed:
the prediction agreement, the largest per-choice log-likelihood gap, the timings, the
ratio against lm-eval's default batch size 1, and, as the LAST line, the ratio
``lm-eval time / trimlab time`` at equal batch size.

    python benchmarks/eval_speed.py --n 200 --batch-size 16

(``TRIMLAB_DATA_DIR`` must point at the prepared data, e.g. ``/work/shared/data``.)
"""

from __future__ import annotations

import argparse
import time

import torch

from trimlab.evaluate import choice_logliks, predictions
from trimlab.lmeval import lmeval_loglikelihoods, make_hflm


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="SciQ test items (default 200)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size for both")
    parser.add_argument("--model", default="smollm2-135m", help="name for load_model")
    parser.add_argument("--dataset", default="sciq", help="domain for load_domain")
    parser.add_argument("--no-context", action="store_true", help="drop support paragraphs")
    parser.add_argument("--warmup", type=int, default=4, help="warm-up items (default 4)")
    parser.add_argument(
        "--skip-bs1", action="store_true", help="skip the lm-eval batch-size-1 run (slow)"
    )
    args = parser.parse_args(argv)

    from trimlab.data import load_domain
    from trimlab.models import load_model

    use_context = not args.no_context
    model, tokenizer = load_model(args.model)
    model.eval()
    items = load_domain(args.dataset, "test", n=args.n, seed=0)
    n_choices = sum(len(it["choices"]) for it in items)
    print(
        f"model={args.model} dataset={args.dataset} n={len(items)} choices={n_choices} "
        f"context={use_context} batch_size={args.batch_size} threads={torch.get_num_threads()}"
    )

    lm_b = make_hflm(model, tokenizer, batch_size=args.batch_size)
    lm_1 = make_hflm(model, tokenizer, batch_size=1)

    def ours():
        return choice_logliks(
            model, tokenizer, items, batch_size=args.batch_size, use_context=use_context
        )

    def theirs(lm):
        return lmeval_loglikelihoods(model, tokenizer, items, use_context=use_context, lm=lm)

    warm = items[: args.warmup]
    choice_logliks(model, tokenizer, warm, batch_size=args.batch_size, use_context=use_context)
    lmeval_loglikelihoods(model, tokenizer, warm, use_context=use_context, lm=lm_b)

    ours_ll, t_ours = _timed(ours)
    print(f"trimlab.evaluate  bs={args.batch_size:<3d} {t_ours:8.2f} s")
    ref_ll, t_ref = _timed(lambda: theirs(lm_b))
    print(f"lm-eval HFLM      bs={args.batch_size:<3d} {t_ref:8.2f} s")

    agree = sum(a == b for a, b in zip(predictions(ours_ll), predictions(ref_ll), strict=True))
    gap = max(abs(x - y) for a, b in zip(ours_ll, ref_ll) for x, y in zip(a, b, strict=True))
    print(f"prediction agreement: {agree}/{len(items)} = {agree / len(items):.1%}")
    print(f"max |loglik difference| per choice: {gap:.2e}")

    if not args.skip_bs1:
        _, t_ref1 = _timed(lambda: theirs(lm_1))
        print(f"lm-eval HFLM      bs=1   {t_ref1:8.2f} s")
        print(f"speed-up vs lm-eval default batch size 1: {t_ref1 / t_ours:.2f}x")
    ratio = t_ref / t_ours
    print(f"speed-up at equal batch size {args.batch_size}: {ratio:.2f}x")
    return ratio


if __name__ == "__main__":
    main()
