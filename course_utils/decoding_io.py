"""What every decoder (``generate``, ``beam_search``) takes and returns: checked prompt rows, padding, the result.

Prompts become lists of token ids, are left-padded into one batch with an attention mask, and are checked against
the model's vocabulary and context length; the decoders return a ``GenerationResult``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .validation import check_int, check_token_ids

NO_EOS = -1  # pass as eos_id to never stop before max_new_tokens


@dataclass
class GenerationResult:
    """What ``generate`` and ``beam_search`` return, one entry per prompt.

    ``tokens``: the new token ids. A row that stopped on the end-of-sequence token INCLUDES it as its last token.
    ``logprobs``: for each new token, log P(token | everything before it) under the model's own, UNwarped
    distribution (log-softmax of the raw logits: no temperature, truncation or repetition penalty), so
    ``sum(logprobs[i])`` is the chain-rule log-probability of row i's continuation, EOS included.
    ``finished``: True where the row stopped on EOS rather than on ``max_new_tokens``.
    ``texts``: the decoded new tokens without the EOS (only when a tokenizer was given).
    ``scores``: beam search only: the returned beam's sum of log-probs / length ** length_penalty.
    """

    tokens: list[list[int]]
    logprobs: list[list[float]]
    finished: list[bool]
    texts: list[str] | None = None
    scores: list[float] | None = None

    @property
    def total_logprobs(self) -> list[float]:
        """Chain-rule log-probability of each row's new tokens given its prompt."""
        return [float(sum(row)) for row in self.logprobs]


def prompt_rows(prompts: Sequence, tokenizer, vocab_size: int) -> list[list[int]]:
    """One list of token ids per prompt: strings are encoded with ``tokenizer``, id lists are checked as given."""
    if isinstance(prompts, (str, torch.Tensor)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of strings or of token-id lists (one per row), "
                        f"got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts must hold at least one prompt, got an empty list")
    if all(isinstance(p, str) for p in prompts):
        if tokenizer is None:
            raise ValueError("string prompts need tokenizer=...; or pass lists of token ids")
        rows = [tokenizer.encode(p) for p in prompts]
    elif all(isinstance(p, Sequence) and not isinstance(p, str) for p in prompts):
        rows = check_token_ids("prompts", prompts, vocab_size)  # floats such as 504.9 are refused, never truncated
    else:
        raise TypeError("prompts must be all strings or all token-id lists, not a mix")
    if any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token; an empty prompt has nothing to continue")
    return rows


def left_pad(rows: list[list[int]], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ids [B, L] padded on the left, and the attention mask (None when no row needs padding).

    Padding repeats the row's first token: it is masked out of attention, and it is a token the row already holds,
    so the repetition penalty sees the same set of previous tokens with or without padding.
    """
    width = max(len(r) for r in rows)
    ids = torch.tensor([[r[0]] * (width - len(r)) + r for r in rows], dtype=torch.long, device=device)
    if all(len(r) == width for r in rows):
        return ids, None
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def check_settings(model, rows: list[list[int]], max_new_tokens: int, eos_id: int | None) -> int:
    """Check ``max_new_tokens`` and ``eos_id`` against ``model``; returns the end-of-sequence id to stop on.

    ``eos_id=None`` means the model's own (or ``NO_EOS`` when it has none); the longest prompt plus
    ``max_new_tokens`` must fit the context length.
    """
    check_int("max_new_tokens", max_new_tokens, minimum=1)
    vocab = model.config.vocab_size
    if eos_id is None:
        eos_id = model.config.eos_id if model.config.eos_id is not None else NO_EOS
    eos_id = check_int("eos_id", eos_id, minimum=NO_EOS, maximum=vocab - 1,
                       hint=f"None = the model's, {NO_EOS} = never stop")
    longest = max(len(r) for r in rows) + max_new_tokens
    if longest > model.config.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {longest} exceeds the context length {model.config.max_seq_len}")
    return eos_id
