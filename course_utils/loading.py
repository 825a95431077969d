"""``load_model()``: weights -> (model, tokenizer) on the chosen device, converted for fast inference by default."""
from __future__ import annotations

import os

import torch
from tokenizers import Tokenizer

from .device import pick_device
from .fast_inference import make_fast
from .load_weights import load_checkpoint
from .model import LlamaModel
from .precision import default_dtype
from .tokenizer import ChatTokenizer


def load_model(path: str | os.PathLike | None = None, device: str | None = "auto",
               dtype: torch.dtype | None = None, fast: bool = True) -> tuple[LlamaModel, ChatTokenizer]:
    """Load the course model (or a local GGUF file / Hugging Face directory) and its tokenizer.

    ``path``: explicit weights > env ``COURSE_MODEL`` > the fetched course GGUF.
    ``device``: "auto" (cuda > mps > cpu, env ``COURSE_DEVICE`` overrides), "cpu", "cuda", "cuda:N" or "mps".
    ``dtype``: default float32 on CPU, bfloat16 on CUDA. The model is returned in eval mode.
    ``fast``: True converts the model with ``fast_inference.make_fast`` (same function, faster inference; training
    and LoRA-wrapped layers still take the plain path); False returns the plain ``model.LlamaModel``.
    """
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be a bool, got {type(fast).__name__} {fast!r}")
    target = pick_device(device)
    dtype = dtype or default_dtype(target)
    checkpoint = load_checkpoint(path)
    with torch.device("meta"):
        model = LlamaModel(checkpoint.config)
    missing = set(model.state_dict()) - set(checkpoint.state_dict)
    if checkpoint.config.tie_embeddings:
        missing.discard("lm_head.weight")
    if missing:
        raise ValueError(f"weights are missing tensors: {sorted(missing)[:5]}")
    model.load_state_dict(checkpoint.state_dict, strict=False, assign=True)
    model.tie_weights()
    model.to(device=target, dtype=dtype).eval()
    if fast:
        make_fast(model)
    if not checkpoint.tokenizer_json:
        raise ValueError("these weights come without a tokenizer (tokenizer.json); the course needs one")
    tokenizer = ChatTokenizer(Tokenizer.from_str(checkpoint.tokenizer_json), checkpoint.chat_template,
                              eos_id=checkpoint.config.eos_id, bos_id=checkpoint.config.bos_id)
    return model, tokenizer
