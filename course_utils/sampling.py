"""Logits warpers for decoding: temperature, top-k, top-p (nucleus), min-p and a repetition penalty.

Every warper maps ``logits[..., V] -> logits[..., V]`` and marks removed tokens with ``-inf``, so a softmax of the
result renormalises over the survivors. Semantics follow Hugging Face transformers' ``TemperatureLogitsWarper``,
``TopKLogitsWarper``, ``TopPLogitsWarper``, ``MinPLogitsWarper`` and ``RepetitionPenaltyLogitsProcessor`` (with
``min_tokens_to_keep=1``). Differences, all deliberate:

- ``top_p`` accumulates probability from the most likely token down (HF accumulates from the least likely up).
  Both keep a token when the mass of the tokens ranked above it is below ``p``; they can disagree only when that mass
  lies within float rounding of ``p``, or when tokens with exactly equal logits straddle the cut (which of them
  survive then depends on the sort order, in both). ``p`` must lie in (0, 1] (HF also accepts 0: greedy there).
- ``temperature(logits, 0)`` is refused; greedy decoding is ``SamplingConfig(temperature=0)``.
- ``repetition_penalty`` takes the ids to penalise as an argument instead of reading the model input.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

REMOVED = float("-inf")


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError("logits must be a floating-point torch.Tensor of shape [..., vocab]")
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits need a non-empty last (vocabulary) dimension, got shape {tuple(logits.shape)}")


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide the logits by ``t`` > 0: t < 1 sharpens the softmax, t > 1 flattens it, t = 1 changes nothing."""
    _check_logits(logits)
    if not isinstance(t, (int, float)) or not t > 0 or math.isinf(t):
        raise ValueError(f"temperature must be a finite number > 0 (use SamplingConfig(temperature=0) for greedy), "
                         f"got {t!r}")
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits (and every token tied with the k-th); ``k = 0`` or ``k >= V`` keeps all."""
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {k!r}")
    if k == 0 or k >= logits.shape[-1]:
        return logits
    kth_best = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_best, REMOVED)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches ``p`` in (0, 1].

    A token survives when the tokens ranked above it hold less than ``p`` of the mass, so the token that crosses
    ``p`` is kept and the most likely token always survives. ``p = 1`` keeps everything.
    """
    _check_logits(logits)
    if not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {p!r}")
    if p == 1:
        return logits
    sorted_probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)
    mass_above = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    remove_sorted = mass_above >= p
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, REMOVED)


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``p`` times the top token's (Nguyen et al., 2024); p in [0, 1].

    ``p = 0`` keeps everything; the most likely token always survives.
    """
    _check_logits(logits)
    if not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"min_p must lie in [0, 1], got {p!r}")
    if p == 0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs < p * probs.amax(dim=-1, keepdim=True), REMOVED)


def repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor | Sequence[int],
                       penalty: float) -> torch.Tensor:
    """Make every token in ``previous_ids`` less likely (Keskar et al., 2019, "CTRL"); ``penalty`` > 0.

    A positive logit is divided by ``penalty``, a negative one multiplied by it, once per distinct token however often
    it occurred. ``penalty = 1`` changes nothing, > 1 discourages repeats, < 1 encourages them.
    ``previous_ids``: integer ids with shape ``logits.shape[:-1] + (L,)`` (or a flat list for 1-D logits).
    """
    _check_logits(logits)
    if not isinstance(penalty, (int, float)) or not penalty > 0 or math.isinf(penalty):
        raise ValueError(f"repetition_penalty must be a finite number > 0 (1 = off), got {penalty!r}")
    ids = torch.as_tensor(previous_ids, dtype=torch.long, device=logits.device)
    if ids.dim() != logits.dim() or ids.shape[:-1] != logits.shape[:-1]:
        raise ValueError(f"previous_ids must have shape {tuple(logits.shape[:-1])} + (L,), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= logits.shape[-1]):
        raise ValueError(f"previous_ids must lie in [0, {logits.shape[-1] - 1}]")
    if penalty == 1 or ids.shape[-1] == 0:
        return logits
    seen = logits.gather(-1, ids)
    penalised = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(-1, ids, penalised)


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick the next token. Defaults are pure (ancestral) sampling; ``temperature=0`` means greedy (argmax).

    ``top_k``: 0 = off. ``top_p``: in (0, 1], 1 = off. ``min_p``: in [0, 1], 0 = off.
    ``repetition_penalty``: > 0, 1 = off (it also applies to greedy decoding).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0 or math.isinf(self.temperature):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1] (1 = off), got {self.top_p!r}")
        if not isinstance(self.min_p, (int, float)) or not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must lie in [0, 1] (0 = off), got {self.min_p!r}")
        penalty = self.repetition_penalty
        if not isinstance(penalty, (int, float)) or not penalty > 0 or math.isinf(penalty):
            raise ValueError(f"repetition_penalty must be a finite number > 0 (1 = off), got {penalty!r}")

    @property
    def is_greedy(self) -> bool:
        """True when decoding takes the argmax (temperature 0)."""
        return self.temperature == 0


def warp_logits(logits: torch.Tensor, config: SamplingConfig,
                previous_ids: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """Apply the configured warpers in Hugging Face's order: repetition penalty, temperature, top-k, top-p, min-p.

    With ``temperature=0`` (greedy) only the highest logit(s) survive: the limit of T -> 0.
    ``previous_ids`` is needed only when ``config.repetition_penalty != 1``.
    """
    if not isinstance(config, SamplingConfig):
        raise ValueError(f"config must be a SamplingConfig, got {type(config).__name__}")
    _check_logits(logits)
    if config.repetition_penalty != 1:
        if previous_ids is None:
            raise ValueError("repetition_penalty != 1 needs previous_ids (the ids generated so far)")
        logits = repetition_penalty(logits, previous_ids, config.repetition_penalty)
    if config.is_greedy:
        return logits.masked_fill(logits < logits.amax(dim=-1, keepdim=True), REMOVED)
    if config.temperature != 1:
        logits = temperature(logits, config.temperature)
    logits = top_k(logits, config.top_k)
    logits = top_p(logits, config.top_p)
    return min_p(logits, config.min_p)


def sample_next(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None = None,
                previous_ids: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """Next token ids, shape ``logits.shape[:-1]``: the argmax when greedy, else a draw from the warped softmax.

    ``generator`` (on the logits' device) makes draws reproducible; greedy ignores it.
    """
    if not isinstance(config, SamplingConfig):
        raise ValueError(f"config must be a SamplingConfig, got {type(config).__name__}")
    _check_logits(logits)
    if config.is_greedy:
        if config.repetition_penalty != 1:
            if previous_ids is None:
                raise ValueError("repetition_penalty != 1 needs previous_ids (the ids generated so far)")
            logits = repetition_penalty(logits, previous_ids, config.repetition_penalty)
        return logits.argmax(dim=-1)
    probs = torch.softmax(warp_logits(logits, config, previous_ids), dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
