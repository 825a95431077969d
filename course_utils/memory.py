"""Where the memory of a training step goes: weights, gradients, optimiser state, activations saved for backward.

On any device the four parts are counted from the tensors themselves:
- weights, gradients and optimiser state by summing the storages of the parameters, their ``.grad`` and the
  optimiser's state tensors;
- activations by recording, with ``torch.autograd.graph.saved_tensors_hooks``, every tensor autograd keeps for the
  backward pass (each storage counted once, parameters excluded since they are already counted as weights).
On CUDA the allocator's own peak (``torch.cuda.max_memory_allocated``) is reported as well.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

MIB = 2**20


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    storage = tensor.untyped_storage()
    return str(tensor.device), storage.data_ptr()


def unique_storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and tied tensors counted once)."""
    seen: dict[tuple[str, int], int] = {}
    for tensor in tensors:
        seen[_storage_key(tensor)] = tensor.untyped_storage().nbytes()
    return sum(seen.values())


class SavedTensorMeter:
    """Context manager that records the distinct storages autograd saves for backward; ``nbytes`` is their total.

    Storages listed in ``exclude`` (e.g. the parameters) are not counted.
    """

    def __init__(self, exclude: set[tuple[str, int]] | None = None):
        self.exclude = exclude or set()
        self.storages: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in self.exclude:
            self.storages[key] = tensor.untyped_storage().nbytes()
        return tensor

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of each part of a training step; ``cuda_peak`` is the allocator's peak on CUDA (else None)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    cuda_peak: int | None = None

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def mib(self) -> dict[str, float]:
        """The four parts in MiB, in a fixed order (handy for tables and stacked bars)."""
        return {"weights": self.weights / MIB, "gradients": self.gradients / MIB,
                "optimizer state": self.optimizer / MIB, "activations": self.activations / MIB}

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {value:,.1f}" for name, value in self.mib().items())
        peak = f", CUDA peak {self.cuda_peak / MIB:,.1f}" if self.cuda_peak is not None else ""
        return f"{parts} (total {self.total / MIB:,.1f} MiB{peak})"


def parameter_keys(model: nn.Module) -> set[tuple[str, int]]:
    """Storage keys of every parameter of ``model``."""
    return {_storage_key(p) for p in model.parameters()}


def _reset_cuda_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _cuda_peak(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def measure_inference(model: nn.Module, run_forward: Callable[[], torch.Tensor]) -> MemoryReport:
    """Memory of a forward pass without gradients: the weights plus the output ``run_forward()`` returns.

    Nothing is kept for backward, so the intermediate activations of one layer are freed before the next layer
    runs; only the output (the logits) outlives the pass.
    """
    device = next(model.parameters()).device
    _reset_cuda_peak(device)
    with torch.no_grad():
        output = run_forward()
    return MemoryReport(weights=unique_storage_bytes(model.parameters()), gradients=0, optimizer=0,
                        activations=unique_storage_bytes([output]), cuda_peak=_cuda_peak(device))


def measure_training_step(model: nn.Module, run_loss: Callable[[], torch.Tensor],
                          optimizer: torch.optim.Optimizer) -> MemoryReport:
    """Run one full step (``run_loss()`` forward, backward, ``optimizer.step()``) and account for its memory.

    Gradients are counted after backward, the optimiser state after the step (AdamW keeps two moments per
    trained parameter). The gradients are cleared afterwards.
    """
    device = next(model.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    _reset_cuda_peak(device)
    with SavedTensorMeter(exclude=parameter_keys(model)) as meter:
        loss = run_loss()
    loss.backward()
    gradients = unique_storage_bytes(p.grad for p in model.parameters() if p.grad is not None)
    optimizer.step()
    peak = _cuda_peak(device)
    optimizer.zero_grad(set_to_none=True)
    state = [value for per_param in optimizer.state.values() for value in per_param.values()
             if isinstance(value, torch.Tensor) and value.dim() > 0]
    return MemoryReport(weights=unique_storage_bytes(model.parameters()), gradients=gradients,
                        optimizer=unique_storage_bytes(state), activations=meter.nbytes, cuda_peak=peak)
