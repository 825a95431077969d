"""LoRA: exact start at the base model, only A and B train, merge/unmerge, adapter files, argument checks."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from course_utils.lora import (
    ALL_LINEAR_TARGETS,
    LoRAConv2d,
    LoRALinear,
    add_lora,
    count_parameters,
    lora_modules,
    merge_lora,
    remove_lora,
    unmerge_lora,
)
from course_utils.lora_adapters import load_adapter, save_adapter


def _ids(config, batch=2, steps=12, seed=1):
    return torch.randint(0, config.vocab_size, (batch, steps), generator=torch.Generator().manual_seed(seed))


def _randomise_b(model, seed=3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in lora_modules(model).values():
            module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=generator) * 0.1)


def test_paper_shapes_and_initialisation():
    layer = LoRALinear(nn.Linear(48, 20, bias=False), r=4, alpha=8)
    assert layer.lora_A.shape == (4, 48)  # A: r x k (k = inputs)
    assert layer.lora_B.shape == (20, 4)  # B: d x r (d = outputs)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) == 4 * 48
    assert layer.scaling == 2.0
    assert layer.delta_weight().shape == layer.base.weight.shape


def test_fresh_adapter_leaves_logits_identical(tiny_model, tiny_config):
    ids = _ids(tiny_config)
    with torch.no_grad():
        before = tiny_model(ids)
    add_lora(tiny_model, targets=ALL_LINEAR_TARGETS, r=4, alpha=8)
    with torch.no_grad():
        after = tiny_model(ids)
    assert torch.equal(before, after)


def test_only_a_and_b_receive_gradients(tiny_model, tiny_config):
    add_lora(tiny_model, targets=("q_proj", "v_proj"), r=2, alpha=4)
    tiny_model(_ids(tiny_config)).logsumexp(-1).mean().backward()
    trained = {name for name, p in tiny_model.named_parameters() if p.grad is not None}
    expected = {f"layers.{i}.self_attn.{proj}.lora_{part}" for i in range(tiny_config.n_layers)
                for proj in ("q_proj", "v_proj") for part in "AB"}
    assert trained == expected
    assert all(not p.requires_grad for name, p in tiny_model.named_parameters() if "lora_" not in name)
    count = count_parameters(tiny_model)
    per_layer = 2 * (tiny_config.dim + 32) + 2 * (tiny_config.dim + 16)  # r * (k + d) for q (32 out) and v (16 out)
    assert count.trainable == tiny_config.n_layers * per_layer


def test_merge_equals_unmerged_and_unmerge_restores(tiny_model, tiny_config):
    original = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    add_lora(tiny_model, targets=ALL_LINEAR_TARGETS, r=4, alpha=8)
    _randomise_b(tiny_model)
    ids = _ids(tiny_config)
    with torch.no_grad():
        unmerged = tiny_model(ids)
        assert merge_lora(tiny_model) == 7 * tiny_config.n_layers
        merged = tiny_model(ids)
        relative = (merged - unmerged).norm() / unmerged.norm()
        assert relative <= 1e-5
        unmerge_lora(tiny_model)
    for name, p in tiny_model.named_parameters():
        base_name = name.replace(".base.", ".")
        if base_name in original:
            torch.testing.assert_close(p, original[base_name], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="not merged"):
        unmerge_lora(tiny_model)


def test_remove_lora_restores_the_base_model(tiny_model, tiny_config):
    ids = _ids(tiny_config)
    with torch.no_grad():
        before = tiny_model(ids)
        add_lora(tiny_model, targets=("q_proj", "v_proj"), r=2, alpha=4)
        _randomise_b(tiny_model)
        assert remove_lora(tiny_model) == 2 * tiny_config.n_layers
        assert not lora_modules(tiny_model) and torch.equal(tiny_model(ids), before)  # never merged: exact
        add_lora(tiny_model, r=2, alpha=4)  # a second adapter can follow; merged, it is unmerged first
        _randomise_b(tiny_model)
        merge_lora(tiny_model)
        remove_lora(tiny_model)
        torch.testing.assert_close(tiny_model(ids), before, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no LoRA layers to remove"):
        remove_lora(nn.Linear(2, 2))


def test_adapter_changes_output_once_b_moves(tiny_model, tiny_config):
    ids = _ids(tiny_config)
    with torch.no_grad():
        before = tiny_model(ids)
        add_lora(tiny_model, r=2, alpha=4)
        _randomise_b(tiny_model)
        assert not torch.allclose(before, tiny_model(ids))


def test_save_load_round_trip(tiny_model, tiny_config, tmp_path):
    add_lora(tiny_model, targets=("q_proj", "down_proj"), r=3, alpha=6)
    _randomise_b(tiny_model)
    ids = _ids(tiny_config)
    with torch.no_grad():
        expected = tiny_model(ids)
    save_adapter(tiny_model, tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter.safetensors"]  # one file, one rename
    with safe_open(str(tmp_path / "adapter" / "adapter.safetensors"), framework="pt") as handle:
        config = json.loads(handle.metadata()["course_lora_config"])
    assert config["base_model"] == "tiny-test" and config["r"] == 3 and config["targets"] == ["down_proj", "q_proj"]
    torch.manual_seed(0)
    from course_utils.model import LlamaModel
    fresh = LlamaModel(tiny_config).eval()
    fresh.load_state_dict({k.replace(".base.", "."): v for k, v in tiny_model.state_dict().items()
                           if "lora_" not in k})
    loaded = load_adapter(fresh, tmp_path / "adapter", seed=99)  # another seed: A must come from the file
    assert len(loaded) == 2 * tiny_config.n_layers
    with torch.no_grad():
        assert torch.equal(fresh(ids), expected)


def test_mismatched_adapter_is_refused(tiny_model, tiny_config, tmp_path):
    from course_utils.config import ModelConfig
    from course_utils.model import LlamaModel
    add_lora(tiny_model, r=2, alpha=4)
    save_adapter(tiny_model, tmp_path / "a")
    other_name = LlamaModel(ModelConfig(**{**tiny_config.to_dict(), "name": "another-model"}))
    with pytest.raises(ValueError, match="trained on base model 'tiny-test'"):
        load_adapter(other_name, tmp_path / "a")
    wider = LlamaModel(ModelConfig(**{**tiny_config.to_dict(), "dim": 48, "n_heads": 4}))
    with pytest.raises(ValueError, match=r"weight shape \[48, 48\], the adapter expects \[32, 32\]"):
        load_adapter(wider, tmp_path / "a")
    other_rank = LlamaModel(tiny_config)
    add_lora(other_rank, r=4, alpha=4)
    with pytest.raises(ValueError, match="differ from the adapter"):
        load_adapter(other_rank, tmp_path / "a")


def test_the_display_name_is_not_part_of_the_adapter_identity(tiny_model, tiny_config, tmp_path):
    from course_utils.config import ModelConfig
    from course_utils.model import LlamaModel
    add_lora(tiny_model, r=2, alpha=4)
    save_adapter(tiny_model, tmp_path / "a")
    renamed = LlamaModel(ModelConfig(**{**tiny_config.to_dict(), "display_name": "Tiny Test (friendly)"}))
    assert renamed.config.name == "tiny-test" and renamed.config.display_name == "Tiny Test (friendly)"
    assert len(load_adapter(renamed, tmp_path / "a")) == 2 * tiny_config.n_layers  # same identity: accepted


@pytest.mark.parametrize("kwargs, message", [
    ({"r": 0}, "rank r must be an integer >= 1, got 0"),
    ({"alpha": 0}, "alpha must be a finite number > 0, got 0"),
    ({"alpha": float("inf")}, "alpha must be a finite number > 0, got inf"),
    ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1\.0"),
    ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\), got -0\.1"),
    ({"targets": ("q_proj", "qkv")}, r"unknown LoRA target\(s\) \['qkv'\]; allowed: \['down_proj'"),
    ({"targets": ("lm_head",)}, r"unknown LoRA target"),
    ({"targets": ()}, r"give at least one LoRA target; allowed: \['down_proj'"),
])
def test_invalid_arguments_raise(tiny_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        add_lora(tiny_model, **kwargs)
    assert not lora_modules(tiny_model)


@pytest.mark.parametrize("kwargs, message", [
    ({"r": 2.5}, "rank r must be an integer >= 1, got 2.5"), ({"alpha": True}, "alpha must be a finite number > 0"),
    ({"targets": ("q_proj", 3)}, "targets must be a tuple of layer names"),
])
def test_wrong_types_raise_type_error(tiny_model, kwargs, message):
    with pytest.raises(TypeError, match=message):
        add_lora(tiny_model, **kwargs)
    assert not lora_modules(tiny_model)


def test_add_lora_twice_says_already_has_lora(tiny_model):
    add_lora(tiny_model, targets=("q_proj",), r=2, alpha=4)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for targets in (("q_proj",), ("v_proj",)):
        with pytest.raises(ValueError, match=r"already has LoRA \(2 layers, e\.g\. 'layers\.0\.self_attn\.q_proj'\)"):
            add_lora(tiny_model, targets=targets)
    after = tiny_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_layer_type_checks():
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(nn.Conv2d(3, 4, 3), r=2, alpha=2)
    with pytest.raises(ValueError, match="groups=1 only"):
        LoRAConv2d(nn.Conv2d(4, 4, 3, groups=2), r=2, alpha=2)


def test_conv_adapter_starts_exact_and_merges():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2))
    images = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        before = net(images)
        add_lora(net, targets=("0", "2"), r=2, alpha=4)
        assert torch.equal(net(images), before)
        _randomise_b(net)
        unmerged = net(images)
        merge_lora(net)
        merged = net(images)
    assert not torch.allclose(unmerged, before)
    assert (merged - unmerged).norm() / unmerged.norm() <= 1e-5
    assert isinstance(net[0], LoRAConv2d)
    assert net[0].lora_A.shape == (2, 3, 3, 3) and net[0].lora_B.shape == (8, 2, 1, 1)


def test_dropout_acts_on_the_adapter_branch_only():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8, bias=False), r=2, alpha=4, dropout=0.5).train()
    x = torch.randn(64, 16)
    with torch.no_grad():
        assert torch.equal(layer(x), layer.base(x))  # B = 0: dropout on the frozen path would show here
        layer.lora_B.normal_()
        noisy_a, noisy_b = layer(x), layer(x)
        layer.eval()
        clean = layer(x)
    assert not torch.equal(noisy_a, noisy_b)  # training mode: the adapter input is dropped at random
    assert torch.equal(clean, layer(x))  # eval mode: deterministic
    expected = layer.base(x) + 2.0 * x @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(clean, expected)


def test_adapter_of_an_earlier_version_two_files_still_loads(tiny_model, tiny_config, tmp_path):
    from safetensors.torch import save_file

    from course_utils.lora_adapters import adapter_config
    from course_utils.model import LlamaModel
    add_lora(tiny_model, targets=("v_proj",), r=2, alpha=4)
    _randomise_b(tiny_model)
    tensors = {f"{n}.lora_{p}": getattr(m, f"lora_{p}").detach() for n, m in lora_modules(tiny_model).items()
               for p in "AB"}
    (tmp_path / "old").mkdir()
    save_file(tensors, str(tmp_path / "old" / "adapter.safetensors"), metadata={"format": "course-lora-v1"})
    (tmp_path / "old" / "adapter_config.json").write_text(json.dumps(adapter_config(tiny_model).__dict__))
    fresh = LlamaModel(tiny_config)
    load_adapter(fresh, tmp_path / "old")
    loaded = lora_modules(fresh)
    assert all(torch.equal(loaded[n].lora_B, m.lora_B) for n, m in lora_modules(tiny_model).items())
