"""The decoder: KV cache == full forward, padding, tied weights, input validation, the real model's answers."""
import pytest
import torch

from course_utils import ModelConfig
from course_utils.model import (
    RMSNorm,
    RopeTables,
    apply_rotary,
    attention,
    causal_mask,
    repeat_kv,
)
from course_utils.rope import apply_rope, rope_angles


def test_kv_cache_matches_full_forward_tiny(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = tiny_model(ids)
        cache = tiny_model.new_cache(2, 20)
        pieces = [tiny_model(ids[:, :7], cache=cache)]
        pieces += [tiny_model(ids[:, t:t + 1], cache=cache) for t in range(7, 12)]
        pieces.append(tiny_model(ids[:, 12:], cache=cache))  # a multi-token chunk after a filled cache
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=0)


def test_left_padding_gives_the_same_logits_as_no_padding(tiny_model):
    ids = torch.randint(1, tiny_model.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(2))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 4), torch.ones(1, 9)], 1)
    with torch.no_grad():
        plain = tiny_model(ids)
        with_pad = tiny_model(padded, attention_mask=mask)
        cache = tiny_model.new_cache(1, 15)
        tiny_model(padded, cache=cache, attention_mask=mask)
        step = tiny_model(torch.tensor([[5]]), cache=cache, attention_mask=torch.cat([mask, torch.ones(1, 1)], 1))
        reference = tiny_model(torch.cat([ids, torch.tensor([[5]])], 1))
    assert torch.isfinite(with_pad).all()
    torch.testing.assert_close(with_pad[:, 4:], plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(step[:, -1], reference[:, -1], atol=1e-5, rtol=0)


def test_last_only_returns_the_last_position(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (3, 6))
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(ids, last_only=True), tiny_model(ids)[:, -1:])


def test_output_head_is_tied_to_embeddings(tiny_model):
    assert tiny_model.lm_head.weight is tiny_model.embed_tokens.weight


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(1, 0, dtype=torch.long), "empty input"),
    (torch.tensor([[1, 97]]), r"\[0, 96\]"),
    (torch.tensor([[-1, 3]]), r"\[0, 96\]"),
    (torch.zeros(1, 129, dtype=torch.long), "context length of 128"),
    (torch.zeros(4, dtype=torch.long), "shape"),
])
def test_bad_inputs_raise_clear_errors(tiny_model, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(bad)


@pytest.mark.parametrize("bad", [torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool), [[1, 2]]])
def test_non_integer_ids_raise_type_error(tiny_model, bad):
    with pytest.raises(TypeError, match="integer token ids|torch.Tensor"):
        tiny_model(bad)


def test_id_values_are_checked_when_a_sequence_starts_not_on_every_step(tiny_model, monkeypatch):
    """Reading ids back is a GPU synchronisation: forward does it without cached past only (validate_ids)."""
    calls = []
    original = tiny_model.validate_ids
    monkeypatch.setattr(tiny_model, "validate_ids", lambda ids: calls.append(ids.shape) or original(ids))
    cache = tiny_model.new_cache(1, 8)
    with torch.no_grad():
        tiny_model(torch.tensor([[1, 2, 3]]), cache=cache)
        tiny_model(torch.tensor([[4]]), cache=cache)
        tiny_model(torch.tensor([[5, 6]]), cache=cache)
        tiny_model(torch.tensor([[1, 2]]))
    assert calls == [(1, 3), (1, 2)]
    with pytest.raises(ValueError, match=r"\[0, 96\], got values in \[-2, 200\]"):
        tiny_model.validate_ids(torch.tensor([[-2, 200]]))


def test_rope_angles_check_can_be_skipped():
    with pytest.raises(ValueError, match="non-negative"):
        rope_angles(torch.tensor([-1]), 8)
    rope_angles(torch.tensor([-1]), 8, check=False)  # the model's own positions: no read-back


def test_cache_overflow_and_batch_mismatch_raise(tiny_model):
    cache = tiny_model.new_cache(1, 4)
    with pytest.raises(ValueError, match="KV cache holds 4"):
        tiny_model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch"):
        tiny_model(torch.zeros(2, 2, dtype=torch.long), cache=cache)


_SMALL = dict(vocab_size=10, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=8)


@pytest.mark.parametrize("field, value", [("n_heads", 5), ("n_kv_heads", 3), ("rope_layout", "spiral"), ("dim", 0),
                                          ("norm_eps", 0.0), ("rope_theta", float("inf"))])
def test_invalid_config_raises(field, value):
    with pytest.raises(ValueError, match=field if field != "n_heads" else "divisible"):
        ModelConfig(**{**_SMALL, field: value})


@pytest.mark.parametrize("field, value", [("dim", 32.0), ("n_layers", True), ("norm_eps", "1e-5"),
                                          ("tie_embeddings", 1), ("eos_id", 2.0), ("rope_layout", None),
                                          ("name", None), ("display_name", 3)])
def test_config_of_the_wrong_type_raises_type_error(field, value):
    with pytest.raises(TypeError, match=field):
        ModelConfig(**{**_SMALL, field: value})


@pytest.mark.parametrize("field, value, message", [
    ("dim", 0, "ModelConfig.dim must be an integer >= 1, got 0"),
    ("rope_theta", float("inf"), "ModelConfig.rope_theta must be a finite number > 0, got inf"),
    ("norm_eps", -1e-5, "ModelConfig.norm_eps must be a finite number > 0, got -1e-05"),
    ("rope_layout", "spiral", "ModelConfig.rope_layout must be one of 'interleaved', 'half', got 'spiral'"),
    ("eos_id", 10, r"ModelConfig.eos_id must be an integer in \[0, 9\] \(a token id, or None\), got 10"),
    ("bos_id", -1, r"ModelConfig.bos_id must be an integer in \[0, 9\]"),
    ("name", " ", "ModelConfig.name must be a non-empty string"),
    ("display_name", "", "ModelConfig.display_name must be a non-empty string"),
])
def test_config_messages_name_the_field_and_what_is_allowed(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**_SMALL, field: value})


def test_config_head_dim_must_be_even():
    with pytest.raises(ValueError, match=r"head_dim \(dim / n_heads\) must be an even integer .*got 3"):
        ModelConfig(**{**_SMALL, "dim": 12, "n_heads": 4, "n_kv_heads": 2})


def test_display_name_defaults_to_the_name_and_numpy_integers_become_ints():
    import numpy as np

    config = ModelConfig(**{**_SMALL, "dim": np.int64(32), "name": "tiny"})
    assert config.display_name == "tiny" and type(config.dim) is int
    assert ModelConfig(**{**_SMALL, "display_name": "Tiny!"}).name == "SmolLM2-135M-Instruct"


def test_config_lives_in_its_own_module_and_is_re_exported():
    import course_utils
    import course_utils.config
    import course_utils.model

    assert course_utils.ModelConfig is course_utils.config.ModelConfig is course_utils.model.ModelConfig


def test_real_model_config_matches_smollm2(course_model):
    model, _ = course_model
    c = model.config
    shape = (c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.vocab_size)
    assert shape == (30, 576, 9, 3, 64, 1536, 49152)
    assert c.rope_theta == 100000.0 and c.max_seq_len == 8192 and c.tie_embeddings
    assert abs(c.norm_eps - 1e-5) < 1e-9
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_real_model_kv_cache_equals_full_forward_on_64_tokens(course_model):
    model, tokenizer = course_model
    text = ("The old lighthouse keeper climbed the spiral stairs every evening, counting each step aloud, "
            "because the sea had taught him that small habits keep a person steady when storms arrive. "
            "On the sixty-fourth step he always paused, looked at the dark water below, and whispered the names "
            "of the ships he had guided home across forty winters.")
    ids = torch.tensor([tokenizer.encode(text)[:64]])
    assert ids.shape[1] == 64
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1, 64)
        steps = [model(ids[:, :32], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(32, 64)]
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-4


def test_real_model_answers_paris(course_model):
    model, tokenizer = course_model
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    answer = []
    with torch.no_grad():
        cache = model.new_cache(1, len(ids) + 20)
        logits = model(torch.tensor([ids]), cache=cache, last_only=True)
        for _ in range(20):
            token = int(logits[0, -1].argmax())
            if token == tokenizer.eos_id:
                break
            answer.append(token)
            logits = model(torch.tensor([[token]]), cache=cache)
    assert "Paris" in tokenizer.decode(answer)



# ---- the paper's pieces, each against a reference -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_is_the_formula(dtype):
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 16))
    x = (3 * torch.randn(4, 16, generator=torch.Generator().manual_seed(6))).to(dtype)
    x64 = x.double()
    expected = x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.double()
    with torch.no_grad():
        out = norm(x)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected.to(dtype).double(), rtol=1e-5, atol=1e-5)


def _random_qkv(batch, heads, kv_heads, q_len, k_len, head_dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, head_dim, generator=generator)
    k = torch.randn(batch, kv_heads, k_len, head_dim, generator=generator)
    v = torch.randn(batch, kv_heads, k_len, head_dim, generator=generator)
    return q, k, v


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (6, 2), (3, 1)])
@pytest.mark.parametrize("q_len, k_len", [(5, 5), (1, 7), (3, 9)])
def test_hand_written_attention_equals_sdpa(heads, kv_heads, q_len, k_len):
    q, k, v = _random_qkv(2, heads, kv_heads, q_len, k_len)
    ours = attention(q, k, v)  # causal, queries are the last q_len positions
    if q_len == k_len or q_len == 1:
        reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=q_len > 1, enable_gqa=True)
    else:  # SDPA's is_causal aligns to the top-left: give the offset mask explicitly
        reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(q_len, k_len),
                                                                     enable_gqa=True)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    padding = torch.ones(2, 1, q_len, k_len, dtype=torch.bool)
    padding[0, :, :, :2] = False  # row 0 has two padded keys
    mask = causal_mask(q_len, k_len) & padding
    mask[..., torch.arange(q_len), torch.arange(k_len - q_len, k_len)] = True  # every query sees itself
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(attention(q, k, v, mask), reference, rtol=0, atol=1e-5)


def test_repeat_kv_gives_each_query_head_its_group_key_head():
    x = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32).view(2, 3, 4, 2)
    torch.testing.assert_close(repeat_kv(x, 3), x.repeat_interleave(3, dim=1), rtol=0, atol=0)
    assert repeat_kv(x, 1) is x


def _model_logits(model, ids, mask=None):
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
        cache = model.new_cache(ids.shape[0], ids.shape[1])
        pieces = [model(ids[:, :5], cache=cache, attention_mask=None if mask is None else mask[:, :5])]
        for t in range(5, ids.shape[1] - 3):
            pieces.append(model(ids[:, t:t + 1], cache=cache, attention_mask=None if mask is None else mask[:, :t + 1]))
        pieces.append(model(ids[:, -3:], cache=cache, attention_mask=mask))  # a chunk after a filled cache
    return full, torch.cat(pieces, 1)


@pytest.mark.parametrize("padded", [False, True])
def test_model_with_hand_written_attention_equals_sdpa_with_and_without_cache(tiny_model, padded):
    ids = torch.randint(1, tiny_model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(7))
    mask = None
    if padded:
        mask = torch.ones(2, 12, dtype=torch.long)
        mask[1, :4] = 0
        ids[1, :4] = 0
    sdpa_full, sdpa_cached = _model_logits(tiny_model, ids, mask)
    tiny_model.set_sdpa(False)
    assert not any(block.self_attn.use_sdpa for block in tiny_model.layers)
    manual_full, manual_cached = _model_logits(tiny_model, ids, mask)
    torch.testing.assert_close(manual_full, sdpa_full, rtol=0, atol=1e-5)
    torch.testing.assert_close(manual_cached, sdpa_cached, rtol=0, atol=1e-5)
    torch.testing.assert_close(manual_cached, manual_full, rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="bool"):
        tiny_model.set_sdpa(1)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_apply_rotary_equals_positional_apply_rope(layout):
    """The model's eq.-34 form (x ⊗ cos + rotate_pairs(x) ⊗ sin) is the pairwise rotation, bit for bit: each output is
    the same two products summed (a·c + (−b)·s = a·c − b·s exactly in IEEE arithmetic)."""
    x = torch.randn(2, 5, 3, 16, generator=torch.Generator().manual_seed(8))
    cos, sin = rope_angles(torch.arange(5), 16, 500.0)
    tables = RopeTables.from_pairs(cos[None, :, None], sin[None, :, None], layout)
    assert tables.cos.shape == (1, 5, 1, 16)
    reference = apply_rope(x, cos[None, :, None], sin[None, :, None], layout)
    assert torch.equal(apply_rotary(x, tables, layout), reference)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_rope_score_depends_only_on_the_distance(layout):
    """RoFormer's relative property: <R_m q, R_n k> = <q, R_(n-m) k>, so shifting m and n together changes nothing."""
    generator = torch.Generator().manual_seed(9)
    q, k = torch.randn(1, 1, 1, 32, generator=generator, dtype=torch.float64), torch.randn(1, 1, 1, 32,
                                                                                          generator=generator,
                                                                                          dtype=torch.float64)

    def score(m: int, n: int) -> float:
        cos, sin = rope_angles(torch.tensor([[m], [n]]), 32, 10000.0)
        def rotate(x: torch.Tensor, row: int) -> torch.Tensor:
            tables = RopeTables.from_pairs(cos[row:row + 1, :, None].double(), sin[row:row + 1, :, None].double(),
                                           layout)
            return apply_rotary(x, tables, layout)

        return float((rotate(q, 0) * rotate(k, 1)).sum())

    for m, n in [(3, 0), (10, 4), (0, 7)]:
        for shift in (1, 50, 1000):
            assert abs(score(m + shift, n + shift) - score(m, n)) < 1e-4
    assert abs(score(5, 0) - score(6, 0)) > 1e-3  # but it does depend on m - n


def test_model_module_holds_no_speed_tricks():
    from pathlib import Path

    import course_utils.model

    source = Path(course_utils.model.__file__).read_text(encoding="utf-8")
    for trick in ("as_strided", "data_ptr", "torch.ops.mkldnn", "view_as_complex"):
        assert trick not in source
