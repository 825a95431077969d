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


def check_prediction(name: str, predicted: Any, measured: Any, tolerance: float = 0.0, hint: str = "") -> bool:
    """Compare a learner's written-down prediction with the value the notebook measured; print PASS or FAIL + hint.

    Numbers match within ``tolerance`` (absolute), sequences element by element, anything else by equality; when
    ``measured`` is a set, any member is a correct answer (e.g. several options that tie within the noise).
    ``predicted=None`` means "not answered yet". Returns True on a match.
    """
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    if predicted is None:
        print(f"[{name}] not answered yet: write your prediction in place of `None`, then run the cell.")
        return False
    if isinstance(measured, (int, float)) and not isinstance(measured, bool):
        measured = float(measured)
    if isinstance(measured, (tuple, list)):
        measured = [float(m) if isinstance(m, (int, float)) and not isinstance(m, bool) else m for m in measured]
    if isinstance(measured, (set, frozenset)):
        correct = predicted in measured
        measured = sorted(measured, key=repr)
    else:
        correct = _same(predicted, measured, tolerance)
    if correct:
        print(f"[{name}] PASS: you predicted {_short(predicted)}, the notebook measured {_short(measured)}")
        return True
    print(f"[{name}] FAIL: you predicted {_short(predicted)}, the notebook measured {_short(measured)}\n  hint: {hint}")
    return False
