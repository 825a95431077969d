"""The LLaMA decoder as the papers write it: RMSNorm, RoPE, grouped-query attention, SwiGLU, and a KV cache.

Read it next to LLaMA (Touvron et al., 2023), RoFormer (Su et al., 2021) and "Attention Is All You Need" (Vaswani et
al., 2017): every formula is a line of code here. Shapes use B batch, T new positions, S = past + T positions seen by
attention, D model width, H query heads, K key/value heads, d head width, V vocabulary.

Module names follow Hugging Face's LlamaForCausalLM without the ``model.`` prefix, so state dicts and LoRA targets
such as ``q_proj`` or ``v_proj`` mean the same thing here as in PEFT.

This is the plain model. ``load_model()`` converts it for inference with ``fast_inference.make_fast`` (fused
products, faster CPU kernels, complex-number RoPE): the same function, computed with fewer operations.
Stays one piece: like nanoGPT's model.py, the whole decoder reads top to bottom in one file (~360 lines).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .rope import rope_angles

__all__ = ["ModelConfig", "RMSNorm", "RopeTables", "rotate_pairs", "apply_rotary", "repeat_kv", "causal_mask",
           "attention", "KVCache", "Attention", "MLP", "Block", "LlamaModel", "parameter_breakdown"]


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich, 2019): x / sqrt(mean(x²) + eps) * weight, computed in float32.

    Unlike LayerNorm it neither subtracts the mean nor adds a bias: it only rescales each vector to unit root mean
    square, then multiplies by a learned gain per channel.
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # the mean of squares overflows or loses precision in 16-bit types
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # [..., D] / [..., 1]
        return (normed * self.weight.float()).to(x.dtype)


class RopeTables(NamedTuple):
    """cos and sin of each dimension's rotation angle, [B or 1, T, 1, d]: pair i's angle m·θ_i stands at both of its
    dimensions (2i and 2i+1 in the interleaved layout, i and i + d/2 in the half layout). Computed once per forward
    pass, shared by all layers, broadcast over heads."""

    cos: torch.Tensor
    sin: torch.Tensor

    @classmethod
    def from_pairs(cls, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> "RopeTables":
        """Spread cos/sin of one angle per pair, [..., d/2], over both dimensions of each pair in ``layout``'s order."""
        if layout == "interleaved":
            return cls(cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1))  # c0 c0 c1 c1 ...
        return cls(torch.cat((cos, cos), dim=-1), torch.cat((sin, sin), dim=-1))  # c0 c1 ... c0 c1 ...


def rotate_pairs(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Each pair (x1, x2) of ``x`` [..., d] turned by a quarter circle, to (−x2, x1): what RoPE multiplies by sin."""
    if layout == "interleaved":
        x1, x2 = x[..., 0::2], x[..., 1::2]  # [..., d/2] each
        return torch.stack((-x2, x1), dim=-1).flatten(-2)  # (−x1, x0, −x3, x2, ...)
    x1, x2 = x.chunk(2, dim=-1)  # [..., d/2] each
    return torch.cat((-x2, x1), dim=-1)  # Hugging Face's rotate_half


def apply_rotary(x: torch.Tensor, rope: RopeTables, layout: str) -> torch.Tensor:
    """RoPE in RoFormer's real form (its eq. 34): R x = x ⊗ cos(m·θ) + rotate_pairs(x) ⊗ sin(m·θ), that is, per pair

        x1' = x1·cos(m·θ_i) − x2·sin(m·θ_i)
        x2' = x2·cos(m·θ_i) + x1·sin(m·θ_i)

    ``x``: [B, T, heads, d]. ``layout="interleaved"`` pairs adjacent dimensions (x0, x1), (x2, x3), ... (RoFormer,
    GGUF); ``"half"`` pairs x_i with x_{i + d/2} (Hugging Face's ``rotate_half``).
    """
    cos, sin = rope.cos.to(x.dtype), rope.sin.to(x.dtype)  # [B or 1, T, 1, d]
    return x * cos + rotate_pairs(x, layout) * sin  # [B, T, heads, d]


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped-query attention (Ainslie et al., 2023): key/value head j serves query heads j·groups ... (j+1)·groups−1.

    [B, K, S, d] -> [B, K·groups, S, d], each key/value head repeated ``groups`` times in a row.
    """
    if groups == 1:
        return x
    batch, kv_heads, length, head_dim = x.shape
    expanded = x[:, :, None].expand(batch, kv_heads, groups, length, head_dim)  # [B, K, groups, S, d], no copy
    return expanded.reshape(batch, kv_heads * groups, length, head_dim)  # [B, H, S, d]


def causal_mask(q_len: int, k_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """[T, S] bool, True where query t may attend to key s: the T queries are the LAST T of S positions (with a KV
    cache the first S − T are the past), so query t sits at position S − T + t and sees keys 0 .. S − T + t."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention written out: softmax(q·kᵀ / √d, masked) · v, with grouped-query key/value heads.

    ``q``: [B, H, T, d]; ``k``, ``v``: [B, K, S, d] with H a multiple of K. ``mask``: bool, broadcastable to
    [B, H, T, S], True = may attend; None means causal (``causal_mask``). Returns [B, H, T, d]. Same function as
    ``F.scaled_dot_product_attention(q, k, v, mask, enable_gqa=True)`` (``is_causal=True`` when mask is None).
    """
    heads, kv_heads, head_dim = q.shape[1], k.shape[1], q.shape[-1]
    k, v = repeat_kv(k, heads // kv_heads), repeat_kv(v, heads // kv_heads)  # [B, H, S, d]
    scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)  # [B, H, T, S]: how well query t matches key s
    if mask is None:
        mask = causal_mask(q.shape[2], k.shape[2], q.device)  # [T, S]
    scores = scores.masked_fill(~mask, float("-inf"))  # masked keys get weight exp(-inf) = 0
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)  # [B, H, T, S], each row sums to 1
    return weights @ v  # [B, H, T, d]: a weighted average of the values


class KVCache:
    """Pre-allocated keys and values for every layer: shape [layers, batch, kv_heads, max_len, head_dim].

    ``length`` is how many positions are filled. Views, not copies, are handed to attention.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device, dtype: torch.dtype):
        for name, value in (("batch_size", batch_size), ("max_len", max_len)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if batch_size <= 0 or max_len <= 0:
            raise ValueError(f"batch_size and max_len must be positive, got {batch_size}, {max_len}")
        if max_len > config.max_seq_len:
            raise ValueError(f"max_len={max_len} exceeds the model's context length {config.max_seq_len}")
        shape = (config.n_layers, batch_size, config.n_kv_heads, max_len, config.head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new k/v [B, K, T, d] at positions [length, length + T) of one layer; return all [B, K, S, d]."""
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def reorder(self, batch_index: torch.Tensor) -> None:
        """Keep/reorder batch rows (used by beam search)."""
        self.keys = self.keys[:, batch_index]
        self.values = self.values[:, batch_index]


class Attention(nn.Module):
    """Causal self-attention with RoPE and grouped-query attention: H query heads share K key/value heads.

    ``use_sdpa`` (default True) runs PyTorch's fused ``F.scaled_dot_product_attention``; False runs ``attention``,
    the same computation written out (slower, for reading and checking).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.rope_layout = config.rope_layout
        self.use_sdpa = True
        self.q_proj = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: RopeTables, mask: torch.Tensor | None, cache: KVCache | None,
                layer: int) -> torch.Tensor:
        batch, steps, _ = x.shape  # [B, T, D]
        q = self.q_proj(x).view(batch, steps, self.n_heads, self.head_dim)  # [B, T, H, d]
        k = self.k_proj(x).view(batch, steps, self.n_kv_heads, self.head_dim)  # [B, T, K, d]
        v = self.v_proj(x).view(batch, steps, self.n_kv_heads, self.head_dim)  # [B, T, K, d]
        q, k = apply_rotary(q, rope, self.rope_layout), apply_rotary(k, rope, self.rope_layout)
        return self.attend(q, k, v, mask, cache, layer)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               cache: KVCache | None, layer: int) -> torch.Tensor:
        """Attention of the new positions' rotated q [B, T, H, d] over the cached and new k, v [B, T, K, d]; o_proj."""
        batch, steps = q.shape[:2]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, d], [B, K, T, d]
        if cache is not None:
            k, v = cache.write(layer, k, v)  # [B, K, S, d]
        if self.use_sdpa:  # one fused kernel; mask None = causal (LlamaModel passes a mask whenever S > T > 1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and steps > 1,
                                                 enable_gqa=self.n_kv_heads != self.n_heads)
        else:
            out = attention(q, k, v, mask)  # [B, H, T, d]
        return self.o_proj(out.transpose(1, 2).reshape(batch, steps, -1))  # [B, T, H·d] -> [B, T, D]


class MLP(nn.Module):
    """SwiGLU feed-forward (Shazeer, 2020): down(silu(gate(x)) ⊙ up(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.up_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.down_proj = nn.Linear(config.ffn_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # [B, T, ffn] -> [B, T, D]


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, rope: RopeTables, mask: torch.Tensor | None, cache: KVCache | None,
                layer: int) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Decoder-only LLaMA-style language model: ``model(ids[B, T]) -> logits[B, T, V]``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding matrix with the output head when the config says so."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def set_sdpa(self, enabled: bool) -> None:
        """Attention by ``F.scaled_dot_product_attention`` (True, the default) or written out (False) in every block."""
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {type(enabled).__name__} {enabled!r}")
        for block in self.layers:
            block.self_attn.use_sdpa = enabled

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty KV cache for ``batch_size`` rows and up to ``max_len`` positions."""
        return KVCache(self.config, batch_size, max_len, self.device, self.dtype)

    def validate_ids(self, input_ids: torch.Tensor) -> None:
        """Raise a ValueError unless every token id lies in [0, vocab_size).

        This reads tensor values, which on a GPU waits for the device (a host synchronisation). ``forward`` therefore
        runs it only when a sequence starts (no cached past); decoding steps that extend a cache are not checked, so
        a caller feeding ids of its own into a cache should call this once first.
        """
        if input_ids.numel() == 0:
            return
        low, high = torch.stack(torch.aminmax(input_ids)).tolist()  # one read-back for both
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size - 1}], got values in [{low}, {high}]")

    def _check_input(self, input_ids: torch.Tensor, past: int, cache: KVCache | None) -> None:
        """Types and shapes only: nothing here reads tensor values, so nothing waits for the device."""
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be integer token ids (int64 or int32), got dtype {input_ids.dtype}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [batch, time], got {tuple(input_ids.shape)}")
        if input_ids.shape[1] == 0:
            raise ValueError("empty input: give at least one token (is the prompt empty?)")
        total = past + input_ids.shape[1]
        if total > self.config.max_seq_len:
            raise ValueError(f"sequence of {total} tokens exceeds the context length of {self.config.max_seq_len}")
        if cache is not None:
            if total > cache.max_len:
                raise ValueError(f"KV cache holds {cache.max_len} positions, {total} needed")
            if cache.batch_size != input_ids.shape[0]:
                raise ValueError(f"KV cache has batch {cache.batch_size}, input has batch {input_ids.shape[0]}")

    def _positions_and_mask(self, batch: int, steps: int, past: int, attention_mask: torch.Tensor | None,
                            device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RoPE positions [B or 1, T] of the new tokens and the attention mask (None = plain causal)."""
        if attention_mask is None:
            positions = torch.arange(past, past + steps, device=device)[None]  # [1, T]
            mask = causal_mask(steps, past + steps, device) if steps > 1 and past > 0 else None  # [T, S]
            return positions, mask
        if not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
        if attention_mask.shape != (batch, past + steps):
            raise ValueError(f"attention_mask must have shape {(batch, past + steps)} (batch, past + new tokens), "
                             f"got {tuple(attention_mask.shape)}")
        keep = attention_mask.to(device=device, dtype=torch.bool)  # [B, S]: False on (left) padding
        positions = (keep.long().cumsum(-1) - 1).clamp(min=0)[:, past:]  # [B, T]: padding does not count
        own = torch.zeros(steps, past + steps, dtype=torch.bool, device=device)
        own[torch.arange(steps), torch.arange(past, past + steps)] = True  # a padded query still sees itself
        mask = (causal_mask(steps, past + steps, device) & keep[:, None, :]) | own  # [B, T, S]
        return positions, mask[:, None]  # [B, 1, T, S]: broadcast over heads

    def rope_tables(self, positions: torch.Tensor) -> RopeTables:
        """cos/sin of the RoPE angles of ``positions`` [B or 1, T], shaped [B or 1, T, 1, d] for every layer."""
        # positions come from arange/cumsum and are non-negative by construction: no value check (no GPU sync)
        cos, sin = rope_angles(positions, self.config.head_dim, self.config.rope_theta, check=False)  # [B or 1, T, d/2]
        return RopeTables.from_pairs(cos[:, :, None], sin[:, :, None], self.config.rope_layout)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits [B, T, V] for every position (or [B, 1, V] for the last one when ``last_only``), float32.

        ``cache``: a KVCache; new keys/values are appended and ``cache.length`` advances.
        ``attention_mask``: [B, past + T], 1 for real tokens and 0 for (left) padding, covering cached positions too.
        RoPE positions then count only real tokens, as in Hugging Face.
        Checked on every call: types and shapes. Token-id values are checked (``validate_ids``) only when a sequence
        starts, i.e. without cached past: reading them back would make every decoding step wait for a GPU.
        """
        past = cache.length if cache is not None else 0
        self._check_input(input_ids, past, cache)
        if past == 0:
            self.validate_ids(input_ids)
        batch, steps = input_ids.shape
        positions, mask = self._positions_and_mask(batch, steps, past, attention_mask, input_ids.device)
        rope = self.rope_tables(positions)
        x = self.embed_tokens(input_ids)  # [B, T, D]
        for index, layer in enumerate(self.layers):
            x = layer(x, rope, mask, cache, index)
        if cache is not None:
            cache.length = past + steps
        if last_only:
            x = x[:, -1:]  # [B, 1, D]
        return self.lm_head(self.norm(x)).float()  # [B, T, V]


def parameter_breakdown(model: LlamaModel) -> dict[str, int]:
    """Number of weights per component (each shared tensor counted once; the tied head is in 'embedding')."""
    groups = {"embedding": 0, "attention": 0, "mlp": 0, "norms": 0, "output head": 0}
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        if name.startswith("embed_tokens"):
            groups["embedding"] += param.numel()
        elif ".self_attn." in name:
            groups["attention"] += param.numel()
        elif ".mlp." in name:
            groups["mlp"] += param.numel()
        elif name.startswith("lm_head"):
            groups["output head"] += param.numel()
        else:
            groups["norms"] += param.numel()
    return groups
