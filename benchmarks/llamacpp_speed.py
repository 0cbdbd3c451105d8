"""Trimmed models in llama.cpp: prefill and decode speed, size and accuracy (TrimLLM Table 7).

Rows: the full SmolLM2-135M, the reference run's trimmed models (the first K names of
its drop sequence, ``--drops``; the base weights, not the healed ones, unless
``--checkpoint NAME=DIR`` gives a trimmed checkpoint), and 25/50/75% of the sub-layers
removed as whole blocks; each exported with ``trimlab.export`` as f32, Q8_0 and Q4_K_M
(llama.cpp's quantizer). Every row runs in llama-cpp-python with the same thread count,
side by side (one warm-up round, then ``--repeats`` rounds in rotated order, medians):
prefill of a ``--prompt``-token prompt, and batch-1 greedy decode of ``--new`` tokens.

Ideal speedups are against the full model of the same type: decode by the bytes read
per token (every weight tensor of the GGUF file, the tied LM head once, plus the f16 KV
cache at the mean context), prefill by FLOPs (trimlab's accounting). The exact zero
stand-ins of ``trimlab.export`` are left out of the ideal, so their cost shows as a
shortfall. The last line is the smallest measured/ideal decode ratio over the
whole-block rows; the goal is at least 0.9.

    python benchmarks/llamacpp_speed.py --threads 1 --acc-items 100 --repeats 3 \\
        --json docs/results/llamacpp_speed.json --figure docs/figures/llamacpp_pareto.png
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from gguf import GGUFReader

from trimlab import bench, export, families, llamacpp
from trimlab.bench.ideal import ideal_prefill_speedup
from trimlab.checkpoint import load_trimmed, write_json
from trimlab.data import load_domain
from trimlab.encoding import encode_items
from trimlab.evaluate import summarize
from trimlab.history import History
from trimlab.models import load_model

TYPES = ("f32", "q8_0", "q4_k_m")
STAND_IN = {
    "attn": ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output"),
    "mlp": ("ffn_norm", "ffn_gate", "ffn_up", "ffn_down"),
}


def step_bytes(path: Path, layers: list[dict], model, context: int) -> tuple[int, int]:
    """(bytes one decode step reads from ``path`` less the stand-ins, stand-in bytes)."""
    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(path).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:  # an untied head: the embedding is only looked up
        total -= tensors["token_embd.weight"]
    extra = 0
    for pos, la in enumerate(layers):
        for kind in ("attn", "mlp"):
            if la[kind] == "zero":
                extra += sum(tensors.get(f"blk.{pos}.{n}.weight", 0) for n in STAND_IN[kind])
    _, kv, hd = families.head_geometry(model.config)
    n_attn = sum(la["attn"] == "kept" for la in layers)
    return total - extra + 2 * n_attn * kv * hd * context * 2, extra


def runner(llm, prompt: list[int], new: int):
    """Functions timing one prefill and one decode of ``llm`` (seconds)."""

    def prefill() -> float:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        return time.perf_counter() - t0

    def decode() -> float:
        llm.reset()
        llm.eval(prompt)
        t0 = time.perf_counter()
        for _ in range(new):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        return time.perf_counter() - t0

    return prefill, decode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--fractions", type=float, nargs="*", default=[0.25, 0.5, 0.75])
    p.add_argument("--history", default="docs/results/reference-cpu/trimllm/history.json")
    p.add_argument("--drops", type=int, nargs="*", default=[16, 32])
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--types", nargs="*", default=list(TYPES), choices=TYPES)
    p.add_argument("--acc-items", type=int, default=300, help="SciQ test items (seed 0)")
    p.add_argument("--acc-rows", nargs="*", default=["full", "drops-32"])
    p.add_argument(
        "--acc-context",
        choices=("yes", "no"),
        default="yes",
        help="SciQ with its support paragraph (the reference setting) or closed-book",
    )
    p.add_argument(
        "--acc-threads",
        type=int,
        default=os.cpu_count(),
        help="threads for the accuracy pass (not timed; the speed rows use --threads)",
    )
    p.add_argument("--json")
    p.add_argument("--figure")
    p.add_argument("--workdir", help="keep the GGUF files here (default: a temp folder)")
    args = p.parse_args(argv)

    base, tok = load_model("smollm2-135m", device="cpu")
    seq = History.from_json(args.history).drop_sequence if args.drops else []
    models = {"full": base}
    for f in args.fractions:
        models[f"blocks-{f:.0%}"] = bench.trimmed_copy(base, bench.block_drop_names(base, f))
    for k in args.drops:
        models[f"drops-{k}"] = bench.trimmed_copy(base, seq[:k])
    for spec in args.checkpoint:
        name, _, folder = spec.partition("=")
        models[name] = load_trimmed(folder)[0].float()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="llamacpp-speed-"))
    context = args.prompt + args.new // 2
    items = load_domain("sciq", "test", n=args.acc_items, seed=0)
    open_book = args.acc_context == "yes"
    encoded = encode_items(tok, items, use_context=open_book, max_length=512 if open_book else 256)
    prompt = bench.make_input_ids(tok, args.prompt, batch_size=1)[0].tolist()
    rows, fns = {}, {}
    for name, model in models.items():
        layers = export.plan(model)
        for kind in args.types:
            row = f"{name} {kind}"
            path = work / f"{name}-{kind}.gguf"
            t0 = time.perf_counter()
            if not path.exists():
                export.export_gguf(model, tok, path, kind)
            nbytes, extra = step_bytes(path, layers, model, context)
            rows[row] = {
                "name": row,
                "model": name,
                "type": kind,
                "sublayers_removed": len(model.config.trimlab_dropped)
                if hasattr(model.config, "trimlab_dropped")
                else 0,
                "whole_blocks": export.architecture(layers) == "llama",
                "bytes": os.path.getsize(path),
                "step_bytes": nbytes,
                "stand_in_bytes": extra,
                "prefill_ideal": ideal_prefill_speedup(base, model, args.prompt),
                "export_s": time.perf_counter() - t0,
            }
            llm = llamacpp.load(path, n_ctx=max(context * 2, 320), threads=args.threads)
            if name in args.acc_rows:
                t0 = time.perf_counter()
                scorer = llamacpp.load(path, n_ctx=1024, threads=args.acc_threads)
                rows[row]["acc"] = summarize(items, llamacpp.choice_logliks(scorer, encoded))["acc"]
                del scorer
                rows[row]["acc_s"] = time.perf_counter() - t0
                print(
                    f"{row}: acc {rows[row]['acc']:.3f} on {len(items)} {'open-book' if open_book else 'closed-book'} SciQ items",
                    flush=True,
                )
            fns[row] = (llm, *runner(llm, prompt, args.new))
    timings = bench.interleaved(
        {f"{r} {w}": fns[r][i] for r in fns for i, w in ((1, "prefill"), (2, "decode"))},
        repeats=args.repeats,
    )
    for row, r in rows.items():
        r["prefill_tokens_per_s"] = args.prompt / bench.median(timings[f"{row} prefill"])
        r["decode_tokens_per_s"] = args.new / bench.median(timings[f"{row} decode"])
    print(
        f"\nllama.cpp, {args.threads} threads, prompt {args.prompt}, {args.new} new tokens, medians of {args.repeats}\n"
    )
    print(
        "| model | type | removed | GGUF MiB | prefill tok/s | decode tok/s | decode speedup | ideal | measured/ideal | prefill measured/ideal | SciQ acc |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows.values():
        full = rows[f"full {r['type']}"]
        r["decode_speedup"] = r["decode_tokens_per_s"] / full["decode_tokens_per_s"]
        r["decode_ideal"] = full["step_bytes"] / r["step_bytes"]
        r["decode_ratio"] = r["decode_speedup"] / r["decode_ideal"]
        r["prefill_ratio"] = (
            r["prefill_tokens_per_s"] / full["prefill_tokens_per_s"] / r["prefill_ideal"]
        )
        acc = f"{r['acc']:.3f}" if "acc" in r else "-"
        print(
            f"| {r['model']} | {r['type']} | {r['sublayers_removed']}/60 | {r['bytes'] / 2**20:.0f} | "
            f"{r['prefill_tokens_per_s']:.0f} | {r['decode_tokens_per_s']:.1f} | {r['decode_speedup']:.2f} | "
            f"{r['decode_ideal']:.2f} | {r['decode_ratio']:.2f} | {r['prefill_ratio']:.2f} | {acc} |"
        )
    if args.json:
        write_json(
            args.json,
            {"settings": vars(args), "load": os.getloadavg(), "rows": list(rows.values())},
        )
    if args.figure:
        from trimlab.plots import pareto_plot

        fig = pareto_plot(
            [r for r in rows.values() if "acc" in r], title="SmolLM2-135M in llama.cpp"
        )
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120)
    ratios = [
        r["decode_ratio"] for r in rows.values() if r["whole_blocks"] and r["model"] != "full"
    ]
    print(f"smallest measured/ideal decode ratio over whole-block rows: {min(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
