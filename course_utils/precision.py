"""Which float types the course computes in: the weights' dtype per device and the training autocast policy.

Inference loads the weights in ``default_dtype`` (bfloat16 on CUDA, float32 elsewhere). Training keeps float32
weights and autocasts the forward pass to bfloat16 where ``autocast_dtype`` says so (env ``COURSE_AUTOCAST``).
"""
from __future__ import annotations

import contextlib
import os

import torch

AUTOCAST_ENV = "COURSE_AUTOCAST"
AUTOCAST_CHOICES = ("auto", "bf16", "off")


def default_dtype(device: torch.device) -> torch.dtype:
    """The course's dtype policy for weights: bfloat16 on CUDA, float32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def autocast_setting() -> str:
    """The value of env ``COURSE_AUTOCAST`` ("auto" when unset), checked against ``AUTOCAST_CHOICES``."""
    value = os.environ.get(AUTOCAST_ENV, "auto").strip().lower() or "auto"
    if value not in AUTOCAST_CHOICES:
        raise ValueError(f"{AUTOCAST_ENV}={value!r} is not understood; use one of {AUTOCAST_CHOICES} "
                         f"(auto: bfloat16 on CUDA only; bf16: bfloat16 on every device; off: never)")
    return value


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype a training forward pass autocasts to on ``device`` (None: no autocast, plain float32)."""
    if not isinstance(device, (torch.device, str)):
        raise TypeError(f"device must be a torch.device or a string, got {type(device).__name__}")
    device = torch.device(device)
    setting = autocast_setting()
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast_for(device: torch.device | str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device.type, dtype=bfloat16)`` where ``autocast_dtype`` says so, else a null context."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
