"""The inference fast path: the plain model's function computed with fewer, faster operations (``make_fast``).

``load_model()`` applies ``make_fast`` to the plain ``model.LlamaModel``; ``load_model(fast=False)`` does not. Four
tricks, each a pure speed-up of the same function (float32 sums may differ in the last bits):

1. Fused products (``fused_weights.py``): one product for q/k/v instead of three, one for gate/up instead of two,
   with each projection's weight a view of its block of the joint matrix.
2. oneDNN routing (``onednn.py``): the wide products of decoding on oneDNN where it measured faster than MKL.
3. Complex-number RoPE. Pair (a, b) read as a + ib: the rotation is one complex product with cos + i·sin, built once
   per forward pass for all layers (interleaved layout, float32/float64).
4. Fewer small operations per layer. Decoding a token runs ~30 operations per layer on tensors of a few KB, so
   their dispatch and thread start-up is a real share of the step (more so on a busy machine): one decoding query
   per head runs as grouped queries against its key/value head (``FastAttention.attend``), RMSNorm takes its mean of
   squares from one reduction (``FastRMSNorm``), and residuals are added in place into each sub-layer's fresh output
   (``FastBlock``). ``settings.lean_layers = False`` switches this trick off for A/B runs.

Never entered where it would change what is computed or trained: in grad mode (training) every module runs its
plain forward; a projection wrapped by LoRA (or whose weight was replaced, e.g. by ``model.to(dtype)``) is called as
its own module and its group's fused product is skipped. ``make_fast`` again after ``model.to(...)`` re-fuses.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .fused_weights import fused_weight, join_weights, joint_matrix, record_fused
from .model import MLP, Attention, Block, KVCache, LlamaModel, RMSNorm, RopeTables, apply_rotary
from .onednn import FastLinear, linear

__all__ = ["make_fast", "make_plain", "is_fast", "settings", "rotate_complex"]


class _Settings:
    """Switch for A/B measurements: ``lean_layers = False`` runs attention, RMSNorm and the residual adds as the
    plain model does (trick 4). The oneDNN route has its own switches, ``onednn.routing``."""

    lean_layers: bool = True


settings = _Settings()


# ---- trick 3: complex-number RoPE ----------------------------------------------------------------------------------

class ComplexRopeTables(NamedTuple):
    """``model.RopeTables`` plus ``rotation = cos + i·sin`` of each pair's angle [B or 1, T, 1, d/2], complex, built
    once per forward pass (interleaved layout)."""

    cos: torch.Tensor
    sin: torch.Tensor
    rotation: torch.Tensor


def _as_complex(pairs: torch.Tensor) -> torch.Tensor:
    """View [..., 2] real pairs as complex numbers, copying first when the memory layout does not allow a view."""
    strides_even = all(stride % 2 == 0 for stride in pairs.stride()[:-1]) and pairs.storage_offset() % 2 == 0
    if pairs.stride(-1) != 1 or not strides_even:
        pairs = pairs.clone(memory_format=torch.contiguous_format)
    return torch.view_as_complex(pairs)


def _pair_rotation(rope: RopeTables) -> torch.Tensor:
    """cos + i·sin of each pair's angle, read from interleaved tables (pair i's angle stands at dimensions 2i, 2i+1)."""
    return torch.complex(rope.cos[..., 0::2], rope.sin[..., 0::2])


def rotate_complex(x: torch.Tensor, rope: RopeTables | ComplexRopeTables, layout: str) -> torch.Tensor:
    """``model.apply_rotary`` as one complex product per pair where it applies (interleaved, float32/float64).

    (a + ib)(cos + i sin) = (a cos - b sin) + i(a sin + b cos): the RoFormer rotation, in fewer operations.
    """
    if layout != "interleaved" or x.dtype not in (torch.float32, torch.float64):
        return apply_rotary(x, rope, layout)
    rotation = getattr(rope, "rotation", None)
    if rotation is None:
        rotation = _pair_rotation(rope)
    pairs = x.unflatten(-1, (-1, 2))  # [B, T, heads, d/2, 2]
    return torch.view_as_real(_as_complex(pairs) * rotation).flatten(-2)  # [B, T, heads, d]


# ---- the fast modules: subclasses whose forward takes the fast route, the plain one otherwise -----------------------

class FastAttention(Attention):
    """``model.Attention`` with one fused q/k/v product and one complex rotation of q and k together."""

    def forward(self, x: torch.Tensor, rope: RopeTables, mask: torch.Tensor | None, cache: KVCache | None,
                layer: int) -> torch.Tensor:
        if torch.is_grad_enabled():  # training: the plain, paper-shaped path
            return super().forward(x, rope, mask, cache, layer)
        batch, steps, _ = x.shape
        heads, kv_heads, head_dim = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = fused_weight(self)
        if qkv is None:  # a projection is wrapped (LoRA) or was replaced: each is called as its own module
            q = self.q_proj(x).view(batch, steps, heads, head_dim)  # [B, T, H, d]
            k = self.k_proj(x).view(batch, steps, kv_heads, head_dim)  # [B, T, K, d]
            v = self.v_proj(x).view(batch, steps, kv_heads, head_dim)  # [B, T, K, d]
            q, k = rotate_complex(q, rope, self.rope_layout), rotate_complex(k, rope, self.rope_layout)
            return self.attend(q, k, v, mask, cache, layer)
        projected = linear(x, qkv).view(batch, steps, heads + 2 * kv_heads, head_dim)  # [B, T, H + 2K, d]
        q_and_k = rotate_complex(projected[:, :, :heads + kv_heads], rope, self.rope_layout)  # [B, T, H + K, d]
        q, k, v = q_and_k[:, :, :heads], q_and_k[:, :, heads:], projected[:, :, heads + kv_heads:]
        return self.attend(q, k, v, mask, cache, layer)


    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               cache: KVCache | None, layer: int) -> torch.Tensor:
        """``Attention.attend``; for one new position per row, the query heads grouped by the key/value head they share.

        Decoding asks one query per head. With grouped-query attention the ``groups = H / K`` query heads of key/value
        head j are then just ``groups`` queries against the same keys: q [B, H, 1, d] read as [B, K, groups, d] is
        one non-causal SDPA call on the cached k, v [B, K, S, d], without the grouped-query handling of
        ``enable_gqa`` (on a 2-core Intel Xeon, one thread: 1.15x faster at batch 1, 1.3x at batch 8; about 2x when
        the machine was busy). Same function; float32 sums may differ in the last bits.
        """
        batch, steps = q.shape[:2]
        groups = self.n_heads // self.n_kv_heads
        if torch.is_grad_enabled() or not settings.lean_layers or not self.use_sdpa or steps != 1 or groups == 1 or (
                mask is not None and (mask.dim() != 4 or mask.shape[1] != 1)):
            return super().attend(q, k, v, mask, cache, layer)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, K, 1, d]
        if cache is not None:
            k, v = cache.write(layer, k, v)  # [B, K, S, d]
        grouped = q.reshape(batch, self.n_kv_heads, groups, self.head_dim)  # [B, 1, H, d] -> [B, K, groups, d]
        out = F.scaled_dot_product_attention(grouped, k, v, attn_mask=mask)  # mask [B, 1, 1, S] broadcasts
        return self.o_proj(out.reshape(batch, 1, -1))  # [B, K, groups, d] = [B, H, d] in head order -> [B, 1, D]


class FastMLP(MLP):
    """``model.MLP`` with one fused gate/up product."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # training: the plain, paper-shaped path
            return super().forward(x)
        gate_up = fused_weight(self)
        if gate_up is None:  # a projection is wrapped (LoRA) or was replaced
            return super().forward(x)
        gate, up = linear(x, gate_up).chunk(2, dim=-1)  # [B, T, ffn] each
        return self.down_proj(F.silu(gate) * up)


class FastRMSNorm(RMSNorm):
    """``model.RMSNorm`` with the mean of squares from one reduction (``torch.linalg.vector_norm``) in float32.

    x / sqrt(mean(x²) + eps) = x · rsqrt(‖x‖² / D + eps): the squares are not stored as a tensor of their own, and the
    full-size work is one reduction and two products, instead of a power, a sum and two products.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.is_grad_enabled() or not settings.lean_layers or x.dtype != torch.float32
                or self.weight.dtype != torch.float32):
            return super().forward(x)
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # [..., 1]
        scale = norm.square_().div_(x.shape[-1]).add_(self.eps).rsqrt_()  # [..., 1]: 1 / RMS
        return (x * scale).mul_(self.weight)  # [..., D]


class FastBlock(Block):
    """``model.Block`` adding each residual into the sub-layer's fresh output in place (no new tensor per add)."""

    def forward(self, x: torch.Tensor, rope: RopeTables, mask: torch.Tensor | None, cache: KVCache | None,
                layer: int) -> torch.Tensor:
        if torch.is_grad_enabled() or not settings.lean_layers:
            return super().forward(x, rope, mask, cache, layer)
        x = self.self_attn(self.input_layernorm(x), rope, mask, cache, layer).add_(x)
        return self.mlp(self.post_attention_layernorm(x)).add_(x)


class FastLlamaModel(LlamaModel):
    """``model.LlamaModel`` whose RoPE tables also carry the complex rotation, built once for all layers."""

    def rope_tables(self, positions: torch.Tensor) -> RopeTables | ComplexRopeTables:
        tables = super().rope_tables(positions)
        if torch.is_grad_enabled() or self.config.rope_layout != "interleaved":
            return tables
        return ComplexRopeTables(tables.cos, tables.sin, _pair_rotation(tables))


_FAST_CLASSES = {LlamaModel: FastLlamaModel, Attention: FastAttention, MLP: FastMLP, nn.Linear: FastLinear,
                 Block: FastBlock, RMSNorm: FastRMSNorm}
_PLAIN_CLASSES = {fast: plain for plain, fast in _FAST_CLASSES.items()}


def _check_model(model) -> None:
    if not isinstance(model, LlamaModel):
        raise TypeError(f"expected a course_utils LlamaModel, got {type(model).__name__}")


def make_fast(model: LlamaModel) -> LlamaModel:
    """Convert ``model`` in place for fast inference and return it; calling it again re-fuses replaced weights.

    Each module keeps its parameters, children and names: only its class becomes the fast subclass (whose forward
    falls back to the plain one wherever the fast route does not apply). Layers wrapped by LoRA are left alone.
    """
    _check_model(model)
    for block in model.layers:
        attention, mlp = block.self_attn, block.mlp
        for module, names in ((attention, ("q_proj", "k_proj", "v_proj")), (mlp, ("gate_proj", "up_proj"))):
            group = [getattr(module, name) for name in names]
            if not all(type(layer) is nn.Linear and layer.bias is None for layer in group):
                continue  # wrapped (LoRA): left alone
            if joint_matrix(group) is None:
                join_weights(group)
            module.fused = record_fused(names, group)
    for module in [model, model.lm_head, model.norm, *(m for block in model.layers for m in (
            block, block.self_attn, block.mlp, block.input_layernorm, block.post_attention_layernorm))]:
        fast_class = _FAST_CLASSES.get(type(module))
        if fast_class is not None:
            module.__class__ = fast_class
    return model


def make_plain(model: LlamaModel) -> LlamaModel:
    """Undo ``make_fast`` in place (the weights stay fused views, which the plain modules read like any weight)."""
    _check_model(model)
    for module in model.modules():
        plain_class = _PLAIN_CLASSES.get(type(module))
        if plain_class is not None:
            module.__class__ = plain_class
            module.__dict__.pop("fused", None)
    return model


def is_fast(model: LlamaModel) -> bool:
    """Whether ``make_fast`` has converted ``model``."""
    _check_model(model)
    return type(model) is FastLlamaModel
