"""Hugging Face directories: only LlamaForCausalLM-compatible checkpoints load, and every fault names file and field."""
import json

import pytest
import torch
from references import import_reference
from safetensors.torch import save_file
from weights_helpers import TINY_TEMPLATE, write_tiny_gguf

from course_utils.gguf_reader import read_gguf
from course_utils.hf_dir import export_hf_dir, read_hf_dir

# newlines after block tags: rendered the same only with transformers' settings (trim_blocks, lstrip_blocks)
MULTILINE_TEMPLATE = """{% for m in messages %}
    <|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% if loop.index > 5 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""


@pytest.fixture
def hf_dir(tmp_path):
    """A tiny LLaMA exported as a Hugging Face directory (config.json, model.safetensors, tokenizer files)."""
    checkpoint = read_gguf(write_tiny_gguf(tmp_path / "tiny.gguf"))
    export_hf_dir(checkpoint, tmp_path / "hf")
    return tmp_path / "hf"


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_the_tiny_directory_loads(hf_dir):
    checkpoint = read_hf_dir(hf_dir)
    assert checkpoint.config.n_layers == 1 and checkpoint.chat_template == TINY_TEMPLATE


@pytest.mark.parametrize("changes, message", [
    ({"architectures": ["Qwen2ForCausalLM"], "model_type": "llama"}, r"architectures \['Qwen2ForCausalLM'\]"),
    ({"model_type": "qwen2"}, "'qwen2' model; only LLaMA-family"),
    ({"attention_bias": True}, "attention_bias: true.*no biases"),
    ({"mlp_bias": True}, "mlp_bias: true"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"hidden_size": "16"}, "'hidden_size' is '16', expected an integer"),
    ({"num_hidden_layers": None}, "lacks the field 'num_hidden_layers'"),
    ({"architectures": None, "model_type": None}, "neither 'architectures' nor 'model_type'"),
])
def test_configs_the_course_model_cannot_run_are_refused(hf_dir, changes, message):
    _edit_config(hf_dir, **changes)
    with pytest.raises(ValueError, match=message) as caught:
        read_hf_dir(hf_dir)
    assert str(hf_dir / "config.json") in str(caught.value)


def test_unexpected_and_missing_tensors_are_named(hf_dir):
    from safetensors.torch import load_file

    state = load_file(hf_dir / "model.safetensors")
    state["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(16)
    save_file(state, str(hf_dir / "model.safetensors"))
    with pytest.raises(ValueError, match=r"1 unexpected \(e.g. layers.0.self_attn.q_proj.bias\)"):
        read_hf_dir(hf_dir)
    del state["model.layers.0.self_attn.q_proj.bias"], state["model.norm.weight"]
    save_file(state, str(hf_dir / "model.safetensors"))
    with pytest.raises(ValueError, match=r"1 missing \(e.g. norm.weight\)"):
        read_hf_dir(hf_dir)


def test_broken_files_name_the_file(hf_dir):
    (hf_dir / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON .*line 1"):
        read_hf_dir(hf_dir)


def test_truncated_safetensors_names_the_file(hf_dir):
    data = (hf_dir / "model.safetensors").read_bytes()
    (hf_dir / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        read_hf_dir(hf_dir)


def test_chat_template_jinja_file_comes_first(hf_dir):
    (hf_dir / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    checkpoint = read_hf_dir(hf_dir)
    assert checkpoint.chat_template == "{{ messages[0]['content'] }}"
    assert checkpoint.chat_template.origin == str(hf_dir / "chat_template.jinja")
    (hf_dir / "chat_template.jinja").unlink()
    assert read_hf_dir(hf_dir).chat_template == TINY_TEMPLATE


def test_a_malicious_template_in_a_directory_names_its_file(hf_dir, tmp_path):
    from tokenizers import Tokenizer

    from course_utils.tokenizer import ChatTokenizer

    (hf_dir / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{{ cycler.__init__.__globals__.os.system('touch %s') }}" % (tmp_path / "pwned")}))
    checkpoint = read_hf_dir(hf_dir)
    tok = ChatTokenizer(Tokenizer.from_str(checkpoint.tokenizer_json), checkpoint.chat_template, eos_id=2)
    with pytest.raises(ValueError, match="tokenizer_config.json tried something the sandbox forbids"):
        tok.render_chat([{"role": "user", "content": "hi"}])
    assert not (tmp_path / "pwned").exists()


def test_a_directory_saved_by_transformers_5_keeps_its_chat_template(tmp_path):
    """transformers >= 5 writes the template to chat_template.jinja; logits and the template must both come through."""
    transformers = import_reference("transformers")  # skipped without it, required in CI
    from tokenizers import Tokenizer

    from course_utils import load_model

    checkpoint = read_gguf(write_tiny_gguf(tmp_path / "tiny.gguf"))
    export_hf_dir(checkpoint, tmp_path / "course-hf")
    reference = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "course-hf").eval()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(checkpoint.tokenizer_json),
                                                     eos_token="<|im_end|>", bos_token="<|im_start|>")
    tokenizer.chat_template = MULTILINE_TEMPLATE
    reference.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "chat_template.jinja").exists() or \
        "chat_template" in json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    model, tok = load_model(tmp_path / "saved", device="cpu")
    messages = [{"role": "system", "content": "ab"}, {"role": "user", "content": "abcd"}]
    assert tok.render_chat(messages) == tokenizer.apply_chat_template(messages, tokenize=False,
                                                                      add_generation_prompt=True)
    ids = torch.tensor([tok.apply_chat_template(messages)])
    with torch.no_grad():
        ours, theirs = model(ids), reference(ids).logits
        # float32 rounding only (fused kernels sum in another order): within 1e-5 of the largest logit
        assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()
