"""QLoRA on a 4-bit base: Q4_1 blocks equal gguf's, the 4-bit model equals the float one, training matches."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import load_model
from course_utils.lora import add_lora, count_parameters, lora_modules, merge_lora
from course_utils.qlora import (
    Q4Linear,
    dequantize_q4_1,
    gguf_q4_1_blocks,
    merge_lora_to_float,
    q4_1_blocks_from_bytes,
    quantize_model_4bit,
    quantize_q4_1,
    read_q4_1_tensors,
    weight_bytes,
)
from course_utils.training import masked_lm_loss

LOGIT_ATOL = 1e-4      # logits reach |34|; the 4-bit and float models run the same float32 products
GRAD_RTOL = 1e-4       # adapter gradients, relative to their largest entry


def _blocks(rows: int = 8, cols: int = 64, seed: int = 0) -> torch.Tensor:
    return quantize_q4_1(torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)))


def test_worked_block_example():
    block = torch.zeros(1, 1, 20, dtype=torch.uint8)
    block[0, 0, :4] = torch.tensor([0.5, -1.0], dtype=torch.float16).view(torch.uint8)   # d = 0.5, m = -1
    block[0, 0, 4] = 0x3A   # weight 0 gets the low nibble 0xA = 10, weight 16 the high nibble 3
    weight = dequantize_q4_1(block)
    assert weight.shape == (1, 32)
    assert weight[0, 0] == 0.5 * 10 - 1 and weight[0, 16] == 0.5 * 3 - 1
    assert (weight[0, [i for i in range(32) if i not in (0, 16)]] == -1).all()


def test_quantize_matches_gguf_bit_for_bit():
    weight = torch.randn(16, 96, generator=torch.Generator().manual_seed(1))
    weight[2, :32] = 0.25   # a constant block: d = 0
    ours = quantize_q4_1(weight).numpy()
    theirs = gguf.quants.quantize(weight.numpy(), gguf.GGMLQuantizationType.Q4_1).reshape(ours.shape)
    assert np.array_equal(ours, theirs)
    error = (dequantize_q4_1(quantize_q4_1(weight)) - weight).abs()
    assert error.max() <= (weight.max() - weight.min()) / 15   # at most one step of the largest block


@pytest.fixture(scope="module")
def file_blocks(course_weights):
    return read_q4_1_tensors(course_weights)


def test_dequantize_equals_gguf_on_every_course_tensor(course_weights, file_blocks):
    reader = gguf.GGUFReader(str(course_weights))
    q4 = [t for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q4_1]
    assert len(q4) == len(file_blocks) == 30 * 7
    for tensor in q4:
        theirs = torch.from_numpy(np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type)))
        ours = dequantize_q4_1(file_blocks[tensor.name])
        assert torch.equal(ours.view(torch.int32), theirs.view(torch.int32)), tensor.name   # bit for bit


@pytest.fixture(scope="module")
def q4_model(course_weights):
    model, _ = load_model(course_weights, device="cpu")
    assert quantize_model_4bit(model, course_weights) == 30 * 7
    return model


def test_4bit_model_equals_float_model(course_model, q4_model):
    float_model, _ = course_model
    ids = torch.randint(0, 49152, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = float_model(ids), q4_model(ids)
    assert (got - expected).abs().max() <= LOGIT_ATOL
    parts = weight_bytes(q4_model)
    assert parts["q4_1 blocks"] == 30 * (576 * 576 * 2 + 576 * 192 * 2 + 576 * 1536 * 3) // 32 * 20
    assert parts["q4_1 blocks"] < weight_bytes(float_model)["trainable"] / 6


def _lora_step(model, ids, labels):
    add_lora(model, ("q_proj", "v_proj"), r=8, alpha=16, seed=0)
    with torch.no_grad():   # a non-zero B, so that A receives a gradient too
        for module in lora_modules(model).values():
            module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=torch.Generator().manual_seed(3)) * 0.01)
    loss = masked_lm_loss(model(ids), labels)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_lora_training_step_matches_float_base(course_weights):
    ids = torch.randint(0, 49152, (2, 20), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :10] = -100
    float_model, _ = load_model(course_weights, device="cpu")
    q4_model, _ = load_model(course_weights, device="cpu")
    quantize_model_4bit(q4_model, course_weights, targets=("q_proj", "v_proj", "o_proj"))
    loss_f, grads_f = _lora_step(float_model, ids, labels)
    loss_q, grads_q = _lora_step(q4_model, ids, labels)
    assert abs(loss_f - loss_q) <= 1e-5
    assert grads_f.keys() == grads_q.keys() and len(grads_q) == 2 * 2 * 30
    for name, grad in grads_f.items():
        assert (grads_q[name] - grad).abs().max() <= GRAD_RTOL * grad.abs().max(), name
    assert count_parameters(q4_model).trainable == 30 * 8 * (576 + 576 + 576 + 192)


def test_function_saves_no_float_weight():
    blocks = _blocks(48, 96)
    x = torch.randn(4, 96, requires_grad=True)
    saved = []

    def pack(tensor):
        saved.append((tuple(tensor.shape), tensor.dtype))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y_q4 = Q4Linear(blocks)(x)
    assert saved and all(dtype == torch.uint8 for _, dtype in saved)      # only the 20-byte blocks
    assert not any(dtype.is_floating_point and shape in ((48, 96), (96, 48)) for shape, dtype in saved)
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):      # negative control: plain autograd
        y_plain = F.linear(x, dequantize_q4_1(blocks))
    assert ((96, 48), torch.float32) in saved   # W^T, the full weight in float32
    grad = torch.randn(4, 48)
    (gx_q4,) = torch.autograd.grad(y_q4, x, grad)
    (gx_plain,) = torch.autograd.grad(y_plain, x, grad)
    assert torch.allclose(y_q4, y_plain, atol=1e-6) and torch.allclose(gx_q4, gx_plain, atol=1e-6)


def test_lora_on_q4linear_starts_exact_and_merges_to_float():
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("q_proj", Q4Linear(_blocks(16, 64)))
    x = torch.randn(3, 64)
    with torch.no_grad():
        before = model(x)
    add_lora(model, ("q_proj",), r=4, alpha=8)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["q_proj.lora_A", "q_proj.lora_B"]
    with torch.no_grad():
        assert torch.equal(model(x), before)   # B = 0
        model.q_proj.lora_B.normal_()
        adapted = model(x)
    with pytest.raises(ValueError, match="4-bit Q4_1 blocks.*merge_lora_to_float"):  # in place: refused, clearly
        merge_lora(model)
    assert not model.q_proj.merged
    assert merge_lora_to_float(model) == 1
    assert type(model.q_proj) is torch.nn.Linear
    with torch.no_grad():
        assert torch.allclose(model(x), adapted, atol=1e-5)
    with pytest.raises(ValueError, match="no LoRA layer on a 4-bit base"):
        merge_lora_to_float(model)


def test_bad_inputs_raise(course_weights):
    with pytest.raises(TypeError, match="uint8"):
        dequantize_q4_1(torch.zeros(2, 1, 20))
    with pytest.raises(ValueError, match=r"\[rows, blocks per row, 20\]"):
        dequantize_q4_1(torch.zeros(2, 1, 18, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        Q4Linear(np.zeros((2, 1, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match="3 blocks = 60 bytes, got 40"):
        q4_1_blocks_from_bytes(np.zeros((4, 40), dtype=np.uint8), 96)
    with pytest.raises(ValueError, match="multiple of 32"):
        q4_1_blocks_from_bytes(np.zeros((4, 40), dtype=np.uint8), 50)
    with pytest.raises(TypeError, match="uint8"):
        q4_1_blocks_from_bytes(np.zeros((4, 40), dtype=np.float32), 64)
    with pytest.raises(ValueError, match="multiple of 32 columns"):
        quantize_q4_1(torch.zeros(4, 40))
    with pytest.raises(ValueError, match="input has 32 features, this layer takes 64"):
        Q4Linear(_blocks(8, 64))(torch.zeros(2, 32))
    with pytest.raises(ValueError, match="stored as Q8_0, not Q4_1"):
        gguf_q4_1_blocks(course_weights, "token_embd.weight")
    with pytest.raises(ValueError, match="no tensor"):
        gguf_q4_1_blocks(course_weights, "blk.99.attn_q.weight")
    assert gguf_q4_1_blocks(course_weights, "blk.0.attn_k.weight").shape == (192, 18, 20)


def test_quantize_model_checks(course_weights, tiny_model):
    with pytest.raises(TypeError, match="LlamaModel"):
        quantize_model_4bit(torch.nn.Linear(2, 2), course_weights)
    with pytest.raises(ValueError, match="targets must be"):
        quantize_model_4bit(tiny_model, course_weights, targets=("lm_head",))
    with pytest.raises(ValueError, match="does not dequantise to the model's weight"):
        quantize_model_4bit(tiny_model, course_weights)   # not the model of this file


def test_blocks_survive_dtype_moves_and_bf16_autocast():
    layer = Q4Linear(_blocks(48, 96))
    expected_weight = layer.weight.clone()
    layer.to(torch.bfloat16)   # a model-wide dtype change must not touch the raw bytes
    assert layer.blocks.dtype == torch.uint8 and torch.equal(layer.weight, expected_weight)
    x = torch.randn(4, 96, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):   # the dtype policy of the CUDA path, on CPU
        y = layer(x)
    assert y.dtype == torch.bfloat16
    (grad_x,) = torch.autograd.grad(y.float().sum(), x)
    assert grad_x.dtype == torch.float32
    reference = x.detach() @ expected_weight.T
    assert (y.float() - reference).abs().max() <= 1e-2 * reference.abs().max()   # bf16 keeps ~3 digits
    assert torch.allclose(grad_x, expected_weight.sum(0).expand(4, -1), rtol=2e-2, atol=2e-2)
