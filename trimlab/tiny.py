"""Tiny random-weight models of several architectures, built from configs (no download).

As in rasbt/LLMs-from-scratch, tests build small models from a config so that nothing is
fetched. Every family that :mod:`trimlab.surgery` supports has one entry here; the
tokenizer is a byte-level BPE tokenizer with no merges (one token per byte), built in
code, so it works offline too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

HIDDEN, INTER, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 64, 128, 4, 4, 2, 16


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A 260-token byte-level tokenizer (256 bytes + 4 specials), built offline."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


VOCAB = 256 + len(SPECIAL_TOKENS)
_COMMON = dict(vocab_size=VOCAB, bos_token_id=256, eos_token_id=256, pad_token_id=257)


def _llama_like(cls_name: str, **extra: object) -> Callable[[], transformers.PretrainedConfig]:
    def make() -> transformers.PretrainedConfig:
        cls = getattr(transformers, cls_name)
        return cls(
            hidden_size=HIDDEN,
            intermediate_size=INTER,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=KV_HEADS,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            **_COMMON,
            **extra,
        )

    return make


TINY_CONFIGS: dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "llama": _llama_like("LlamaConfig"),
    "mistral": _llama_like("MistralConfig", sliding_window=None, head_dim=HEAD_DIM),
    "qwen2": _llama_like("Qwen2Config", use_sliding_window=False),
    "qwen3": _llama_like("Qwen3Config", head_dim=HEAD_DIM),
    # Gemma 1: pre-norm like Llama, no post-norms (GemmaConfig defaults head_dim to 256).
    "gemma": _llama_like("GemmaConfig", head_dim=HEAD_DIM),
    "gemma2": _llama_like(
        "Gemma2Config", head_dim=HEAD_DIM, sliding_window=8, query_pre_attn_scalar=HEAD_DIM
    ),
    "gemma3": _llama_like(
        "Gemma3TextConfig",
        head_dim=HEAD_DIM,
        sliding_window=8,
        query_pre_attn_scalar=HEAD_DIM,
        layer_types=["sliding_attention", "full_attention"] * (LAYERS // 2),
    ),
    "phi3": _llama_like("Phi3Config"),
    "opt": lambda: transformers.OPTConfig(
        hidden_size=HIDDEN,
        ffn_dim=INTER,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        word_embed_proj_dim=HIDDEN,
        max_position_embeddings=512,
        do_layer_norm_before=True,
        **_COMMON,
    ),
    "gpt2": lambda: transformers.GPT2Config(
        n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=INTER, n_positions=512, **_COMMON
    ),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=512,
        use_parallel_residual=True,
        rotary_pct=0.5,
        **_COMMON,
    ),
}
TINY_ARCHS = tuple(TINY_CONFIGS)


def tiny_config(arch: str = "llama", **overrides: object) -> transformers.PretrainedConfig:
    """The config of the tiny model of family ``arch`` (see :data:`TINY_ARCHS`)."""
    if arch not in TINY_CONFIGS:
        raise ValueError(
            f"unknown tiny architecture {arch!r}; choose one of {', '.join(TINY_ARCHS)}"
        )
    config = TINY_CONFIGS[arch]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def tiny_model(
    arch: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32, **overrides: object
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A randomly initialised tiny causal LM of family ``arch`` and the byte tokenizer.

    The same ``seed`` gives the same weights. The model is in eval mode, on the CPU.
    ``overrides`` change config fields (e.g. ``intermediate_size=256``).
    """
    config = tiny_config(arch, **overrides)
    config.dtype = dtype
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    # Random init leaves some output projections near zero in some families; give every
    # weight a visible spread so that drop effects are measurable in tests.
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.08)
            elif "bias" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.02)
    model.eval()
    return model, byte_tokenizer()
