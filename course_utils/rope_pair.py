"""One query pair and one key pair of a RoPE head, rotated by their positions: the state the RoPE widget shows.

Pure and testable without a browser; ``course_utils.widgets.rope`` wires sliders to it and to the figure in
``plots.positional.rope_pair_figure`` (lesson 06).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .rope import apply_rope, rope_angles, rope_inverse_frequencies
from .validation import check_int, check_real


@dataclass(frozen=True)
class PairRotation:
    """What the widget shows for one setting of the sliders."""

    theta: float            # radians per position of this pair
    q_angle: float          # m * theta, wrapped to [-pi, pi]
    k_angle: float          # n * theta, wrapped to [-pi, pi]
    q_rotated: torch.Tensor  # the rotated query pair, shape [2]
    k_rotated: torch.Tensor  # the rotated key pair, shape [2]
    dot: float              # q_rotated . k_rotated: depends on m - n only

    def caption(self, query_position: int, key_position: int, pair_index: int) -> str:
        """One line of text for the widget."""
        return (f"pair {pair_index}: theta = {self.theta:.4g} rad/pos | m = {query_position}, n = {key_position}, "
                f"m - n = {query_position - key_position} | q.k = {self.dot:+.4f}")


def pair_rotation_state(q_pair, k_pair, query_position: int, key_position: int, pair_index: int,
                        head_dim: int = 64, base: float = 100000.0) -> PairRotation:
    """Rotate a 2-D query pair by m * theta_i and a key pair by n * theta_i (pair i of a RoPE head)."""
    q_pair, k_pair = torch.as_tensor(q_pair, dtype=torch.float64), torch.as_tensor(k_pair, dtype=torch.float64)
    if q_pair.shape != (2,) or k_pair.shape != (2,):
        raise ValueError(f"q_pair and k_pair must hold 2 numbers, got shapes {tuple(q_pair.shape)} and "
                         f"{tuple(k_pair.shape)}")
    if not (torch.isfinite(q_pair).all() and torch.isfinite(k_pair).all()):
        raise ValueError(f"q_pair and k_pair must hold finite numbers, got {q_pair.tolist()} and {k_pair.tolist()}")
    head_dim = check_int("head_dim", head_dim, minimum=2)
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (RoPE rotates pairs), got {head_dim}")
    check_int("pair_index", pair_index, minimum=0, maximum=head_dim // 2 - 1, hint=f"head_dim={head_dim}")
    check_int("query_position", query_position, minimum=0)
    check_int("key_position", key_position, minimum=0)
    check_real("base", base, low=0, low_open=True)
    theta = float(rope_inverse_frequencies(head_dim, base)[pair_index])
    positions = torch.tensor([query_position, key_position])
    cos, sin = rope_angles(positions, head_dim, base)  # validates positions (non-negative)
    pick = slice(pair_index, pair_index + 1)
    q_rotated = apply_rope(q_pair.float(), cos[0, pick], sin[0, pick]).double()
    k_rotated = apply_rope(k_pair.float(), cos[1, pick], sin[1, pick]).double()
    return PairRotation(theta=theta, q_angle=math.remainder(query_position * theta, 2 * math.pi),
                        k_angle=math.remainder(key_position * theta, 2 * math.pi), q_rotated=q_rotated,
                        k_rotated=k_rotated, dot=float(q_rotated @ k_rotated))
