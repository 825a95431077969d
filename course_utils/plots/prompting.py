"""Figures of the prompting lesson: strategy x task results and the spread of accuracy across prompt variants."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from . import new_figure


def strategy_task_figure(rows: Sequence[Mapping], caps: Mapping[str, float] | None = None) -> Figure:
    """Grouped bars: accuracy (left) and mean generated tokens (right) per task, one bar per strategy.

    ``rows``: dicts with keys ``task``, ``strategy``, ``accuracy`` (0..1) and ``mean_tokens``; with ``low`` and
    ``high`` (0..1) as well, the accuracy bars get error bars for that interval. ``caps``: label -> token cap, drawn
    as dashed lines on the length panel (a bar that reaches its line was cut off on most items).
    """
    if not rows:
        raise ValueError("rows must be a non-empty list of {'task', 'strategy', 'accuracy', 'mean_tokens'} dicts")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    lookup = {(r["task"], r["strategy"]): r for r in rows}
    fig, (left, right) = new_figure(ncols=2, width=5.6, height=3.6)
    width = 0.8 / len(strategies)
    x = np.arange(len(tasks))
    with_intervals = all("low" in row and "high" in row for row in rows)
    for index, strategy in enumerate(strategies):
        offset = x - 0.4 + width * (index + 0.5)
        acc = [100 * lookup[(t, strategy)]["accuracy"] if (t, strategy) in lookup else np.nan for t in tasks]
        tokens = [lookup[(t, strategy)]["mean_tokens"] if (t, strategy) in lookup else np.nan for t in tasks]
        left.bar(offset, acc, width, label=strategy)
        if with_intervals:
            low = [100 * lookup[(t, strategy)]["low"] if (t, strategy) in lookup else np.nan for t in tasks]
            high = [100 * lookup[(t, strategy)]["high"] if (t, strategy) in lookup else np.nan for t in tasks]
            errors = np.array([np.subtract(acc, low), np.subtract(high, acc)])
            left.errorbar(offset, acc, yerr=errors, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        right.bar(offset, tokens, width, label=strategy)
    for axis, label in ((left, "accuracy (%)"), (right, "mean generated tokens")):
        axis.set_xticks(x, tasks)
        axis.set_ylabel(label)
        axis.set_xlabel("task")
    for (label, cap), style in zip((caps or {}).items(), ("--", ":", "-.")):
        right.axhline(cap, color="grey", ls=style, lw=1)
        right.annotate(f"cap: {label} ({cap:g})", (1.0, cap), xycoords=("axes fraction", "data"), ha="right",
                       va="bottom", fontsize=7, color="dimgrey")
    left.set_ylim(0, 100)
    left.set_title("Accuracy by prompting strategy" + ("\n(black: 95 % interval)" if with_intervals else ""))
    right.set_title("Length of the replies")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(strategies), fontsize=8, title="strategy",
               title_fontsize=8)
    return fig


def confusion_figure(counts, labels: Sequence[str], title: str) -> Figure:
    """A confusion matrix as a heat map with the counts written in: rows true class, columns predicted class.

    ``counts``: (classes, classes) or (classes, classes + 1) counts; an extra last column is labelled "none".
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != len(labels) or counts.shape[1] not in (len(labels), len(labels) + 1):
        raise ValueError(f"counts must be (classes, classes[+1]) for {len(labels)} labels, got {counts.shape}")
    columns = list(labels) + (["none"] if counts.shape[1] > len(labels) else [])
    fig, axis = new_figure(width=4.2, height=3.6)
    axis.imshow(counts, cmap="Blues", vmin=0)
    for (i, j), value in np.ndenumerate(counts):
        axis.text(j, i, str(int(value)), ha="center", va="center", fontsize=9,
                  color="white" if value > counts.max() / 2 else "black")
    axis.set_xticks(range(len(columns)), columns, fontsize=8)
    axis.set_yticks(range(len(labels)), list(labels), fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true class")
    axis.set_title(title, fontsize=9)
    return fig


def spread_figure(groups: Mapping[str, Sequence[float]], title: str, chance: float | None = None) -> Figure:
    """One column of dots per condition (each dot one prompt variant), with the mean as a bar.

    ``groups``: condition name -> accuracies in 0..1. ``chance``: draws a dashed line at that accuracy.
    """
    if not groups or any(len(v) == 0 for v in groups.values()):
        raise ValueError("groups must map each condition to a non-empty list of accuracies")
    fig, axis = new_figure(width=6.4, height=3.6)
    for position, values in enumerate(groups.values()):
        values = 100 * np.asarray(values, dtype=float)
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        axis.scatter(position + jitter, values, s=28, zorder=3)
        axis.hlines(values.mean(), position - 0.25, position + 0.25, color="black", lw=2, zorder=2)
        axis.vlines(position, values.min(), values.max(), color="grey", lw=1, zorder=1,
                    label="range: lowest to highest variant" if position == 0 else None)
    if chance is not None:
        axis.axhline(100 * chance, color="grey", ls="--", lw=1, label="chance")
    axis.legend(fontsize=8, loc="lower right")
    axis.set_xticks(range(len(groups)), list(groups))
    axis.set_ylabel("accuracy (%)")
    axis.set_xlabel("prompt family (dot = one variant, bar = mean)")
    axis.set_ylim(0, 100)
    axis.set_title(title)
    return fig


def k_sweep_figure(ks: Sequence[int], curves: Mapping[str, Sequence[tuple[float, float, float]]],
                   title: str) -> Figure:
    """Accuracy against the number of few-shot examples, one line per task with its 95 % interval as a band.

    ``curves``: label -> one (accuracy, low, high) triple in 0..1 per entry of ``ks``.
    """
    if not ks or not curves or any(len(v) != len(ks) for v in curves.values()):
        raise ValueError("curves must give one (accuracy, low, high) triple per k for every label")
    fig, axis = new_figure(width=5.6, height=3.4)
    for label, triples in curves.items():
        acc, low, high = (100 * np.asarray(column, dtype=float) for column in zip(*triples))
        line = axis.plot(ks, acc, marker="o", label=label)[0]
        axis.fill_between(ks, low, high, color=line.get_color(), alpha=0.15, lw=0)
    axis.set_xticks(list(ks))
    axis.set_xlabel("k: solved examples in the prompt")
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(0, 100)
    axis.set_title(title + "\n(band: 95 % Wilson interval)", fontsize=9)
    axis.legend(fontsize=8, loc="upper left")
    return fig
