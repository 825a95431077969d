"""Memory in MiB: the peak resident memory of this process, and the storage of given tensors."""
from __future__ import annotations

import resource
import sys

import torch

MIB = 2**20


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 2**10


def tensor_mib(*tensors: torch.Tensor) -> float:
    """Total storage of the given tensors in MiB (each tensor's own elements; shared storage counted per tensor)."""
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensors[{index}] must be a torch.Tensor, got {type(tensor).__name__}")
    return sum(t.numel() * t.element_size() for t in tensors) / MIB
