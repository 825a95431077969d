"""Greedy replies to many prompts, stopped once their score is settled, and how they are scored (exact, first date).

A reply is scored twice: **exact** (the stripped reply equals the answer) and **extracted** (the first ISO date
``YYYY-MM-DD`` in the reply equals it). ``iso_date_settled`` says when more tokens can change neither score, so
``greedy_replies`` can stop that row early and still return the scores a full-length reply would get.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .chat_data import prompt_ids
from .generation import generate
from .prefix_cache import prefix_for
from .streaming import settled_stopper
from .validation import check_int

ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_ISO_DATE_RE = re.compile(ISO_DATE)


def first_iso_date(text: str) -> str | None:
    """The first ``YYYY-MM-DD`` in ``text`` (anywhere in it), or None."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    match = _ISO_DATE_RE.search(text)
    return match.group(0) if match else None


def iso_date_settled(text: str) -> bool:
    """True once appending text can change neither the first ISO date of ``text`` nor whether the reply IS a date.

    The first date is final as soon as it is complete: every match is 10 characters long, so a match that starts
    earlier would already lie inside ``text``. Whether the stripped reply equals a date is final (false) once
    ``text`` holds a non-whitespace character outside that date. The replacement character of a half-decoded
    multi-byte token is not counted, since the full character might be a space.
    """
    match = _ISO_DATE_RE.search(text)
    if match is None:
        return False
    outside = (text[:match.start()] + text[match.end():]).replace("\ufffd", "")
    return bool(outside.strip())


@torch.no_grad()
def greedy_replies(model: nn.Module, tokenizer, rows: Sequence[Sequence[int]], max_new_tokens: int = 16,
                   batch_size: int = 64, stop_when: Callable[[str], bool] | None = None) -> list[str]:
    """The greedy continuation of each token-id prompt in ``rows`` (stripped text), in the order given.

    Prompts are sorted by length before batching (less left padding) and put back in order afterwards. A row ends
    at the end-of-sequence token, after ``max_new_tokens``, or, with ``stop_when``, as soon as ``stop_when(reply so
    far)`` is True (e.g. ``iso_date_settled``: the scores can no longer change). The ids that start every prompt
    (a chat template's head, few-shot examples) run once: their keys/values are shared by all rows
    (``prefix_cache``).
    """
    check_int("batch_size", batch_size, minimum=1)
    check_int("max_new_tokens", max_new_tokens, minimum=1)
    if stop_when is not None and not callable(stop_when):
        raise TypeError(f"stop_when must be None or a function of the reply text, got {type(stop_when).__name__}")
    rows = [list(row) for row in rows]
    if not rows:
        raise ValueError("rows must hold at least one prompt, got none")
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    prefix = prefix_for(model, rows)
    replies: list[str] = [""] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        stream = settled_stopper(tokenizer, len(chunk), stop_when) if stop_when is not None else None
        result = generate(model, [rows[i] for i in chunk], max_new_tokens=max_new_tokens, tokenizer=tokenizer,
                          eos_id=tokenizer.eos_id, stream=stream, prefix=prefix)
        for i, text in zip(chunk, result.texts):
            replies[i] = text.strip()
    return replies


def greedy_answers(model: nn.Module, tokenizer, prompts: Sequence[str], system: str | None = None,
                   max_new_tokens: int = 16, batch_size: int = 64,
                   stop_when: Callable[[str], bool] | None = None) -> list[str]:
    """The model's greedy chat answer to each user prompt (KV-cached, batched with left padding), stripped.

    See ``greedy_replies`` for ``batch_size`` and ``stop_when``.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, got one string")
    rows = [prompt_ids(tokenizer, p, system) for p in prompts]
    return greedy_replies(model, tokenizer, rows, max_new_tokens, batch_size, stop_when)


def exact_match(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Fraction of predictions equal to their answer (after stripping whitespace)."""
    if len(predictions) != len(answers) or not answers:
        raise ValueError(f"need equally many predictions and answers (> 0), got {len(predictions)} and {len(answers)}")
    return sum(p.strip() == a.strip() for p, a in zip(predictions, answers)) / len(answers)
