"""Absolute and relative position schemes of lesson 05 (RoPE, the course model's scheme, is in ``rope.py``).

Absolute schemes: the sinusoidal encoding of "Attention Is All You Need" (Vaswani et al., 2017) with the offset
matrix that maps PE[p] to PE[p + k], and learned position embeddings.
Relative schemes: Shaw et al. (2018) clipped distances, T5 relative buckets (Raffel et al., 2020) and ALiBi slopes
and biases (Press et al., 2022).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .validation import check_bool, check_int, check_real

PAIRS = "sin/cos come in pairs"  # why a dimension must be even


# ----------------------------------------------------------------------------------------------------------------
# Absolute positions
# ----------------------------------------------------------------------------------------------------------------

def sinusoidal_frequencies(dim: int, base: float = 10000.0) -> torch.Tensor:
    """omega_i = 1 / base^(2i/dim) for i = 0 .. dim/2 - 1, float64 (radians per position)."""
    dim = check_int("dim", dim, minimum=2, multiple_of=2, hint=PAIRS)
    base = check_real("base", base, low=0, low_open=True)
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def sinusoidal_encoding(n_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The Transformer paper's table: PE[p, 2i] = sin(p * omega_i), PE[p, 2i+1] = cos(p * omega_i).

    Returns float32 of shape [n_positions, dim]; computed in float64 so large positions stay accurate.
    """
    n_positions = check_int("n_positions", n_positions, minimum=1)
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * sinusoidal_frequencies(dim, base)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2).float()


def sinusoidal_offset_matrix(offset: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed matrix M_k with PE[p + k] = PE[p] @ M_k for every position p (row vectors).

    It is block-diagonal: one 2x2 rotation by angle k * omega_i per (sin, cos) pair. Float64, shape [dim, dim].
    """
    offset = check_int("offset", offset)
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
        max_len = check_int("max_len", max_len, minimum=1)
        dim = check_int("dim", dim, minimum=1)
        init_std = check_real("init_std", init_std, low=0, low_open=True)
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
    k_len = check_int("k_len", k_len, minimum=1)
    q_len = check_int("q_len", q_len, minimum=1, maximum=k_len, hint="the queries are the last of the k_len positions")
    query_positions = torch.arange(k_len - q_len, k_len)
    return torch.arange(k_len)[None, :] - query_positions[:, None]


def shaw_clipped_indices(q_len: int, k_len: int, max_distance: int) -> torch.Tensor:
    """Shaw et al. (2018): distance j - i clipped to [-K, K] and shifted to an index in [0, 2K], int64 [q_len, k_len].

    Each index selects one learned vector (or, in a bias variant, one learned scalar); beyond K all distances share one.
    """
    max_distance = check_int("max_distance", max_distance, minimum=1)
    return relative_distances(q_len, k_len).clamp(-max_distance, max_distance) + max_distance


def t5_relative_buckets(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
                        max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of each relative position (key minus query), int64 of the same shape.

    Half of the buckets (all of them when ``bidirectional`` is False, where keys after the query share bucket 0) hold
    exact small distances; the rest cover distances up to ``max_distance`` on a log scale; farther ones share the last.
    With ``bidirectional`` the upper half of the buckets is for keys after the query.
    """
    bidirectional = check_bool("bidirectional", bidirectional)
    num_buckets = check_int("num_buckets", num_buckets, minimum=4 if bidirectional else 2,
                            hint="at least one exact and one log-scale bucket per direction")
    exact_count = (num_buckets // 2 if bidirectional else num_buckets) // 2
    max_distance = check_int("max_distance", max_distance, minimum=exact_count + 1,
                             hint=f"it must exceed the {exact_count} exact buckets")
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
    n_heads = check_int("n_heads", n_heads, minimum=1)
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
