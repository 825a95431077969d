"""RoPE (Su et al., 2021, "RoFormer"): rotate each query/key pair of dimensions by an angle set by the position.

The core the course model uses: rotation frequencies and angles, the rotation itself in both layouts, and the
per-head row permutation that maps one layout onto the other. Then analysis and scaling past the trained length
(linear position interpolation, Chen et al. 2023; the NTK-aware base change proposed by "bloc97", 2023).

Layouts
- ``"interleaved"``: RoFormer's form. Dimension pairs are adjacent: (x0, x1), (x2, x3), ...
  llama.cpp's converter reorders the q/k rows of each head so GGUF weights expect this layout.
- ``"half"``: Hugging Face LLaMA's ``rotate_half`` form. Pair i is (x_i, x_{i + d/2}).
"""
from __future__ import annotations

import math

import torch

from .validation import check_choice, check_int, check_real

ROPE_LAYOUTS = ("interleaved", "half")
ROPE_SCALINGS = ("none", "linear", "ntk")
PAIRS = "RoPE rotates pairs of dimensions"  # why a head dimension must be even


def _check_head_dim(head_dim, minimum: int = 2) -> int:
    return check_int("head_dim", head_dim, minimum=minimum, multiple_of=2, hint=PAIRS)


def _check_base(base) -> float:
    return check_real("base", base, low=0, low_open=True)


def rope_inverse_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """theta_i = base^(-2i/d) for i = 0 .. d/2 - 1 (radians per position), as float64."""
    head_dim = _check_head_dim(head_dim)
    base = _check_base(base)
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    return base ** (-exponents)


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0,
                check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angle m * theta_i, shape ``positions.shape + (head_dim // 2,)``, float32.

    ``check=False`` skips the test that positions are non-negative, which reads them back (on a GPU, a wait for the
    device): the model passes it for positions it built itself, which cannot be negative.
    """
    positions = torch.as_tensor(positions)
    if check and positions.numel() and positions.min() < 0:
        raise ValueError("positions must be non-negative")
    inv_freq = rope_inverse_frequencies(head_dim, base).to(positions.device)
    angles = positions.to(torch.float64)[..., None] * inv_freq
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "interleaved") -> torch.Tensor:
    """Rotate each pair of dimensions of ``x`` (last dim = head_dim) by the angles given as cos/sin.

    ``cos`` and ``sin`` have last dimension head_dim // 2 and broadcast against ``x``'s leading dims. A pair (a, b)
    turned by the angle m theta_i becomes (a cos - b sin, a sin + b cos): RoFormer's equation (its section 3.2).
    """
    check_choice("layout", layout, ROPE_LAYOUTS)
    if x.shape[-1] % 2 or cos.shape[-1] * 2 != x.shape[-1]:
        raise ValueError(f"x has last dim {x.shape[-1]} but cos/sin have {cos.shape[-1]}: "
                         f"expected half of an even head_dim")
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if layout == "interleaved":
        pairs = x.unflatten(-1, (-1, 2))  # [..., head_dim // 2, 2]: pair i is (x_2i, x_2i+1)
        first, second = pairs[..., 0], pairs[..., 1]
        return torch.stack((first * cos - second * sin, first * sin + second * cos), dim=-1).flatten(-2)
    first, second = x.chunk(2, dim=-1)  # pair i is (x_i, x_i+d/2)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


def interleaved_to_half_order(head_dim: int) -> torch.Tensor:
    """Row order that turns one head's interleaved q/k rows into half-split rows.

    Half-split row i is interleaved row 2i (first halves), row d/2 + i is interleaved row 2i + 1.
    """
    head_dim = _check_head_dim(head_dim)
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


def permute_qk_rows(weight: torch.Tensor, n_heads: int, to_layout: str) -> torch.Tensor:
    """Reorder the rows of a q or k projection (shape [n_heads * head_dim, in]) to the other RoPE layout.

    ``to_layout="half"`` maps interleaved (GGUF) weights to half-split (Hugging Face) weights;
    ``to_layout="interleaved"`` is the inverse.
    """
    check_choice("to_layout", to_layout, ROPE_LAYOUTS)
    n_heads = check_int("n_heads", n_heads, minimum=1)
    rows = weight.shape[0]
    if rows % n_heads:
        raise ValueError(f"weight has {rows} rows, not a multiple of n_heads={n_heads}")
    head_dim = rows // n_heads
    order = interleaved_to_half_order(head_dim)
    if to_layout == "interleaved":
        order = torch.argsort(order)
    per_head = weight.reshape(n_heads, head_dim, *weight.shape[1:])
    return per_head[:, order].reshape(weight.shape)


# ----------------------------------------------------------------------------------------------------------------
# RoPE analysis and scaling past the trained length
# ----------------------------------------------------------------------------------------------------------------

def rope_wavelengths(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Positions needed for pair i to turn a full circle: 2 pi / theta_i, float64 [head_dim // 2]."""
    return 2 * math.pi / rope_inverse_frequencies(head_dim, base)


def _check_scaling(scaling: str, factor) -> float:
    check_choice("scaling", scaling, ROPE_SCALINGS)
    return check_real("factor", factor, low=1, hint="new length / trained length")


def ntk_scaled_base(base: float, head_dim: int, factor: float) -> float:
    """NTK-aware base change: base * factor^(d / (d - 2)).

    The fastest pair (i = 0) keeps its frequency; the slowest (i = d/2 - 1) turns exactly ``factor`` times slower,
    like position interpolation; the pairs in between are stretched by geometrically growing amounts.
    """
    base = _check_base(base)
    head_dim = check_int("head_dim", head_dim, minimum=4, multiple_of=2, hint="NTK's exponent is d / (d - 2)")
    factor = _check_scaling("ntk", factor)
    return float(base) * float(factor) ** (head_dim / (head_dim - 2))


def scaled_rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0, scaling: str = "none",
                       factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin like ``rope_angles``, optionally scaled to run a model ``factor`` times past its trained length.

    ``"linear"``: position interpolation, positions m -> m / factor (every pair turns ``factor`` times slower).
    ``"ntk"``: positions unchanged, base -> ``ntk_scaled_base(base, head_dim, factor)``.
    ``"none"``: plain RoPE (``factor`` is ignored but still validated).
    """
    factor = _check_scaling(scaling, factor)
    positions = torch.as_tensor(positions)
    if scaling == "linear":
        return rope_angles(positions.to(torch.float64) / factor, head_dim, base)
    if scaling == "ntk":
        return rope_angles(positions, head_dim, ntk_scaled_base(base, head_dim, factor))
    return rope_angles(positions, head_dim, base)
