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
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

import trimlab
from trimlab import accounting, surgery

META_FILE = "trimlab.json"
WEIGHTS_FILE = "model.safetensors"
DECILM_TYPES = ("llama", "mistral")


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
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
        "base_layers": surgery._base_layers(model),
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
    with atomic_directory(path) as tmp:
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
    tokenizer = (
        AutoTokenizer.from_pretrained(path) if (path / "tokenizer_config.json").exists() else None
    )
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


# --- DeciLM / Nemotron-NAS export ------------------------------------------------------


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def decilm_config(model: PreTrainedModel) -> dict:
    """The DeciLM (``nemotron-nas``) ``config.json`` describing ``model``'s blocks."""
    cfg = model.config
    if cfg.model_type not in DECILM_TYPES:
        raise ValueError(
            f"DeciLM export needs Llama-named weights ({', '.join(DECILM_TYPES)}), "
            f"not {cfg.model_type!r}"
        )
    params = getattr(cfg, "rope_parameters", None) or {}
    if params.get("rope_type", "default") != "default":
        raise ValueError("DeciLM export supports only default RoPE (no scaling)")
    ffn_mult = 3 * cfg.intermediate_size / (2 * cfg.hidden_size)
    # DeciLM derives the MLP width as the multiple of 256 at or above int(2 * mult * d / 3).
    if math.ceil(int(2 * ffn_mult * cfg.hidden_size / 3) / 256) * 256 != cfg.intermediate_size:
        raise ValueError(
            f"intermediate_size {cfg.intermediate_size} is not expressible as a DeciLM ffn_mult"
        )
    fam = surgery.family_of(model)
    blocks = []
    for block in surgery.layer_list(model):
        blocks.append(
            {
                "attention": {
                    "no_op": not surgery._present(block, fam.attn),
                    "replace_with_linear": False,
                    "n_heads_in_group": cfg.num_attention_heads // cfg.num_key_value_heads,
                },
                "ffn": {
                    "no_op": not surgery._present(block, fam.mlp),
                    "replace_with_linear": False,
                    "ffn_mult": ffn_mult,
                },
            }
        )
    return {
        "architectures": ["DeciLMForCausalLM"],
        "model_type": "nemotron-nas",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        "num_hidden_layers": len(blocks),
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": _rope_theta(cfg),
        "hidden_act": cfg.hidden_act,
        "attention_bias": bool(getattr(cfg, "attention_bias", False)),
        "mlp_bias": bool(getattr(cfg, "mlp_bias", False)),
        "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "torch_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "block_configs": blocks,
    }


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


@torch.no_grad()
def decilm_reference_forward(path: str | os.PathLike, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits of a DeciLM export computed from its files alone, in plain torch.

    Reads ``config.json`` (``block_configs``) and ``model.safetensors``; blocks with
    ``no_op`` sub-layers skip them. No padding; batch of equal-length sequences.
    """
    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    w = load_file(str(path / WEIGHTS_FILE))
    eps, hd = cfg["rms_norm_eps"], cfg["head_dim"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    bsz, seq = input_ids.shape
    h = w["model.embed_tokens.weight"][input_ids]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.arange(seq, dtype=torch.float32)[:, None] * inv[None]
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
    causal = torch.full((seq, seq), float("-inf")).triu(1)
    for i, block in enumerate(cfg["block_configs"]):
        p = f"model.layers.{i}."
        if not block["attention"]["no_op"]:
            x = _rms(h, w[p + "input_layernorm.weight"], eps)
            q = (x @ w[p + "self_attn.q_proj.weight"].T).view(bsz, seq, nh, hd).transpose(1, 2)
            k = (x @ w[p + "self_attn.k_proj.weight"].T).view(bsz, seq, nkv, hd).transpose(1, 2)
            v = (x @ w[p + "self_attn.v_proj.weight"].T).view(bsz, seq, nkv, hd).transpose(1, 2)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(bsz, seq, nh * hd)
            h = h + o @ w[p + "self_attn.o_proj.weight"].T
        if not block["ffn"]["no_op"]:
            x = _rms(h, w[p + "post_attention_layernorm.weight"], eps)
            gate = torch.nn.functional.silu(x @ w[p + "mlp.gate_proj.weight"].T)
            h = h + (gate * (x @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    h = _rms(h, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return h @ head.T
