"""Positional information for transformers.

Absolute schemes: the sinusoidal encoding of "Attention Is All You Need" (Vaswani et al., 2017) with the offset
matrix that maps PE[p] to PE[p + k], and learned position embeddings.
Relative schemes: Shaw et al. (2018) clipped distances, T5 relative buckets (Raffel et al., 2020) and ALiBi slopes
and biases (Press et al., 2022).
RoPE core (used by the course model): rotation angles, the rotation itself in both layouts,
and the per-head row permutation that maps one layout onto the other; RoPE scaling past the trained length
(linear position interpolation, Chen et al. 2023; the NTK-aware base change proposed by "bloc97", 2023).

Layouts
- ``"interleaved"``: RoFormer's form (Su et al., 2021). Dimension pairs are adjacent: (x0, x1), (x2, x3), ...
  llama.cpp's converter reorders the q/k rows of each head so GGUF weights expect this layout.
- ``"half"``: Hugging Face LLaMA's ``rotate_half`` form. Pair i is (x_i, x_{i + d/2}).
"""
from __future__ import annotations

import math

import torch
from torch import nn

ROPE_LAYOUTS = ("interleaved", "half")
ROPE_SCALINGS = ("none", "linear", "ntk")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_even_dim(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 2:
        raise ValueError(f"{name} must be a positive even integer (sin/cos come in pairs), got {value!r}")


def _check_base(base) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 0 or not math.isfinite(base):
        raise ValueError(f"base must be a positive finite number, got {base!r}")


# ----------------------------------------------------------------------------------------------------------------
# Absolute positions
# ----------------------------------------------------------------------------------------------------------------

def sinusoidal_frequencies(dim: int, base: float = 10000.0) -> torch.Tensor:
    """omega_i = 1 / base^(2i/dim) for i = 0 .. dim/2 - 1, float64 (radians per position)."""
    _check_even_dim("dim", dim)
    _check_base(base)
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def sinusoidal_encoding(n_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The Transformer paper's table: PE[p, 2i] = sin(p * omega_i), PE[p, 2i+1] = cos(p * omega_i).

    Returns float32 of shape [n_positions, dim]; computed in float64 so large positions stay accurate.
    """
    _check_positive_int("n_positions", n_positions)
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * sinusoidal_frequencies(dim, base)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2).float()


def sinusoidal_offset_matrix(offset: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed matrix M_k with PE[p + k] = PE[p] @ M_k for every position p (row vectors).

    It is block-diagonal: one 2x2 rotation by angle k * omega_i per (sin, cos) pair. Float64, shape [dim, dim].
    """
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ValueError(f"offset must be an integer, got {offset!r}")
    angles = offset * sinusoidal_frequencies(dim, base)
    matrix = torch.zeros(dim, dim, dtype=torch.float64)
    rows = torch.arange(0, dim, 2)
    matrix[rows, rows] = angles.cos()          # sin(a+b) = sin a cos b + cos a sin b
    matrix[rows + 1, rows] = angles.sin()
    matrix[rows, rows + 1] = -angles.sin()     # cos(a+b) = cos a cos b - sin a sin b
    matrix[rows + 1, rows + 1] = angles.cos()
    return matrix


class LearnedPositionEmbedding(nn.Module):
    """One trainable vector per absolute position 0 .. max_len - 1 (as in BERT and GPT-2).

    Positions at or past ``max_len`` have no vector at all: asking for one raises a ValueError.
    """

    def __init__(self, max_len: int, dim: int, init_std: float = 0.02):
        super().__init__()
        _check_positive_int("max_len", max_len)
        _check_positive_int("dim", dim)
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std!r}")
        self.table = nn.Embedding(max_len, dim)
        nn.init.normal_(self.table.weight, std=init_std)

    @property
    def max_len(self) -> int:
        return self.table.num_embeddings

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Vectors for integer ``positions`` (any shape) -> ``positions.shape + (dim,)``."""
        positions = torch.as_tensor(positions, device=self.table.weight.device)
        if positions.numel() and (positions.min() < 0 or positions.max() >= self.max_len):
            raise ValueError(f"learned embeddings exist for positions 0..{self.max_len - 1}, "
                             f"got positions in [{int(positions.min())}, {int(positions.max())}]")
        return self.table(positions.long())


# ----------------------------------------------------------------------------------------------------------------
# Relative positions
# ----------------------------------------------------------------------------------------------------------------

def relative_distances(q_len: int, k_len: int) -> torch.Tensor:
    """Matrix of key position minus query position, shape [q_len, k_len], int64.

    Queries are the last ``q_len`` of the ``k_len`` positions (so the matrix also fits a KV cache).
    """
    _check_positive_int("q_len", q_len)
    _check_positive_int("k_len", k_len)
    if q_len > k_len:
        raise ValueError(f"q_len={q_len} cannot exceed k_len={k_len}")
    query_positions = torch.arange(k_len - q_len, k_len)
    return torch.arange(k_len)[None, :] - query_positions[:, None]


def shaw_clipped_indices(q_len: int, k_len: int, max_distance: int) -> torch.Tensor:
    """Shaw et al. (2018): distance j - i clipped to [-K, K] and shifted to an index in [0, 2K], int64 [q_len, k_len].

    Each index selects one learned vector (or, in a bias variant, one learned scalar); beyond K all distances share one.
    """
    _check_positive_int("max_distance", max_distance)
    return relative_distances(q_len, k_len).clamp(-max_distance, max_distance) + max_distance


def t5_relative_buckets(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
                        max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of each relative position (key minus query), int64 of the same shape.

    Half of the buckets (all of them when ``bidirectional`` is False, where keys after the query share bucket 0) hold
    exact small distances; the rest cover distances up to ``max_distance`` on a log scale; farther ones share the last.
    With ``bidirectional`` the upper half of the buckets is for keys after the query.
    """
    _check_positive_int("num_buckets", num_buckets)
    _check_positive_int("max_distance", max_distance)
    exact_count = (num_buckets // 2 if bidirectional else num_buckets) // 2
    if exact_count < 1:
        raise ValueError(f"num_buckets={num_buckets} is too small: need at least {4 if bidirectional else 2}")
    if max_distance <= exact_count:
        raise ValueError(f"max_distance={max_distance} must exceed the {exact_count} exact buckets")
    relative_position = torch.as_tensor(relative_position).long()
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        per_side = num_buckets // 2
        buckets += (relative_position > 0).long() * per_side
        distance = relative_position.abs()
    else:
        per_side = num_buckets
        distance = (-relative_position).clamp(min=0)
    log_ratio = torch.log(distance.clamp(min=1).double() / exact_count) / math.log(max_distance / exact_count)
    far = exact_count + (log_ratio * (per_side - exact_count)).floor().long()
    far = far.clamp(max=per_side - 1)
    return buckets + torch.where(distance < exact_count, distance, far)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's fixed per-head slopes, float64 [n_heads] (Press et al., 2022, reference code).

    For a power of two n: a geometric sequence starting at and with ratio 2^(-8/n) (8 heads: 1/2, 1/4, ..., 1/256).
    Otherwise: the slopes of the largest power of two p < n, then every other slope of 2p, the first n - p of them.
    """
    _check_positive_int("n_heads", n_heads)
    power = 2 ** math.floor(math.log2(n_heads))
    start = 2.0 ** (-8.0 / power)
    slopes = [start ** (i + 1) for i in range(power)]
    if power < n_heads:
        slopes += alibi_slopes(2 * power)[0::2][: n_heads - power].tolist()
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_bias(n_heads: int, q_len: int, k_len: int) -> torch.Tensor:
    """Attention bias -slope_h * |i - j|, float32 [n_heads, q_len, k_len], added to the scores before softmax.

    In a causal model only keys j <= i survive the mask, so the bias is a linear penalty on how far back a key lies.
    """
    distance = relative_distances(q_len, k_len).abs().double()
    return (0.0 - alibi_slopes(n_heads)[:, None, None] * distance).float()  # 0.0 - ...: no "-0.0" on the diagonal


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


def _as_complex(pairs: torch.Tensor) -> torch.Tensor:
    """View [..., 2] real pairs as complex numbers, copying first when the memory layout does not allow a view."""
    strides_even = all(stride % 2 == 0 for stride in pairs.stride()[:-1]) and pairs.storage_offset() % 2 == 0
    if pairs.stride(-1) != 1 or not strides_even:
        pairs = pairs.clone(memory_format=torch.contiguous_format)
    return torch.view_as_complex(pairs)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "interleaved",
               rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate each pair of dimensions of ``x`` (last dim = head_dim) by the angles given as cos/sin.

    ``cos`` and ``sin`` have last dimension head_dim // 2 and broadcast against ``x``'s leading dims.
    ``rotation``: optionally ``torch.complex(cos, sin)`` computed once by the caller, so that a model reuses one
    tensor in every layer (used for float32/float64 ``x`` in the interleaved layout, ignored otherwise).
    """
    _check_layout(layout)
    if x.shape[-1] % 2 or cos.shape[-1] * 2 != x.shape[-1]:
        raise ValueError(f"x has last dim {x.shape[-1]} but cos/sin have {cos.shape[-1]}: "
                         f"expected half of an even head_dim")
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if layout == "interleaved":
        pairs = x.unflatten(-1, (-1, 2))
        if x.dtype in (torch.float32, torch.float64):
            # Pair (a, b) read as the complex number a + ib: the rotation is one product with cos + i sin.
            # The same numbers as the real form below, in fewer operations (it runs in every layer of every step).
            rotated = _as_complex(pairs) * (torch.complex(cos, sin) if rotation is None else rotation)
            return torch.view_as_real(rotated).flatten(-2)
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


# ----------------------------------------------------------------------------------------------------------------
# RoPE analysis and scaling past the trained length
# ----------------------------------------------------------------------------------------------------------------

def rope_wavelengths(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """Positions needed for pair i to turn a full circle: 2 pi / theta_i, float64 [head_dim // 2]."""
    return 2 * math.pi / rope_inverse_frequencies(head_dim, base)


def _check_scaling(scaling: str, factor) -> None:
    if scaling not in ROPE_SCALINGS:
        raise ValueError(f"unknown RoPE scaling {scaling!r}; allowed: {ROPE_SCALINGS}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1 or not math.isfinite(factor):
        raise ValueError(f"scaling factor must be a finite number >= 1 (new length / trained length), got {factor!r}")


def ntk_scaled_base(base: float, head_dim: int, factor: float) -> float:
    """NTK-aware base change: base * factor^(d / (d - 2)).

    The fastest pair (i = 0) keeps its frequency; the slowest (i = d/2 - 1) turns exactly ``factor`` times slower,
    like position interpolation; the pairs in between are stretched by geometrically growing amounts.
    """
    _check_base(base)
    _check_even_dim("head_dim", head_dim)
    if head_dim < 4:
        raise ValueError(f"NTK scaling needs head_dim >= 4 (the exponent is d / (d - 2)), got {head_dim}")
    _check_scaling("ntk", factor)
    return float(base) * float(factor) ** (head_dim / (head_dim - 2))


def scaled_rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0, scaling: str = "none",
                       factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin like ``rope_angles``, optionally scaled to run a model ``factor`` times past its trained length.

    ``"linear"``: position interpolation, positions m -> m / factor (every pair turns ``factor`` times slower).
    ``"ntk"``: positions unchanged, base -> ``ntk_scaled_base(base, head_dim, factor)``.
    ``"none"``: plain RoPE (``factor`` is ignored but still validated).
    """
    _check_scaling(scaling, factor)
    positions = torch.as_tensor(positions)
    if scaling == "linear":
        return rope_angles(positions.to(torch.float64) / factor, head_dim, base)
    if scaling == "ntk":
        return rope_angles(positions, head_dim, ntk_scaled_base(base, head_dim, factor))
    return rope_angles(positions, head_dim, base)
