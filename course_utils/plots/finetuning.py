"""Figures for the fine-tuning lessons (07, 08): memory breakdowns, loss curves, the LoRA rank sweep."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from . import new_figure

PART_COLOURS = {"weights": "#4c72b0", "gradients": "#dd8452", "optimizer state": "#55a868", "activations": "#c44e52"}


def memory_breakdown(reports: Mapping[str, Mapping[str, float]], title: str = "Memory of one step") -> Figure:
    """Stacked bars, one per setting (e.g. inference / full fine-tuning / LoRA), split into parts given in MiB."""
    if not reports:
        raise ValueError("memory_breakdown needs at least one report")
    fig, ax = new_figure(width=7.0, height=4.0)
    labels = list(reports)
    parts = list(dict.fromkeys(part for report in reports.values() for part in report))
    bottoms = [0.0] * len(labels)
    for part in parts:
        heights = [reports[label].get(part, 0.0) for label in labels]
        ax.bar(labels, heights, bottom=bottoms, label=part, color=PART_COLOURS.get(part))
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    for x, total in enumerate(bottoms):
        ax.text(x, total, f"{total:,.0f} MiB", ha="center", va="bottom")
    ax.set_ylabel("memory (MiB)")
    ax.set_ylim(0, max(bottoms) * 1.12)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside the axes: never hides a bar or its label
    return fig


def activation_scaling(batches: Sequence[int], by_batch: Sequence[float], lengths: Sequence[int],
                       by_length: Sequence[float], fixed_mib: float, seq_len: int, batch: int) -> Figure:
    """Activation memory (MiB) against batch size (left) and sequence length (right), with the fixed
    parameter-sized cost (weights + gradients + optimiser state) as a dashed line."""
    if len(batches) != len(by_batch) or len(lengths) != len(by_length) or not batches or not lengths:
        raise ValueError("each sweep needs one memory value per setting, and at least one setting")
    fig, axes = new_figure(ncols=2, width=5.5)
    panels = ((axes[0], batches, by_batch, f"batch size ({seq_len} tokens each)"),
              (axes[1], lengths, by_length, f"sequence length (batch {batch})"))
    for ax, xs, values, xlabel in panels:
        ax.axhline(fixed_mib, color="grey", linestyle="--", label="weights + gradients + Adam state")
        ax.plot(xs, values, "o-", color=PART_COLOURS["activations"], label="activations saved for backward")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("memory (MiB)")
        ax.legend()
    fig.suptitle("Fixed cost vs activations in full fine-tuning")
    return fig


def loss_curves(curves: Mapping[str, Sequence[float]], title: str = "Training loss (answer tokens only)") -> Figure:
    """Training loss per step for one or more runs, on a log scale."""
    if not curves or any(len(c) == 0 for c in curves.values()):
        raise ValueError("loss_curves needs at least one non-empty curve")
    fig, ax = new_figure()
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title)
    ax.legend()
    return fig


def lora_sweep(labels: Sequence[str], trainable: Sequence[int], accuracy: Sequence[float],
               final_loss: Sequence[float], title: str = "LoRA: rank and target layers") -> Figure:
    """Held-out exact match and final training loss against the number of trainable parameters (log x)."""
    if not (len(labels) == len(trainable) == len(accuracy) == len(final_loss)) or not labels:
        raise ValueError("labels, trainable, accuracy and final_loss must be non-empty and equally long")
    fig, (left, right) = new_figure(ncols=2, width=5.2)
    for ax, values, ylabel in ((left, [100 * a for a in accuracy], "held-out exact match (%)"),
                               (right, final_loss, "final training loss")):
        ax.plot(trainable, values, "o", color="#4c72b0")
        for x, y, label in zip(trainable, values, labels):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(ylabel)
    right.set_yscale("log")
    fig.suptitle(title)
    return fig
