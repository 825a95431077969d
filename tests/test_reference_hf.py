"""Reference checks against Hugging Face transformers and PEFT (both in the [dev] extra; CI requires them)."""
import pytest
import torch
from references import import_reference

transformers = import_reference("transformers")
peft = import_reference("peft")

from transformers.generation import logits_process as hf  # noqa: E402

from course_utils import load_model  # noqa: E402
from course_utils import sampling as ours  # noqa: E402
from course_utils.lora import LoRALinear  # noqa: E402


@pytest.fixture
def tiny_hf_dir(tmp_path):
    """A tiny random LlamaForCausalLM (GQA, untied head) saved as a Hugging Face directory, with the course
    tokenizer."""
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      rms_norm_eps=1e-5, rope_theta=5000.0, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norm weights so every tensor matters
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.2 * torch.randn_like(param))
    model.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text(
        '{"version":"1.0","model":{"type":"WordLevel","vocab":{"[UNK]":0},"unk_token":"[UNK]"}}')
    return tmp_path, model


def test_tiny_llama_directory_loads_with_equal_logits(tiny_hf_dir):
    path, reference = tiny_hf_dir
    model, _ = load_model(path, device="cpu")
    assert model.config.rope_layout == "half" and not model.config.tie_embeddings
    ids = torch.randint(0, 96, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).logits
        got = model(ids)
    assert (got - expected).abs().max().item() < 1e-4


def _random_logits(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 500, generator=g) * 3
    logits[0, :5] = 2.5  # ties at the top
    return logits


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name, ours_fn, reference", [
    ("top_k=7", lambda x: ours.top_k(x, 7), hf.TopKLogitsWarper(7)),
    ("top_k=1", lambda x: ours.top_k(x, 1), hf.TopKLogitsWarper(1)),
    ("top_p=0.9", lambda x: ours.top_p(x, 0.9), hf.TopPLogitsWarper(0.9)),
    ("top_p=0.3", lambda x: ours.top_p(x, 0.3), hf.TopPLogitsWarper(0.3)),
    ("min_p=0.1", lambda x: ours.min_p(x, 0.1), hf.MinPLogitsWarper(0.1)),
    ("temperature=0.7", lambda x: ours.temperature(x, 0.7), hf.TemperatureLogitsWarper(0.7)),
])
def test_warpers_keep_the_same_tokens_as_transformers(seed, name, ours_fn, reference):
    logits = _random_logits(seed)
    ids = torch.zeros(4, 1, dtype=torch.long)
    expected, got = reference(ids, logits.clone()), ours_fn(logits.clone())
    assert torch.equal(torch.isinf(got), torch.isinf(expected)), name
    kept = ~torch.isinf(expected)
    torch.testing.assert_close(got[kept], expected[kept])


def test_repetition_penalty_matches_transformers():
    logits = _random_logits(7)
    previous = torch.randint(0, 500, (4, 30), generator=torch.Generator().manual_seed(3))
    expected = hf.RepetitionPenaltyLogitsProcessor(1.3)(previous, logits.clone())
    torch.testing.assert_close(ours.repetition_penalty(logits.clone(), previous, 1.3), expected)


def test_lora_layer_matches_peft_with_the_same_a_and_b():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(24, 40, bias=False))
    reference = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(24, 40, bias=False)),
                                    peft.LoraConfig(r=4, lora_alpha=12, target_modules=["0"], lora_dropout=0.0))
    reference.base_model.model[0].base_layer.weight.data.copy_(base[0].weight)
    ours_layer = LoRALinear(base[0], r=4, alpha=12)
    with torch.no_grad():
        ours_layer.lora_B.normal_()  # B != 0 so the update is visible
        reference.base_model.model[0].lora_A["default"].weight.copy_(ours_layer.lora_A)
        reference.base_model.model[0].lora_B["default"].weight.copy_(ours_layer.lora_B)
    x = torch.randn(5, 24)
    torch.testing.assert_close(ours_layer(x), reference(x), atol=1e-5, rtol=1e-5)
