"""Where the memory of a training step goes: weights, gradients, optimiser state, activations saved for backward.

On any device the parts are counted from the tensors themselves:
- weights, gradients and optimiser state by summing the storages of the parameters, their ``.grad`` and the
  optimiser's state tensors;
- what autograd keeps for the backward pass by recording, with ``torch.autograd.graph.saved_tensors_hooks``, every
  tensor it saves (each storage counted once, parameters excluded since they are already counted as weights).
  Under autocast part of it is not an activation: autocast casts each float32 weight to bfloat16 before a matrix
  product and autograd keeps that copy for backward. A ``TorchDispatchMode`` sees every cast as it happens; the saved
  storages made by casting a parameter are reported as ``weight_casts`` (one copy per weight, whatever the batch),
  the rest as ``activations`` (these grow with the number of tokens).
On CUDA the allocator's own peak (``torch.cuda.max_memory_allocated``) is reported as well.

The autocast policy that training runs under is ``precision.autocast_for``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

MIB = 2**20
WEIGHT_CASTS = "weight casts (autocast)"  # the name of that part in MemoryReport.mib()
# The ops through which autocast (and ``.to(dtype)``) makes a cast copy; ``aten.to`` decomposes into ``_to_copy``.
_CAST_OPS = {torch.ops.aten._to_copy.default}


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    storage = tensor.untyped_storage()
    return str(tensor.device), storage.data_ptr()


def unique_storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and tied tensors counted once)."""
    seen: dict[tuple[str, int], int] = {}
    for tensor in tensors:
        seen[_storage_key(tensor)] = tensor.untyped_storage().nbytes()
    return sum(seen.values())


class _CastRecorder(TorchDispatchMode):
    """Records the storages made by casting a parameter (``_to_copy`` of a tensor whose storage is in ``sources``).

    A recorded storage may be freed and its address reused by a new tensor: every fresh output of another op (one
    that shares its storage with none of the op's inputs, i.e. not a view or an in-place result) is forgotten.
    """

    def __init__(self, sources: set[tuple[str, int]]):
        super().__init__()
        self.sources = sources
        self.casts: set[tuple[str, int]] = set()

    @staticmethod
    def _keys(tree) -> list[tuple[str, int]]:
        """Storage keys of the tensors in ``tree`` (tensors without a plain storage, e.g. sparse, are skipped)."""
        keys = []
        for tensor in tree_leaves(tree):
            if isinstance(tensor, torch.Tensor):
                try:
                    keys.append(_storage_key(tensor))
                except (RuntimeError, NotImplementedError):
                    continue
        return keys

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = self._keys((args, kwargs))
        input_keys = set(inputs)
        is_weight_cast = func in _CAST_OPS and bool(inputs) and inputs[0] in self.sources
        for key in self._keys(out):
            if key in input_keys:
                continue
            if is_weight_cast:
                self.casts.add(key)
            else:
                self.casts.discard(key)
        return out


class SavedTensorMeter:
    """Context manager that records the distinct storages autograd saves for backward.

    ``exclude``: storage keys of the parameters (``parameter_keys(model)``). Parameters themselves are not counted;
    copies of them made by a cast (autocast's bfloat16 weights) are counted in ``weight_casts``, everything else in
    ``activations``. ``nbytes`` is their sum: every byte autograd keeps alive for backward beyond the parameters.
    """

    def __init__(self, exclude: set[tuple[str, int]] | None = None):
        if exclude is not None and not isinstance(exclude, (set, frozenset)):
            raise TypeError(f"exclude must be a set of storage keys (see parameter_keys), got {type(exclude).__name__}")
        self.exclude = set(exclude or ())
        self.storages: dict[tuple[str, int], int] = {}
        self.cast_storages: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._recorder = _CastRecorder(self.exclude) if self.exclude else None

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key in self.exclude:
            return tensor
        if self._recorder is not None and key in self._recorder.casts:
            self.cast_storages[key] = tensor.untyped_storage().nbytes()
        else:
            self.storages[key] = tensor.untyped_storage().nbytes()
        return tensor

    @property
    def activations(self) -> int:
        """Bytes of saved storages that are not parameters nor casts of parameters."""
        return sum(self.storages.values())

    @property
    def weight_casts(self) -> int:
        """Bytes of saved storages made by casting a parameter (autocast's low-precision weight copies)."""
        return sum(self.cast_storages.values())

    @property
    def nbytes(self) -> int:
        """Everything saved for backward beyond the parameters: activations + weight casts."""
        return self.activations + self.weight_casts

    def __enter__(self) -> "SavedTensorMeter":
        if self._recorder is not None:
            self._recorder.__enter__()
        try:
            self._hooks.__enter__()
        except BaseException:
            if self._recorder is not None:
                self._recorder.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._hooks.__exit__(*exc)
        finally:
            if self._recorder is not None:
                self._recorder.__exit__(*exc)


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of each part of a training step; ``cuda_peak`` is the allocator's peak on CUDA (else None).

    ``weight_casts``: the low-precision weight copies autocast made and autograd kept for backward (0 without
    autocast); ``activations``: everything else saved for backward.
    """

    weights: int
    gradients: int
    optimizer: int
    activations: int
    cuda_peak: int | None = None
    weight_casts: int = 0

    @property
    def total(self) -> int:
        """The sum of the parts. Not a peak: e.g. Adam's state is created after backward has freed the activations."""
        return self.weights + self.gradients + self.optimizer + self.activations + self.weight_casts

    def mib(self) -> dict[str, float]:
        """The parts in MiB, in a fixed order (handy for tables and stacked bars); weight casts only when present."""
        parts = {"weights": self.weights / MIB, "gradients": self.gradients / MIB,
                 "optimizer state": self.optimizer / MIB, "activations": self.activations / MIB}
        if self.weight_casts:
            parts[WEIGHT_CASTS] = self.weight_casts / MIB
        return parts

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {value:,.1f}" for name, value in self.mib().items())
        peak = f", CUDA peak {self.cuda_peak / MIB:,.1f}" if self.cuda_peak is not None else ""
        return f"{parts} (total {self.total / MIB:,.1f} MiB{peak})"


def model_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The tensors that make up ``model``: its parameters and its buffers (e.g. the 4-bit blocks of lesson 09)."""
    return [*model.parameters(), *model.buffers()]


def parameter_keys(model: nn.Module) -> set[tuple[str, int]]:
    """Storage keys of every parameter and buffer of ``model``: they are counted as weights, never as activations."""
    return {_storage_key(t) for t in model_tensors(model)}


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
    return MemoryReport(weights=unique_storage_bytes(model_tensors(model)), gradients=0, optimizer=0,
                        activations=unique_storage_bytes([output]), cuda_peak=_cuda_peak(device))


def measure_training_step(model: nn.Module, run_loss: Callable[[], torch.Tensor],
                          optimizer: torch.optim.Optimizer) -> MemoryReport:
    """Run one full step (``run_loss()`` forward, backward, ``optimizer.step()``) and account for its memory.

    Gradients are counted after backward, the optimiser state after the step (AdamW keeps two moments per
    trained parameter). The gradients are cleared afterwards.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
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
    return MemoryReport(weights=unique_storage_bytes(model_tensors(model)), gradients=gradients,
                        optimizer=unique_storage_bytes(state), activations=meter.activations, cuda_peak=peak,
                        weight_casts=meter.weight_casts)
