"""Argument checks shared by the whole package: one rule, one message.

A wrong TYPE raises ``TypeError``, a wrong VALUE raises ``ValueError``. Every message names the argument, what was
given and what is allowed, e.g. ``top_p must be a number in (0, 1] (1 = off), got 1.5``.
Real numbers are Python ints and floats, NumPy integer/floating scalars and 0-d real tensors; ``bool`` is never a
number here (``True`` as a temperature is a bug, not 1.0), and NaN is refused by every numeric check.
"""
from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence

import torch

__all__ = ["check_bool", "check_choice", "check_int", "check_real", "check_text", "check_token_ids"]


def _shown(value) -> str:
    """``value`` for a message: its repr, shortened, with the type for anything that is not a plain scalar."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, (bool, int, float, str)) or value is None:
        return text
    return f"{text} ({type(value).__name__})"


def _suffix(hint: str | None) -> str:
    return f" ({hint})" if hint else ""


def _is_bool(value) -> bool:
    # NumPy is looked up, not imported: a NumPy bool can only exist once NumPy has been imported (the package itself
    # needs only torch, so benchmarks/gpu_check.py runs where NumPy is absent)
    np = sys.modules.get("numpy")
    return isinstance(value, bool) or (np is not None and isinstance(value, np.bool_))


def _is_array(value) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def _is_int(value) -> bool:
    # numbers.Integral covers int and NumPy's integer scalars (NumPy registers them)
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None,
              multiple_of: int | None = None, hint: str | None = None) -> int:
    """``value`` as a Python int, or TypeError (not an integer: floats such as 2.5 or 2.0, bools, strings) or
    ValueError (outside [minimum, maximum], or not a multiple of ``multiple_of``: 2 asks for an even integer).
    NumPy integer scalars are accepted."""
    if multiple_of is None:
        kind = "an integer"
    else:
        kind = "an even integer" if multiple_of == 2 else f"an integer multiple of {multiple_of}"
    if minimum is not None and maximum is not None:
        allowed = f"{kind} in [{minimum}, {maximum}]"
    elif minimum is not None:
        allowed = f"{kind} >= {minimum}"
    elif maximum is not None:
        allowed = f"{kind} <= {maximum}"
    else:
        allowed = kind
    if not _is_int(value):
        raise TypeError(f"{name} must be {allowed}{_suffix(hint)}, got {_shown(value)}")
    value = int(value)
    if ((minimum is not None and value < minimum) or (maximum is not None and value > maximum)
            or (multiple_of is not None and value % multiple_of)):
        raise ValueError(f"{name} must be {allowed}{_suffix(hint)}, got {value}")
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool, finite: bool) -> str:
    if low is not None and high is not None:
        return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    kind = "a finite number" if finite else "a number"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    return kind


def check_real(name: str, value, *, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False, finite: bool = True, hint: str | None = None) -> float:
    """``value`` as a Python float, or TypeError (not a real number) or ValueError (NaN, infinite when ``finite``,
    or outside the interval from ``low`` to ``high``; ``*_open`` excludes that end).

    Accepted: int, float, NumPy integer/floating scalars and 0-d integer/floating tensors (read once, on the host).
    """
    allowed = _interval(low, high, low_open, high_open, finite)
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be {allowed}{_suffix(hint)}; a tensor must be 0-d and real, "
                            f"got shape {tuple(value.shape)} dtype {value.dtype}")
        value = value.item()
    elif _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {allowed}{_suffix(hint)}, got {_shown(value)}")
    number = float(value)
    bad = (math.isnan(number) or (finite and math.isinf(number))
           or (low is not None and (number <= low if low_open else number < low))
           or (high is not None and (number >= high if high_open else number > high)))
    if bad:
        raise ValueError(f"{name} must be {allowed}{_suffix(hint)}, got {number!r}")
    return number


def check_bool(name: str, value, *, hint: str | None = None) -> bool:
    """``value`` if it is True or False (NumPy bools too), else TypeError: 0/1 or "yes" are not booleans here."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False{_suffix(hint)}, got {_shown(value)}")
    return bool(value)


def check_text(name: str, value, *, hint: str | None = None) -> str:
    """``value`` if it is a string holding some text, else TypeError (not a string) or ValueError (empty or blank)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a non-empty string{_suffix(hint)}, got {_shown(value)}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string{_suffix(hint)}, got {value!r}")
    return value


def check_choice(name: str, value, choices: Sequence, *, hint: str | None = None):
    """``value`` if it is one of ``choices``, else ValueError listing them (TypeError if its type matches none)."""
    allowed = ", ".join(repr(c) for c in choices)
    if not any(isinstance(value, type(c)) for c in choices):
        raise TypeError(f"{name} must be one of {allowed}{_suffix(hint)}, got {_shown(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {allowed}{_suffix(hint)}, got {value!r}")
    return value


def check_token_ids(name: str, ids, vocab_size: int | None = None):
    """Token ids as given (a tensor, or nested lists turned into lists of Python ints), checked for type and range.

    TypeError: floats (``504.9`` is never silently truncated to 504), bools, strings, or a non-integer tensor.
    ValueError: an id outside ``[0, vocab_size - 1]`` (any negative id when ``vocab_size`` is None).
    A tensor's range is read once on the host: call this at an entry point, never inside a decoding loop.
    """
    allowed = "integer token ids" + (f" in [0, {vocab_size - 1}]" if vocab_size is not None else " >= 0")
    if isinstance(ids, torch.Tensor):
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"{name} must hold {allowed}, got a tensor of dtype {ids.dtype}; "
                            f"convert with .long() only if the values really are ids")
        if ids.numel():
            low, high = torch.stack([ids.min(), ids.max()]).tolist()
            if low < 0 or (vocab_size is not None and high >= vocab_size):
                raise ValueError(f"{name} must hold {allowed}, got ids from {low} to {high}")
        return ids
    if _is_array(ids):
        return check_token_ids(name, torch.from_numpy(ids), vocab_size)

    def walk(value, where: str):
        if isinstance(value, torch.Tensor) and value.dim() == 0:  # e.g. list(ids_tensor): one integer tensor per id
            if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
                raise TypeError(f"{name}{where} must be one of {allowed}, got a tensor of dtype {value.dtype}")
            value = value.item()
        if isinstance(value, (str, bytes)) or not (isinstance(value, Sequence) or _is_array(value)):
            if not _is_int(value):
                raise TypeError(f"{name}{where} must be one of {allowed}, got {_shown(value)}")
            number = int(value)
            if number < 0 or (vocab_size is not None and number >= vocab_size):
                raise ValueError(f"{name}{where} must be one of {allowed}, got {number}")
            return number
        return [walk(item, f"{where}[{index}]") for index, item in enumerate(value)]

    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a list (or tensor) of {allowed}, got {_shown(ids)}")
    return walk(ids, "")
