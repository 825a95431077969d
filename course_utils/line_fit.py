"""Least-squares line fits: does a measured quantity grow linearly in another (slope, intercept, R²)?

Lesson 07 fits the saved activations against the number of tokens in a batch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LineFit:
    """Least-squares line ``y = slope * x + intercept`` and its coefficient of determination ``r2``."""

    slope: float
    intercept: float
    r2: float

    def __call__(self, x: float) -> float:
        """The line's value at ``x``."""
        return self.slope * x + self.intercept


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LineFit:
    """Ordinary least squares over at least 3 points (two points always lie on a line, so they prove nothing)."""
    xs, ys = [float(x) for x in xs], [float(y) for y in ys]
    if len(xs) != len(ys):
        raise ValueError(f"fit_line needs one y per x, got {len(xs)} xs and {len(ys)} ys")
    if len(xs) < 3:
        raise ValueError(f"fit_line needs at least 3 points to test a line, got {len(xs)}")
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError("fit_line needs finite numbers")
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("fit_line needs at least two distinct x values")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    return LineFit(slope, intercept, 1.0 - ss_res / ss_tot if ss_tot else 1.0)
