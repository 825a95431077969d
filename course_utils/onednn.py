"""Matrix products on oneDNN where it measurably beats MKL: the kernel routing of the inference fast path.

Decoding multiplies a few rows by every weight matrix, so its speed is how fast a kernel streams the weights from
memory. On CPU, float32 ``F.linear`` goes to MKL; for weights with more outputs than inputs (fused q/k/v, fused
gate/up, the output head) oneDNN's inner-product kernel, inside every PyTorch CPU build, read them faster from 8 rows
on, on every machine measured; for a single row (batch-1 decoding) it won on an AMD EPYC and lost on an Intel Xeon,
so that case is measured once per process (``onednn_wins_single_row``). ``benchmarks/decode_ablation.py`` measures
every shape; ``routing`` switches the route for A/B runs.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ONEDNN_AVAILABLE", "MAX_ONEDNN_ROWS", "ONEDNN_MARGIN", "Routing", "routing", "onednn_wins_single_row",
           "uses_onednn", "linear", "FastLinear"]

ONEDNN_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
MAX_ONEDNN_ROWS = 32  # above this many rows (prefill, training) MKL's matrix-matrix kernel is already efficient
ONEDNN_MARGIN = 1.1  # one-row products go to oneDNN only where it measured at least this much faster than MKL


class Routing:
    """Switches for A/B measurements.

    ``enabled = False`` forces plain ``F.linear`` everywhere. ``single_row``: whether one-row products (batch-1
    decoding) go to oneDNN too; None (default) = measured once per process by ``onednn_wins_single_row``.
    """

    enabled: bool = True
    single_row: bool | None = None


routing = Routing()
_measured: dict[str, bool] = {}


def onednn_wins_single_row() -> bool:
    """Whether oneDNN multiplies ONE row by a wide weight clearly faster than MKL on this machine (measured once).

    Why measure: the ranking depends on the CPU. One row times a fused gate/up weight ran 1.3-1.5x faster on oneDNN on
    an AMD EPYC, but 0.76-0.80x as fast on a 2-core Intel Xeon (AVX-512), where oneDNN still won from 8 rows on
    (1.1-1.7x). "Clearly": by the factor ``ONEDNN_MARGIN``, so that a machine where both are about as fast keeps MKL
    (the plain model's kernel) in every run rather than flipping with measurement noise. About 0.4 s, once per
    process; the choice changes float rounding in the last bits only, never the function.
    """
    if "single_row" not in _measured:
        # 85 MB, beyond most L3 caches, as decoding streams its weights (a CPU with a larger L3, such as one Xeon
        # with 480 MiB, measures from cache; its decoding step's 513 MiB still do not fit)
        copies = [torch.ones(3072, 576) for _ in range(12)]
        x = torch.ones(1, 576)
        seconds: dict[str, list[float]] = {"mkl": [], "onednn": []}
        with torch.no_grad():
            for round_ in range(10):  # alternate the order; drop the first round (warm-up)
                for name in (("mkl", "onednn") if round_ % 2 else ("onednn", "mkl")):
                    start = time.perf_counter()
                    for weight in copies:
                        if name == "mkl":
                            F.linear(x, weight)
                        else:
                            torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")
                    if round_:
                        seconds[name].append(time.perf_counter() - start)
        onednn, mkl = sorted(seconds["onednn"])[4], sorted(seconds["mkl"])[4]  # medians of 9 rounds
        _measured["single_row"] = onednn * ONEDNN_MARGIN < mkl
    return _measured["single_row"]


def uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """True when ``linear(x, weight, bias)`` would run on oneDNN rather than ``F.linear``.

    oneDNN is chosen for weights with more outputs than inputs (fused q/k/v, fused gate/up, the output head), at most
    ``MAX_ONEDNN_ROWS`` rows of float32 on CPU (one row only where it wins on this machine, see
    ``onednn_wins_single_row``), and only when no gradient has to flow through the product.
    """
    if not (routing.enabled and ONEDNN_AVAILABLE and weight.dim() == 2 and weight.shape[0] > weight.shape[1]):
        return False
    if x.dim() == 0 or x.numel() > MAX_ONEDNN_ROWS * x.shape[-1] or x.device.type != "cpu":
        return False
    if x.numel() == x.shape[-1]:  # a single row
        single_row = routing.single_row
        if not (onednn_wins_single_row() if single_row is None else single_row):
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


class FastLinear(nn.Linear):
    """``nn.Linear`` whose product runs through ``linear`` (used for the output head)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        return linear(x, self.weight, self.bias)
