"""Figures for the generation and decoding lessons (01, 02). Pure functions: numbers in, Figure out."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from . import new_figure


def _check_same_length(**named: Sequence) -> None:
    lengths = {name: len(values) for name, values in named.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"these inputs must be non-empty and of equal length, got {lengths}")


def next_token_bars(labels: Sequence[str], probs: Sequence[float], title: str) -> Figure:
    """Horizontal bars: the most likely next tokens and their probabilities."""
    _check_same_length(labels=labels, probs=probs)
    fig, ax = new_figure(height=0.3 * len(labels) + 1.2)
    ax.barh(range(len(labels)), probs, color="tab:blue")
    ax.set_yticks(range(len(labels)), [repr(label) for label in labels])
    ax.invert_yaxis()
    ax.set_xlabel("probability")
    ax.set_title(title)
    return fig


def kv_cache_steps(step_seconds_without: Sequence[float], step_seconds_with: Sequence[float],
                   positions_without: Sequence[int], positions_with: Sequence[int],
                   timed_steps_without: Sequence[int] | None = None) -> Figure:
    """Two panels over the steps of one generation: seconds per step, and token positions run through the network
    so far (quadratic without a cache, linear with one).

    ``step_seconds_with``, ``positions_without`` and ``positions_with`` hold one value per step (1, 2, ...).
    ``timed_steps_without``: the step numbers at which ``step_seconds_without`` was measured, when only some no-cache
    steps were timed (None: every step).
    """
    _check_same_length(step_seconds_with=step_seconds_with, positions_without=positions_without,
                       positions_with=positions_with)
    steps = np.arange(1, len(step_seconds_with) + 1)
    timed = steps if timed_steps_without is None else np.asarray(timed_steps_without)
    _check_same_length(step_seconds_without=step_seconds_without, timed_steps_without=timed)
    fig, (left, right) = new_figure(ncols=2, width=5.0, height=3.6)
    left.plot(timed, np.asarray(step_seconds_without) * 1000, "o", markersize=4, label="no cache")
    left.plot(steps, np.asarray(step_seconds_with) * 1000, ".", markersize=3, label="KV cache")
    left.set_xlabel("step (new token number)")
    left.set_ylabel("milliseconds for this step")
    left.set_ylim(bottom=0)
    left.set_title("Time per step")
    left.legend()
    right.plot(steps, positions_without, label="no cache: whole sequence each step")
    right.plot(steps, positions_with, label="KV cache: one position per step")
    right.set_xlabel("new tokens generated")
    right.set_ylabel("token positions processed so far")
    right.set_title("Work done")
    right.legend(fontsize=8)
    return fig


def cumulative_logprob_paths(paths: Mapping[str, Sequence[float]]) -> Figure:
    """Running sum of per-token log-probabilities for several decodings of the same prompt."""
    if not paths:
        raise ValueError("paths must name at least one sequence of log-probabilities")
    fig, ax = new_figure()
    for name, logprobs in paths.items():
        ax.plot(range(1, len(logprobs) + 1), np.cumsum(logprobs), "o-", label=name)
    ax.set_xlabel("new token")
    ax.set_ylabel("log P(continuation so far | prompt)")
    ax.set_title("Greedy's best first step is not the best path")
    ax.legend()
    return fig


def rank_probability(mean_sorted_probs: Sequence[float], marks: Sequence[int] = (10, 100, 1000)) -> Figure:
    """Mean probability of the r-th most likely token against r, on log-log axes, with rank cut-offs marked."""
    probs = np.asarray(mean_sorted_probs, dtype=float)
    if probs.ndim != 1 or probs.size == 0:
        raise ValueError("mean_sorted_probs must be a non-empty 1-D sequence")
    fig, ax = new_figure()
    ranks = np.arange(1, probs.size + 1)
    ax.loglog(ranks, probs)
    for mark in marks:
        ax.axvline(mark, color="grey", linestyle=":")
        ax.text(mark, probs.max(), f" top {mark}", va="top", fontsize=8)
    ax.set_xlabel("rank of the token in the next-token distribution")
    ax.set_ylabel("mean probability")
    ax.set_title("The heavy tail of next-token distributions")
    return fig


def sample_histogram(labels: Sequence[str], probs: Sequence[float], frequencies: Sequence[float]) -> Figure:
    """Model probabilities beside the observed frequencies of sampled tokens."""
    _check_same_length(labels=labels, probs=probs, frequencies=frequencies)
    fig, ax = new_figure(width=7.5)
    positions = np.arange(len(labels))
    ax.bar(positions - 0.2, probs, width=0.4, label="model probability")
    ax.bar(positions + 0.2, frequencies, width=0.4, label="share of draws")
    ax.set_xticks(positions, [repr(label) for label in labels], rotation=45, ha="right")
    ax.set_ylabel("probability / frequency")
    ax.set_title("Ancestral sampling draws tokens in proportion to their probability")
    ax.legend()
    return fig


def temperature_panels(labels: Sequence[str], probs_by_temperature: Mapping[float, Sequence[float]],
                       rest: bool = True) -> Figure:
    """One bar panel per temperature, same tokens in each.

    With ``rest=True`` the given probabilities are read as part of one full distribution and a last, grey bar shows
    "all other tokens" (1 - their sum), so a flat, hot distribution does not look as if its mass had vanished.
    """
    if not probs_by_temperature:
        raise ValueError("probs_by_temperature must hold at least one temperature")
    if not isinstance(rest, bool):
        raise TypeError(f"rest must be True or False, got {type(rest).__name__}")
    fig, axes = new_figure(ncols=len(probs_by_temperature), width=3.4, height=3.6, sharey=True)
    axes = np.atleast_1d(axes)
    names = [repr(label) for label in labels] + (["(all other tokens)"] if rest else [])
    for ax, (t, probs) in zip(axes, probs_by_temperature.items()):
        _check_same_length(labels=labels, probs=probs)
        heights = list(probs) + ([max(0.0, 1.0 - float(sum(probs)))] if rest else [])
        colours = ["tab:blue"] * len(labels) + (["tab:grey"] if rest else [])
        ax.bar(range(len(heights)), heights, color=colours)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"T = {t}")
    axes[0].set_ylabel("probability")
    return fig


def kept_versus_temperature(temperatures: Sequence[float], kept: Mapping[str, Sequence[int]],
                            entropies_bits: Mapping[str, Sequence[float]]) -> Figure:
    """How a temperature applied before truncation changes what each filter keeps (left, log scale) and the entropy of
    the distribution finally sampled from (right, bits), one line per filter."""
    if not kept or set(kept) != set(entropies_bits):
        raise ValueError("kept and entropies_bits must name the same, non-empty set of filters")
    fig, (left, right) = new_figure(ncols=2, width=4.6, height=3.6)
    for name in kept:
        _check_same_length(temperatures=temperatures, kept=kept[name], entropies_bits=entropies_bits[name])
        left.plot(temperatures, kept[name], "o-", label=name)
        right.plot(temperatures, entropies_bits[name], "o-", label=name)
    left.set_yscale("log")
    left.set_xlabel("temperature T (applied first)")
    left.set_ylabel("tokens kept")
    left.set_title("What the filter keeps")
    right.set_xlabel("temperature T (applied first)")
    right.set_ylabel("entropy of the sampled distribution (bits)")
    right.set_title("How spread the draw is")
    left.legend(fontsize=8)
    return fig


def cumulative_mass(curves: Mapping[str, Sequence[float]], k: int, p: float | None = None) -> Figure:
    """Cumulative probability of the top-r tokens against r for several contexts, with a fixed k (and p) marked."""
    if not curves:
        raise ValueError("curves must hold at least one context")
    fig, ax = new_figure(width=7.0)
    for name, cumulative in curves.items():
        ax.semilogx(np.arange(1, len(cumulative) + 1), cumulative, label=name)
    ax.axvline(k, color="black", linestyle="--", label=f"top-k, k = {k}")
    if p is not None:
        ax.axhline(p, color="grey", linestyle=":", label=f"top-p, p = {p}")
    ax.set_xlabel("number of most likely tokens kept")
    ax.set_ylabel("probability mass kept")
    ax.set_title("One fixed k: too wide for a sure context, too narrow for an open one")
    ax.legend(fontsize=8)
    return fig


def candidates_per_step(counts: Sequence[int], labels: Sequence[str], p: float) -> Figure:
    """Number of tokens the nucleus keeps at each step of a generation, the chosen token under each bar."""
    _check_same_length(counts=counts, labels=labels)
    fig, ax = new_figure(width=max(6.0, 0.26 * len(counts) + 1.5), height=4.4)
    ax.bar(range(len(counts)), counts)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), [repr(label) for label in labels], rotation=90, fontsize=9)
    ax.set_xlabel("step of the generation, labelled with the token sampled at that step")
    ax.set_ylabel("tokens in the nucleus")
    ax.set_title(f"Top-p (p = {p}): the candidate set grows and shrinks at every step")
    return fig
