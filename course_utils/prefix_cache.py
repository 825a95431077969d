"""A prompt prefix shared by many rows: its keys and values computed once, then copied into every row's KV cache.

Few-shot prompts of one task differ only in their last question: the system message, the instruction and the solved
examples are the same tokens in every row. Running those tokens once (batch 1) and copying their keys/values into a
batch cache gives the same logits as running every full row, for a fraction of the work. Rows then hold
``[prefix | left padding | own suffix]``; the attention mask hides the padding and RoPE positions count only real
tokens, so every suffix token sits at the position it would have without sharing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .validation import check_int, check_token_ids


@dataclass(frozen=True)
class PrefixCache:
    """Token ids of a shared prefix and their keys/values, each [layers, 1, kv_heads, len(ids), head_dim].

    Built by ``build_prefix_cache`` for one model; using it with another model of the same shape gives wrong logits
    (only the shapes are checked).
    """

    ids: tuple[int, ...]
    keys: torch.Tensor
    values: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def check_model(self, model) -> None:
        """Raise ValueError unless the stored keys/values have the shape ``model``'s cache uses."""
        config = model.config
        want = (config.n_layers, 1, config.n_kv_heads, len(self.ids), config.head_dim)
        if tuple(self.keys.shape) != want or self.keys.device != model.device or self.keys.dtype != model.dtype:
            raise ValueError(f"this prefix cache holds keys {tuple(self.keys.shape)} {self.keys.dtype} on "
                             f"{self.keys.device}; the model needs {want} {model.dtype} on {model.device}: "
                             f"build it with build_prefix_cache(model, ids) for this model")

    def suffixes(self, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        """Each row without the prefix; ValueError when a row does not start with it or has nothing after it."""
        size = len(self.ids)
        out = []
        for index, row in enumerate(rows):
            if tuple(row[:size]) != self.ids:
                raise ValueError(f"row {index} does not start with the {size} tokens of the shared prefix")
            if len(row) <= size:
                raise ValueError(f"row {index} is the prefix itself; every row needs at least one token after it")
            out.append(list(row[size:]))
        return out

    def expand(self, model, batch_size: int, max_len: int):
        """A new KV cache of ``batch_size`` rows and ``max_len`` positions whose first ``len(self)`` hold the prefix."""
        check_int("batch_size", batch_size, minimum=1)
        check_int("max_len", max_len, minimum=len(self.ids) + 1, hint="the prefix length + 1")
        cache = model.new_cache(batch_size, max_len)
        cache.keys[:, :, :, :len(self.ids)] = self.keys  # broadcast over the batch rows
        cache.values[:, :, :, :len(self.ids)] = self.values
        cache.length = len(self.ids)
        return cache


def shared_prefix(rows: Sequence[Sequence[int]]) -> list[int]:
    """The longest run of ids that starts every row, leaving at least one token of each row after it."""
    if isinstance(rows, (str, torch.Tensor)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError("rows must be a non-empty list of token-id lists")
    if any(isinstance(row, str) or not isinstance(row, Sequence) or len(row) == 0 for row in rows):
        raise ValueError("every row must be a non-empty list of token ids")
    limit = min(len(row) for row in rows) - 1
    first = rows[0]
    size = 0
    while size < limit and all(row[size] == first[size] for row in rows):
        size += 1
    return list(first[:size])


@torch.inference_mode()
def build_prefix_cache(model, ids: Sequence[int]) -> PrefixCache:
    """Run ``ids`` through ``model`` once and keep the keys/values of every layer (logits are not needed)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, torch.Tensor)):
        raise TypeError(f"ids must be a list of token ids, got {type(ids).__name__}")
    ids = [int(i) for i in check_token_ids("ids", list(ids), model.config.vocab_size)]
    if not ids:
        raise ValueError("ids must hold at least one token")
    cache = model.new_cache(1, len(ids))
    model(torch.tensor([ids], dtype=torch.long, device=model.device), cache=cache, last_only=True)
    return PrefixCache(tuple(ids), cache.keys, cache.values)


def prefix_for(model, rows: Sequence[Sequence[int]], min_length: int = 1) -> PrefixCache | None:
    """The ``PrefixCache`` of ``rows``' shared prefix, or None when it is shorter than ``min_length`` tokens."""
    check_int("min_length", min_length, minimum=1)
    ids = shared_prefix(rows)
    return build_prefix_cache(model, ids) if len(ids) >= min_length else None
