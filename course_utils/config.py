"""``ModelConfig``: the hyper-parameters that define a LLaMA-family decoder, validated when created."""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from .positional import ROPE_LAYOUTS

_POSITIVE_INTS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len")


@dataclass
class ModelConfig:
    """Hyper-parameters of a LLaMA-family decoder. Defaults are SmolLM2-135M(-Instruct)."""

    vocab_size: int = 49152          # V: rows of the embedding matrix (and outputs of the head)
    dim: int = 576                   # d_model: width of the residual stream
    n_layers: int = 30               # number of transformer blocks
    n_heads: int = 9                 # H: query heads; head_dim = dim / n_heads
    n_kv_heads: int = 3              # K: key/value heads, each shared by n_heads / n_kv_heads query heads (GQA)
    ffn_dim: int = 1536              # hidden width of the SwiGLU feed-forward network
    norm_eps: float = 1e-5           # epsilon inside RMSNorm's square root
    rope_theta: float = 100000.0     # RoPE base: pair i turns by theta^(-2i / head_dim) radians per position
    max_seq_len: int = 8192          # context length the model was trained for (caches never grow past it)
    tie_embeddings: bool = True      # the output head reuses the embedding matrix
    rope_layout: str = "interleaved"  # RoPE pairs: "interleaved" (GGUF, RoFormer) or "half" (Hugging Face)
    bos_id: int | None = 1           # beginning-of-sequence token id, if the tokenizer has one
    eos_id: int | None = 2           # end-of-sequence (end of turn) token id, if any
    name: str = "SmolLM2-135M-Instruct"  # identifies the base model (adapters check it)

    def __post_init__(self) -> None:
        for field in _POSITIVE_INTS:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ModelConfig.{field} must be an int, got {type(value).__name__} {value!r}")
            if value <= 0:
                raise ValueError(f"ModelConfig.{field} must be a positive integer, got {value!r}")
        for field in ("norm_eps", "rope_theta"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"ModelConfig.{field} must be a number, got {type(value).__name__} {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"ModelConfig.{field} must be a positive finite number, got {value!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise TypeError(f"ModelConfig.tie_embeddings must be a bool, got {self.tie_embeddings!r}")
        for field in ("bos_id", "eos_id"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise TypeError(f"ModelConfig.{field} must be an int or None, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim (pairs of dimensions), got head_dim={self.head_dim}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"ModelConfig.rope_layout must be one of {ROPE_LAYOUTS}, got {self.rope_layout!r}")

    @property
    def head_dim(self) -> int:
        """d: width of one attention head."""
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)
