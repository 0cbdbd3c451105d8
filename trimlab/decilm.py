"""DeciLM / Nemotron-NAS export: a ``config.json`` that engines read for sub-layer drops.

TrimLLM (Sec. 3.2) leaves blocks with only attention or only an MLP. Standard Llama
configs cannot say that; the DeciLM (``nemotron-nas``) format can, per block in
``block_configs`` (vLLM, SGLang and llama.cpp's converter read it). A removed sub-layer
is written as published Nemotron-NAS configs write it, which is what llama.cpp's
converter reads: an attention-free block has ``attention.n_heads_in_group: null`` with
``replace_with_linear: false``, an MLP-free block ``ffn.ffn_mult: null``; ``no_op: true``
is kept beside them for readers that look at it. :func:`decilm_reference_forward` is a plain-torch forward built from
that format alone, which proves that the files say what the model computes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from trimlab import families

DECILM_TYPES = ("llama", "mistral")
WEIGHTS_FILE = "model.safetensors"


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
    fam = families.family_of(model)
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    blocks = []
    for block in families.layer_list(model):
        attn, mlp = families.present(block, fam.attn), families.present(block, fam.mlp)
        blocks.append(
            {
                "attention": {
                    "no_op": not attn,
                    "replace_with_linear": False,
                    "n_heads_in_group": group if attn else None,
                },
                "ffn": {
                    "no_op": not mlp,
                    "replace_with_linear": False,
                    "ffn_mult": ffn_mult if mlp else None,
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


def has_attention(block: dict) -> bool:
    """Whether a ``block_configs`` entry has attention (null ``n_heads_in_group``: none)."""
    att = block["attention"]
    if att.get("replace_with_linear"):
        raise ValueError("DeciLM linear attention replacements are not supported")
    return not att.get("no_op", False) and att.get("n_heads_in_group") is not None


def has_ffn(block: dict) -> bool:
    """Whether a ``block_configs`` entry has an MLP (null ``ffn_mult``: none)."""
    ffn = block["ffn"]
    if ffn.get("replace_with_linear"):
        raise ValueError("DeciLM linear FFN replacements are not supported")
    return not ffn.get("no_op", False) and ffn.get("ffn_mult") is not None


@torch.no_grad()
def decilm_reference_forward(path: str | os.PathLike, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits of a DeciLM export computed from its files alone, in plain torch.

    Reads ``config.json`` (``block_configs``) and ``model.safetensors``; a sub-layer that
    is null (or ``no_op``) is skipped. No padding; batch of equal-length sequences.
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
        if has_attention(block):
            x = _rms(h, w[p + "input_layernorm.weight"], eps)
            q = (x @ w[p + "self_attn.q_proj.weight"].T).view(bsz, seq, nh, hd).transpose(1, 2)
            k = (x @ w[p + "self_attn.k_proj.weight"].T).view(bsz, seq, nkv, hd).transpose(1, 2)
            v = (x @ w[p + "self_attn.v_proj.weight"].T).view(bsz, seq, nkv, hd).transpose(1, 2)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(bsz, seq, nh * hd)
            h = h + o @ w[p + "self_attn.o_proj.weight"].T
        if has_ffn(block):
            x = _rms(h, w[p + "post_attention_layernorm.weight"], eps)
            gate = torch.nn.functional.silu(x @ w[p + "mlp.gate_proj.weight"].T)
            h = h + (gate * (x @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    h = _rms(h, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return h @ head.T
