"""The oneDNN route of linear_backend.linear: same function as F.linear, taken only where it is allowed."""
import pytest
import torch
import torch.nn.functional as F

from course_utils import linear_backend
from course_utils.linear_backend import MAX_ONEDNN_ROWS, linear, uses_onednn

needs_onednn = pytest.mark.skipif(not linear_backend.ONEDNN_AVAILABLE, reason="this PyTorch build has no oneDNN")


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 1, 96), (8, 1, 96), (3, 96), (2, 5, 96)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_onednn_route_equals_f_linear(shape, with_bias):
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(shape, generator=generator), torch.randn(200, 96, generator=generator)
    bias = torch.randn(200, generator=generator) if with_bias else None
    with torch.no_grad():
        assert uses_onednn(x, weight, bias)
        torch.testing.assert_close(linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_route_is_taken_only_where_allowed(monkeypatch):
    x, weight = torch.randn(1, 64), torch.randn(96, 64)
    trained = torch.randn(96, 64, requires_grad=True)
    with torch.no_grad():
        assert uses_onednn(x, weight)
        assert not uses_onednn(x, torch.randn(64, 64))  # square and narrowing weights: MKL was as fast here
        assert uses_onednn(x, trained)  # no gradient is recorded under no_grad
        assert not uses_onednn(x.double(), weight.double())
        assert not uses_onednn(x.bfloat16(), weight.bfloat16())
        assert not uses_onednn(torch.randn(MAX_ONEDNN_ROWS + 1, 64), weight)  # prefill-sized: MKL's GEMM
        assert not uses_onednn(x, weight.t().contiguous().t())  # column-major weight
    assert not uses_onednn(x, trained)  # autograd needs this product's backward: F.linear
    assert uses_onednn(x, weight)  # grad mode on but nothing requires a gradient
    monkeypatch.setattr(linear_backend.settings, "use_onednn", False)
    assert not uses_onednn(x, weight)


def test_gradients_flow_through_linear():
    x = torch.randn(2, 16, requires_grad=True)
    weight = torch.randn(8, 16, requires_grad=True)
    linear(x, weight).sum().backward()
    torch.testing.assert_close(weight.grad, x.detach().sum(0).expand(8, 16))
    torch.testing.assert_close(x.grad, weight.detach().sum(0).expand(2, 16))
