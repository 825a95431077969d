"""Device choice: which torch device the course runs on (cuda > mps > cpu, or the one ``COURSE_DEVICE`` names)."""
from __future__ import annotations

import os
import re

import torch

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
