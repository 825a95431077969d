"""Where the probability mass goes: probability against rank, and the share held outside the top tokens."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure

from . import new_figure


def rank_mass_figure(distributions: Mapping[str, torch.Tensor], top: int = 10, title: str = "") -> Figure:
    """Left: probability against rank (log-log), one line per distribution. Right: the mass held by the ``top`` most
    likely tokens and by ALL the other tokens together, one pair of bars per distribution.

    ``distributions``: label -> a 1-D probability vector over the vocabulary (it need not be sorted).
    """
    if not distributions:
        raise ValueError("distributions must map at least one label to a probability vector")
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    fig, (left, right) = new_figure(ncols=2, width=4.6, height=3.4)
    labels = list(distributions)
    inside, outside = [], []
    for label, probs in distributions.items():
        p = torch.as_tensor(probs, dtype=torch.float64).flatten()
        if p.ndim != 1 or p.numel() <= top:
            raise ValueError(f"{label!r}: need a 1-D probability vector longer than top={top}")
        ranked = p.sort(descending=True).values.numpy()
        ranks = np.arange(1, len(ranked) + 1)
        positive = ranked > 0
        left.loglog(ranks[positive], ranked[positive], label=label)
        inside.append(float(ranked[:top].sum()))
        outside.append(float(ranked[top:].sum()))
    left.axvline(top, color="grey", ls=":", lw=1)
    left.set_xlabel("rank of the token (1 = most likely)")
    left.set_ylabel("probability")
    left.set_title("Probability against rank", fontsize=9)
    left.legend(fontsize=7)
    x = np.arange(len(labels))
    right.bar(x - 0.2, 100 * np.array(inside), 0.4, label=f"top {top} tokens")
    right.bar(x + 0.2, 100 * np.array(outside), 0.4, label="all other tokens", color="grey")
    right.set_xticks(x, labels, fontsize=8)
    right.set_ylabel("share of the probability mass (%)")
    right.set_ylim(0, 100)
    right.set_title("Where the mass goes", fontsize=9)
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
