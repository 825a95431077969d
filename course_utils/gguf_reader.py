"""Read a LLaMA-family GGUF file into a Checkpoint: config, dequantised float32 weights, tokenizer, chat template."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, check_tensor_names
from .config import ModelConfig
from .fetch import COURSE_DISPLAY_NAME, COURSE_MODEL_NAME, FETCH_HINT, verify_course_weights
from .tokenizer import ChatTemplate

_GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_MISSING = object()


def _gguf_tensor_name(name: str) -> str:
    """The course model's name for a GGUF tensor (unknown tensors keep a recognisable name for the error)."""
    fixed = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight",
             "output.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _GGUF_LAYER_NAMES:
        return f"layers.{parts[1]}.{_GGUF_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return f"gguf:{name}"


def _field(reader, path: Path, key: str, default=_MISSING, kind=None):
    """Metadata field ``key``; a missing required field or a wrong type is a ValueError naming file and field."""
    field = reader.fields.get(key)
    if field is None:
        if default is _MISSING:
            raise ValueError(f"{path} lacks the GGUF metadata field {key!r}; it is not a complete LLaMA GGUF file "
                             f"(re-export it with llama.cpp's converter, or for the course model {FETCH_HINT})")
        return default
    value = field.contents()
    if kind is None:
        return value
    try:
        return kind(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: GGUF metadata field {key!r} is {value!r}, expected {kind.__name__}") from error


def read_gguf(path: Path, verified: bool = False) -> Checkpoint:
    """Read a LLaMA-family GGUF file: config, dequantised float32 weights, tokenizer and chat template.

    A file whose ``general.name`` is the course model's is checked by SHA-256 first (unless ``verified``).
    """
    import gguf

    from .tokenizer import build_bpe_tokenizer

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # gguf raises assorted errors on a truncated or corrupted file
        raise ValueError(f"{path} is not a readable GGUF file ({type(error).__name__}: {error}); it may be "
                         f"truncated or corrupted. For the course model, delete it and {FETCH_HINT}") from error
    name = str(_field(reader, path, "general.name", path.stem))
    if not verified and name == COURSE_MODEL_NAME:  # a renamed copy of the course file: same check as by name
        verify_course_weights(path)
        verified = True
    arch = _field(reader, path, "general.architecture", None)
    if arch != "llama":
        raise ValueError(f"{path} holds a {arch!r} model; the course model class supports LLaMA-family GGUF files "
                         f"only (general.architecture 'llama'); choose such a file, or the course model")
    if _field(reader, path, "tokenizer.ggml.model", None) != "gpt2":
        raise ValueError(f"{path}: only byte-level BPE ('gpt2') tokenizers are supported, got "
                         f"{_field(reader, path, 'tokenizer.ggml.model', None)!r}; use a LLaMA-family model with a "
                         f"byte-level BPE tokenizer (e.g. SmolLM2), or the course model")
    tokens = _field(reader, path, "tokenizer.ggml.tokens")
    n_heads = _field(reader, path, "llama.attention.head_count", kind=int)
    names = {t.name for t in reader.tensors}
    config = ModelConfig(
        vocab_size=_field(reader, path, "llama.vocab_size", len(tokens), kind=int),
        dim=_field(reader, path, "llama.embedding_length", kind=int),
        n_layers=_field(reader, path, "llama.block_count", kind=int),
        n_heads=n_heads,
        n_kv_heads=_field(reader, path, "llama.attention.head_count_kv", n_heads, kind=int),
        ffn_dim=_field(reader, path, "llama.feed_forward_length", kind=int),
        norm_eps=_field(reader, path, "llama.attention.layer_norm_rms_epsilon", 1e-5, kind=float),
        rope_theta=_field(reader, path, "llama.rope.freq_base", 10000.0, kind=float),
        max_seq_len=_field(reader, path, "llama.context_length", 2048, kind=int),
        tie_embeddings="output.weight" not in names,
        rope_layout="interleaved",
        bos_id=_field(reader, path, "tokenizer.ggml.bos_token_id", None),
        eos_id=_field(reader, path, "tokenizer.ggml.eos_token_id", None),
        name=name,  # the identity adapters check: kept exactly as the file says
        display_name=COURSE_DISPLAY_NAME if name == COURSE_MODEL_NAME else name,
    )
    check_tensor_names({_gguf_tensor_name(n) for n in names}, config, str(path))
    state = {}
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the fastest dimension first
        state[_gguf_tensor_name(tensor.name)] = torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))
    tokenizer = build_bpe_tokenizer(
        tokens=list(tokens),
        merges=list(_field(reader, path, "tokenizer.ggml.merges")),
        token_types=list(_field(reader, path, "tokenizer.ggml.token_type")),
    )
    template = _field(reader, path, "tokenizer.chat_template", None)
    return Checkpoint(config, state, tokenizer.to_str(), ChatTemplate(template, str(path)) if template else None,
                      source_verified=verified)
