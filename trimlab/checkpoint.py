"""Saving, loading and exporting trimmed models.

:func:`save_trimmed` writes a directory atomically (a temporary sibling, then a rename),
with ``model.safetensors``, the tokenizer, ``trimlab.json`` (the dropped names in order,
the remaining sub-layers, sizes) and a short model card ``README.md``.

* Only whole blocks dropped: the directory is a standard Hugging Face checkpoint, so
  plain ``AutoModelForCausalLM.from_pretrained`` loads it with identical logits.
* Sub-layers dropped: stock transformers cannot express a block without attention or
  MLP, and loading such weights into a full config would silently re-initialise the
  missing modules at random (the authors' defect 7). So ``config.json`` is either the
  DeciLM / Nemotron-NAS form (Llama and Mistral: ``block_configs`` with
  ``attention.no_op`` / ``ffn.no_op``, read by vLLM, SGLang and llama.cpp's converter)
  or absent (other families), and :func:`load_trimmed` rebuilds the model from
  ``trimlab.json``. :func:`decilm_reference_forward` is a plain-torch forward built only
  from the DeciLM files, to check that export.

Loading uses safetensors only and never runs remote code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

import trimlab
from trimlab import accounting, surgery
from trimlab.decilm import (  # noqa: F401  (re-exported: trimlab.checkpoint.X keeps working)
    DECILM_TYPES,
    WEIGHTS_FILE,
    decilm_config,
    decilm_reference_forward,
)
from trimlab.runtime import quiet_progress

META_FILE = "trimlab.json"


OLD_PREFIX = ".{name}.old-"


@contextmanager
def atomic_directory(path: str | os.PathLike, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``path`` only if the block succeeds.

    A failed or killed writer never leaves a half-written ``path``. With
    ``keep_existing`` an existing ``path`` (e.g. written meanwhile by another process)
    wins and ours is discarded; otherwise ours replaces it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0o700; let a shared cache be readable
        if path.exists() and keep_existing:
            return
        old = None
        if path.exists():
            # A kill between these two renames leaves no ``path``, only the complete
            # previous version in ``old``: recover_directory(path) puts it back.
            old = path.with_name(f"{OLD_PREFIX.format(name=path.name)}{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_directory(path: str | os.PathLike) -> bool:
    """Undo a replacement by :func:`atomic_directory` that was killed half-way: when
    ``path`` is missing but the previous version was moved aside, move it back.
    Returns whether something was recovered."""
    path = Path(path)
    if path.exists():
        return False
    olds = sorted(path.parent.glob(f"{OLD_PREFIX.format(name=path.name)}*"), key=os.path.getmtime)
    if not olds:
        return False
    os.replace(olds[-1], path)
    return True


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file, then a rename), so a
    run killed midway leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _json_dump(obj: object, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def metadata(model: PreTrainedModel, domain: str | None = None) -> dict:
    """What :func:`save_trimmed` records in ``trimlab.json``."""
    return {
        "trimlab_version": trimlab.__version__,
        "base_model": getattr(model.config, "trimlab_base", None)
        or getattr(model.config, "name_or_path", None)
        or model.config.model_type,
        "model_type": model.config.model_type,
        "domain": domain,
        "dropped": surgery.dropped(model),
        "sublayers": surgery.sublayers(model),
        "blocks": surgery.block_ids(model),
        "base_layers": surgery.base_layers(model),
        "whole_blocks_only": surgery.whole_blocks_only(model),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "sizes": accounting.sizes(model),
        "base_sizes": accounting.base_sizes(model),
        "compression": accounting.compression(model),
        "config": model.config.to_dict(),
    }


def save_trimmed(
    model: PreTrainedModel,
    tokenizer,
    path: str | os.PathLike,
    domain: str | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """Save a (possibly) trimmed model and its tokenizer to ``path``, atomically.

    ``extra`` maps file names to JSON-able objects written into the same directory in
    the same atomic step (the trim loop keeps its history there).
    """
    surgery.family_of(model)  # clear error for unsupported models, before any write
    meta = metadata(model, domain)
    path = Path(path)
    with atomic_directory(path) as tmp, quiet_progress():
        if meta["whole_blocks_only"]:
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            save_file(_plain_state_dict(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            try:
                _json_dump(decilm_config(model), tmp / "config.json")
                meta["decilm"] = True
            except ValueError as err:  # not expressible: no config.json, stock loading fails loudly
                meta["decilm"] = f"not exported: {err}"
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _json_dump(meta, tmp / META_FILE)
        for name, obj in (extra or {}).items():
            _json_dump(obj, tmp / name)
        (tmp / "README.md").write_text(model_card(meta))
    return path


def _plain_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """Module-named tensors, with a tied LM head stored once (as the input embedding)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    head = model.get_output_embeddings()
    if head is not None and head.weight is model.get_input_embeddings().weight:
        head_name = next(n for n, m in model.named_modules() if m is head)
        state.pop(f"{head_name}.weight", None)
    return state


def load_trimmed(path: str | os.PathLike, device: str | torch.device | None = None):
    """Load what :func:`save_trimmed` wrote: ``(model, tokenizer)`` with identical logits."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise ValueError(f"{path} is not a trimlab checkpoint (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    dtype = getattr(torch, meta["dtype"])
    tokenizer = None
    if (path / "tokenizer_config.json").exists():
        # the tokenizer files are standard; only its config.json may be DeciLM's, which
        # AutoTokenizer reads and warns about ("a model of type nemotron-nas ...")
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        finally:
            hf_logging.set_verbosity(level)
    if meta["whole_blocks_only"]:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, use_safetensors=True, trust_remote_code=False
        )
    else:
        model = _rebuild(meta, dtype)
        state = load_file(str(path / WEIGHTS_FILE))
        missing, unexpected = model.load_state_dict(state, strict=False)
        head = model.get_output_embeddings()
        tied = {
            k
            for k in missing
            if head is not None
            and head.weight is model.get_input_embeddings().weight
            and k == next(n for n, m in model.named_modules() if m is head) + ".weight"
        }
        if set(missing) - tied or unexpected:
            raise ValueError(
                f"{path}: weights do not match the recorded structure "
                f"(missing {sorted(set(missing) - tied)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        model.tie_weights()
    model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


def _rebuild(meta: dict, dtype: torch.dtype) -> PreTrainedModel:
    """An empty model with the recorded structure: kept blocks, then partial drops."""
    cfg_dict = dict(meta["config"])
    model_type = cfg_dict.pop("model_type")
    for key in ("kv_sharing_modes",):
        cfg_dict.pop(key, None)
    config = AutoConfig.for_model(model_type, **cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    cfg = model.config
    cfg.trimlab_blocks = meta["blocks"]
    cfg.trimlab_base_layers = meta["base_layers"]
    cfg.trimlab_base_sizes = meta["base_sizes"]
    cfg.trimlab_dropped = []
    remaining = set(meta["sublayers"])
    partial = [
        f"{b}.{k}" for b in meta["blocks"] for k in surgery.KINDS if f"{b}.{k}" not in remaining
    ]
    surgery.drop(model, partial)
    cfg.trimlab_dropped = list(meta["dropped"])
    return model


def model_card(meta: dict) -> str:
    """A short model card: base model, domain, what was dropped, sizes."""
    s, c = meta["sizes"], meta["compression"]
    fmt = (
        "a standard Hugging Face checkpoint (`AutoModelForCausalLM.from_pretrained` loads it)"
        if meta["whole_blocks_only"]
        else "sub-layers removed: load with `trimlab.load_trimmed`"
        + (
            "; `config.json` is the DeciLM / Nemotron-NAS `block_configs` form"
            if meta.get("decilm") is True
            else ""
        )
    )
    dropped = ", ".join(meta["dropped"]) or "nothing"
    return (
        f"# Trimmed {meta['base_model']}\n\n"
        f"Made with trimlab {meta['trimlab_version']} (TrimLLM, arXiv 2412.11242).\n\n"
        f"- Base model: {meta['base_model']}\n"
        f"- Domain: {meta['domain'] or 'not recorded'}\n"
        f"- Dropped, in order ({len(meta['dropped'])}): {dropped}\n"
        f"- Blocks kept: {len(meta['blocks'])} of {meta['base_layers']}\n"
        f"- Parameters: {s['params']:,} ({c['params_kept']:.1%} of the base); "
        f"decoder-layer parameters kept: {c['decoder_kept']:.1%}; "
        f"bytes: {s['bytes']:,} ({c['bytes_kept']:.1%})\n"
        f"- Format: {fmt}\n"
    )
