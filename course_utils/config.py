"""``ModelConfig``: the hyper-parameters that define a LLaMA-family decoder, validated when created."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .rope import ROPE_LAYOUTS
from .validation import check_bool, check_choice, check_int, check_real, check_text

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
    name: str = "SmolLM2-135M-Instruct"  # identifies the base model: adapters record it and check it at load
    display_name: str | None = None  # how the model is named for people (None: the same as name); adapters ignore it

    def __post_init__(self) -> None:
        for field in _POSITIVE_INTS:
            setattr(self, field, check_int(f"ModelConfig.{field}", getattr(self, field), minimum=1))
        for field in ("norm_eps", "rope_theta"):
            setattr(self, field, check_real(f"ModelConfig.{field}", getattr(self, field), low=0, low_open=True))
        check_bool("ModelConfig.tie_embeddings", self.tie_embeddings)
        for field in ("bos_id", "eos_id"):
            value = getattr(self, field)
            if value is not None:
                setattr(self, field, check_int(f"ModelConfig.{field}", value, minimum=0, maximum=self.vocab_size - 1,
                                               hint="a token id, or None"))
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        check_int("ModelConfig.head_dim (dim / n_heads)", self.head_dim, multiple_of=2,
                  hint="RoPE rotates pairs of dimensions")
        check_choice("ModelConfig.rope_layout", self.rope_layout, ROPE_LAYOUTS)
        check_text("ModelConfig.name", self.name, hint="the identity saved adapters check")
        if self.display_name is None:
            self.display_name = self.name
        check_text("ModelConfig.display_name", self.display_name, hint="None: the same as name")

    @property
    def head_dim(self) -> int:
        """d: width of one attention head."""
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)
