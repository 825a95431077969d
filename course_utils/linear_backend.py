"""``linear(x, weight)``: ``F.linear`` with a faster CPU route for token-by-token inference.

Decoding one token multiplies a handful of rows by every weight matrix, so its speed is set by how fast a kernel
streams the weights from memory. On CPU, PyTorch sends float32 ``F.linear`` to MKL, whose matrix-vector kernel
reaches under half of this machine's read bandwidth on the 49152 x 576 output head; oneDNN's inner-product kernel,
which ships inside every PyTorch CPU build, reads the same plain row-major weight about 1.5 times as fast
(``benchmarks/decode_ablation.py`` measures both, shape by shape). ``linear`` takes the oneDNN route only where it
was faster, computes the same function and nothing needs a gradient; every other call is plain ``F.linear``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ONEDNN_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
MAX_ONEDNN_ROWS = 32  # above this many rows (prefill, training) MKL's matrix-matrix kernel is already efficient


class _Settings:
    """Switch for A/B measurements: ``linear_backend.settings.use_onednn = False`` forces plain ``F.linear``."""

    use_onednn: bool = True


settings = _Settings()


def uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """True when ``linear(x, weight, bias)`` would run on oneDNN rather than ``F.linear``.

    oneDNN is chosen for weights with more outputs than inputs (joined q/k/v, joined gate/up, the output head),
    where it read weights 1.3-1.5x faster than MKL here; for square and narrowing weights MKL was as fast or faster.
    """
    if not (settings.use_onednn and ONEDNN_AVAILABLE and weight.dim() == 2 and weight.shape[0] > weight.shape[1]):
        return False
    if x.dim() == 0 or x.numel() > MAX_ONEDNN_ROWS * x.shape[-1] or x.device.type != "cpu":
        return False
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or not weight.is_contiguous():
        return False
    if bias is not None and bias.dtype != torch.float32:
        return False
    needs_grad = x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    return not (torch.is_grad_enabled() and needs_grad)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias``, the same function as ``F.linear`` (float32 sums may differ in the last bits)."""
    if uses_onednn(x, weight, bias):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)
