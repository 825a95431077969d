"""Checks for lesson exercises: run a learner's function against the reference on random inputs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def check_exercise(name: str, learner: Callable, reference: Callable, make_inputs: Callable[[torch.Generator], tuple],
                   trials: int = 20, atol: float = 1e-5, hint: str = "", seed: int = 0) -> bool:
    """Compare ``learner(*inputs)`` with ``reference(*inputs)`` on ``trials`` random inputs; print PASS or FAIL + hint.

    Returns True when every trial matches (tensors within ``atol``, other values equal).
    """
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}")
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        inputs = make_inputs(generator)
        expected = reference(*inputs)
        try:
            got = learner(*inputs)
        except NotImplementedError:
            print(f"[{name}] not attempted yet: replace the `raise NotImplementedError` with your code.")
            return False
        except Exception as error:  # the learner's code may fail in any way; report it kindly
            print(f"[{name}] FAIL on trial {trial}: your function raised {type(error).__name__}: {error}\n"
                  f"  hint: {hint}")
            return False
        if not _same(got, expected, atol):
            print(f"[{name}] FAIL on trial {trial}: expected {_short(expected)}, got {_short(got)}\n  hint: {hint}")
            return False
    print(f"[{name}] PASS ({trials} random cases)")
    return True


def _same(got: Any, expected: Any, atol: float) -> bool:
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return False
        both_inf = torch.isinf(expected) & torch.isinf(got) & (torch.sign(expected) == torch.sign(got))
        close = torch.isclose(got.double(), expected.double(), atol=atol, rtol=0) | both_inf
        return bool(close.all())
    if isinstance(expected, (tuple, list)):
        return (isinstance(got, (tuple, list)) and len(got) == len(expected)
                and all(_same(g, e, atol) for g, e in zip(got, expected)))
    if isinstance(expected, float):
        return isinstance(got, (int, float)) and abs(got - expected) <= atol
    return got == expected


def _short(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, torch.Tensor) and value.numel() <= 8 else value)
    return text if len(text) < 120 else text[:117] + "..."
