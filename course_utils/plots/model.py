"""Figures about the model itself."""
from __future__ import annotations

from matplotlib.figure import Figure

from . import new_figure


def parameter_bar_chart(counts: dict[str, int], title: str = "Where the parameters are") -> Figure:
    """Horizontal bars of parameter counts (millions) per component, each labelled with its share."""
    if not counts or any(v < 0 for v in counts.values()):
        raise ValueError("counts must be a non-empty dict of non-negative integers")
    total = sum(counts.values())
    fig, ax = new_figure(width=7, height=3)
    names = list(counts)
    millions = [counts[n] / 1e6 for n in names]
    bars = ax.barh(names, millions, color="tab:blue")
    for bar, n in zip(bars, names):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {100 * counts[n] / total:.1f}%", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("parameters (millions)")
    ax.set_title(f"{title} (total {total / 1e6:.1f} M)")
    ax.set_xlim(0, max(millions) * 1.18)
    return fig
