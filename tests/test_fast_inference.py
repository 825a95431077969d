"""The fast path computes what the plain model computes, steps aside in training and under LoRA, and routes right."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import fast_inference, load_model, onednn
from course_utils.fast_inference import is_fast, make_fast, make_plain
from course_utils.fused_weights import joint_matrix
from course_utils.lora import add_lora, lora_modules, merge_lora, unmerge_lora
from course_utils.model import LlamaModel
from course_utils.onednn import MAX_ONEDNN_ROWS, linear, uses_onednn

needs_onednn = pytest.mark.skipif(not onednn.ONEDNN_AVAILABLE, reason="this PyTorch build has no oneDNN")
RELATIVE_TOLERANCE = 1e-5  # fast vs plain float32 logits: max |difference| <= 1e-5 * max |logit|


# ---- the oneDNN route ----------------------------------------------------------------------------------------------

@pytest.fixture
def single_rows_on_onednn(monkeypatch):
    monkeypatch.setattr(onednn.routing, "single_row", True)


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 1, 96), (8, 1, 96), (3, 96), (2, 5, 96)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_onednn_route_equals_f_linear(shape, with_bias, single_rows_on_onednn):
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(shape, generator=generator), torch.randn(200, 96, generator=generator)
    bias = torch.randn(200, generator=generator) if with_bias else None
    with torch.no_grad():
        assert uses_onednn(x, weight, bias)
        torch.testing.assert_close(linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_route_is_taken_only_where_allowed(monkeypatch, single_rows_on_onednn):
    x, weight = torch.randn(1, 64), torch.randn(96, 64)
    trained = torch.randn(96, 64, requires_grad=True)
    with torch.no_grad():
        assert uses_onednn(x, weight)
        assert not uses_onednn(x, torch.randn(64, 64))  # square and narrowing weights: MKL was as fast
        assert uses_onednn(x, trained)  # no gradient is recorded under no_grad
        assert not uses_onednn(x.double(), weight.double())
        assert not uses_onednn(x.bfloat16(), weight.bfloat16())
        assert not uses_onednn(torch.randn(MAX_ONEDNN_ROWS + 1, 64), weight)  # prefill-sized: MKL's GEMM
        assert not uses_onednn(x, weight.t().contiguous().t())  # column-major weight
    assert not uses_onednn(x, trained)  # autograd needs this product's backward: F.linear
    assert uses_onednn(x, weight)  # grad mode on but nothing requires a gradient
    monkeypatch.setattr(onednn.routing, "enabled", False)
    assert not uses_onednn(x, weight)


@needs_onednn
def test_single_rows_use_onednn_only_where_it_measured_faster(monkeypatch):
    x, weight = torch.randn(1, 64), torch.randn(96, 64)
    with torch.no_grad():
        assert uses_onednn(torch.randn(2, 64), weight)  # several rows: always (where the other checks allow)
        monkeypatch.setattr(onednn.routing, "single_row", False)
        assert not uses_onednn(x, weight)
        monkeypatch.setattr(onednn.routing, "single_row", None)  # measured once, then cached
        measured = onednn.onednn_wins_single_row()
        assert isinstance(measured, bool) and onednn.onednn_wins_single_row() is measured
        assert uses_onednn(x, weight) is measured


def test_gradients_flow_through_linear():
    x = torch.randn(2, 16, requires_grad=True)
    weight = torch.randn(8, 16, requires_grad=True)
    linear(x, weight).sum().backward()
    torch.testing.assert_close(weight.grad, x.detach().sum(0).expand(8, 16))
    torch.testing.assert_close(x.grad, weight.detach().sum(0).expand(2, 16))


# ---- fused weights -------------------------------------------------------------------------------------------------

def _groups(model):
    for block in model.layers:
        yield [block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj]
        yield [block.mlp.gate_proj, block.mlp.up_proj]


@pytest.fixture
def fast_tiny(tiny_model) -> LlamaModel:
    """A second tiny model with the same weights as ``tiny_model``, converted by make_fast."""
    twin = LlamaModel(tiny_model.config).eval()
    twin.load_state_dict(tiny_model.state_dict())
    return make_fast(twin)


def _ids(model, shape, seed):
    return torch.randint(1, model.config.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def test_make_fast_keeps_names_and_state_dict_and_fuses_views(tiny_model, fast_tiny):
    assert not is_fast(tiny_model) and is_fast(fast_tiny)
    assert isinstance(fast_tiny, LlamaModel)
    plain_state, fast_state = tiny_model.state_dict(), fast_tiny.state_dict()
    assert list(plain_state) == list(fast_state)
    assert all(torch.equal(plain_state[name], fast_state[name]) for name in plain_state)
    assert fast_tiny.lm_head.weight is fast_tiny.embed_tokens.weight  # still tied
    for group in _groups(fast_tiny):
        assert len({layer.weight.untyped_storage().data_ptr() for layer in group}) == 1
        with torch.no_grad():
            joint = joint_matrix(group)
        torch.testing.assert_close(joint, torch.cat([layer.weight for layer in group]), rtol=0, atol=0)
    assert make_fast(fast_tiny) is fast_tiny  # idempotent
    make_plain(fast_tiny)
    assert not is_fast(fast_tiny) and type(fast_tiny.lm_head) is nn.Linear
    with pytest.raises(TypeError, match="LlamaModel"):
        make_fast(nn.Linear(2, 2))


@pytest.mark.parametrize("padded", [False, True])
def test_fast_and_plain_tiny_models_give_the_same_logits(tiny_model, fast_tiny, padded):
    ids = _ids(tiny_model, (3, 11), 3)
    mask = None
    if padded:
        mask = torch.ones(3, 11, dtype=torch.long)
        mask[0, :3] = 0
    with torch.no_grad():
        outputs = []
        for model in (tiny_model, fast_tiny):
            cache = model.new_cache(3, 11)
            pieces = [model(ids[:, :6], cache=cache, attention_mask=None if mask is None else mask[:, :6])]
            pieces += [model(ids[:, t:t + 1], cache=cache, attention_mask=None if mask is None else mask[:, :t + 1])
                       for t in range(6, 11)]
            outputs.append((model(ids, attention_mask=mask), torch.cat(pieces, 1)))
    (plain_full, plain_cached), (fast_full, fast_cached) = outputs
    torch.testing.assert_close(fast_full, plain_full, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast_cached, plain_cached, rtol=0, atol=1e-5)


def test_conversions_break_the_fusion_safely_and_make_fast_restores_it(tiny_model, fast_tiny):
    ids = _ids(tiny_model, (2, 9), 4)
    with torch.no_grad():
        reference = tiny_model(ids)
        fast_tiny.float()  # a no-op conversion keeps the views
        assert all(joint_matrix(group) is not None for group in _groups(fast_tiny))
        fast_tiny.double().float()  # real conversions replace every weight by its own tensor
        assert all(joint_matrix(group) is None for group in _groups(fast_tiny))
        separate = fast_tiny(ids)
        assert all(block.self_attn.fused is None and block.mlp.fused is None for block in fast_tiny.layers)  # freed
        make_fast(fast_tiny)
        assert all(joint_matrix(group) is not None for group in _groups(fast_tiny))
        refused = fast_tiny(ids)
    torch.testing.assert_close(separate, reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(refused, reference, rtol=0, atol=1e-5)


def test_in_place_updates_reach_the_fused_matrix(fast_tiny):
    """load_state_dict, optimiser steps and LoRA merges write into the views, so the fused product sees them."""
    state = {name: torch.randn_like(value) for name, value in fast_tiny.state_dict().items()}
    fast_tiny.load_state_dict(state)
    attention = fast_tiny.layers[1].self_attn
    with torch.no_grad():
        attention.v_proj.weight.add_(1.0)
        joint = joint_matrix([attention.q_proj, attention.k_proj, attention.v_proj])
    torch.testing.assert_close(joint[-attention.v_proj.weight.shape[0]:], state["layers.1.self_attn.v_proj.weight"] + 1)


def test_grad_mode_never_enters_the_fast_path(tiny_model, fast_tiny, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a fast-path kernel ran in grad mode")

    for name in ("linear", "rotate_complex", "fused_weight"):
        monkeypatch.setattr(fast_inference, name, forbidden)
    monkeypatch.setattr(onednn, "linear", forbidden)  # the output head's route
    ids = _ids(tiny_model, (2, 7), 5)
    fast_logits, plain_logits = fast_tiny(ids), tiny_model(ids)  # grad mode: the plain code, bit for bit
    assert torch.equal(fast_logits, plain_logits)
    fast_logits.sum().backward()
    assert fast_tiny.layers[0].self_attn.q_proj.weight.grad is not None


# ---- LoRA on a fast model behaves as on the plain one --------------------------------------------------------------

def _lora_round_trip(model, ids, targets):
    """inject, train one step, merge, unmerge: the logits after each stage."""
    add_lora(model, targets=targets, r=2, alpha=4, seed=1)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    logits = model(ids)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    optimizer.step()
    stages = {"loss": loss.detach()}
    with torch.no_grad():
        stages["trained"] = model(ids)
        merge_lora(model)
        stages["merged"] = model(ids)
        unmerge_lora(model)
        stages["unmerged"] = model(ids)
    return stages


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ("gate_proj", "o_proj"), ("q_proj", "k_proj", "v_proj",
                                                                                     "gate_proj", "up_proj")])
def test_lora_on_a_fast_model_behaves_as_on_the_plain_one(tiny_model, fast_tiny, targets):
    ids = _ids(tiny_model, (2, 10), 6)
    with torch.no_grad():
        base = tiny_model(ids)
    plain, fast = _lora_round_trip(tiny_model, ids, targets), _lora_round_trip(fast_tiny, ids, targets)
    assert torch.equal(fast["loss"], plain["loss"])  # training runs the plain code on both
    assert (plain["trained"] - base).abs().max() > 1e-3  # the step changed the model, so the checks below can fail
    for stage in ("trained", "merged", "unmerged"):
        torch.testing.assert_close(fast[stage], plain[stage], rtol=0, atol=1e-5)
    # merging and unmerging round the weights (W + ΔW − ΔW ≠ W in float32): a few units in the last place of the logits
    torch.testing.assert_close(fast["merged"], fast["trained"], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(fast["unmerged"], fast["trained"], rtol=1e-6, atol=1e-5)


def test_a_lora_wrapped_projection_is_called_as_its_module_and_merges_reach_the_fused_matrix(fast_tiny):
    ids = _ids(fast_tiny, (1, 7), 7)
    add_lora(fast_tiny, targets=("q_proj", "v_proj"), r=2, alpha=4)
    attention, mlp = fast_tiny.layers[0].self_attn, fast_tiny.layers[0].mlp
    with torch.no_grad():
        for module in lora_modules(fast_tiny).values():
            module.lora_B.normal_()
        assert joint_matrix([attention.q_proj, attention.k_proj, attention.v_proj]) is None  # q, v are wrapped
        assert joint_matrix([mlp.gate_proj, mlp.up_proj]) is not None  # the MLP is still fused
        adapted = fast_tiny(ids)
        merge_lora(fast_tiny)
        merged = fast_tiny(ids)
        for block in fast_tiny.layers:  # unwrap the merged layers: the fused product is used again ...
            block.self_attn.q_proj, block.self_attn.v_proj = block.self_attn.q_proj.base, block.self_attn.v_proj.base
        assert joint_matrix([attention.q_proj, attention.k_proj, attention.v_proj]) is not None
        unwrapped = fast_tiny(ids)  # ... and it reads the merged weights
    torch.testing.assert_close(merged, adapted, rtol=0, atol=1e-5)
    torch.testing.assert_close(unwrapped, adapted, rtol=0, atol=1e-5)


# ---- the course model ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_course_model():
    return load_model(device="cpu", fast=False)[0]


def _close_relative(fast: torch.Tensor, plain: torch.Tensor) -> None:
    gap, scale = (fast - plain).abs().max().item(), plain.abs().max().item()
    assert gap <= RELATIVE_TOLERANCE * scale, f"max |fast - plain| = {gap:.2e} for logits up to {scale:.1f}"


def test_load_model_is_fast_by_default_and_plain_on_request(course_model, plain_course_model):
    assert is_fast(course_model[0]) and not is_fast(plain_course_model)
    with pytest.raises(TypeError, match="fast must be a bool"):
        load_model(device="cpu", fast="no")


def test_course_model_fast_and_plain_give_the_same_logits(course_model, plain_course_model):
    fast, tokenizer = course_model
    short = torch.tensor([tokenizer.encode("The history of the printing press begins in the fifteenth century")])
    long_text = ("The old lighthouse keeper climbed the spiral stairs every evening, counting each step aloud, "
                 "because the sea had taught him that small habits keep a person steady when storms arrive.")
    long = torch.tensor([tokenizer.encode(long_text)])
    assert short.shape[1] <= MAX_ONEDNN_ROWS < long.shape[1]  # both product routes
    with torch.no_grad():
        for ids in (short, long):
            _close_relative(fast(ids), plain_course_model(ids))


def _greedy(model, prompts, steps):
    """Greedy tokens [B, steps] and the top-2 logit margin of each step, with a KV cache."""
    ids = torch.tensor(prompts)
    cache = model.new_cache(ids.shape[0], ids.shape[1] + steps)
    tokens, margins, scales = [], [], []
    with torch.no_grad():
        logits = model(ids, cache=cache)[:, -1]
        for _ in range(steps):
            top = logits.topk(2, dim=-1).values
            margins.append(top[:, 0] - top[:, 1])
            scales.append(logits.abs().amax(-1))
            tokens.append(logits.argmax(-1))
            logits = model(tokens[-1][:, None], cache=cache)[:, -1]
    return torch.stack(tokens, 1), torch.stack(margins, 1), torch.stack(scales, 1)


def test_course_model_fast_and_plain_give_the_same_greedy_tokens(course_model, plain_course_model):
    """Identical up to the first step whose top-2 margin is within float noise (there a tie may flip either way)."""
    fast, tokenizer = course_model
    texts = ("Once upon a time, in a quiet village,", "The three primary colours are", "def fibonacci(n):")
    prompts = [tokenizer.encode(text) for text in texts]
    width = min(len(p) for p in prompts)
    prompts = [p[:width] for p in prompts]
    steps = 32
    fast_tokens, _, _ = _greedy(fast, prompts, steps)
    plain_tokens, margins, scales = _greedy(plain_course_model, prompts, steps)
    for row in range(len(prompts)):
        noisy = (margins[row] <= 2 * RELATIVE_TOLERANCE * scales[row]).nonzero()  # each logit may move by tol * scale
        first_noisy = int(noisy[0]) if len(noisy) else steps
        assert torch.equal(fast_tokens[row, :first_noisy], plain_tokens[row, :first_noisy]), row


@pytest.mark.parametrize("padded", [False, True])
def test_lean_layers_take_the_grouped_decoding_route_and_compute_the_same(fast_tiny, monkeypatch, padded):
    assert fast_tiny.config.n_heads > fast_tiny.config.n_kv_heads  # grouped-query attention, or the route is not used
    plain_attend_calls = []
    plain_attend = fast_inference.Attention.attend

    def counting(self, *args):
        plain_attend_calls.append(args[0].shape[1])  # new positions of this call
        return plain_attend(self, *args)

    monkeypatch.setattr(fast_inference.Attention, "attend", counting)
    ids = _ids(fast_tiny, (2, 9), 5)
    mask = torch.ones(2, 9, dtype=torch.long)
    if padded:
        mask[1, :2] = 0
    logits = {}
    with torch.no_grad():
        for lean in (True, False):
            monkeypatch.setattr(fast_inference.settings, "lean_layers", lean)
            plain_attend_calls.clear()
            cache = fast_tiny.new_cache(2, 9)
            pieces = [fast_tiny(ids[:, :5], cache=cache, attention_mask=mask[:, :5])]
            pieces += [fast_tiny(ids[:, t:t + 1], cache=cache, attention_mask=mask[:, :t + 1]) for t in range(5, 9)]
            logits[lean] = torch.cat(pieces, 1)
            one_step_calls = plain_attend_calls.count(1)
            assert one_step_calls == (0 if lean else 4 * fast_tiny.config.n_layers), lean
    torch.testing.assert_close(logits[True], logits[False], rtol=0, atol=1e-5)
