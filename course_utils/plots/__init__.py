"""Matplotlib figures as pure functions (inputs -> Figure), one module per topic. They never call model code."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 3.6, squeeze: bool = True,
               **kwargs) -> tuple[Figure, object]:
    """A figure with ``nrows x ncols`` axes sized per panel; the course's single place for figure defaults.

    ``squeeze=False`` always returns a 2-D array of axes (handy when the panel count varies).
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=squeeze,
                             constrained_layout=True, **kwargs)
    return fig, axes
