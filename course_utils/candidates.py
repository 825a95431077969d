"""One decoding step's candidates before and after warping: the table, its entropies and readable token labels.

Pure functions of a logits vector and a ``SamplingConfig``: the sampling explorer shows this table at every step,
lesson 03 computes it by hand first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from course_utils.sampling import SamplingConfig, warp_logits


@dataclass(frozen=True)
class CandidateTable:
    """The top candidates of one step, before and after warping, plus summaries over the whole vocabulary.

    ``kept_mass``: share of the model's (unwarped) probability carried by the surviving tokens.
    Entropies are in bits.
    """
    token_ids: list[int]
    labels: list[str]
    prob_before: list[float]
    prob_after: list[float]
    kept: list[bool]
    n_kept: int
    kept_mass: float
    entropy_before: float
    entropy_after: float

    def plot_kwargs(self) -> dict:
        """Keyword arguments for `course_utils.plots.sampling.draw_candidates` / `candidate_bars`."""
        return {"labels": self.labels, "prob_before": self.prob_before, "prob_after": self.prob_after,
                "kept": self.kept}

    def summary(self) -> str:
        """One line: how many candidates survive, the mass they carry, the entropies."""
        return (f"{plural(self.n_kept, 'candidate')} kept, carrying {self.kept_mass:.1%} of the model's probability; "
                f"entropy {self.entropy_before:.2f} bits before, {self.entropy_after:.2f} bits after warping")


def plural(count: int, noun: str) -> str:
    """'1 candidate', '2 candidates'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def token_label(text: str) -> str:
    """A token made visible: spaces as '␣', newlines as '↵', tabs as '→', empty as '∅'."""
    if text == "":
        return "∅"
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "→")


def entropy_bits(logits: torch.Tensor) -> float:
    """Shannon entropy (bits) of softmax(logits); -inf logits count as probability 0."""
    if logits.dim() != 1 or not torch.isfinite(logits).any():
        raise ValueError("entropy_bits needs a 1-D logits vector with at least one finite entry")
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    probs = log_probs.exp()
    terms = torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs))
    return max(0.0, float(-terms.sum() / math.log(2)))  # clamp the -0.0 of a one-token distribution


def warped_view(logits: torch.Tensor, config: SamplingConfig, previous_ids: list[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(warped logits, kept mask) for a 1-D logits vector; removed tokens are the -inf entries."""
    if logits.dim() != 1:
        raise ValueError(f"logits must be 1-D [vocab], got shape {tuple(logits.shape)}")
    warped = warp_logits(logits, config, previous_ids=list(previous_ids or []))
    return warped, torch.isfinite(warped)


def candidate_table(logits: torch.Tensor, config: SamplingConfig, token_strings: list[str],
                    previous_ids: list[int] | None = None) -> CandidateTable:
    """Warp ``logits`` with ``config`` and summarise the top ``len(token_strings)`` candidates of the raw model.

    ``token_strings[i]`` is the text of the i-th most probable token before warping (see :meth:`top_ids`).
    """
    warped, kept = warped_view(logits, config, previous_ids)
    probs_before = torch.softmax(logits.double(), dim=-1)
    probs_after = torch.softmax(warped.double(), dim=-1)
    top = torch.topk(probs_before, len(token_strings)).indices
    return CandidateTable(
        token_ids=top.tolist(),
        labels=[token_label(text) for text in token_strings],
        prob_before=probs_before[top].tolist(),
        prob_after=probs_after[top].tolist(),
        kept=kept[top].tolist(),
        n_kept=int(kept.sum()),
        kept_mass=float(probs_before[kept].sum()),
        entropy_before=entropy_bits(logits),
        entropy_after=entropy_bits(warped),
    )
