"""The Checkpoint that every weights reader returns: config, float32 state dict, tokenizer JSON and chat template."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import ModelConfig


@dataclass
class Checkpoint:
    """Everything needed to build the model and its tokenizer."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: str
    chat_template: str | None


