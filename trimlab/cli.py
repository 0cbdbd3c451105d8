"""The ``trimlab`` command (also ``python -m trimlab``).

* ``trimlab demo`` -- the README's main job: a short TrimLLM run in the paper's setting
  (open-book SciQ), healed by distillation from a full-FT teacher, with accuracy and size
  before and after (:mod:`trimlab.demo`).
* ``trimlab zero-shot`` -- the profile's model evaluated zero-shot on each dataset's test
  split, printing a table.
* ``trimlab eval`` -- evaluate one model on one dataset or domain.
* ``trimlab trim`` -- TrimLLM end to end; writes the trimmed model, ``history.json`` and
  a report (test accuracy, sizes and decode speed, before and after). Resumes when
  pointed at an existing ``--out`` directory.
* ``trimlab generate`` -- the model's answer to a prompt (chat template), before and
  after trimming.
* ``trimlab export`` -- a trimmed checkpoint as a GGUF file that llama.cpp runs
  (:mod:`trimlab.export`; needs the ``deploy`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from trimlab.config import CONFIG_FLAGS, TrimConfig, add_config_args, config_from_args
from trimlab.data import get_dataset, licence, load_domain
from trimlab.evaluate import evaluate
from trimlab.models import load_model
from trimlab.profiles import PROFILE_NAMES, get_profile
from trimlab.results import measure

DEMO_DATASETS = ("sciq", "piqa", "arc_easy", "medmcqa", "pubmedqa", "mmlu_law", "mmlu_econ")


def _row(name: str, context: bool, r: dict, seconds: float) -> str:
    return (
        f"| {name} | {'yes' if context else 'no'} | {r['n']} | {r['acc']:.3f} | "
        f"{r['acc_norm']:.3f} | {r['ll']:.3f} | {seconds:.0f} |"
    )


def zero_shot(args: argparse.Namespace) -> int:
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
        settings = [True, False] if get_dataset(name).has_context else [False]
        for ctx in settings:
            t = time.perf_counter()
            r = evaluate(
                model,
                tok,
                items,
                batch_size=prof.batch_size,
                use_context=ctx,
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


def demo(args: argparse.Namespace) -> int:
    """The main job: open-book SciQ, a full-FT teacher, TrimLLM healed by KD."""
    from trimlab.demo import demo_config, run

    overrides = {"model": args.model} if args.model else {}
    if args.n:
        overrides["eval_items"] = args.n
    cfg = demo_config(args.profile, **overrides)
    run(args.out, cfg, target=args.target, teacher_steps=args.teacher_steps)
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


def _load(name: str):
    """A built-in name, hub id or folder; a trimlab checkpoint folder loads trimmed."""
    from pathlib import Path

    from trimlab.checkpoint import META_FILE, load_trimmed

    path = Path(name)
    for cand in (path, path / "final", path / "latest"):
        if (cand / META_FILE).exists():
            return load_trimmed(cand)
    return load_model(name)


def trim_config(args: argparse.Namespace) -> TrimConfig:
    """The run configuration of ``trimlab trim``'s flags (the profile fills the rest)."""
    return config_from_args(args)


def trim_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trimlab.pipeline import trim

    cfg = trim_config(args)
    model, tok = _load(cfg.model)
    test = load_domain(args.domain, "test", n=cfg.eval_items, seed=0)
    out = Path(args.out)
    before_file = out / "report_before.json"
    if before_file.exists():
        before = json.loads(before_file.read_text())
    else:
        print(f"measuring the untrimmed model on {len(test)} {args.domain} test items ...")
        before = measure(model, tok, test, cfg, cfg.use_context, decode=True)
        out.mkdir(parents=True, exist_ok=True)
        before_file.write_text(json.dumps(before, indent=1))
    t = time.perf_counter()
    result = trim(model, tok, args.domain, args.target, cfg, out_dir=out, progress=True)
    after = measure(result.model, result.tokenizer, test, cfg, cfg.use_context, decode=True)
    report = {
        "settings": result.history.settings,
        "dropped": result.history.drop_sequence,
        "stopped": result.history.stopped,
        "trim_seconds": time.perf_counter() - t,
        "before": before,
        "after": after,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(
        "\n| | test acc | params | decoder kept | bytes kept | decode tok/s |\n|---|---:|---:|---:|---:|---:|"
    )
    for label, m in (("before", before), ("after", after)):
        print(
            f"| {label} | {m['acc']:.3f} | {m['params']:,} | {m['decoder_kept']:.1%} | "
            f"{m['bytes_kept']:.1%} | {m['decode_tokens_per_s']:.1f} |"
        )
    print(f"dropped ({len(report['dropped'])}): {', '.join(report['dropped'])}")
    return 0


def generate_cmd(args: argparse.Namespace) -> int:
    from trimlab.bench import generate_text

    prof = get_profile(args.profile)
    for label, name in (("before", args.model or prof.model), ("after", args.trimmed)):
        if name is None:
            continue
        model, tok = _load(name)
        print(
            f"--- {label} ({name})\n{generate_text(model, tok, args.prompt, args.max_new_tokens)}"
        )
    return 0


def export_cmd(args: argparse.Namespace) -> int:
    from trimlab.export import export_dir

    try:
        report = export_dir(args.dir, args.out, args.format, args.outtype)
    except (ImportError, RuntimeError) as err:  # engine missing or converter failed
        raise ValueError(str(err)) from err
    stand_in = report["stand_in_params"]
    print(
        f"wrote {report['path']}: llama.cpp arch {report['arch']}, {report['outtype']}, "
        f"{report['params']:,} parameters ({stand_in:,} in exact zero stand-ins), "
        f"{report['bytes']:,} bytes"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trimlab", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--profile", choices=PROFILE_NAMES, help="default: $TRIMLAB_PROFILE or by device"
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="short TrimLLM run, open-book SciQ, healed by distillation")
    d.add_argument("--model", help="model name (default: the profile's)")
    d.add_argument("--n", type=int, help="test items (default 100)")
    d.add_argument("--target", default="4", help="sub-layers to remove (int) or 'P%%'")
    d.add_argument("--teacher-steps", type=int, default=20, help="full fine-tuning steps")
    d.add_argument("--out", default="runs/demo", help="run directory (resumed when it exists)")
    d.set_defaults(func=demo)
    z = sub.add_parser("zero-shot", help="zero-shot table of the default model on every dataset")
    z.add_argument("--model", help="model name (default: the profile's)")
    z.add_argument("--n", type=int, help="test items per dataset (default: the profile's)")
    z.add_argument("--datasets", nargs="*", help=f"default: {' '.join(DEMO_DATASETS)}")
    z.add_argument("--json", help="also write the rows to this JSON file")
    z.set_defaults(func=zero_shot)
    e = sub.add_parser("eval", help="evaluate a model on a dataset or domain")
    e.add_argument("--model")
    e.add_argument("--domain", required=True, help="dataset or domain name")
    e.add_argument("--split", default="test")
    e.add_argument("--n", type=int)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int)
    e.add_argument("--context", choices=("yes", "no"))
    e.set_defaults(func=eval_cmd)
    t = sub.add_parser("trim", help="TrimLLM: sparse fine-tuning with progressive layer dropping")
    t.add_argument("--domain", required=True)
    t.add_argument("--target", required=True, help="sub-layers to remove (int), 'P%%' or 'P%%mem'")
    add_config_args(t, tuple(n for n in CONFIG_FLAGS if n != "profile"))
    t.add_argument("--out", required=True, help="run directory (resumed when it exists)")
    t.set_defaults(func=trim_cmd)
    g = sub.add_parser("generate", help="answer a prompt before and after trimming")
    g.add_argument("--model", help="the untrimmed model (default: the profile's)")
    g.add_argument("--trimmed", help="a trimlab run or checkpoint folder")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.set_defaults(func=generate_cmd)
    x = sub.add_parser("export", help="write a trimmed checkpoint as a GGUF file for llama.cpp")
    x.add_argument("dir", help="a trimlab checkpoint folder (save_trimmed) or trim run")
    x.add_argument("--format", default="gguf", help="output format (only 'gguf')")
    x.add_argument("--outtype", default="f32", help="f32, f16, q8_0 or q4_k_m (default f32)")
    x.add_argument("--out", help="output file (default: DIR/model-<outtype>.gguf)")
    x.set_defaults(func=export_cmd)
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
