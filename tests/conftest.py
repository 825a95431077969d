"""Shared fixtures: the real course model (loaded once per test session) and a tiny random model."""
from __future__ import annotations

import pytest
import torch

from course_utils import LlamaModel, ModelConfig, load_model


@pytest.fixture(scope="session")
def course_model():
    """(model, tokenizer) of SmolLM2-135M-Instruct on CPU, float32. Needs `make setup` to have fetched the weights."""
    return load_model(device="cpu")


@pytest.fixture
def tiny_config() -> ModelConfig:
    return ModelConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=128,
                       rope_theta=10000.0, name="tiny-test")


@pytest.fixture
def tiny_model(tiny_config) -> LlamaModel:
    torch.manual_seed(0)
    model = LlamaModel(tiny_config).eval()
    with torch.no_grad():  # RMSNorm weights start at 1; perturb them so tests see every parameter
        for module in model.modules():
            if hasattr(module, "eps"):
                module.weight.add_(0.1 * torch.randn_like(module.weight))
    return model
