"""The inference fast path: the plain model's function computed with fewer, faster operations (``make_fast``).

``load_model()`` applies ``make_fast`` to the plain ``model.LlamaModel``; ``load_model(fast=False)`` does not. Four
tricks, each a pure speed-up of the same function (float32 sums may differ in the last bits):

1. Fused products. q/k/v of a block (and gate/up) are stored as consecutive row blocks of ONE matrix; each
   projection's ``weight`` is a view of its block, so module names, the state dict and LoRA targets stay as they were,
   and in-place updates (``load_state_dict``, optimiser steps, ``lora.merge_lora``) land in the joint matrix that the
   fused product reads. One product for q/k/v instead of three, one for gate/up instead of two.
2. oneDNN routing. Decoding multiplies a few rows by every weight matrix, so its speed is how fast a kernel streams
   the weights from memory. On CPU, float32 ``F.linear`` goes to MKL; for weights with more outputs than inputs
   (fused q/k/v, fused gate/up, the output head) oneDNN's inner-product kernel, inside every PyTorch CPU build, read
   them faster from 8 rows on, on every machine measured; for a single row (batch-1 decoding) it won on an AMD EPYC
   and lost on an Intel Xeon, so that case is measured once per process (``onednn_wins_single_row``;
   ``benchmarks/decode_ablation.py`` measures every shape; ``settings`` switches the route for A/B runs).
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
About 400 lines: the four tricks and the modules that use them are read together, as one alternative path.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .model import MLP, Attention, Block, KVCache, LlamaModel, RMSNorm, RopeTables, apply_rotary

__all__ = ["make_fast", "make_plain", "is_fast", "linear", "uses_onednn", "onednn_wins_single_row", "settings",
           "join_weights", "joined_weight", "FusedWeight", "rotate_complex", "ONEDNN_AVAILABLE", "MAX_ONEDNN_ROWS",
           "ONEDNN_MARGIN"]

# ---- 2. oneDNN routing --------------------------------------------------------------------------------------------

ONEDNN_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
MAX_ONEDNN_ROWS = 32  # above this many rows (prefill, training) MKL's matrix-matrix kernel is already efficient
ONEDNN_MARGIN = 1.1  # one-row products go to oneDNN only where it measured at least this much faster than MKL


class _Settings:
    """Switches for A/B measurements.

    ``use_onednn = False`` forces plain ``F.linear`` everywhere. ``onednn_single_row``: whether one-row products
    (batch-1 decoding) go to oneDNN too; None (default) = measured once per process by ``onednn_wins_single_row``.
    ``lean_layers = False`` runs attention, RMSNorm and the residual adds as the plain model does (trick 4).
    """

    use_onednn: bool = True
    onednn_single_row: bool | None = None
    lean_layers: bool = True


settings = _Settings()
_measured: dict[str, bool] = {}


def onednn_wins_single_row() -> bool:
    """Whether oneDNN multiplies ONE row by a wide weight clearly faster than MKL on this machine (measured once).

    Why measure: the ranking depends on the CPU. One row times a fused gate/up weight ran 1.3-1.5x faster on oneDNN on
    an AMD EPYC, but 0.76-0.80x as fast on a 2-core Intel Xeon (AVX-512), where oneDNN still won from 8 rows on
    (1.1-1.7x). "Clearly": by the factor ``ONEDNN_MARGIN``, so that a machine where both are about as fast keeps MKL
    (the plain model's kernel) in every run rather than flipping with measurement noise. About 0.4 s, once per
    process; the choice changes float rounding in the last bits only, never the function.
    """
    if "single_row" not in _measured:
        import time

        copies = [torch.ones(3072, 576) for _ in range(12)]  # 85 MB: more than the caches, as decoding streams weights
        x = torch.ones(1, 576)
        seconds: dict[str, list[float]] = {"mkl": [], "onednn": []}
        with torch.no_grad():
            for round_ in range(10):  # alternate the order; drop the first round (warm-up)
                for name in (("mkl", "onednn") if round_ % 2 else ("onednn", "mkl")):
                    start = time.perf_counter()
                    for weight in copies:
                        if name == "mkl":
                            F.linear(x, weight)
                        else:
                            torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")
                    if round_:
                        seconds[name].append(time.perf_counter() - start)
        onednn, mkl = sorted(seconds["onednn"])[4], sorted(seconds["mkl"])[4]  # medians of 9 rounds
        _measured["single_row"] = onednn * ONEDNN_MARGIN < mkl
    return _measured["single_row"]


def uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """True when ``linear(x, weight, bias)`` would run on oneDNN rather than ``F.linear``.

    oneDNN is chosen for weights with more outputs than inputs (fused q/k/v, fused gate/up, the output head), at most
    ``MAX_ONEDNN_ROWS`` rows of float32 on CPU (one row only where it wins on this machine, see
    ``onednn_wins_single_row``), and only when no gradient has to flow through the product.
    """
    if not (settings.use_onednn and ONEDNN_AVAILABLE and weight.dim() == 2 and weight.shape[0] > weight.shape[1]):
        return False
    if x.dim() == 0 or x.numel() > MAX_ONEDNN_ROWS * x.shape[-1] or x.device.type != "cpu":
        return False
    if x.numel() == x.shape[-1]:  # a single row
        single_row = settings.onednn_single_row
        if not (onednn_wins_single_row() if single_row is None else single_row):
            return False
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or not weight.is_contiguous():
        return False
    if bias is not None and bias.dtype != torch.float32:
        return False
    needs_grad = x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    return not (torch.is_grad_enabled() and needs_grad)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias``, the same function as ``F.linear`` (float32 sums may differ in the last bits)."""
    if uses_onednn(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class FastLinear(nn.Linear):
    """``nn.Linear`` whose product runs through ``linear`` (used for the output head)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        return linear(x, self.weight, self.bias)


# ---- 1. fused products ---------------------------------------------------------------------------------------------

def join_weights(layers: list[nn.Linear]) -> None:
    """Store the weights of ``layers`` (same input size, no bias) as consecutive row blocks of ONE matrix.

    Each ``layer.weight`` becomes a view of its block, so in-place updates of a layer's weight land in the joint
    matrix; ``joined_weight`` hands the whole matrix to a single product.
    """
    joint = torch.cat([layer.weight.detach() for layer in layers])  # [sum of rows, in]
    start = 0
    for layer in layers:
        rows = layer.weight.shape[0]
        layer.weight = nn.Parameter(joint[start:start + rows], requires_grad=layer.weight.requires_grad)
        start += rows


def joined_weight(layers: list[nn.Module]) -> torch.Tensor | None:
    """The matrix made by ``join_weights``, or None when one product would not be the same computation.

    None in grad mode (the backward pass would have to split and re-join the gradients), when a layer is no longer a
    plain ``nn.Linear`` without bias (e.g. wrapped by LoRA), or when the weights no longer lie back to back in one
    storage (e.g. replaced by ``model.to(dtype)``: ``make_fast`` re-fuses them).
    """
    return None if torch.is_grad_enabled() else _joint_matrix(layers)


def _joint_matrix(layers: list[nn.Module]) -> torch.Tensor | None:
    """The joint matrix behind ``layers`` if their weights are still its consecutive row blocks, else None."""
    weights = []
    for layer in layers:
        if type(layer) is not nn.Linear or layer.bias is not None:
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


class FusedWeight(NamedTuple):
    """A joint matrix of ``join_weights``, recorded by ``make_fast`` with its layers and where their blocks start.

    The forward pass checks only that each layer is still the module under its name (not wrapped, e.g. by LoRA) and
    that its weight still starts at the recorded address: plain dictionary reads and one C call per layer, instead of
    re-deriving the matrix from storage (``joined_weight``) or going through ``nn.Module.__getattr__``, which on a
    busy 2-core CPU cost ~0.1 ms per group, 5 % of a batch-1 decoding step over 60 groups. While this record holds
    the matrix its memory cannot be reused, so an unchanged address means the weight is still its view.
    """

    weight: torch.Tensor
    names: tuple[str, ...]
    layers: tuple[nn.Module, ...]
    pointers: tuple[int, ...]


def _record(names: tuple[str, ...], layers: list[nn.Module]) -> FusedWeight | None:
    joint = _joint_matrix(layers)
    if joint is None:
        return None
    return FusedWeight(joint, names, tuple(layers), tuple(layer.weight.data_ptr() for layer in layers))


def _fused_weight(module: nn.Module) -> torch.Tensor | None:
    """``module``'s recorded joint matrix if its layers are still in place and still its views, else None.

    A record whose views were replaced (e.g. by ``model.to(dtype)``) is dropped, freeing the old matrix.
    """
    fused: FusedWeight | None = module.__dict__.get("fused")
    if fused is None:
        return None
    children = module._modules
    for name, layer, pointer in zip(fused.names, fused.layers, fused.pointers):
        if children[name] is not layer:  # wrapped (LoRA) or replaced: keep the record, the layer may come back
            return None
        if layer._parameters["weight"].data_ptr() != pointer:  # converted or replaced: the views are gone
            module.fused = None
            return None
    return fused.weight


# ---- 3. complex-number RoPE ----------------------------------------------------------------------------------------

class ComplexRopeTables(NamedTuple):
    """``model.RopeTables`` plus ``rotation = cos + i·sin`` [B or 1, T, 1, d/2], complex, built once per forward."""

    cos: torch.Tensor
    sin: torch.Tensor
    rotation: torch.Tensor


def _as_complex(pairs: torch.Tensor) -> torch.Tensor:
    """View [..., 2] real pairs as complex numbers, copying first when the memory layout does not allow a view."""
    strides_even = all(stride % 2 == 0 for stride in pairs.stride()[:-1]) and pairs.storage_offset() % 2 == 0
    if pairs.stride(-1) != 1 or not strides_even:
        pairs = pairs.clone(memory_format=torch.contiguous_format)
    return torch.view_as_complex(pairs)


def rotate_complex(x: torch.Tensor, rope: RopeTables | ComplexRopeTables, layout: str) -> torch.Tensor:
    """``model.apply_rotary`` as one complex product per pair where it applies (interleaved, float32/float64).

    (a + ib)(cos + i sin) = (a cos - b sin) + i(a sin + b cos): the RoFormer rotation, in fewer operations.
    """
    if layout != "interleaved" or x.dtype not in (torch.float32, torch.float64):
        return apply_rotary(x, rope, layout)
    rotation = getattr(rope, "rotation", None)
    if rotation is None:
        rotation = torch.complex(rope.cos, rope.sin)
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
        qkv = _fused_weight(self)
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
        gate_up = _fused_weight(self)
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
        if torch.is_grad_enabled():
            return tables
        return ComplexRopeTables(tables.cos, tables.sin, torch.complex(tables.cos, tables.sin))


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
            if _joint_matrix(group) is None:
                join_weights(group)
            module.fused = _record(names, group)
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
