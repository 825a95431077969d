"""Chat examples as token ids: the prompt a model continues, (ids, labels) pairs that keep only the answer, batches.

Each example is a (prompt, answer) pair rendered with the model's chat template. Labels equal the input ids on the
answer tokens (including the end-of-turn token, so the model learns to stop) and ``IGNORE_INDEX`` elsewhere.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100


def chat_messages(prompt: str, system: str | None = None) -> list[dict]:
    """The user turn ``prompt``, preceded by a ``system`` turn when one is given (else the template's default)."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError("prompt must be a non-empty string, got ''")
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def prompt_ids(tokenizer, prompt: str, system: str | None = None) -> list[int]:
    """Token ids of the chat up to and including the assistant header: what the model continues."""
    return tokenizer.apply_chat_template(chat_messages(prompt, system), add_generation_prompt=True)


def encode_example(tokenizer, prompt: str, answer: str, system: str | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the chat (user ``prompt``, assistant ``answer``) and labels that keep only the answer tokens.

    The answer span is the assistant's text plus its end-of-turn token; the template's trailing newline is dropped.
    An answer whose text contains the end-of-turn token (``<|im_end|>``) is refused: its labels would stop there.
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string, got {type(answer).__name__}")
    if not answer:
        raise ValueError("answer must be a non-empty string, got ''")
    messages = chat_messages(prompt, system)
    prefix = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                         add_generation_prompt=False)
    if full[:len(prefix)] != prefix:
        raise ValueError("the chat template does not extend the prompt by the answer; cannot locate answer tokens")
    if full[len(prefix):].count(tokenizer.eos_id) != 1:  # the template closes the answer with exactly one
        eos_text = tokenizer.decode([tokenizer.eos_id])
        raise ValueError(f"the answer contains the end-of-turn token {eos_text!r}, which would end the assistant's "
                         f"turn there and cut its labels; remove it from the answer text (which starts "
                         f"{answer[:40]!r})")
    end = full.index(tokenizer.eos_id, len(prefix)) + 1  # keep the answer's end-of-turn token
    ids = full[:end]
    labels = [IGNORE_INDEX] * len(prefix) + ids[len(prefix):]
    return ids, labels


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (ids, labels) pairs into two [B, T] tensors; padded labels are ignored.

    Right padding needs no attention mask: with causal attention a real token never looks at later (padded) ones.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, (example_ids, example_labels) in enumerate(examples):
        ids[row, :len(example_ids)] = torch.tensor(example_ids)
        labels[row, :len(example_labels)] = torch.tensor(example_labels)
    return ids, labels
