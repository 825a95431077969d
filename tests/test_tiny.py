"""Tests of the tiny transformer with pluggable positional schemes (course_utils.tiny)."""
from __future__ import annotations

import pytest
import torch

from course_utils.tiny import (
    IGNORE_INDEX,
    POSITION_SCHEMES,
    TinyConfig,
    TinyTransformer,
    k_back_accuracy,
    k_back_batch,
    train_tiny,
)


def test_k_back_targets():
    tokens, targets = k_back_batch(torch.Generator().manual_seed(0), 4, 10, vocab_size=7, offset=3)
    assert tokens.shape == targets.shape == (4, 10)
    assert torch.all(targets[:, :3] == IGNORE_INDEX)
    assert torch.equal(targets[:, 3:], tokens[:, :-3])
    assert tokens.max() < 7


@pytest.mark.parametrize("scheme", POSITION_SCHEMES)
def test_every_scheme_runs_and_is_causal(scheme):
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(scheme=scheme, dim=32, max_len=24)).eval()
    ids = torch.randint(0, 16, (2, 12))
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 16
    with torch.no_grad():
        logits, logits_changed = model(ids), model(changed)
    assert logits.shape == (2, 12, 16)
    assert torch.allclose(logits[:, :8], logits_changed[:, :8], atol=1e-5)  # the future does not leak back
    assert not torch.allclose(logits[:, 8:], logits_changed[:, 8:], atol=1e-3)


def test_without_positions_a_shuffled_prefix_gives_the_same_last_output():
    # No positional scheme: the last token's output ignores the ORDER of the tokens before it.
    torch.manual_seed(0)
    ids = torch.randint(0, 16, (1, 10))
    shuffled = torch.cat((ids[:, :-1][:, torch.randperm(9)], ids[:, -1:]), dim=1)
    outputs = {}
    for scheme in ("none", "rope"):
        torch.manual_seed(1)
        model = TinyTransformer(TinyConfig(scheme=scheme, dim=32, n_layers=1)).eval()
        with torch.no_grad():
            outputs[scheme] = (model(ids)[0, -1], model(shuffled)[0, -1])
    assert torch.allclose(*outputs["none"], atol=1e-5)
    assert not torch.allclose(*outputs["rope"], atol=1e-3)


def test_rope_scaling_changes_only_the_rope_model():
    torch.manual_seed(0)
    ids = torch.randint(0, 16, (1, 20))
    rope = TinyTransformer(TinyConfig(scheme="rope", dim=32)).eval()
    learned = TinyTransformer(TinyConfig(scheme="learned", dim=32)).eval()
    with torch.no_grad():
        assert not torch.allclose(rope(ids), rope(ids, rope_scaling="linear", rope_factor=2.0), atol=1e-4)
        assert torch.allclose(learned(ids), learned(ids, rope_scaling="ntk", rope_factor=2.0))


def test_rope_model_learns_the_task_quickly():
    result = train_tiny(TinyConfig(scheme="rope", dim=32, max_len=32), train_len=12, steps=150, seed=0)
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert k_back_accuracy(result.model, 12, n_sequences=64) > 0.9


def test_learned_rows_past_the_trained_length_stay_untouched():
    config = TinyConfig(scheme="learned", dim=32, max_len=24)
    torch.manual_seed(0)
    initial = TinyTransformer(config).positions.table.weight.detach().clone()
    trained = train_tiny(config, train_len=8, steps=5, seed=0).model.positions.table.weight.detach()
    assert torch.equal(trained[8:], initial[8:])
    assert not torch.equal(trained[:8], initial[:8])


@pytest.mark.parametrize("make, error, message", [
    (lambda: TinyConfig(scheme="absolute"), ValueError, "TinyConfig.scheme must be one of 'none', .*got 'absolute'"),
    (lambda: TinyConfig(scheme=None), TypeError, "TinyConfig.scheme must be one of .*got None"),
    (lambda: TinyConfig(dim=30, n_heads=4), ValueError, "even size"),
    (lambda: TinyConfig(max_len=0), ValueError, "TinyConfig.max_len must be an integer >= 1, got 0"),
    (lambda: TinyConfig(dim=64.0), TypeError, r"TinyConfig.dim must be an integer >= 1, got 64\.0"),
    (lambda: TinyConfig(rope_base=0), ValueError, "TinyConfig.rope_base must be a finite number > 0, got 0"),
    (lambda: TinyConfig(rope_base="1e4"), TypeError, "TinyConfig.rope_base must be a finite number > 0, got '1e4'"),
    (lambda: TinyTransformer(TinyConfig(max_len=8))(torch.zeros(1, 9, dtype=torch.long)), ValueError, "max_len"),
    (lambda: TinyTransformer(TinyConfig())(torch.zeros(1, 4, dtype=torch.long), rope_scaling="yarn"), ValueError,
     "rope_scaling must be one of 'none', 'linear', 'ntk', got 'yarn'"),
    (lambda: k_back_batch(torch.Generator(), 2, 3, offset=3), ValueError,
     r"offset must be an integer in \[1, 2\] \(smaller than length=3\), got 3"),
    (lambda: k_back_batch(torch.Generator(), 2.0, 3), TypeError, r"batch_size must be an integer >= 1, got 2\.0"),
    (lambda: k_back_batch(torch.Generator(), 2, 1), ValueError, "length must be an integer >= 2 .*got 1"),
    (lambda: train_tiny(TinyConfig(max_len=8), train_len=16), ValueError,
     r"train_len must be an integer in \[2, 8\] \(at most the model's max_len=8\), got 16"),
    (lambda: train_tiny(TinyConfig(), steps=0), ValueError, "steps must be an integer >= 1, got 0"),
    (lambda: train_tiny(TinyConfig(), lr=0), ValueError, "lr must be a finite number > 0, got 0"),
    (lambda: train_tiny(TinyConfig(), batch_size=32.0), TypeError, r"batch_size must be an integer >= 1, got 32\.0"),
    (lambda: train_tiny(TinyConfig(), progress="yes"), TypeError, "progress must be True or False, got 'yes'"),
    (lambda: train_tiny({"scheme": "rope"}), TypeError, "config must be a TinyConfig, got dict"),
])
def test_bad_arguments_raise(make, error, message):
    with pytest.raises(error, match=message) as caught:
        make()
    assert caught.type is error
