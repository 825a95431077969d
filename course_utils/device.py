"""Device choice, dtype policy, seeding and memory measurement."""
from __future__ import annotations

import contextlib
import os
import random
import re
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .validation import check_int

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """Return the device to use (``name``: a string or a ``torch.device``).

    ``"auto"`` (or ``None``) picks cuda > mps > cpu, unless the environment variable
    ``COURSE_DEVICE`` names a device. Explicit names: ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    """
    if isinstance(name, torch.device):  # torch.device("cpu") means the same as "cpu"
        name = str(name)
    if name is None or name == "auto":
        name = os.environ.get("COURSE_DEVICE", "auto").strip() or "auto"
    if not isinstance(name, str):
        raise TypeError(f"device must be a string or a torch.device ('auto', 'cpu', 'cuda', 'cuda:N', 'mps'), "
                        f"got {type(name).__name__}")
    if not _DEVICE_PATTERN.match(name):
        raise ValueError(f"unknown device {name!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but this PyTorch build sees no CUDA GPU; use 'cpu' or 'auto'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but it is not available; use 'cpu' or 'auto'")
    return torch.device(name)


def default_dtype(device: torch.device) -> torch.dtype:
    """The course's dtype policy: bfloat16 on CUDA, float32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


AUTOCAST_ENV = "COURSE_AUTOCAST"
AUTOCAST_CHOICES = ("auto", "bf16", "off")


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


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU ``torch.Generator`` seeded the same way."""
    seed = check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def tensor_mib(*tensors: torch.Tensor) -> float:
    """Total storage of the given tensors in MiB."""
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, restoring the previous setting afterwards.

    Small tensors (a tiny model, one 49k-entry logits vector) gain nothing from a second thread, and on a busy
    2-core machine the threads' synchronisation made such work up to ten times slower (measured for lessons 03, 05).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
