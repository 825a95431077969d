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


def kv_cache_speedup(lengths: Sequence[int], seconds_without: Sequence[float], seconds_with: Sequence[float]) -> Figure:
    """Generation time with and without the KV cache against the number of new tokens."""
    _check_same_length(lengths=lengths, seconds_without=seconds_without, seconds_with=seconds_with)
    fig, ax = new_figure()
    ax.plot(lengths, seconds_without, "o-", label="no cache: re-run the whole sequence each step")
    ax.plot(lengths, seconds_with, "o-", label="KV cache: one new token per step")
    ax.set_xlabel("new tokens generated")
    ax.set_ylabel("seconds")
    ax.set_title("Generation time with and without a KV cache")
    ax.legend()
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


def temperature_panels(labels: Sequence[str], probs_by_temperature: Mapping[float, Sequence[float]]) -> Figure:
    """One bar panel per temperature, same tokens in each."""
    if not probs_by_temperature:
        raise ValueError("probs_by_temperature must hold at least one temperature")
    fig, axes = new_figure(ncols=len(probs_by_temperature), width=3.2, height=3.4, sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (t, probs) in zip(axes, probs_by_temperature.items()):
        _check_same_length(labels=labels, probs=probs)
        ax.bar(range(len(labels)), probs)
        ax.set_xticks(range(len(labels)), [repr(label) for label in labels], rotation=60, ha="right", fontsize=8)
        ax.set_title(f"T = {t}")
    axes[0].set_ylabel("probability")
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
    fig, ax = new_figure(width=10.0, height=3.8)
    ax.bar(range(len(counts)), counts)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), [repr(label) for label in labels], rotation=90, fontsize=7)
    ax.set_ylabel("tokens in the nucleus")
    ax.set_title(f"Top-p (p = {p}): the candidate set grows and shrinks at every step")
    return fig
