"""Committed result files: loading them and turning them into tables.

Expensive experiments (the reference trim run, the ablation grid) write JSON result files
(``benchmarks/reference.py`` writes ``<out>/<row>/result.json``). Notebooks and
``docs/RESULTS.md`` read them from here instead of recomputing, so a table always comes
from a run with a documented command.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from trimlab import accounting, stats, surgery
from trimlab.evaluate import choice_logliks, predictions, summarize, validate_items
from trimlab.runtime import autocast, compute_dtype, model_device

LABELS = {
    "zero_shot": "zero-shot",
    "full_ft": "full fine-tuning",
    "sparse_ft": "sparse fine-tuning (r = 0.25), no dropping",
    "trimllm": "TrimLLM",
    "trimllm_kd": "TrimLLM, healed by distillation from full FT",
    "ablate_score": "ablation: TrimLLM + trimlab's scoring",
    "ablate_heal": "ablation: TrimLLM + trimlab's scoring and heal step",
    "trimlab": "trimlab's best",
    "one_shot": "one-shot drop, then sparse fine-tuning",
    "random": "rule-based: random",
    "top": "rule-based: top",
    "bottom": "rule-based: bottom",
}


def eval_metrics(model, tokenizer, items, config, use_context: bool | None = None) -> dict:
    """:func:`trimlab.evaluate`'s metrics with the run configuration's batch size, token
    budget, compute dtype and (unless given) context use: the one way every results
    table scores a model. ``config`` is a :class:`trimlab.TrimConfig` (or a profile).

    Also returns ``correct`` (0/1 per item, in item order, for paired comparisons),
    ``chance`` (the accuracy of uniform guessing on these items) and ``compute_dtype``.
    """
    items = validate_items(items)
    ctx = config.use_context if use_context is None else use_context
    dtype = compute_dtype(getattr(config, "dtype", "fp32"), model_device(model))
    with autocast(dtype, model_device(model)):
        logliks = choice_logliks(
            model,
            tokenizer,
            items,
            batch_size=config.batch_size,
            use_context=ctx,
            max_length=config.max_length,
        )
    preds = predictions(logliks)
    correct = [int(p == int(it["answer"])) for p, it in zip(preds, items, strict=True)]
    chance = stats.chance_level(items)
    return {
        **summarize(items, logliks),
        "correct": correct,
        "chance": chance,
        "compute_dtype": dtype,
    }


def measure(model, tokenizer, items, config, use_context: bool, decode: bool = False) -> dict:
    """One row of a results table: test metrics, sizes, compression and sub-layers
    removed; with ``decode``, also the greedy decode speed (``trimlab.bench``)."""
    r = eval_metrics(model, tokenizer, items, config, use_context)
    row = {
        **r,
        **accounting.sizes(model),
        **accounting.compression(model),
        "sublayers_removed": len(surgery.dropped(model)),
    }
    if decode:
        from trimlab.bench import decode_tokens_per_second

        row["decode_tokens_per_s"] = decode_tokens_per_second(model, tokenizer)
    return row


def trim_variants(
    model,
    tokenizer,
    domain: str,
    target: int | str,
    variants: Mapping[str, Mapping],
    test: list[dict],
    profile=None,
    **common,
) -> dict[str, dict]:
    """Ablations in one call: trim a fresh copy of ``model`` once per variant and
    measure each on ``test``.

    ``variants`` maps a row name to keyword arguments of :func:`trimlab.trim`
    (``{"r=0.5": {"r": 0.5}}``) on top of ``common``; every row starts from the same
    weights. Returns ``{name: row}`` rows for :func:`markdown`, each with the drop
    sequence and wall time.
    """
    from trimlab.pipeline import trim
    from trimlab.profiles import Profile, get_profile

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    rows = {}
    use_context = common.get("use_context", profile.use_context)
    for name, kw in variants.items():
        t0 = time.perf_counter()
        res = trim(
            copy.deepcopy(model),
            tokenizer,
            domain,
            target,
            profile=profile,
            log=None,
            **{**common, **kw},
        )
        rows[name] = {
            **measure(res.model, tokenizer, test, profile, use_context),
            "dropped": res.history.drop_sequence,
            "seconds": time.perf_counter() - t0,
        }
    return rows


def load_rows(folder: str | Path) -> dict[str, dict]:
    """``{row: result}`` for every finished row under ``folder`` (``<row>/result.json``);
    trim rows get the run's target from ``settings.json`` when they lack one."""
    folder = Path(folder)
    rows = {f.parent.name: json.loads(f.read_text()) for f in sorted(folder.glob("*/result.json"))}
    settings = folder / "settings.json"
    target = json.loads(settings.read_text()).get("target") if settings.exists() else None
    if target and "trimllm" in rows:
        rows["trimllm"].setdefault("target", target)
    return rows


def table_rows(rows: dict[str, dict]) -> list[dict]:
    """One flat record per table line; TrimLLM's snapshots become lines of their own."""
    out = []
    order = [r for r in LABELS if r in rows] + [r for r in rows if r not in LABELS]
    for key in order:
        res = rows[key]
        label = LABELS.get(key, key.replace("score_", "TrimLLM, score = "))
        if key in ("trimllm", "trimlab"):
            for size, snap in sorted(
                res.get("snapshots", {}).items(), key=lambda kv: -float(kv[0].rstrip("%"))
            ):
                out.append({**snap, "row": f"{label}, first round at <= {size}", "seconds": None})
        out.append(
            {
                **res,
                "row": label
                + (f" ({res['target']})" if key == "trimllm" and res.get("target") else ""),
            }
        )
    return out


def _acc(r: dict) -> str:
    """An accuracy with its 95% Wilson interval when the row knows its item count."""
    n = int(r.get("n") or 0)
    return stats.fmt_acc(r["acc"], n) if n else f"{r['acc']:.3f}"


def markdown(rows: dict[str, dict], reference: str = "full_ft") -> str:
    """The results table: accuracy, share of the reference row's accuracy, sizes, time."""
    ref = rows.get(reference, {}).get("acc")
    of = "of full FT" if reference == "full_ft" else f"of {reference}"
    lines = [
        f"| row | test acc [95% CI] | {of} | sub-layers removed | decoder kept | bytes kept "
        "| wall time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table_rows(rows):
        share = f"{r['acc'] / ref:.0%}" if ref else "-"
        secs = "-" if not r.get("seconds") else f"{r['seconds'] / 60:.1f} min"
        lines.append(
            f"| {r['row']} | {_acc(r)} | {share} | {r.get('sublayers_removed', 0)} | "
            f"{r['decoder_kept']:.1%} | {r['bytes_kept']:.1%} | {secs} |"
        )
    return "\n".join(lines)


def sizes_table(rows: dict[str, dict], keys: list[str] | None = None) -> str:
    """Test accuracy of trim rows at each snapshot size and at the end, one line per row
    (e.g. the scoring methods at 75%, 60% and 50% of the decoder)."""
    keys = keys or [k for k, r in rows.items() if "snapshots" in r]
    sizes = sorted(
        {s for k in keys for s in rows[k].get("snapshots", {})},
        key=lambda s: -float(s.rstrip("%")),
    )
    head = "".join(f" acc at <= {s} |" for s in sizes)
    lines = [f"| row |{head} acc at the end | decoder kept at the end |"]
    lines.append("|---|" + "---:|" * (len(sizes) + 2))
    for k in keys:
        r = rows[k]
        snaps = r.get("snapshots", {})
        cells = "".join(f" {_acc(snaps[s])} |" if s in snaps else " - |" for s in sizes)
        label = "TrimLLM, score = both" if k == "trimllm" else LABELS.get(k, k)
        label = label.replace("score_", "TrimLLM, score = ")
        lines.append(f"| {label} |{cells} {_acc(r)} | {r['decoder_kept']:.1%} |")
    return "\n".join(lines)


def interval_table(rows: dict[str, dict], reference: str = "full_ft") -> str:
    """The results table with uncertainty: each accuracy with its 95% Wilson interval,
    retention of the reference row's accuracy plainly and over chance, and the paired
    difference to the reference on the same items with its bootstrap interval
    (:mod:`trimlab.stats`). Rows measured before per-item results were kept show "-"
    for the paired difference."""
    ref = rows.get(reference, {})
    lines = [
        f"| row | test acc [95% CI] | of {reference} | over chance | vs {reference} [95% CI] "
        "| decoder kept | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table_rows(rows):
        acc = _acc(r)
        plain = over = diff = "-"
        if ref.get("acc"):
            plain = f"{stats.retention(r['acc'], ref['acc']):.0%}"
            chance = r.get("chance")
            if chance is not None and ref["acc"] > chance:
                over = f"{stats.retention(r['acc'], ref['acc'], chance):.0%}"
        if r.get("correct") and ref.get("correct") and len(r["correct"]) == len(ref["correct"]):
            d = stats.paired_difference(r["correct"], ref["correct"])
            diff = f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        secs = "-" if not r.get("seconds") else f"{r['seconds'] / 60:.1f} min"
        lines.append(
            f"| {r['row']} | {acc} | {plain} | {over} | {diff} | {r['decoder_kept']:.1%} | {secs} |"
        )
    return "\n".join(lines)


def seeds_table(
    folders: Sequence[str | Path], rows: Sequence[str], reference: str = "full_ft"
) -> str:
    """The same rows over several seeds: one folder per seed (a ``benchmarks/reference.py
    --seed S --out ...`` run each, on the same test items), each row's test accuracy per
    seed and as mean ± sd (:func:`trimlab.stats.mean_sd`), and its retention of the
    ``reference`` row plainly and over chance, each seed's row against the same seed's
    reference (a KD row's teacher is its own seed's full FT). Only seeds where every row
    of ``rows`` has finished count; ValueError when none has."""
    found = []
    for f in folders:
        settings = Path(f) / "settings.json"
        seed = json.loads(settings.read_text()).get("seed") if settings.exists() else None
        found.append((seed, load_rows(f)))
    found = [(s, r) for s, r in found if all(k in r for k in (*rows, reference))]
    if not found:
        raise ValueError(f"no folder of {[str(f) for f in folders]} has every row of {list(rows)}")
    seeds = [s if s is not None else "?" for s, _ in found]
    runs = [r for _, r in found]
    lines = [
        "| row | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd | of "
        f"{reference}, mean ± sd | over chance, mean ± sd |",
        "|---|" + "---:|" * (len(runs) + 3),
    ]
    for key in (reference, *[k for k in rows if k != reference]):
        accs = [r[key]["acc"] for r in runs]
        plain = [stats.retention(r[key]["acc"], r[reference]["acc"]) for r in runs]
        chance = [r[key].get("chance", 0.25) for r in runs]
        over = [
            stats.retention(r[key]["acc"], r[reference]["acc"], c) for r, c in zip(runs, chance)
        ]
        cells = [f"{a:.3f}" for a in accs]
        m, sd = stats.mean_sd(accs)
        (pm, psd), (om, osd) = stats.mean_sd(plain), stats.mean_sd(over)
        lines.append(
            f"| {LABELS.get(key, key)} | {' | '.join(cells)} | {m:.3f} ± {sd:.3f} "
            f"| {pm:.1%} ± {psd:.1%} | {om:.1%} ± {osd:.1%} |"
        )
    return "\n".join(lines)
