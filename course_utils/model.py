"""A readable LLaMA-style decoder (RMSNorm, grouped-query attention, SwiGLU, RoPE) with a KV cache.

Module names follow Hugging Face's LlamaForCausalLM without the ``model.`` prefix, so LoRA targets such as
``q_proj`` or ``v_proj`` mean the same thing here as in PEFT.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .linear_backend import linear
from .positional import ROPE_LAYOUTS, apply_rope, rope_angles


@dataclass
class ModelConfig:
    """Hyper-parameters of a LLaMA-family decoder. Defaults are SmolLM2-135M."""

    vocab_size: int = 49152
    dim: int = 576
    n_layers: int = 30
    n_heads: int = 9
    n_kv_heads: int = 3
    ffn_dim: int = 1536
    norm_eps: float = 1e-5
    rope_theta: float = 100000.0
    max_seq_len: int = 8192
    tie_embeddings: bool = True
    rope_layout: str = "interleaved"
    bos_id: int | None = 1
    eos_id: int | None = 2
    name: str = "SmolLM2-135M-Instruct"

    def __post_init__(self) -> None:
        for field in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{field} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {self.head_dim}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {self.rope_layout!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 (Zhang & Sennrich, 2019)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm computes exactly the formula above, in one call instead of six
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).to(x.dtype)


class KVCache:
    """Pre-allocated keys and values for every layer: shape [layers, batch, kv_heads, max_len, head_dim].

    ``length`` is how many positions are filled. Views, not copies, are handed to attention.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device, dtype: torch.dtype):
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
        """Store new k/v at positions [length, length + T) of one layer; return all keys/values so far."""
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def reorder(self, batch_index: torch.Tensor) -> None:
        """Keep/reorder batch rows (used by beam search)."""
        self.keys = self.keys[:, batch_index]
        self.values = self.values[:, batch_index]


class RopeTables(NamedTuple):
    """The rotation of every position, computed once per forward pass and shared by all layers.

    ``cos``, ``sin``: [B, T, 1, head_dim / 2] (broadcast over heads); ``rotation``: ``cos + i sin`` (complex).
    """

    cos: torch.Tensor
    sin: torch.Tensor
    rotation: torch.Tensor


class Linear(nn.Linear):
    """``nn.Linear`` whose product runs through ``linear_backend.linear`` (faster token-by-token decoding on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def join_weights(layers: list[nn.Linear]) -> None:
    """Store the weights of ``layers`` (same input size, no bias) as consecutive row blocks of ONE matrix.

    Each ``layer.weight`` becomes a view of its block, so the modules, their names and the state dict stay as they
    were, and in-place updates (optimiser steps, ``load_state_dict``, LoRA merges) land in the joint matrix.
    ``joined_weight`` then hands the whole matrix to a single product instead of one per layer.
    """
    joint = torch.cat([layer.weight.detach() for layer in layers])
    start = 0
    for layer in layers:
        rows = layer.weight.shape[0]
        layer.weight = nn.Parameter(joint[start:start + rows], requires_grad=layer.weight.requires_grad)
        start += rows


def joined_weight(layers: list[nn.Module]) -> torch.Tensor | None:
    """The matrix made by ``join_weights``, or None when one product would not be the same computation.

    Joined products serve inference only (autograd off): in training the backward pass would have to split and
    re-join the gradients, which costs what the joined forward saves. None also when a layer is no longer a plain
    ``Linear`` (e.g. wrapped by LoRA) or when the weights were replaced rather than updated in place (e.g. by
    ``model.to(...)``: call ``LlamaModel.join_projections()`` again).
    """
    if torch.is_grad_enabled():
        return None
    weights = []
    for layer in layers:
        if type(layer) is not Linear or layer.bias is not None:
            return None
        weights.append(layer.weight)
    first = weights[0]
    columns, storage, offset = first.shape[1], first.untyped_storage().data_ptr(), first.storage_offset()
    for weight in weights:  # each block must start where the previous one ended, in the same storage
        if (weight.storage_offset() != offset or weight.shape[1] != columns or weight.dtype != first.dtype
                or not weight.is_contiguous() or weight.untyped_storage().data_ptr() != storage):
            return None
        offset += weight.numel()
    rows = (offset - first.storage_offset()) // columns
    return first.detach().as_strided((rows, columns), (columns, 1))


class Attention(nn.Module):
    """Grouped-query self-attention: n_heads query heads share n_kv_heads key/value heads."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.rope_layout = config.rope_layout
        self.q_proj = Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.k_proj = Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.v_proj = Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.o_proj = Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def _rotate(self, x: torch.Tensor, rope: RopeTables) -> torch.Tensor:
        return apply_rope(x, rope.cos, rope.sin, self.rope_layout, rotation=rope.rotation)

    def _queries_keys_values(self, x: torch.Tensor, rope: RopeTables):
        """q [B, T, H, d] and k, v [B, T, K, d], RoPE applied to q and k."""
        batch, steps, _ = x.shape
        heads, kv_heads, head_dim = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = joined_weight([self.q_proj, self.k_proj, self.v_proj])
        if qkv is None:  # three products, e.g. while q_proj or v_proj carry LoRA
            q = self.q_proj(x).view(batch, steps, heads, head_dim)
            k = self.k_proj(x).view(batch, steps, kv_heads, head_dim)
            v = self.v_proj(x).view(batch, steps, kv_heads, head_dim)
            return self._rotate(q, rope), self._rotate(k, rope), v
        # one product and one rotation for q and k together: fewer, larger operations decode faster
        projected = linear(x, qkv).view(batch, steps, heads + 2 * kv_heads, head_dim)
        q_and_k = self._rotate(projected[:, :, :heads + kv_heads], rope)
        return q_and_k[:, :, :heads], q_and_k[:, :, heads:], projected[:, :, heads + kv_heads:]

    def forward(self, x, rope: RopeTables, mask, cache: KVCache | None, layer: int) -> torch.Tensor:
        batch, steps, _ = x.shape
        q, k, v = (t.transpose(1, 2) for t in self._queries_keys_values(x, rope))
        if cache is not None:
            k, v = cache.write(layer, k, v)
        is_causal = mask is None and steps > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                             enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o_proj(out.transpose(1, 2).reshape(batch, steps, -1))


class MLP(nn.Module):
    """SwiGLU feed-forward (Shazeer, 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = Linear(config.dim, config.ffn_dim, bias=False)
        self.up_proj = Linear(config.dim, config.ffn_dim, bias=False)
        self.down_proj = Linear(config.ffn_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = joined_weight([self.gate_proj, self.up_proj])
        if gate_up is None:
            gate, up = self.gate_proj(x), self.up_proj(x)
        else:  # one product for both
            gate, up = linear(x, gate_up).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, rope: RopeTables, mask, cache, layer):
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Decoder-only LLaMA-style language model: ``model(ids[B, T]) -> logits[B, T, V]``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = Linear(config.dim, config.vocab_size, bias=False)
        self.tie_weights()
        self.join_projections()

    def join_projections(self) -> None:
        """Store q/k/v and gate/up weights jointly per block (see ``join_weights``): same model, fewer products.

        ``load_model`` calls this after moving the weights; call it again after ``model.to(...)``, which replaces
        the weights by separate tensors (the model stays correct without it, only slower). Layers already wrapped
        (e.g. by LoRA) are left alone.
        """
        for block in self.layers:
            for group in ([block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj],
                          [block.mlp.gate_proj, block.mlp.up_proj]):
                if all(type(layer) is Linear for layer in group):
                    join_weights(group)

    def tie_weights(self) -> None:
        """Share the embedding matrix with the output head when the config says so."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty KV cache for ``batch_size`` rows and up to ``max_len`` positions."""
        return KVCache(self.config, batch_size, max_len, self.device, self.dtype)

    def _check_input(self, input_ids: torch.Tensor, past: int, cache: KVCache | None) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [batch, time], got {tuple(input_ids.shape)}")
        if input_ids.shape[1] == 0:
            raise ValueError("empty input: give at least one token (is the prompt empty?)")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size - 1}], got values in [{low}, {high}]")
        total = past + input_ids.shape[1]
        if total > self.config.max_seq_len:
            raise ValueError(f"sequence of {total} tokens exceeds the context length of {self.config.max_seq_len}")
        if cache is not None:
            if total > cache.max_len:
                raise ValueError(f"KV cache holds {cache.max_len} positions, {total} needed")
            if cache.batch_size != input_ids.shape[0]:
                raise ValueError(f"KV cache has batch {cache.batch_size}, input has batch {input_ids.shape[0]}")

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits for every position (or only the last one when ``last_only``).

        ``cache``: a KVCache; new keys/values are appended and ``cache.length`` advances.
        ``attention_mask``: [B, past + T], 1 for real tokens and 0 for (left) padding, covering cached positions too.
        RoPE positions then count only real tokens, as in Hugging Face.
        """
        past = cache.length if cache is not None else 0
        self._check_input(input_ids, past, cache)
        batch, steps = input_ids.shape
        device = input_ids.device
        if attention_mask is None:
            positions = torch.arange(past, past + steps, device=device)[None]
            mask = None
            if steps > 1 and past > 0:
                mask = torch.ones(steps, past + steps, dtype=torch.bool, device=device).tril(past)
        else:
            if attention_mask.shape != (batch, past + steps):
                raise ValueError(f"attention_mask must have shape {(batch, past + steps)}, "
                                 f"got {tuple(attention_mask.shape)}")
            keep = attention_mask.to(device=device, dtype=torch.bool)
            positions = (keep.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
            causal = torch.ones(steps, past + steps, dtype=torch.bool, device=device).tril(past)
            own = torch.zeros_like(causal)
            own[torch.arange(steps), torch.arange(past, past + steps)] = True  # a padded query still sees itself
            mask = ((causal & keep[:, None, :]) | own)[:, None]
        cos, sin = rope_angles(positions, self.config.head_dim, self.config.rope_theta)
        cos, sin = cos[:, :, None], sin[:, :, None]  # [B, T, 1, head_dim / 2]: broadcast over heads
        rope = RopeTables(cos, sin, torch.complex(cos, sin))
        x = self.embed_tokens(input_ids)
        for index, layer in enumerate(self.layers):
            x = layer(x, rope, mask, cache, index)
        if cache is not None:
            cache.length = past + steps
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.norm(x)).float()


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
