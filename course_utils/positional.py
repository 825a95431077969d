"""Positional information for transformers.

RoPE core (used by the course model): rotation angles, the rotation itself in both layouts,
and the per-head row permutation that maps one layout onto the other.

Layouts
- ``"interleaved"``: RoFormer's form (Su et al., 2021). Dimension pairs are adjacent: (x0, x1), (x2, x3), ...
  llama.cpp's converter reorders the q/k rows of each head so GGUF weights expect this layout.
- ``"half"``: Hugging Face LLaMA's ``rotate_half`` form. Pair i is (x_i, x_{i + d/2}).
"""
from __future__ import annotations

import torch

ROPE_LAYOUTS = ("interleaved", "half")


def _check_layout(layout: str) -> None:
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"unknown RoPE layout {layout!r}; allowed: {ROPE_LAYOUTS}")


def rope_inverse_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """theta_i = base^(-2i/d) for i = 0 .. d/2 - 1 (radians per position), as float64."""
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE needs a positive even head dimension, got {head_dim!r}")
    if not base > 0:
        raise ValueError(f"RoPE base must be positive, got {base!r}")
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    return base ** (-exponents)


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angle m * theta_i, shape ``positions.shape + (head_dim // 2,)``, float32."""
    positions = torch.as_tensor(positions)
    if positions.numel() and positions.min() < 0:
        raise ValueError("positions must be non-negative")
    inv_freq = rope_inverse_frequencies(head_dim, base).to(positions.device)
    angles = positions.to(torch.float64)[..., None] * inv_freq
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "interleaved") -> torch.Tensor:
    """Rotate each pair of dimensions of ``x`` (last dim = head_dim) by the angles given as cos/sin.

    ``cos`` and ``sin`` have last dimension head_dim // 2 and broadcast against ``x``'s leading dims.
    """
    _check_layout(layout)
    if x.shape[-1] % 2 or cos.shape[-1] * 2 != x.shape[-1]:
        raise ValueError(f"x has last dim {x.shape[-1]} but cos/sin have {cos.shape[-1]}: expected half of an even head_dim")
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if layout == "interleaved":
        pairs = x.unflatten(-1, (-1, 2))
        first, second = pairs[..., 0], pairs[..., 1]
        return torch.stack((first * cos - second * sin, first * sin + second * cos), dim=-1).flatten(-2)
    first, second = x.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


def interleaved_to_half_order(head_dim: int) -> torch.Tensor:
    """Row order that turns one head's interleaved q/k rows into half-split rows.

    Half-split row i is interleaved row 2i (first halves), row d/2 + i is interleaved row 2i + 1.
    """
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"RoPE needs a positive even head dimension, got {head_dim!r}")
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


def permute_qk_rows(weight: torch.Tensor, n_heads: int, to_layout: str) -> torch.Tensor:
    """Reorder the rows of a q or k projection (shape [n_heads * head_dim, in]) to the other RoPE layout.

    ``to_layout="half"`` maps interleaved (GGUF) weights to half-split (Hugging Face) weights;
    ``to_layout="interleaved"`` is the inverse.
    """
    _check_layout(to_layout)
    rows = weight.shape[0]
    if n_heads <= 0 or rows % n_heads:
        raise ValueError(f"weight has {rows} rows, not a multiple of n_heads={n_heads}")
    head_dim = rows // n_heads
    order = interleaved_to_half_order(head_dim)
    if to_layout == "interleaved":
        order = torch.argsort(order)
    per_head = weight.reshape(n_heads, head_dim, *weight.shape[1:])
    return per_head[:, order].reshape(weight.shape)
