"""Seeding: one call seeds Python's, NumPy's and PyTorch's random generators for a reproducible run."""
from __future__ import annotations

import random

import numpy as np
import torch

from .validation import check_int


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU ``torch.Generator`` seeded the same way."""
    seed = check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
