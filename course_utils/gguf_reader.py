"""Read a LLaMA-family GGUF file into a Checkpoint: config, dequantised float32 weights, tokenizer, chat template."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint
from .fetch import FETCH_HINT
from .model import ModelConfig

_GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def _gguf_tensor_name(name: str) -> str:
    if name == "token_embd.weight":
        return "embed_tokens.weight"
    if name == "output_norm.weight":
        return "norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    block, index, part, kind = name.split(".")
    if block != "blk" or part not in _GGUF_LAYER_NAMES:
        raise ValueError(f"unexpected tensor {name!r} in GGUF file")
    return f"layers.{index}.{_GGUF_LAYER_NAMES[part]}.{kind}"


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_gguf(path: Path) -> Checkpoint:
    """Read a LLaMA-family GGUF file: config, dequantised float32 weights, tokenizer and chat template."""
    import gguf

    from .tokenizer import build_bpe_tokenizer

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # gguf raises assorted errors on a truncated or corrupted file
        raise ValueError(f"{path} is not a readable GGUF file ({type(error).__name__}: {error}); it may be "
                         f"truncated or corrupted. For the course model, delete it and {FETCH_HINT}") from error
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path} holds a {arch!r} model; the course model class supports LLaMA-family GGUF files only")
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{path}: only byte-level BPE ('gpt2') tokenizers are supported, "
                         f"got {_field(reader, 'tokenizer.ggml.model')!r}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    n_heads = int(_field(reader, "llama.attention.head_count"))
    names = {t.name for t in reader.tensors}
    config = ModelConfig(
        vocab_size=int(_field(reader, "llama.vocab_size", len(tokens))),
        dim=int(_field(reader, "llama.embedding_length")),
        n_layers=int(_field(reader, "llama.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        ffn_dim=int(_field(reader, "llama.feed_forward_length")),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        max_seq_len=int(_field(reader, "llama.context_length", 2048)),
        tie_embeddings="output.weight" not in names,
        rope_layout="interleaved",
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        name=str(_field(reader, "general.name", path.stem)),
    )
    state = {}
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the fastest dimension first
        state[_gguf_tensor_name(tensor.name)] = torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))
    tokenizer = build_bpe_tokenizer(
        tokens=list(tokens),
        merges=list(_field(reader, "tokenizer.ggml.merges")),
        token_types=list(_field(reader, "tokenizer.ggml.token_type")),
    )
    return Checkpoint(config, state, tokenizer.to_str(), _field(reader, "tokenizer.chat_template"))


