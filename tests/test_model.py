"""The decoder: KV cache == full forward, padding, tied weights, input validation, the real model's answers."""
import pytest
import torch

from course_utils import ModelConfig
from course_utils.lora import add_lora, merge_lora
from course_utils.model import RMSNorm, joined_weight


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
    (torch.zeros(1, 3), "integer"),
])
def test_bad_inputs_raise_clear_errors(tiny_model, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(bad)


def test_cache_overflow_and_batch_mismatch_raise(tiny_model):
    cache = tiny_model.new_cache(1, 4)
    with pytest.raises(ValueError, match="KV cache holds 4"):
        tiny_model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch"):
        tiny_model(torch.zeros(2, 2, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("field, value", [("n_heads", 5), ("n_kv_heads", 3), ("rope_layout", "spiral"), ("dim", 0)])
def test_invalid_config_raises(field, value):
    with pytest.raises(ValueError, match=field if field != "n_heads" else "divisible"):
        ModelConfig(**{**dict(vocab_size=10, dim=32, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=8), field: value})


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



# ---- joined q/k/v and gate/up weights ------------------------------------------------------------------------------

def _groups(model):
    for block in model.layers:
        yield [block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj]
        yield [block.mlp.gate_proj, block.mlp.up_proj]


def test_joined_weights_are_views_of_one_matrix(tiny_model):
    for group in _groups(tiny_model):
        assert len({layer.weight.untyped_storage().data_ptr() for layer in group}) == 1
        with torch.no_grad():
            joint = joined_weight(group)
        torch.testing.assert_close(joint, torch.cat([layer.weight for layer in group]), rtol=0, atol=0)
        assert joined_weight(group) is None  # grad mode: separate products, as in training


def test_joined_and_separate_products_give_the_same_logits(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        joined = tiny_model(ids)
        tiny_model.float()  # a no-op conversion keeps the views
        assert joined_weight(next(_groups(tiny_model))) is not None
        tiny_model.double().float()  # real conversions replace every weight by its own tensor
        assert all(joined_weight(group) is None for group in _groups(tiny_model))
        separate = tiny_model(ids)
        tiny_model.join_projections()
        assert all(joined_weight(group) is not None for group in _groups(tiny_model))
        rejoined = tiny_model(ids)
    torch.testing.assert_close(separate, joined, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rejoined, joined, rtol=1e-5, atol=1e-5)


def test_in_place_updates_reach_the_joined_matrix(tiny_model):
    """Optimiser steps and load_state_dict write into the views, so the joined product sees them."""
    state = {name: torch.randn_like(value) for name, value in tiny_model.state_dict().items()}
    tiny_model.load_state_dict(state)
    attention = tiny_model.layers[1].self_attn
    with torch.no_grad():
        attention.v_proj.weight.add_(1.0)
        joint = joined_weight([attention.q_proj, attention.k_proj, attention.v_proj])
    torch.testing.assert_close(joint[-attention.v_proj.weight.shape[0]:], state["layers.1.self_attn.v_proj.weight"] + 1)


def test_lora_wrapped_layers_fall_back_to_separate_products(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (1, 7), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = tiny_model(ids)
    add_lora(tiny_model, targets=("q_proj", "v_proj"), r=2, alpha=4)
    attention, mlp = tiny_model.layers[0].self_attn, tiny_model.layers[0].mlp
    with torch.no_grad():
        for module in tiny_model.modules():
            if hasattr(module, "lora_B"):
                module.lora_B.normal_()
        assert joined_weight([attention.q_proj, attention.k_proj, attention.v_proj]) is None
        assert joined_weight([mlp.gate_proj, mlp.up_proj]) is not None  # the MLP is still plain
        adapted = tiny_model(ids)
        merge_lora(tiny_model)
        merged = tiny_model(ids)
    assert (adapted - before).abs().max() > 1e-3  # the adapter changes the output, so the next check can fail
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)


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
