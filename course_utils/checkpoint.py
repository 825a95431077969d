"""The Checkpoint that every weights reader returns, and the tensor names the course model expects in it."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ModelConfig

# Per-layer tensors of a LLaMA block, as the course model names them (Hugging Face names without the "model." prefix)
LAYER_TENSORS = ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                 "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


@dataclass
class Checkpoint:
    """Everything needed to build the model and its tokenizer."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: str
    chat_template: str | None
    source_verified: bool = False  # True when the file was checked against the course model's SHA-256


def expected_tensor_names(config: ModelConfig) -> set[str]:
    """The state-dict names a LLaMA model with ``config`` has (lm_head only when embeddings are not tied)."""
    names = {"embed_tokens.weight", "norm.weight"}
    names |= {f"layers.{i}.{part}" for i in range(config.n_layers) for part in LAYER_TENSORS}
    if not config.tie_embeddings:
        names.add("lm_head.weight")
    return names


def check_tensor_names(names: set[str], config: ModelConfig, where: str) -> None:
    """Raise ValueError naming the extra or missing tensors, so nothing is dropped or left random silently."""
    expected = expected_tensor_names(config)
    extra, missing = sorted(names - expected), sorted(expected - names)
    if extra or missing:
        parts = ([f"{len(extra)} unexpected (e.g. {', '.join(extra[:4])})"] if extra else []) + \
                ([f"{len(missing)} missing (e.g. {', '.join(missing[:4])})"] if missing else [])
        raise ValueError(f"{where} does not match a LLaMA model with {config.n_layers} layers: tensors "
                         f"{'; '.join(parts)}. The course model has no biases or extra modules; use a "
                         f"LlamaForCausalLM checkpoint without them")
