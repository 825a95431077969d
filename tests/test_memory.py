"""Memory accounting under autocast: bfloat16 weight copies are counted apart from the activations."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from course_utils.line_fit import fit_line
from course_utils.lora import add_lora
from course_utils.memory import (
    WEIGHT_CASTS,
    SavedTensorMeter,
    measure_training_step,
    parameter_keys,
)
from course_utils.precision import AUTOCAST_ENV, autocast_dtype, autocast_for
from course_utils.training import masked_lm_loss

BATCHES = (1, 2, 4)
TOKENS = 32


def _linear_weight_numel(model: nn.Module) -> int:
    """Elements of the distinct weights that go through a matrix product (the tied head counted once)."""
    weights = {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Linear)}
    return sum(w.numel() for w in weights.values())


def _saved(model: nn.Module, batch: int, autocast: bool) -> SavedTensorMeter:
    ids = torch.randint(0, model.config.vocab_size, (batch, TOKENS), generator=torch.Generator().manual_seed(batch))
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with SavedTensorMeter(exclude=parameter_keys(model)) as meter, context:
        loss = masked_lm_loss(model(ids), ids)
    loss.backward()  # the saved tensors really were what backward needed
    model.zero_grad(set_to_none=True)
    return meter


def test_cpu_autocast_separates_weight_casts_from_activations(tiny_model):
    tiny_model.train().requires_grad_(True)
    meters = [_saved(tiny_model, batch, autocast=True) for batch in BATCHES]
    casts = [m.weight_casts for m in meters]
    # one bfloat16 copy (2 bytes per element) of every weight used in a matrix product, whatever the batch
    assert casts == [2 * _linear_weight_numel(tiny_model)] * len(BATCHES)
    fit = fit_line([b * TOKENS for b in BATCHES], [m.activations for m in meters])
    assert fit.r2 > 0.9999
    assert abs(fit.intercept) < 0.05 * meters[0].activations  # proportional to the tokens: no hidden constant
    assert 3.9 < meters[-1].activations / meters[0].activations < 4.1
    assert all(m.nbytes == m.activations + m.weight_casts for m in meters)


def test_without_autocast_nothing_is_a_weight_cast(tiny_model):
    tiny_model.train().requires_grad_(True)
    meters = [_saved(tiny_model, batch, autocast=False) for batch in BATCHES]
    assert all(m.weight_casts == 0 and m.nbytes == m.activations > 0 for m in meters)
    fit = fit_line([b * TOKENS for b in BATCHES], [m.activations for m in meters])
    assert fit.r2 > 0.9999 and abs(fit.intercept) < 0.05 * meters[0].activations
    # bfloat16 activations are smaller than float32 ones, but not zero: autocast leaves some ops in float32
    with_autocast = _saved(tiny_model, 1, autocast=True)
    assert 0.3 * meters[0].activations < with_autocast.activations < meters[0].activations


def test_frozen_weights_are_cast_on_every_use_and_counted(tiny_model):
    """LoRA: frozen base weights (and the float32 adapters inside the bf16 matmul) are cast copies, not activations."""
    add_lora(tiny_model, targets=("q_proj", "v_proj"), r=2, alpha=4)
    tiny_model.train()
    adapters = sum(p.numel() for p in tiny_model.parameters() if p.requires_grad)
    frozen = _linear_weight_numel(tiny_model)
    meter = _saved(tiny_model, 2, autocast=True)
    # Block 0 reads the frozen embedding, so its q/k/v inputs need no gradient: those products keep no weight copy
    # (the weight is only needed to push a gradient into the input), nor do its x @ A^T products.
    attn0 = tiny_model.layers[0].self_attn
    unsaved = sum(layer.weight.numel() for layer in (attn0.q_proj.base, attn0.k_proj, attn0.v_proj.base))
    unsaved += attn0.q_proj.lora_A.numel() + attn0.v_proj.lora_A.numel()
    assert meter.weight_casts == 2 * (frozen + adapters - unsaved)


def test_casts_of_activations_are_activations():
    weight = nn.Parameter(torch.randn(8, 8))
    x = torch.randn(4, 8, requires_grad=True)
    with SavedTensorMeter(exclude=parameter_keys(nn.ParameterList([weight]))) as meter:
        w16, x16 = weight.to(torch.bfloat16), x.to(torch.bfloat16)
        _ = x16 @ w16.t()  # saves x16 (for the weight's gradient) and a view of w16 (for x's gradient)
    assert meter.weight_casts == weight.numel() * 2
    assert meter.activations == x.numel() * 2


def test_training_step_report_under_autocast(tiny_model, monkeypatch):
    monkeypatch.setenv(AUTOCAST_ENV, "bf16")
    tiny_model.train().requires_grad_(True)
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, TOKENS), generator=torch.Generator().manual_seed(0))

    def run_loss() -> torch.Tensor:
        with autocast_for(torch.device("cpu")):
            return masked_lm_loss(tiny_model(ids), ids)

    report = measure_training_step(tiny_model, run_loss, torch.optim.AdamW(tiny_model.parameters(), lr=1e-3))
    assert report.weight_casts == 2 * _linear_weight_numel(tiny_model)
    assert report.total == (report.weights + report.gradients + report.optimizer + report.activations
                            + report.weight_casts)
    assert WEIGHT_CASTS in report.mib() and report.cuda_peak is None
    monkeypatch.setenv(AUTOCAST_ENV, "off")
    plain = measure_training_step(tiny_model, run_loss, torch.optim.AdamW(tiny_model.parameters(), lr=1e-3))
    assert plain.weight_casts == 0 and WEIGHT_CASTS not in plain.mib()
    with pytest.raises(TypeError, match="optimizer"):
        measure_training_step(tiny_model, run_loss, "adam")


def test_autocast_policy(monkeypatch):
    monkeypatch.delenv(AUTOCAST_ENV, raising=False)
    assert autocast_dtype("cpu") is None and autocast_dtype(torch.device("cuda")) == torch.bfloat16
    assert isinstance(autocast_for("cpu"), contextlib.nullcontext)
    monkeypatch.setenv(AUTOCAST_ENV, "bf16")
    assert autocast_dtype("cpu") == torch.bfloat16
    with autocast_for("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    monkeypatch.setenv(AUTOCAST_ENV, "off")
    assert autocast_dtype("cuda") is None
    monkeypatch.setenv(AUTOCAST_ENV, "fp8")
    with pytest.raises(ValueError, match="COURSE_AUTOCAST"):
        autocast_dtype("cpu")
    with pytest.raises(TypeError, match="device"):
        autocast_dtype(0)


def test_fit_line():
    fit = fit_line([1, 2, 4], [3, 5, 9])
    assert fit.slope == pytest.approx(2) and fit.intercept == pytest.approx(1) and fit.r2 == pytest.approx(1)
    assert fit(10) == pytest.approx(21)
    assert fit_line([1, 2, 3], [1, 3, 2]).r2 < 0.5
    with pytest.raises(ValueError, match="at least 3"):
        fit_line([1, 2], [1, 2])
    with pytest.raises(ValueError, match="distinct"):
        fit_line([2, 2, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="one y per x"):
        fit_line([1, 2, 3], [1, 2])
    with pytest.raises(TypeError, match="set"):
        SavedTensorMeter(exclude=[("cpu", 0)])


def test_freed_cast_address_reused_by_an_activation():
    """A cast copy that is freed and whose address a new activation takes must not turn that activation into a cast."""
    reused = 0
    for _ in range(50):
        weight = nn.Parameter(torch.randn(64, 64))
        x = torch.randn(64, 64, dtype=torch.bfloat16, requires_grad=True)
        with SavedTensorMeter(exclude=parameter_keys(nn.ParameterList([weight]))) as meter:
            cast = weight.to(torch.bfloat16)
            address = cast.data_ptr()
            del cast
            y = x * 1.5  # a fresh tensor of the same size: the allocator often hands back the freed block
            _ = y * y  # saves y
        reused += y.data_ptr() == address
        assert meter.weight_casts == 0 and meter.activations == y.numel() * 2
    assert reused > 0  # the situation under test did occur (it does in about half of the tries here)


def test_buffers_count_as_weights_not_activations():
    """A frozen weight kept as a buffer (lesson 09's 4-bit blocks) is part of the model, not an activation."""
    from course_utils.memory import measure_inference, parameter_keys

    class BufferedLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("frozen", torch.randn(64, 64))
            self.scale = torch.nn.Parameter(torch.ones(64))

        def forward(self, x):
            return (x @ self.frozen) * self.scale

    model = BufferedLinear()
    x = torch.randn(4, 64, requires_grad=True)  # so that x @ frozen saves the buffer for x's gradient
    report = measure_training_step(model, lambda: model(x).sum(), torch.optim.SGD(model.parameters(), lr=0.1))
    assert report.weights == (64 * 64 + 64) * 4
    assert report.activations == 4 * 64 * 4  # x @ frozen (for scale's gradient); the saved buffer is a weight
    assert (str(model.frozen.device), model.frozen.untyped_storage().data_ptr()) in parameter_keys(model)
    assert measure_inference(model, lambda: model(x)).weights == (64 * 64 + 64) * 4
