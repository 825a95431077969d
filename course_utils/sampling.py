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

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .validation import check_int, check_real, check_token_ids

REMOVED = float("-inf")
_GREEDY_HINT = "use SamplingConfig(temperature=0) for greedy"


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point torch.Tensor of shape [..., vocab], "
                        f"got {type(logits).__name__}" + (f" of dtype {logits.dtype}"
                                                          if isinstance(logits, torch.Tensor) else ""))
    if logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits need a non-empty last (vocabulary) dimension, got shape {tuple(logits.shape)}")


def nonfinite_rows(logits: torch.Tensor) -> torch.Tensor:
    """Bool tensor ``logits.shape[:-1]``: rows that hold a NaN or +inf, or no finite logit at all (all -inf).

    No token can be chosen from such a row. The result stays on the logits' device (no host synchronisation).
    """
    return ~torch.isfinite(logits.amax(dim=-1))  # amax propagates NaN; +inf and all -inf are not finite either


def _refuse_nonfinite(logits: torch.Tensor) -> None:
    bad = nonfinite_rows(logits)
    if bool(bad.any()):
        rows = bad.reshape(-1).nonzero()[:5, 0].tolist()
        raise ValueError(f"logits row(s) {rows} hold NaN/+inf or only -inf: no token can be chosen; check the model "
                         f"(e.g. a diverged training run or an overflow in half precision)")


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide the logits by ``t`` > 0: t < 1 sharpens the softmax, t > 1 flattens it, t = 1 changes nothing."""
    _check_logits(logits)
    t = check_real("temperature", t, low=0, low_open=True, hint=_GREEDY_HINT)
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits (and every token tied with the k-th); ``k = 0`` or ``k >= V`` keeps all."""
    _check_logits(logits)
    k = check_int("top_k", k, minimum=0, hint="0 = off")
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
    p = check_real("top_p", p, low=0, high=1, low_open=True, hint="1 = off")
    if p == 1:
        return logits
    # float64: over ~50k tokens a float32 running sum drifts by ~1e-5 and can keep a token whose mass above is
    # exactly p (Hugging Face's own test case: p = 0.8 with probabilities .5, .3, .1, .1 must keep two tokens).
    # (Apple's MPS backend has no float64, so there the sums run on the CPU.)
    work = logits.detach().cpu() if logits.device.type == "mps" else logits
    sorted_probs, order = torch.sort(torch.softmax(work.double(), dim=-1), dim=-1, descending=True)
    mass_above = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    remove_sorted = mass_above >= p
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove.to(logits.device), REMOVED)


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``p`` times the top token's (Nguyen et al., 2024); p in [0, 1].

    ``p = 0`` keeps everything; the most likely token always survives.
    """
    _check_logits(logits)
    p = check_real("min_p", p, low=0, high=1, hint="0 = off")
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
    penalty = check_real("repetition_penalty", penalty, low=0, low_open=True, hint="1 = off")
    return _penalise(logits, _previous_tensor(logits, previous_ids), penalty)


def _previous_tensor(logits: torch.Tensor, previous_ids) -> torch.Tensor:
    """``previous_ids`` checked (integer ids in the vocabulary, shape ``logits.shape[:-1] + (L,)``) as a tensor.

    Entry-point check: a tensor's range is read once here; the decoding loop builds its ids itself and skips this.
    """
    ids = check_token_ids("previous_ids", previous_ids, logits.shape[-1])
    ids = torch.as_tensor(ids, dtype=torch.long, device=logits.device)
    if ids.dim() != logits.dim() or ids.shape[:-1] != logits.shape[:-1]:
        raise ValueError(f"previous_ids must have shape {tuple(logits.shape[:-1])} + (L,), got {tuple(ids.shape)}")
    return ids


def _penalise(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """The repetition penalty itself, on already-checked ids (no host synchronisation)."""
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
        # Stored as plain Python numbers, so np.float32(0.7) or torch.tensor(0.7) behave exactly like 0.7.
        set_field = object.__setattr__  # the dataclass is frozen
        set_field(self, "temperature", check_real("temperature", self.temperature, low=0, hint="0 = greedy"))
        set_field(self, "top_k", check_int("top_k", self.top_k, minimum=0, hint="0 = off"))
        set_field(self, "top_p", check_real("top_p", self.top_p, low=0, high=1, low_open=True, hint="1 = off"))
        set_field(self, "min_p", check_real("min_p", self.min_p, low=0, high=1, hint="0 = off"))
        set_field(self, "repetition_penalty", check_real("repetition_penalty", self.repetition_penalty, low=0,
                                                         low_open=True, hint="1 = off"))

    @property
    def is_greedy(self) -> bool:
        """True when decoding takes the argmax (temperature 0)."""
        return self.temperature == 0


def _check_config(config) -> None:
    if not isinstance(config, SamplingConfig):
        raise TypeError(f"config must be a SamplingConfig, got {type(config).__name__}")


def _checked_previous(logits: torch.Tensor, config: SamplingConfig, previous_ids) -> torch.Tensor | None:
    if config.repetition_penalty == 1:
        return None
    if previous_ids is None:
        raise ValueError("repetition_penalty != 1 needs previous_ids (the ids generated so far)")
    return _previous_tensor(logits, previous_ids)


def _warp(logits: torch.Tensor, config: SamplingConfig, previous: torch.Tensor | None) -> torch.Tensor:
    """``warp_logits`` without argument checks: ``previous`` is a checked id tensor or None."""
    if previous is not None:
        logits = _penalise(logits, previous, config.repetition_penalty)
    if config.is_greedy:
        return logits.masked_fill(logits < logits.amax(dim=-1, keepdim=True), REMOVED)
    if config.temperature != 1:
        logits = logits / config.temperature
    logits = top_k(logits, config.top_k) if config.top_k else logits
    logits = top_p(logits, config.top_p) if config.top_p != 1 else logits
    return min_p(logits, config.min_p) if config.min_p else logits


def sample_next_unchecked(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None,
                          previous: torch.Tensor | None) -> torch.Tensor:
    """``sample_next`` without argument checks or host reads: what a decoding loop calls every step.

    The caller has checked ``config`` and the logits once; ``previous`` is a checked id tensor, or None when the
    repetition penalty is off.
    """
    if config.is_greedy:
        if previous is not None:
            logits = _penalise(logits, previous, config.repetition_penalty)
        return logits.argmax(dim=-1)
    probs = torch.softmax(_warp(logits, config, previous), dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def warp_logits(logits: torch.Tensor, config: SamplingConfig,
                previous_ids: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """Apply the configured warpers in Hugging Face's order: repetition penalty, temperature, top-k, top-p, min-p.

    With ``temperature=0`` (greedy) only the highest logit(s) survive: the limit of T -> 0.
    ``previous_ids`` is needed only when ``config.repetition_penalty != 1``.
    """
    _check_config(config)
    _check_logits(logits)
    return _warp(logits, config, _checked_previous(logits, config, previous_ids))


def sample_next(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None = None,
                previous_ids: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """Next token ids, shape ``logits.shape[:-1]``: the argmax when greedy, else a draw from the warped softmax.

    ``generator`` (on the logits' device) makes draws reproducible; greedy ignores it. Rows with NaN/+inf or
    without any finite logit are refused with a ValueError (one host read; ``generate`` checks inside its loop's
    existing end-of-sequence read instead).
    """
    _check_config(config)
    _check_logits(logits)
    previous = _checked_previous(logits, config, previous_ids)
    _refuse_nonfinite(logits)
    return sample_next_unchecked(logits, config, generator, previous)
