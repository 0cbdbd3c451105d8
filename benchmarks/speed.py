"""Inference speed of trimmed models against the full model and quantized peers.

Is a shallower model faster on any hardware, with no special kernels (TrimLLM Tables 1
and 7, Fig. 2)? Every candidate below lives in this one process and is measured side by
side: interleaved round-robin, after warm-up rounds, medians of ``--repeats`` (see
``trimlab.bench``). For each candidate:

* prefill tokens/s (batch 1, ``--prompt-tokens`` tokens, one forward pass);
* decode tokens/s with the KV cache, greedy, exactly ``--new-tokens`` tokens, at batch 1
  and at ``--batch-size``; the prefill is not in it;
* peak memory: weights plus the peak extra resident memory of one decode at
  ``--batch-size`` (``trimlab.bench.peak_memory_bytes``; Linux kernel peak RSS);
* weight bytes, and the ideal speedup from the surgery accounting: decode is bound by
  memory traffic, so its ideal is the ratio of bytes read per token (remaining weights
  and LM head once per step shared by the batch, plus the KV cache); prefill is bound
  by arithmetic, its ideal is the ratio of FLOPs. ``measured/ideal`` compares the two.

Candidates: ``full``; ``blocks-P%``: a share P of the sub-layers removed as whole blocks
(``--fractions``); ``drops-N``: the first N names of a drop sequence (``--history`` of
a trim run, or ``--drops``) at the same sizes; ``int8``: PyTorch dynamic int8
quantization of every ``nn.Linear`` (CPU), alone and on a trimmed model
(``--int8-fractions``); ``int8wo-torchao``: torchao weight-only int8 when torchao is
installed; ``bf16`` with ``--bf16``. On a GPU (``--device cuda``, untested here): fp16,
bf16 and bitsandbytes int8/nf4 when bitsandbytes is installed.

Why measured/ideal differs from 1: the ideal counts matrix work only. Each sub-layer
call also costs a fixed time per step (Python dispatch, rotary, KV-cache append, the
SDPA call, norms), which at batch 1 on a CPU is comparable with the matrix work of a
small attention sub-layer. Removing whole blocks removes that overhead in proportion,
and the LM head (one large matrix) runs closer to memory speed than the many small
block matrices, so whole-block ratios are near or above 1. Removing mostly MLPs removes
most bytes but keeps nearly every attention call with its fixed cost, so the measured
speedup trails the ideal (ratios near 0.8 have been seen). ``--compile`` fuses each
block's small ops with torch.compile to cut that overhead.

The last line is the smallest measured/ideal decode speedup (batch 1) over the
whole-block candidates.

    python benchmarks/speed.py                                  # SmolLM2-135M, defaults
    python benchmarks/speed.py --repeats 2 --new-tokens 16      # a quick look
    python benchmarks/speed.py --history runs/sciq/history.json --json speed.json
    python benchmarks/speed.py --drops 3.mlp,4.mlp,5.mlp --threads 1

Run it on a quiet machine: with two cores and a busy neighbour, two torch threads wait
for each other at every op (``--threads 1`` is steadier then).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from trimlab import accounting, bench, surgery
from trimlab.config import add_config_args, config_from_args

MiB = 2**20


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(p, ("profile", "model"))  # the model of the run configuration
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 0.75],
        help="shares of sub-layers removed as whole blocks (default 0.25 0.5 0.75)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="decode batch size (default 8)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens decoded per run")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--engine",
        choices=bench.ENGINES,
        default="loop",
        help="decode with a plain greedy loop (default) or model.generate",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile every block")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--history", help="history.json of a trim run: its drop sequence")
    src.add_argument("--drops", help="a drop sequence, comma separated (e.g. 3.mlp,7.attn)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--int8-fractions",
        type=float,
        nargs="*",
        default=[0.5],
        help="whole-block fractions also measured with int8 (default 0.5)",
    )
    p.add_argument(
        "--torchao",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="torchao weight-only int8 when torchao is installed",
    )
    p.add_argument("--bf16", action="store_true", help="also bf16 copies (CPU)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", help="write the rows here (for trimlab.bench.pareto_plot)")
    args = p.parse_args(argv)
    args.config = config_from_args(args)
    args.model = args.config.model
    return args


def _drop_sequence(args: argparse.Namespace) -> list[str] | None:
    if args.history:
        from trimlab.history import History

        return History.from_json(args.history).drop_sequence
    if args.drops:
        return [n.strip() for n in args.drops.split(",") if n.strip()]
    return None


def _candidates(model, tok, args, log) -> tuple[dict[str, dict], list[str]]:
    """name -> {model, structure, kind, names}; and notes about skipped peers."""
    n_sub = len(surgery.sublayers(model))
    cands: dict[str, dict] = {"full": dict(model=model, structure=model, kind="full", names=[])}
    notes: list[str] = []
    blocks: dict[float, object] = {}
    for f in args.fractions:
        names = bench.block_drop_names(model, f)
        m = bench.trimmed_copy(model, names)
        blocks[f] = m
        cands[f"blocks-{f:.0%}"] = dict(model=m, structure=m, kind="blocks", names=names)
    seq = _drop_sequence(args)
    if seq is not None:
        surgery.check_names(model, seq)
        counts = sorted({round(f * n_sub) for f in args.fractions if round(f * n_sub) > 0})
        counts = [c for c in counts if c <= len(seq)]
        if len(seq) not in counts and (not counts or len(seq) > counts[-1]):
            counts.append(len(seq))
        for c in counts:
            names = bench.prefix_for(seq, c)
            m = bench.trimmed_copy(model, names)
            cands[f"drops-{c}"] = dict(model=m, structure=m, kind="drops", names=names)
    dev = torch.device(args.device)
    if dev.type == "cpu":
        if args.int8:
            cands["int8"] = dict(
                model=bench.quantize_int8(model), structure=model, kind="int8", names=[]
            )
            for f in args.int8_fractions:
                base = blocks.get(f) or bench.trimmed_copy(model, bench.block_drop_names(model, f))
                cands[f"int8+blocks-{f:.0%}"] = dict(
                    model=bench.quantize_int8(base),
                    structure=base,
                    kind="int8+blocks",
                    names=bench.block_drop_names(model, f),
                )
        if args.torchao:
            if bench.torchao_available():
                cands["int8wo-torchao"] = dict(
                    model=bench.quantize_int8_torchao(model),
                    structure=model,
                    kind="int8wo",
                    names=[],
                )
                for f in args.int8_fractions:
                    base = blocks.get(f) or bench.trimmed_copy(
                        model, bench.block_drop_names(model, f)
                    )
                    cands[f"int8wo-torchao+blocks-{f:.0%}"] = dict(
                        model=bench.quantize_int8_torchao(base),
                        structure=base,
                        kind="int8wo+blocks",
                        names=bench.block_drop_names(model, f),
                    )
            else:
                notes.append(
                    "torchao weight-only int8: skipped, torchao is not installed "
                    "(pip install torchao; 0.18 installs from PyPI and runs on this torch)"
                )
        if args.bf16:
            cands["bf16"] = dict(
                model=bench.trimmed_copy(model, []).to(torch.bfloat16),
                structure=model,
                kind="bf16",
                names=[],
            )
    else:  # GPU peers: guarded, not testable on the reference machine
        for dt in (torch.float16, torch.bfloat16):
            name = str(dt).removeprefix("torch.")
            cands[name] = dict(
                model=bench.trimmed_copy(model, []).to(dt), structure=model, kind=name, names=[]
            )
        cands.update(_bnb_candidates(args, model, notes))
    if args.compile:
        for c in cands.values():
            if c["kind"] not in ("int8", "int8+blocks"):  # dynamic quantized: eager only
                bench.compile_blocks(c["model"])
    log(f"{len(cands)} candidates: {', '.join(cands)}")
    return cands, notes


def _bnb_candidates(args, model, notes) -> dict[str, dict]:
    """bitsandbytes int8 / nf4 on the GPU, loaded from the model's checkpoint."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    except ImportError:
        notes.append("bitsandbytes int8/nf4: skipped, bitsandbytes is not installed")
        return {}
    from trimlab import models

    source = (
        str(models.smollm2_checkpoint_path())
        if args.model.lower() == models.SMOLLM2
        else args.model
    )
    out = {}
    for name, cfg in (
        ("bnb-int8", BitsAndBytesConfig(load_in_8bit=True)),
        (
            "bnb-nf4",
            BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16
            ),
        ),
    ):
        try:
            m = AutoModelForCausalLM.from_pretrained(
                source, quantization_config=cfg, device_map={"": args.device}
            ).eval()
        except Exception as e:  # noqa: BLE001 -- a peer that fails to load is reported
            notes.append(f"{name}: skipped, {type(e).__name__}: {e}")
            continue
        out[name] = dict(model=m, structure=model, kind=name, names=[])
    return out


def _explain_step_time(rows: list[dict], model, n_sub: int) -> None:
    """Fit decode time at batch 1 to fixed + attention + MLP sub-layers and compare the
    attention:MLP time ratio with their byte ratio."""
    fp = [r for r in rows if r["kind"] in ("full", "blocks", "drops")]
    if len(fp) < 3:
        return
    half = n_sub // 2
    samples = [
        (half - r["attn_removed"], half - r["mlp_removed"], 1 / r["decode_tokens_per_s"])
        for r in fp
    ]
    fit = bench.fit_step_time(samples)
    sizes = accounting.sublayer_params(model)
    attn_p = [v for k, v in sizes.items() if k.endswith(".attn")]
    mlp_p = [v for k, v in sizes.items() if k.endswith(".mlp")]
    by_bytes = (sum(mlp_p) / len(mlp_p)) / (sum(attn_p) / len(attn_p))
    ms = 1000
    if fit["separable"]:
        print(
            f"where a decode step goes (batch 1, fitted over {len(fp)} fp32 rows): fixed "
            f"{fit['fixed'] * ms:.1f} ms (embedding, LM head, loop) + {fit['attn'] * ms:.2f} ms "
            f"per attention + {fit['mlp'] * ms:.2f} ms per MLP sub-layer. By bytes an MLP "
            f"is {by_bytes:.1f}x an attention sub-layer; by time "
            f"{fit['mlp'] / fit['attn']:.1f}x: the rest is attention's per-call overhead."
        )
    else:
        print(
            f"where a decode step goes (batch 1, fitted over {len(fp)} fp32 rows): fixed "
            f"{fit['fixed'] * ms:.1f} ms (embedding, LM head, loop) + "
            f"{2 * fit['attn'] * ms:.2f} ms per block (use --drops/--history to separate "
            "attention from MLP)."
        )


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> float:
    args = _parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from trimlab.models import load_model

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    model, tok = load_model(args.model, device=args.device, dtype=torch.float32)
    cands, notes = _candidates(model, tok, args, log)
    n_sub = len(surgery.sublayers(model))
    B, N, P = args.batch_size, args.new_tokens, args.prompt_tokens
    ctx = P + N // 2  # mean context while decoding

    fns = {}
    for name, c in cands.items():
        m = c["model"]
        fns[(name, "prefill")] = bench.prefill_fn(m, tok, P, 1)
        fns[(name, "decode1")] = bench.decode_fn(m, tok, 1, N, P, args.engine)
        if B != 1:
            fns[(name, "decodeB")] = bench.decode_fn(m, tok, B, N, P, args.engine)
    log(
        f"timing {len(fns)} measurements x ({args.warmup} warm-up + {args.repeats}) rounds, "
        f"interleaved ..."
    )
    keyed = {f"{k[0]}|{k[1]}": fn for k, fn in fns.items()}
    times = bench.interleaved(keyed, repeats=args.repeats, warmup=args.warmup)
    med = {tuple(k.split("|")): bench.median(v) for k, v in times.items()}

    peak = {}
    if args.memory:
        for name, c in cands.items():
            run = bench.decode_fn(c["model"], tok, B, N, P, args.engine)
            peak[name] = bench.peak_memory_bytes(run, args.device)

    full = cands["full"]["model"]
    rows = []
    for name, c in cands.items():
        m, st = c["model"], c["structure"]
        wb = bench.weight_bytes(m)
        pre = P / med[(name, "prefill")]
        d1 = (N - 1) / med[(name, "decode1")]
        dB = (B * (N - 1) / med[(name, "decodeB")]) if B != 1 else d1
        i1 = bench.ideal_decode_speedup(full, m, ctx, 1, model, st)
        iB = bench.ideal_decode_speedup(full, m, ctx, B, model, st)
        ip = bench.ideal_prefill_speedup(model, st, P)
        s1 = med[("full", "decode1")] / med[(name, "decode1")]
        sB = (med[("full", "decodeB")] / med[(name, "decodeB")]) if B != 1 else s1
        sp = med[("full", "prefill")] / med[(name, "prefill")]
        removed = len(c["names"])
        rows.append(
            dict(
                name=name,
                kind=c["kind"],
                removed=removed,
                removed_share=removed / n_sub,
                attn_removed=sum(n.endswith(".attn") for n in c["names"]),
                mlp_removed=sum(n.endswith(".mlp") for n in c["names"]),
                dropped=c["names"],
                bytes=wb,
                bytes_kept=wb / bench.weight_bytes(full),
                decoder_kept=accounting.decoder_param_count(st)
                / accounting.decoder_param_count(model),
                prefill_tokens_per_s=pre,
                decode_tokens_per_s=d1,
                decode_tokens_per_s_batch=dB,
                peak_extra_bytes=peak.get(name),
                peak_memory_bytes=(wb + peak[name]) if name in peak else None,
                speedup=s1,
                ideal=i1["ideal"],
                ideal_flops=i1["flops"],
                ratio=s1 / i1["ideal"],
                speedup_batch=sB,
                ideal_batch=iB["ideal"],
                ratio_batch=sB / iB["ideal"],
                prefill_speedup=sp,
                prefill_ideal=ip,
                prefill_ratio=sp / ip,
                acc=None,
            )
        )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info = dict(
        model=args.model,
        device=args.device,
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        torch=torch.__version__,
        engine=args.engine,
        compile=args.compile,
        batch_size=B,
        new_tokens=N,
        prompt_tokens=P,
        repeats=args.repeats,
        warmup=args.warmup,
        memory_method=(bench.cpu_memory_method() if args.device == "cpu" else "cuda-allocator"),
        load_average=load,
        seconds=time.perf_counter() - t_start,
    )
    print(
        f"model={args.model} device={args.device} threads={info['threads']} engine={args.engine} "
        f"compile={args.compile} prompt={P} new_tokens={N} batch={B} repeats={args.repeats} "
        f"warmup={args.warmup} (medians; ideal = bytes ratio for decode, FLOPs for prefill)"
    )
    if load is not None and load - info["threads"] > 0.5:  # more runnable than our threads
        print(
            f"warning: load average {load:.1f} on {os.cpu_count()} cores with {info['threads']} "
            "torch threads of ours: other work shares the CPU, so these timings are disturbed "
            "(try --threads 1, or a quiet moment)"
        )
    print()
    print(
        f"| model | sub-layers removed | weights MiB | prefill tok/s | decode tok/s b=1 | "
        f"decode tok/s b={B} | peak mem MiB | speedup b=1 | ideal b=1 | measured/ideal b=1 | "
        f"measured/ideal b={B} | measured/ideal prefill |"
    )
    print("|" + "---|" * 12)
    for r in rows:
        rem = (
            f"{r['removed']}/{n_sub} ({r['attn_removed']}a+{r['mlp_removed']}m)"
            if r["removed"]
            else "0"
        )
        print(
            f"| {r['name']} | {rem} | {r['bytes'] / MiB:.0f} | {r['prefill_tokens_per_s']:.0f} | "
            f"{r['decode_tokens_per_s']:.1f} | {r['decode_tokens_per_s_batch']:.1f} | "
            f"{_fmt(r['peak_memory_bytes'] and r['peak_memory_bytes'] / MiB, '.0f')} | "
            f"{r['speedup']:.2f} | {r['ideal']:.2f} | {r['ratio']:.2f} | "
            f"{r['ratio_batch']:.2f} | {r['prefill_ratio']:.2f} |"
        )
    print()
    for n in notes:
        print(f"note: {n}")
    seq_rows = [r for r in rows if r["kind"] == "drops"]
    if seq_rows:
        print("drop sequence at the same sizes (decode b=1):")
        for r in seq_rows:
            print(
                f"  {r['name']}: {r['attn_removed']} attention + {r['mlp_removed']} MLP removed, "
                f"measured {r['speedup']:.2f}x, ideal {r['ideal']:.2f}x (FLOPs "
                f"{r['ideal_flops']:.2f}x), measured/ideal {r['ratio']:.2f}"
            )
        print(
            "  An MLP holds most of a block's bytes but removing it leaves the block's "
            "attention call, whose fixed per-step cost (dispatch, rotary, cache append, SDPA) "
            "the ideal does not count, so mostly-MLP drops fall short of the ideal."
        )
    _explain_step_time(rows, model, n_sub)
    if args.json:
        samples = {k: v for k, v in times.items()}
        Path(args.json).write_text(
            json.dumps(dict(info=info, rows=rows, samples=samples), indent=1) + "\n"
        )
        print(f"rows written to {args.json} (add 'acc' and plot with trimlab.bench.pareto_plot)")
    print(f"memory method: {info['memory_method']}; total {info['seconds']:.0f} s")
    blocks = [r["ratio"] for r in rows if r["kind"] == "blocks"]
    worst = min(blocks) if blocks else float("nan")
    print(f"smallest measured/ideal decode speedup (whole blocks, batch 1): {worst:.2f}")
    return worst


if __name__ == "__main__":
    main()
