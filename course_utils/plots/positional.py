"""Figures for the positional-encoding lessons (05, 06): pure functions from arrays to matplotlib Figures."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from . import new_figure


def _array(values) -> np.ndarray:
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=float)


def matrix_heatmaps(matrices: Mapping[str, object], xlabel: str, ylabel: str, cmap: str = "viridis",
                    colorbar_label: str = "") -> Figure:
    """One heatmap per named matrix, side by side, each with its own colour bar."""
    if not matrices:
        raise ValueError("matrix_heatmaps needs at least one matrix")
    fig, axes = new_figure(ncols=len(matrices), width=4.2, height=3.6)
    for ax, (title, matrix) in zip(np.atleast_1d(axes), matrices.items()):
        image = ax.imshow(_array(matrix), aspect="auto", cmap=cmap, interpolation="nearest")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        fig.colorbar(image, ax=ax, label=colorbar_label)
    return fig


def line_plot(x, curves: Mapping[str, object], xlabel: str, ylabel: str, title: str = "",
              markers: bool = False, vline: float | None = None, vline_label: str = "") -> Figure:
    """Several labelled curves over the same x values; an optional dashed vertical marker (e.g. the trained length)."""
    if not curves:
        raise ValueError("line_plot needs at least one curve")
    fig, ax = new_figure()
    for label, y in curves.items():
        ax.plot(_array(x), _array(y), marker="o" if markers else None, markersize=3, label=label)
    if vline is not None:
        ax.axvline(vline, color="grey", linestyle="--", label=vline_label or None)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def length_generalisation_figure(multiples: Sequence[float], accuracy: Mapping[str, object], train_len: int,
                                 chance: float) -> Figure:
    """Accuracy [seeds, lengths] per scheme: mean line plus one dot per seed, against length / trained length."""
    if not accuracy:
        raise ValueError("length_generalisation_figure needs at least one scheme")
    fig, ax = new_figure(width=6.5, height=4.0)
    x = _array(multiples)
    for index, (scheme, values) in enumerate(accuracy.items()):
        values = np.atleast_2d(_array(values))
        if values.shape[1] != len(x):
            raise ValueError(f"{scheme}: {values.shape[1]} accuracies for {len(x)} lengths")
        line, = ax.plot(x, values.mean(0), marker="o", label=scheme)
        jitter = (index - len(accuracy) / 2) * 0.015 * x
        for row in values:
            ax.scatter(x + jitter, row, s=10, color=line.get_color(), alpha=0.5)
    ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [f"{m:g}x\n({int(m * train_len)})" for m in x])
    ax.set(xlabel="test length / trained length (tokens)", ylabel="k-back accuracy", ylim=(0, 1.05),
           title="Length generalisation of the tiny model (dots: seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: no point hidden
    return fig


def rope_rotation_figure(trajectories, pair_indices: Sequence[int], positions, wavelengths) -> Figure:
    """One 2-D panel per RoPE pair: the rotated (x_2i, x_2i+1) point at each position, coloured by position.

    ``trajectories``: [pairs, positions, 2]; ``wavelengths``: positions per full turn, one per pair.
    """
    points = _array(trajectories)
    if points.ndim != 3 or points.shape[0] != len(pair_indices) or points.shape[2] != 2:
        raise ValueError(f"trajectories must have shape [{len(pair_indices)}, positions, 2], got {points.shape}")
    fig, axes = new_figure(ncols=len(pair_indices), width=3.2, height=3.4)
    axes = np.atleast_1d(axes)
    colour = _array(positions)
    radius = np.abs(points).max() * 1.15
    for ax, pair, path, wavelength in zip(axes, pair_indices, points, _array(wavelengths)):
        ax.plot(path[:, 0], path[:, 1], color="lightgrey", linewidth=0.8, zorder=0)
        dots = ax.scatter(path[:, 0], path[:, 1], c=colour, cmap="plasma", s=14)
        ax.annotate("", xy=path[-1], xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="black"))
        ax.set(title=f"pair {pair}: one turn = {wavelength:,.0f} pos.", xlim=(-radius, radius), ylim=(-radius, radius),
               xlabel=f"dim {2 * pair}", ylabel=f"dim {2 * pair + 1}")
        ax.set_aspect("equal")
        ax.title.set_fontsize(9)
    fig.colorbar(dots, ax=axes[-1], label="position")
    return fig


def rope_wavelength_figure(wavelengths, context_len: int, title: str) -> Figure:
    """Wavelength (positions per full turn) of every RoPE pair on a log scale, with the context length marked."""
    values = _array(wavelengths)
    fig, ax = new_figure(width=6.5, height=3.6)
    pairs = np.arange(len(values))
    inside = values <= context_len
    ax.bar(pairs[inside], values[inside], color="tab:blue", label="completes a turn within the context")
    ax.bar(pairs[~inside], values[~inside], color="tab:orange", label="never completes a turn")
    ax.axhline(context_len, color="black", linestyle="--", label=f"context length {context_len:,}")
    ax.set_yscale("log")
    ax.set(xlabel="pair index i", ylabel="wavelength 2π/θ_i (positions)", title=title)
    ax.legend(fontsize=8)
    return fig


def _draw_pair(ax, q: np.ndarray, k: np.ndarray, title: str) -> None:
    """A rotated query pair and key pair as arrows on their circles, into ``ax``."""
    if q.shape != (2,) or k.shape != (2,):
        raise ValueError(f"q_rotated and k_rotated must be 2-vectors, got shapes {q.shape} and {k.shape}")
    radius = max(np.linalg.norm(q), np.linalg.norm(k)) * 1.2
    circle = np.linspace(0, 2 * np.pi, 200)
    for vector, name, colour in ((q, "q (query)", "tab:blue"), (k, "k (key)", "tab:red")):
        ax.plot(np.linalg.norm(vector) * np.cos(circle), np.linalg.norm(vector) * np.sin(circle), color=colour,
                alpha=0.2)
        ax.annotate("", xy=vector, xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, linewidth=2))
        ax.plot([], [], color=colour, label=name)
    ax.set(xlim=(-radius, radius), ylim=(-radius, radius), title=title, xlabel="first dim of the pair",
           ylabel="second dim of the pair")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)


def rope_pair_figure(q_rotated, k_rotated, title: str) -> Figure:
    """The widget's picture: a rotated query pair and key pair as arrows on their circles."""
    fig, ax = new_figure(width=4.2, height=4.2)
    _draw_pair(ax, _array(q_rotated), _array(k_rotated), title)
    return fig


def rope_pair_panels(panels: Mapping[str, tuple[object, object]]) -> Figure:
    """Several (rotated q pair, rotated k pair) settings side by side, one panel per title."""
    if not panels:
        raise ValueError("rope_pair_panels needs at least one (q_rotated, k_rotated) panel")
    fig, axes = new_figure(ncols=len(panels), width=4.0, height=4.2)
    for ax, (title, (q, k)) in zip(np.atleast_1d(axes), panels.items()):
        _draw_pair(ax, _array(q), _array(k), title)
    return fig
