"""Export a trimmed model to GGUF, to run in llama.cpp (``trimlab export DIR --format gguf``).

* Whole blocks removed (or none): the standard ``llama`` architecture, through
  llama.cpp's stock converter, from the standard checkpoint :func:`save_trimmed` writes.
* Sub-layers removed: llama.cpp's ``deci`` architecture (DeciLM / Nemotron-NAS), from the
  ``block_configs`` of :func:`trimlab.decilm.decilm_config` (null fields for removed
  sub-layers), through the same converter with one vocab hook (``convert_hook.py``).

Two removals the engine cannot express (``docs/llamacpp-upstream.md``) are exported as
exact equivalents, which cost parameters and time but change no output:

* an MLP-free layer that keeps its attention: llama.cpp's DECI graph skips the residual
  update of a layer with ``n_ff == 0``, so it gets an MLP of the format's minimum width
  (:data:`MIN_FFN`) whose weights are zero (a zero down-projection adds exactly 0);
* a first layer without attention: llama.cpp derives the head size from layer 0's head
  count, so layer 0 gets an attention sub-layer whose weights are zero (a zero output
  projection adds exactly 0).

The file is written atomically: staging, conversion, quantization (``q8_0``, ``q4_k_m``
with llama.cpp's quantizer) and the :mod:`trimlab.gguf_check` read-back happen in a
temporary sibling folder, and only a checked file is renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel

from trimlab import families, gguf_check, llamacpp
from trimlab.decilm import WEIGHTS_FILE, decilm_config
from trimlab.runtime import quiet_progress

FORMATS = ("gguf",)
OUTTYPES = ("f32", "f16", "q8_0", "q4_k_m")
EXPORT_TYPES = ("llama", "mistral")
MIN_FFN = 256
"""The narrowest MLP a DeciLM config can express (widths are multiples of 256)."""


def plan(model: PreTrainedModel, stand_ins: bool = True) -> list[dict[str, str]]:
    """Per layer, how each sub-layer is exported: ``kept``, ``zero`` (an exact stand-in
    for the engine) or ``none`` (removed in the file too).

    ``stand_ins=False`` writes every removal as removed, which today's llama.cpp runs
    wrongly (MLP-free layers) or refuses (layer 0 without attention): the reproduction
    of ``docs/llamacpp-upstream.md``, and the switch for when the engine is fixed."""
    if model.config.model_type not in EXPORT_TYPES:
        raise ValueError(
            f"GGUF export supports model types {', '.join(EXPORT_TYPES)}, "
            f"not {model.config.model_type!r}"
        )
    fam = families.family_of(model)
    layers = []
    for pos, block in enumerate(families.layer_list(model)):
        attn, mlp = families.present(block, fam.attn), families.present(block, fam.mlp)
        layers.append(
            {
                "attn": "kept" if attn else ("zero" if stand_ins and pos == 0 else "none"),
                "mlp": "kept" if mlp else ("zero" if stand_ins and attn else "none"),
            }
        )
    return layers


def architecture(layers: list[dict[str, str]]) -> str:
    """``llama`` when every layer is complete in the file, else ``deci``."""
    return "llama" if all(la == {"attn": "kept", "mlp": "kept"} for la in layers) else "deci"


def expected_layout(model: PreTrainedModel, layers: list[dict[str, str]]) -> dict:
    """What :func:`gguf_check.check_layout` must read back from the exported file."""
    heads, kv, _ = families.head_geometry(model.config)
    width = {"kept": model.config.intermediate_size, "zero": MIN_FFN, "none": 0}
    return {
        "arch": architecture(layers),
        "n_head": [0 if la["attn"] == "none" else heads for la in layers],
        "n_head_kv": [0 if la["attn"] == "none" else kv for la in layers],
        "n_ff": [width[la["mlp"]] for la in layers],
        "params": sum(p.numel() for p in model.parameters()) + sum(stand_in_params(model, layers)),
    }


def _zero_attention(cfg, p: str) -> dict[str, torch.Tensor]:
    heads, kv, hd = families.head_geometry(cfg)
    d = cfg.hidden_size
    out = {p + "input_layernorm.weight": torch.ones(d)}
    for name, rows, cols in (
        ("q", heads * hd, d),
        ("k", kv * hd, d),
        ("v", kv * hd, d),
        ("o", d, heads * hd),
    ):
        out[f"{p}self_attn.{name}_proj.weight"] = torch.zeros(rows, cols)
        if getattr(cfg, "attention_bias", False):
            out[f"{p}self_attn.{name}_proj.bias"] = torch.zeros(rows)
    return out


def _zero_mlp(cfg, p: str) -> dict[str, torch.Tensor]:
    d = cfg.hidden_size
    out = {p + "post_attention_layernorm.weight": torch.ones(d)}
    for name, rows, cols in (("gate", MIN_FFN, d), ("up", MIN_FFN, d), ("down", d, MIN_FFN)):
        out[f"{p}mlp.{name}_proj.weight"] = torch.zeros(rows, cols)
        if getattr(cfg, "mlp_bias", False):
            out[f"{p}mlp.{name}_proj.bias"] = torch.zeros(rows)
    return out


def stand_in_tensors(
    model: PreTrainedModel, layers: list[dict[str, str]]
) -> dict[str, torch.Tensor]:
    """The zero tensors of the exact stand-ins, named as the checkpoint names them."""
    out: dict[str, torch.Tensor] = {}
    for pos, la in enumerate(layers):
        p = f"model.layers.{pos}."
        if la["attn"] == "zero":
            out |= _zero_attention(model.config, p)
        if la["mlp"] == "zero":
            out |= _zero_mlp(model.config, p)
    return out


def stand_in_params(model: PreTrainedModel, layers: list[dict[str, str]]) -> list[int]:
    """Parameters the stand-ins add, per layer (0 where there is none)."""
    added = [0] * len(layers)
    for name, t in stand_in_tensors(model, layers).items():
        added[int(name.split(".")[2])] += t.numel()
    return added


def deci_config(model: PreTrainedModel, layers: list[dict[str, str]]) -> dict:
    """The DeciLM config of the file: :func:`decilm_config`, with the stand-ins in it."""
    cfg = decilm_config(model)
    heads, kv, _ = families.head_geometry(model.config)
    for block, la in zip(cfg["block_configs"], layers):
        if la["attn"] == "zero":
            block["attention"] |= {"no_op": False, "n_heads_in_group": heads // kv}
        if la["mlp"] == "zero":
            # DeciLM's width: the multiple of 256 at or above int(2 * mult * d / 3)
            block["ffn"] |= {"no_op": False, "ffn_mult": 1.5 * MIN_FFN / model.config.hidden_size}
    return cfg


def stage(model: PreTrainedModel, tokenizer, layers: list[dict[str, str]], folder: Path) -> None:
    """Write the Hugging Face folder that llama.cpp's converter reads."""
    import json

    if architecture(layers) == "llama":
        with quiet_progress():
            model.save_pretrained(folder, safe_serialization=True)
    else:
        state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
        head = model.get_output_embeddings()
        if head is not None and head.weight is model.get_input_embeddings().weight:
            state.pop("lm_head.weight", None)
        state |= stand_in_tensors(model, layers)
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(deci_config(model, layers), indent=2))
    tokenizer.save_pretrained(folder)


def export_gguf(
    model: PreTrainedModel,
    tokenizer,
    out: str | os.PathLike,
    outtype: str = "f32",
    stand_ins: bool = True,
) -> dict:
    """Export ``model`` to the GGUF file ``out``; return what was written (a report).

    ``outtype``: ``f32`` or ``f16`` from the converter, ``q8_0`` or ``q4_k_m`` from
    llama.cpp's quantizer applied to the f32 file. ``out`` appears only when complete and
    checked; on any error nothing is left behind. ``stand_ins``: see :func:`plan`.
    """
    if outtype not in OUTTYPES:
        raise ValueError(f"unknown GGUF type {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    if tokenizer is None:
        raise ValueError("GGUF export needs the model's tokenizer")
    layers = plan(model, stand_ins)
    expected = expected_layout(model, layers)
    llamacpp.engine_version()  # ImportError with the install hint, before any work
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as tmp:
        hf = Path(tmp) / "hf"
        hf.mkdir()
        stage(model, tokenizer, layers, hf)
        first = Path(tmp) / ("model-f32.gguf" if outtype.startswith("q") else "model.gguf")
        llamacpp.convert(hf, first, "f32" if outtype.startswith("q") else outtype)
        final = first
        if outtype.startswith("q"):
            final = Path(tmp) / "model.gguf"
            llamacpp.quantize(first, final, outtype)
        layout = gguf_check.check_layout(final, expected)
        os.replace(final, out)
    added = stand_in_params(model, layers)
    return {
        "path": str(out),
        "arch": expected["arch"],
        "outtype": outtype,
        "bytes": out.stat().st_size,
        "params": expected["params"],
        "stand_in_params": sum(added),
        "layers": [{**la, "added_params": a} for la, a in zip(layers, added)],
        "n_head": layout["n_head"],
        "n_ff": layout["n_ff"],
        "tensor_types": layout["tensor_types"],
    }


def export_dir(
    src: str | os.PathLike,
    out: str | os.PathLike | None = None,
    fmt: str = "gguf",
    outtype: str = "f32",
) -> dict:
    """Export the model in folder ``src`` (a :func:`save_trimmed` checkpoint, or a trim
    run with ``final/``) to ``out`` (default ``src/model-<outtype>.gguf``)."""
    from trimlab.checkpoint import META_FILE, load_trimmed

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if outtype not in OUTTYPES:
        raise ValueError(f"unknown GGUF type {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    src = Path(src)
    if not src.is_dir():
        raise ValueError(f"{src} is not a directory")
    ckpt = next(
        (c for c in (src, src / "final", src / "latest") if (c / META_FILE).is_file()), None
    )
    if ckpt is None:
        raise ValueError(f"{src} is not a trimlab checkpoint or run (no {META_FILE})")
    model, tokenizer = load_trimmed(ckpt)
    model.float()
    return export_gguf(model, tokenizer, out or ckpt / f"model-{outtype}.gguf", outtype)
