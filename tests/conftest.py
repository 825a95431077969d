"""Shared fixtures: the real course model (loaded once per test session) and a tiny random model.

Tests that need the fetched course weights are marked ``needs_weights`` (automatically, for every test that uses the
``course_weights`` or ``course_model`` fixture) and skip with the command that fetches them when they are absent;
`make test` always fetches them first.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from course_utils import LlamaModel, ModelConfig, load_model
from course_utils.cache_layout import default_weights_path

WEIGHT_FIXTURES = {"course_weights", "course_model"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if WEIGHT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_weights)


@pytest.fixture(scope="session")
def course_weights() -> Path:
    """Path of the fetched course GGUF; skips (naming `make setup`) when it has not been fetched."""
    path = default_weights_path()
    if not path.is_file():
        pytest.skip(f"needs the course weights at {path}; fetch them with `make setup` "
                    f"(or `python -m course_utils fetch`)")
    return path


@pytest.fixture(scope="session")
def course_model(course_weights):
    """(model, tokenizer) of SmolLM2-135M-Instruct on CPU, float32."""
    return load_model(course_weights, device="cpu")


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
