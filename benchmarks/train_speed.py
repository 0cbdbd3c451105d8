"""Training speed on this machine: full and sparse fine-tuning, fp32 and bf16, against the
matmul peak (model FLOPs utilisation).

Every configuration runs side by side in one process: SmolLM2-135M (the profile's
model), batches of 8 SciQ ``train`` items **with** their support paragraphs at
``max_length`` 512, full fine-tuning and sparse fine-tuning (r = 0.25, TrimLLM's
trainable set, Sec. 3.4), each in fp32 and in bf16 mixed precision (Trainer's
``bf16=True``: bf16 autocast over fp32 master weights), at each thread count.

Tokens/s counts every non-padding token a step reads (prompt and answer). The answer
cross-entropy runs the LM head on the answer positions only (``train_data.answer_ce``);
the rows marked "LM head everywhere" train the same loss through the model's own
``labels`` path, which projects every position onto the vocabulary (the step before
this change), so the two are measured side by side. Model FLOPs are those the step
needs: per token ``6 N`` for full fine-tuning (forward 2N, backward 4N, N = the weights
of the decoder's matrix multiplies) and ``4 N + 2 N_trainable`` for sparse fine-tuning
(frozen weights need no weight gradient), plus the LM head's ``6 H`` (full) or ``4 H``
(sparse: the tied head is frozen) on each position it runs on. MFU is achieved model
FLOP/s over the measured peak of a 512x576 @ 576x1536 matmul in the same dtype and
thread count.

    TRIMLAB_PROFILE=cpu python benchmarks/train_speed.py --threads 1 2 --steps 4

The last line is the bf16/fp32 tokens/s ratio of sparse fine-tuning at 1 thread.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from trimlab import scoring, sparse
from trimlab.checkpoint import write_json
from trimlab.config import add_config_args, config_from_args
from trimlab.data import load_domain
from trimlab.finetune import finetune
from trimlab.models import load_model
from trimlab.runtime import FAST_BF16_CPU_FLAGS, fast_bf16
from trimlab.train_data import build_examples


def matmul_peak(dtype: torch.dtype, repeats: int = 20) -> float:
    """Best GFLOP/s of a 512x576 @ 576x1536 matmul (SmolLM2's MLP shape)."""
    a = torch.randn(512, 576).to(dtype)
    b = torch.randn(576, 1536).to(dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 512 * 576 * 1536 / best / 1e9


def matmul_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Weights of the matrix multiplies: every 2-D parameter but the input embedding
    (a lookup), the LM head counted once even when tied."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    seen, total = set(), 0
    for p in model.parameters():
        if p.dim() != 2 or id(p) in seen or (p is emb and p is not head):
            continue
        seen.add(id(p))
        if not trainable_only or p.requires_grad:
            total += p.numel()
    return total


def every_position_ce(model, inputs):
    """The answer CE through the model's own ``labels`` path (LM head on every position)."""
    loss = model(**inputs, use_cache=False).loss
    return loss, {}


def run(model, tok, items, cfg, steps: int, bf16: bool, head_everywhere: bool) -> dict:
    """One timed ``finetune`` call after an untimed warm-up step."""
    kw = dict(batch_size=8, lr=cfg.lr, use_context=True, max_length=512, bf16=bf16, seed=cfg.seed)
    kw["step_loss"] = every_position_ce if head_everywhere else None
    finetune(model, tok, items[:8], steps=1, **kw)  # warm-up
    timed = items[8 : 8 + 8 * steps]  # one epoch of exactly `steps` batches
    examples = build_examples(tok, timed, True, 512)
    tokens = sum(len(e["input_ids"]) for e in examples)
    answers = sum(sum(x != -100 for x in e["labels"]) for e in examples)
    fit = finetune(model, tok, timed, steps=steps, **kw)
    return {
        "tokens": tokens,
        "head_positions": tokens if head_everywhere else answers,
        "seconds": fit["seconds"],
        "tokens_per_s": tokens / fit["seconds"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=4, help="timed optimizer steps per row")
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=("fp32", "bf16"),
        help="default: fp32 and bf16 where the hardware has fast bf16, else fp32 only",
    )
    p.add_argument("--peak-only", action="store_true", help="only the matmul peaks")
    p.add_argument("--json", help="write the rows here")
    add_config_args(p, ("profile", "model", "r", "seed", "calib_items"))
    args = p.parse_args(argv)
    cfg = config_from_args(args)
    if args.peak_only:
        for threads in args.threads:
            torch.set_num_threads(threads)
            fp32, bf16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
            print(f"threads {threads}: fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s")
        return
    dtypes = args.dtypes or (["fp32", "bf16"] if fast_bf16() else ["fp32"])
    if "bf16" not in dtypes:
        print(f"no fast bf16 on this CPU ({', '.join(FAST_BF16_CPU_FLAGS)} missing): fp32 only")
    base, tok = load_model(cfg.model, dtype=torch.float32)
    base.train()
    items = load_domain("sciq", "train", n=8 + 8 * args.steps, seed=cfg.seed)
    calib = load_domain("sciq", "calib", n=cfg.calib_items, seed=cfg.seed + 1000)
    initial = scoring.score(
        base,
        tok,
        calib,
        method=cfg.select_score,
        use_context=True,
        batch_size=cfg.batch_size,
        max_length=512,
        seed=cfg.seed,
    )
    trainable = sparse.select_trainable(initial, cfg.r)
    n_head = base.get_output_embeddings().weight.numel()
    n_dec = matmul_params(base) - n_head
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        print(
            f"threads {threads}: matmul peak fp32 {peak['fp32']:.0f} GFLOP/s, "
            f"bf16 {peak['bf16']:.0f} GFLOP/s",
            flush=True,
        )
        for mode in ("full", "sparse"):
            for dt in dtypes:
                for everywhere in (False, True):
                    model = copy.deepcopy(base)
                    if mode == "sparse":
                        sparse.freeze(model, trainable, train_embeddings=False)
                    n_train = matmul_params(model, trainable_only=True)
                    if mode == "full":
                        dec, head = 6 * n_dec, 6 * n_head
                    else:  # the tied head is frozen (train_embeddings=False)
                        dec, head = 4 * n_dec + 2 * n_train, 4 * n_head
                    r = run(model, tok, items, cfg, args.steps, dt == "bf16", everywhere)
                    flops = r["tokens"] * dec + r["head_positions"] * head
                    mfu = flops / r["seconds"] / (peak[dt] * 1e9)
                    row = {
                        "threads": threads,
                        "mode": mode,
                        "dtype": dt,
                        "lm_head": "everywhere" if everywhere else "answers",
                        **r,
                        "gflop_per_token": flops / r["tokens"] / 1e9,
                        "peak_gflops": peak[dt],
                        "mfu": mfu,
                    }
                    rows.append(row)
                    label = "LM head everywhere" if everywhere else "LM head on answers"
                    print(
                        f"  {mode:6s} {dt} {label:18s}: {r['tokens_per_s']:6.1f} tok/s, "
                        f"MFU {mfu:.1%} ({r['tokens']} tokens in {r['seconds']:.1f} s)",
                        flush=True,
                    )
                    del model
    if args.json:
        write_json(args.json, {"settings": {**cfg.to_dict(), "steps": args.steps}, "rows": rows})
    print(json.dumps({"rows": len(rows)}))

    def tps(mode, dt, th, head="answers"):
        return next(
            r["tokens_per_s"]
            for r in rows
            if (r["mode"], r["dtype"], r["threads"], r["lm_head"]) == (mode, dt, th, head)
        )

    th = 1 if 1 in args.threads else args.threads[0]
    for mode in ("full", "sparse"):
        gain = tps(mode, dtypes[0], th) / tps(mode, dtypes[0], th, "everywhere")
        print(f"{mode} fine-tuning, LM head on answers / everywhere at {th} thread(s): {gain:.2f}x")
    if "bf16" not in dtypes:
        return
    print(
        f"sparse fine-tuning bf16/fp32 at {th} thread(s): "
        f"{tps('sparse', 'bf16', th) / tps('sparse', 'fp32', th):.2f}x"
    )


if __name__ == "__main__":
    main()
