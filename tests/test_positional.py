"""Tests of course_utils.positional and course_utils.rope (and the pure logic of the RoPE widget)."""
from __future__ import annotations

import math

import pytest
import torch

from course_utils.config import ModelConfig
from course_utils.model import LlamaModel
from course_utils.positional import (
    LearnedPositionEmbedding,
    alibi_bias,
    alibi_slopes,
    relative_distances,
    shaw_clipped_indices,
    sinusoidal_encoding,
    sinusoidal_offset_matrix,
    t5_relative_buckets,
)
from course_utils.rope import (
    apply_rope,
    interleaved_to_half_order,
    ntk_scaled_base,
    permute_qk_rows,
    rope_angles,
    rope_inverse_frequencies,
    rope_wavelengths,
    scaled_rope_angles,
)
from course_utils.rope_pair import pair_rotation_state

# ---- sinusoidal -------------------------------------------------------------------------------------------------

def test_sinusoidal_matches_the_formula_elementwise():
    dim, base = 12, 10000.0
    table = sinusoidal_encoding(40, dim, base)
    for pos in (0, 1, 7, 39):
        for i in range(dim // 2):
            angle = pos / base ** (2 * i / dim)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("offset", [1, 5, 37])
def test_fixed_offset_is_a_linear_map(offset):
    table = sinusoidal_encoding(200, 32).double()
    matrix = sinusoidal_offset_matrix(offset, 32)
    assert torch.allclose(table[:-offset] @ matrix, table[offset:], atol=1e-5)
    assert not torch.allclose(table[:-offset], table[offset:], atol=1e-2)  # the map really moves the vectors


def test_offset_matrix_is_orthogonal_and_composes():
    m3, m4, m7 = (sinusoidal_offset_matrix(k, 16) for k in (3, 4, 7))
    assert torch.allclose(m3 @ m3.T, torch.eye(16, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(m3 @ m4, m7, atol=1e-12)


def test_learned_embedding_refuses_positions_past_its_table():
    table = LearnedPositionEmbedding(8, 4)
    assert table(torch.arange(8)).shape == (8, 4)
    with pytest.raises(ValueError, match="0..7"):
        table(torch.arange(9))
    with pytest.raises(ValueError):
        table(torch.tensor([-1]))


# ---- relative schemes -------------------------------------------------------------------------------------------

def test_relative_distances_and_shaw_clipping():
    assert relative_distances(3, 3).tolist() == [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]]
    assert relative_distances(1, 4).tolist() == [[-3, -2, -1, 0]]  # the query is the last position
    clipped = shaw_clipped_indices(5, 5, max_distance=2)
    assert clipped[4].tolist() == [0, 0, 0, 1, 2]  # distances -4 -3 -2 -1 0 -> clip to [-2, 2] -> shift by 2
    assert clipped.min() == 0 and clipped.max() == 4


def test_t5_buckets_at_chosen_distances():
    # bidirectional, 32 buckets, max_distance 128: 16 per side, 8 exact, then log-spaced up to 128.
    distances = torch.tensor([0, -3, 3, -7, -8, -16, -20, -50, -100, -128, -1000, 20])
    expected = [0, 3, 16 + 3, 7, 8, 10, 10, 13, 15, 15, 15, 16 + 10]
    # e.g. -20: 8 + floor(ln(20/8) / ln(128/8) * 8) = 8 + floor(2.64) = 10
    assert t5_relative_buckets(distances).tolist() == expected
    # unidirectional (decoder): keys after the query share bucket 0; 16 exact buckets.
    one_way = t5_relative_buckets(torch.tensor([5, 0, -3, -15, -16, -20, -1000]), bidirectional=False)
    assert one_way.tolist() == [0, 0, 3, 15, 16, 17, 31]


def test_alibi_slopes_for_eight_heads():
    assert torch.allclose(alibi_slopes(8), torch.tensor([1 / 2 ** k for k in range(1, 9)], dtype=torch.float64))


def test_alibi_slopes_for_twelve_heads_follow_the_paper_recipe():
    # 8 slopes of the power of two below, then every other slope of 16 heads (2^-0.5, 2^-1.5, ...), the first 4.
    expected = [2.0 ** -k for k in range(1, 9)] + [2.0 ** -0.5, 2.0 ** -1.5, 2.0 ** -2.5, 2.0 ** -3.5]
    assert torch.allclose(alibi_slopes(12), torch.tensor(expected, dtype=torch.float64))


def test_alibi_bias_is_a_linear_distance_penalty():
    bias = alibi_bias(8, 4, 4)
    assert bias.shape == (8, 4, 4)
    assert bias[0, 3].tolist() == [-1.5, -1.0, -0.5, 0.0]  # slope 1/2 times distance 3, 2, 1, 0
    assert torch.all(bias.diagonal(dim1=1, dim2=2) == 0)


# ---- RoPE ---------------------------------------------------------------------------------------------------

def _rotated_dot(q, k, m, n, head_dim, base, layout):
    cos, sin = rope_angles(torch.tensor([m, n]), head_dim, base)
    return (apply_rope(q, cos[0], sin[0], layout) * apply_rope(k, cos[1], sin[1], layout)).sum(-1)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_rope_score_depends_only_on_the_offset(layout):
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 64, generator=generator, dtype=torch.float64).float()
    for _ in range(30):
        m, n = torch.randint(0, 2000, (2,), generator=generator).tolist()
        shift = int(torch.randint(0, 5000, (1,), generator=generator))
        reference = _rotated_dot(q, k, m, n, 64, 100000.0, layout)
        shifted = _rotated_dot(q, k, m + shift, n + shift, 64, 100000.0, layout)
        assert shifted.item() == pytest.approx(reference.item(), abs=2e-4)
    # and the score does change with the offset, so the test can fail
    assert abs(_rotated_dot(q, k, 10, 0, 64, 100000.0, layout) - _rotated_dot(q, k, 0, 0, 64, 100000.0, layout)) > 1e-2


def test_rope_layouts_agree_on_permuted_vectors():
    x = torch.randn(3, 5, 16)
    cos, sin = rope_angles(torch.arange(5), 16)
    order = interleaved_to_half_order(16)
    rotate_then_reorder = apply_rope(x, cos, sin, "interleaved")[..., order]
    assert torch.allclose(rotate_then_reorder, apply_rope(x[..., order], cos, sin, "half"), atol=1e-6)


def test_permute_qk_rows_round_trip():
    weight = torch.randn(4 * 8, 10)
    half = permute_qk_rows(weight, 4, to_layout="half")
    assert not torch.equal(half, weight)
    assert torch.equal(permute_qk_rows(half, 4, to_layout="interleaved"), weight)


def _half_layout_copy(model: LlamaModel) -> LlamaModel:
    config = ModelConfig(**{**model.config.to_dict(), "rope_layout": "half"})
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("q_proj.weight"):
            tensor = permute_qk_rows(tensor, config.n_heads, to_layout="half")
        elif name.endswith("k_proj.weight"):
            tensor = permute_qk_rows(tensor, config.n_kv_heads, to_layout="half")
        state[name] = tensor
    with torch.device("meta"):  # no time spent on random initialisation: every weight is assigned below
        copy = LlamaModel(config)
    copy.load_state_dict(state, assign=True)
    copy.tie_weights()
    return copy.eval()


def test_layouts_are_one_function_on_random_weights(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tiny_model(ids)
        assert torch.allclose(_half_layout_copy(tiny_model)(ids), expected, atol=1e-5)
        # switching the layout WITHOUT permuting the rows gives a different function
        unpermuted = LlamaModel(ModelConfig(**{**tiny_model.config.to_dict(), "rope_layout": "half"})).eval()
        unpermuted.load_state_dict(tiny_model.state_dict())
        assert (unpermuted(ids) - expected).abs().max() > 1e-3


def test_layouts_are_one_function_on_the_real_model(course_model):
    model, tokenizer = course_model
    ids = torch.tensor([tokenizer.encode("Rotary embeddings turn queries and keys by an angle per position.")])
    with torch.no_grad():
        expected = model(ids)
        difference = (_half_layout_copy(model)(ids) - expected).abs().max().item()
    # float32 rounding only: the two layouts sum the same products in another order (the fast path's fused kernels
    # reorder them per machine), so the bound scales with the logits, as in the fast-path tests
    assert difference <= 1e-5 * expected.abs().max().item()


def test_rope_wavelengths_of_the_course_model():
    wavelengths = rope_wavelengths(64, 100000.0)
    assert wavelengths[0].item() == pytest.approx(2 * math.pi)
    assert wavelengths[-1].item() == pytest.approx(2 * math.pi * 100000.0 ** (62 / 64))


# ---- RoPE scaling -----------------------------------------------------------------------------------------------

def test_linear_scaling_divides_positions():
    positions = torch.arange(0, 64)
    cos, sin = scaled_rope_angles(positions, 16, 10000.0, "linear", 4.0)
    cos_ref, sin_ref = rope_angles(positions / 4, 16, 10000.0)
    assert torch.allclose(cos, cos_ref) and torch.allclose(sin, sin_ref)
    assert not torch.allclose(cos, rope_angles(positions, 16, 10000.0)[0])


def test_ntk_base_formula_and_its_effect_on_the_frequencies():
    assert ntk_scaled_base(10000.0, 64, 4.0) == pytest.approx(10000.0 * 4.0 ** (64 / 62))
    plain = rope_inverse_frequencies(64, 10000.0)
    scaled = rope_inverse_frequencies(64, ntk_scaled_base(10000.0, 64, 4.0))
    assert scaled[0].item() == pytest.approx(plain[0].item())            # fastest pair unchanged
    assert scaled[-1].item() == pytest.approx(plain[-1].item() / 4.0)    # slowest pair: like interpolation
    assert torch.all(scaled[1:] < plain[1:])
    cos, _ = scaled_rope_angles(torch.arange(10), 64, 10000.0, "ntk", 4.0)
    assert torch.allclose(cos, rope_angles(torch.arange(10), 64, ntk_scaled_base(10000.0, 64, 4.0))[0])


def test_no_scaling_and_factor_one_change_nothing():
    positions = torch.arange(50)
    plain = rope_angles(positions, 32, 500.0)
    for scaling in ("none", "linear", "ntk"):
        scaled = scaled_rope_angles(positions, 32, 500.0, scaling, 1.0)
        assert torch.allclose(scaled[0], plain[0], atol=1e-6) and torch.allclose(scaled[1], plain[1], atol=1e-6)


# ---- bad arguments ----------------------------------------------------------------------------------------------

EVEN_HEAD = r"head_dim must be an even integer >= 2 \(RoPE rotates pairs of dimensions\)"
EVEN_DIM = r"dim must be an even integer >= 2 \(sin/cos come in pairs\)"


@pytest.mark.parametrize("call, error, message", [
    # rope.py
    (lambda: rope_inverse_frequencies(63), ValueError, EVEN_HEAD + ", got 63"),
    (lambda: rope_inverse_frequencies(64.0), TypeError, EVEN_HEAD + r", got 64\.0"),
    (lambda: rope_angles(torch.arange(4), 15), ValueError, EVEN_HEAD + ", got 15"),
    (lambda: apply_rope(torch.ones(2, 7), torch.ones(2, 3), torch.ones(2, 3)), ValueError, "even"),
    (lambda: rope_inverse_frequencies(64, base=0.0), ValueError, r"base must be a finite number > 0, got 0\.0"),
    (lambda: rope_inverse_frequencies(64, base=-10.0), ValueError, r"base must be a finite number > 0, got -10\.0"),
    (lambda: rope_inverse_frequencies(64, base="1e4"), TypeError, r"base must be a finite number > 0, got '1e4'"),
    (lambda: rope_angles(torch.tensor([3, -1]), 64), ValueError, "non-negative"),
    (lambda: apply_rope(torch.ones(2, 8), torch.ones(2, 4), torch.ones(2, 4), "rotate_half"), ValueError,
     "layout must be one of 'interleaved', 'half', got 'rotate_half'"),
    (lambda: apply_rope(torch.ones(2, 8), torch.ones(2, 4), torch.ones(2, 4), None), TypeError,
     "layout must be one of 'interleaved', 'half', got None"),
    (lambda: interleaved_to_half_order(0), ValueError, EVEN_HEAD + ", got 0"),
    (lambda: permute_qk_rows(torch.ones(10, 3), 3, "half"), ValueError, "multiple"),
    (lambda: permute_qk_rows(torch.ones(10, 3), 0, "half"), ValueError, "n_heads must be an integer >= 1, got 0"),
    (lambda: permute_qk_rows(torch.ones(10, 3), 2.0, "half"), TypeError, r"n_heads must be an integer >= 1, got 2\.0"),
    (lambda: permute_qk_rows(torch.ones(10, 3), 2, "spiral"), ValueError, "to_layout must be one of"),
    (lambda: scaled_rope_angles(torch.arange(4), 8, 10000.0, "yarn", 2.0), ValueError,
     "scaling must be one of 'none', 'linear', 'ntk', got 'yarn'"),
    (lambda: scaled_rope_angles(torch.arange(4), 8, 10000.0, "linear", 0.5), ValueError,
     r"factor must be a finite number >= 1 \(new length / trained length\), got 0\.5"),
    (lambda: scaled_rope_angles(torch.arange(4), 8, 10000.0, "linear", "2"), TypeError, "factor must be .*got '2'"),
    (lambda: ntk_scaled_base(10000.0, 2, 2.0), ValueError, r"head_dim must be an even integer >= 4 .*got 2"),
    (lambda: ntk_scaled_base(10000.0, 6.0, 2.0), TypeError, r"head_dim must be an even integer >= 4 .*got 6\.0"),
    # positional.py
    (lambda: sinusoidal_encoding(10, 7), ValueError, EVEN_DIM + ", got 7"),
    (lambda: sinusoidal_encoding(10, True), TypeError, EVEN_DIM + ", got True"),
    (lambda: sinusoidal_encoding(0, 8), ValueError, "n_positions must be an integer >= 1, got 0"),
    (lambda: sinusoidal_encoding(2.5, 8), TypeError, r"n_positions must be an integer >= 1, got 2\.5"),
    (lambda: sinusoidal_encoding(10, 8, base=0), ValueError, "base must be a finite number > 0, got 0"),
    (lambda: sinusoidal_encoding(10, 8, base=math.inf), ValueError, "base must be a finite number > 0, got inf"),
    (lambda: sinusoidal_encoding(10, 8, base=None), TypeError, "base must be a finite number > 0, got None"),
    (lambda: sinusoidal_offset_matrix(1.5, 8), TypeError, r"offset must be an integer, got 1\.5"),
    (lambda: LearnedPositionEmbedding(0, 8), ValueError, "max_len must be an integer >= 1, got 0"),
    (lambda: LearnedPositionEmbedding(8, "8"), TypeError, "dim must be an integer >= 1, got '8'"),
    (lambda: LearnedPositionEmbedding(8, 8, init_std=0.0), ValueError, r"init_std must be a finite number > 0"),
    (lambda: alibi_slopes(0), ValueError, "n_heads must be an integer >= 1, got 0"),
    (lambda: alibi_slopes(8.0), TypeError, r"n_heads must be an integer >= 1, got 8\.0"),
    (lambda: relative_distances(5, 3), ValueError,
     r"q_len must be an integer in \[1, 3\] \(the queries are the last of the k_len positions\), got 5"),
    (lambda: relative_distances(2, None), TypeError, "k_len must be an integer >= 1, got None"),
    (lambda: shaw_clipped_indices(3, 3, 0), ValueError, "max_distance must be an integer >= 1, got 0"),
    (lambda: t5_relative_buckets(torch.tensor([1]), num_buckets=2), ValueError,
     r"num_buckets must be an integer >= 4 \(at least one exact and one log-scale bucket per direction\), got 2"),
    (lambda: t5_relative_buckets(torch.tensor([1]), bidirectional=False, num_buckets=1), ValueError,
     "num_buckets must be an integer >= 2 .*got 1"),
    (lambda: t5_relative_buckets(torch.tensor([1]), bidirectional=1), TypeError,
     "bidirectional must be True or False, got 1"),
    (lambda: t5_relative_buckets(torch.tensor([1]), max_distance=4), ValueError,
     r"max_distance must be an integer >= 9 \(it must exceed the 8 exact buckets\), got 4"),
    # the RoPE widget's numbers
    (lambda: pair_rotation_state((1, 0), (0, 1), 1, 1, pair_index=32, head_dim=64), ValueError, r"\[0, 31\]"),
    (lambda: pair_rotation_state((1, 0), (0, 1), -1, 1, pair_index=0), ValueError,
     "query_position must be an integer >= 0"),
])
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message) as caught:
        call()
    assert caught.type is error  # a TypeError is not a ValueError, nor the reverse


# ---- the widget's pure logic ------------------------------------------------------------------------------------

def test_widget_state_rotates_and_keeps_the_dot_product_for_equal_offsets():
    first = pair_rotation_state((1.0, 0.2), (0.7, -0.6), 5, 2, pair_index=0, head_dim=64, base=100000.0)
    later = pair_rotation_state((1.0, 0.2), (0.7, -0.6), 45, 42, pair_index=0, head_dim=64, base=100000.0)
    assert first.theta == pytest.approx(1.0)
    assert first.q_angle == pytest.approx(5.0 - 2 * math.pi)  # wrapped into [-pi, pi]
    assert torch.allclose(first.q_rotated.norm(), torch.tensor(1.0 ** 2 + 0.2 ** 2, dtype=torch.float64).sqrt())
    assert later.dot == pytest.approx(first.dot, abs=1e-5)
    assert not torch.allclose(later.q_rotated, first.q_rotated)
    assert "m - n = 3" in first.caption(5, 2, 0)


def _rope_by_rotation_matrices(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """RoFormer's definition: block-diagonal 2x2 rotations R(m * theta_i) applied to adjacent pairs, in float64."""
    half = x.shape[-1] // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / x.shape[-1])
    out = torch.empty_like(x, dtype=torch.float64)
    for t, m in enumerate(positions.tolist()):
        for i in range(half):
            c, s = math.cos(m * theta[i]), math.sin(m * theta[i])
            rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
            out[..., t, 2 * i:2 * i + 2] = x[..., t, 2 * i:2 * i + 2].double() @ rotation.T
    return out


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-6), (torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
def test_interleaved_rope_is_roformers_rotation_in_every_dtype(dtype, tolerance):
    """The pairwise formula equals RoFormer's block-diagonal rotation matrix in every dtype."""
    positions = torch.tensor([0, 1, 7, 300])
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dtype)
    cos, sin = rope_angles(positions, 8, 10000.0)
    expected = _rope_by_rotation_matrices(x, positions, 10000.0)
    torch.testing.assert_close(apply_rope(x, cos, sin).double(), expected, rtol=0, atol=tolerance)


def test_interleaved_rope_accepts_any_memory_layout():
    wide = torch.randn(3, 4, 9)
    x = wide[..., 1:]  # an odd storage offset and non-contiguous rows
    cos, sin = rope_angles(torch.arange(4), 8)
    torch.testing.assert_close(apply_rope(x, cos, sin), apply_rope(x.contiguous(), cos, sin))
    torch.testing.assert_close(apply_rope(x.transpose(0, 1), cos[:, None], sin[:, None]),
                               apply_rope(x, cos, sin).transpose(0, 1))
