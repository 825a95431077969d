"""Figures for sampling: the top candidates before/after warping, and how many candidates survive per step."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course_utils.plots import new_figure

KEPT_COLOUR = "#1f77b4"
REMOVED_COLOUR = "#d62728"
BEFORE_COLOUR = "#c7c7c7"


def _check_candidates(labels: Sequence[str], prob_before: Sequence[float], prob_after: Sequence[float],
                      kept: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = {len(labels), len(prob_before), len(prob_after), len(kept)}
    if len(sizes) != 1 or not labels:
        raise ValueError(f"labels, prob_before, prob_after and kept must be non-empty and of one length, "
                         f"got lengths {len(labels)}, {len(prob_before)}, {len(prob_after)}, {len(kept)}")
    before = np.asarray(prob_before, dtype=float)
    after = np.asarray(prob_after, dtype=float)
    for name, values in (("prob_before", before), ("prob_after", after)):
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1 + 1e-6:
            raise ValueError(f"{name} must hold probabilities in [0, 1], "
                             f"got values in [{values.min()}, {values.max()}]")
    return before, after, np.asarray(kept, dtype=bool)


def draw_candidates(ax: Axes, labels: Sequence[str], prob_before: Sequence[float], prob_after: Sequence[float],
                    kept: Sequence[bool], title: str = "", font_scale: float = 1.0, legend: bool = True) -> None:
    """Draw horizontal bars for the top candidates on ``ax``, most probable at the top.

    Grey: the model's probability before warping. Blue: probability after warping (kept tokens).
    Red cross and red label: tokens the warpers removed. ``legend=False`` leaves out the legend and axis label.
    """
    before, after, kept_mask = _check_candidates(labels, prob_before, prob_after, kept)
    if font_scale <= 0:
        raise ValueError(f"font_scale must be positive, got {font_scale}")
    rows = np.arange(len(labels))[::-1]
    ax.barh(rows + 0.2, before, height=0.4, color=BEFORE_COLOUR, label="before warping")
    ax.barh(rows[kept_mask] - 0.2, after[kept_mask], height=0.4, color=KEPT_COLOUR, label="after warping (kept)")
    removed_rows = rows[~kept_mask]
    ax.scatter(np.zeros(len(removed_rows)), removed_rows - 0.2, marker="x", color=REMOVED_COLOUR,
               s=30 * font_scale, zorder=3, label="removed")
    ax.set_yticks(rows, labels, fontsize=9 * font_scale)
    for tick, is_kept in zip(ax.get_yticklabels(), kept_mask):
        tick.set_color("black" if is_kept else REMOVED_COLOUR)
    ax.set_xlim(0, 1.0)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "", "0.5", "", "1"])
    ax.tick_params(axis="x", labelsize=9 * font_scale)
    if legend:
        ax.set_xlabel("probability", fontsize=10 * font_scale)
        ax.legend(loc="lower right", fontsize=8 * font_scale, frameon=False)
    if title:
        ax.set_title(title, fontsize=10 * font_scale)


def candidate_bars(labels: Sequence[str], prob_before: Sequence[float], prob_after: Sequence[float],
                   kept: Sequence[bool], title: str = "", font_scale: float = 1.0) -> Figure:
    """One panel of :func:`draw_candidates`; ``font_scale`` > 1 enlarges figure and text (classroom mode)."""
    fig, ax = new_figure(width=5.5 * font_scale, height=(1.2 + 0.28 * len(labels)) * font_scale)
    draw_candidates(ax, labels, prob_before, prob_after, kept, title, font_scale)
    return fig


def candidate_grid(panels: Sequence[dict], ncols: int = 3) -> Figure:
    """Several :func:`draw_candidates` panels side by side; each panel is a dict of its keyword arguments."""
    if not panels:
        raise ValueError("candidate_grid needs at least one panel")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    longest = max(len(panel["labels"]) for panel in panels)
    fig, axes = new_figure(ncols=ncols, nrows=nrows, width=4.2, height=1.2 + 0.26 * longest)
    flat_axes = np.atleast_1d(axes).ravel()
    for ax, panel in zip(flat_axes, panels):
        draw_candidates(ax, **panel)
    for ax in flat_axes[len(panels):]:
        ax.set_visible(False)
    return fig


def candidate_count_curve(counts: Sequence[int], title: str = "", log_scale: bool = True) -> Figure:
    """Number of surviving candidates at each generation step (e.g. under top-p it changes from step to step)."""
    if len(counts) == 0 or min(counts) < 1:
        raise ValueError(f"counts must be a non-empty sequence of positive integers, got {list(counts)[:5]}")
    fig, ax = new_figure(width=7.0, height=3.0)
    steps = np.arange(1, len(counts) + 1)
    ax.step(steps, counts, where="mid", color=KEPT_COLOUR)
    ax.plot(steps, counts, "o", color=KEPT_COLOUR, markersize=3)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("generation step")
    ax.set_ylabel("surviving candidates")
    if title:
        ax.set_title(title)
    return fig


class CandidateChart:
    """A reusable :func:`draw_candidates` figure for live displays, without legend (the display explains the
    colours): ``update`` changes only bars, labels and colours, so a redraw does not build axes and ticks again."""

    def __init__(self, n_rows: int, font_scale: float = 1.0):
        if n_rows < 1 or font_scale <= 0:
            raise ValueError(f"n_rows must be >= 1 and font_scale > 0, got {n_rows}, {font_scale}")
        self.n_rows = n_rows
        self.font_scale = font_scale
        self.figure = Figure(figsize=(5.0 * font_scale, (0.8 + 0.28 * n_rows) * font_scale))
        self.figure.subplots_adjust(left=0.25, right=0.97, top=0.92, bottom=0.06)
        self.axes = self.figure.add_subplot()
        zeros = [0.0] * n_rows
        draw_candidates(self.axes, ["?"] * n_rows, zeros, zeros, [True] * n_rows, title=" ", font_scale=font_scale,
                        legend=False)
        self._before, self._after = self.axes.containers[0], self.axes.containers[1]
        self._removed = self.axes.collections[-1]
        self._rows = np.arange(n_rows)[::-1]

    def update(self, labels: Sequence[str], prob_before: Sequence[float], prob_after: Sequence[float],
               kept: Sequence[bool], title: str = "") -> None:
        """Show new candidates (exactly ``n_rows`` of them)."""
        before, after, kept_mask = _check_candidates(labels, prob_before, prob_after, kept)
        if len(labels) != self.n_rows:
            raise ValueError(f"this chart shows {self.n_rows} rows, got {len(labels)}")
        for bar, value in zip(self._before, before):
            bar.set_width(value)
        for bar, value, is_kept in zip(self._after, after, kept_mask):
            bar.set_width(value if is_kept else 0.0)
        self._removed.set_offsets(np.column_stack([np.zeros((~kept_mask).sum()), self._rows[~kept_mask] - 0.2]))
        self.axes.set_yticks(self._rows, labels, fontsize=9 * self.font_scale)
        for tick, is_kept in zip(self.axes.get_yticklabels(), kept_mask):
            tick.set_color("black" if is_kept else REMOVED_COLOUR)
        self.axes.set_title(title, fontsize=10 * self.font_scale)

    def png(self, dpi: int = 80) -> bytes:
        """The chart as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
        return buffer.getvalue()
