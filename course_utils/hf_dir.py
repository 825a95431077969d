"""Read a local Hugging Face LLaMA directory into a Checkpoint, and export a Checkpoint as one."""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import Checkpoint, check_tensor_names
from .config import ModelConfig
from .positional import permute_qk_rows
from .tokenizer import ChatTemplate

ARCHITECTURES = ("LlamaForCausalLM",)
_MISSING = object()


def _read_json(file: Path) -> dict:
    """A JSON object from ``file``; unreadable or malformed JSON is a ValueError naming the file and the place."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{file} is not UTF-8 text ({error}); re-save it as UTF-8 JSON") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{file} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                         f"fix that line or re-save the directory with save_pretrained") from error
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, got a JSON {type(data).__name__}; re-save the directory "
                         f"with save_pretrained")
    return data


def _get(hf: dict, file: Path, key: str, kind: type, default=_MISSING):
    """Field ``key`` of config.json as ``kind``; a missing or mistyped field is a ValueError naming both."""
    if key not in hf or hf[key] is None:
        if default is _MISSING:
            raise ValueError(f"{file} lacks the field {key!r} that a LLaMA config needs; re-save the model with "
                             f"save_pretrained or add the field")
        return default
    value = hf[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise ValueError(f"{file}: field {key!r} is {value!r}, expected {'an integer' if kind is int else 'a number'}")
    return kind(value)


def _check_llama(hf: dict, file: Path) -> None:
    """Refuse configs the course model would load as a different network (other architectures, biases, scaling)."""
    archs, model_type = hf.get("architectures"), hf.get("model_type")
    if archs is None and model_type is None:
        raise ValueError(f"{file} names neither 'architectures' nor 'model_type'; the course loads LlamaForCausalLM "
                         f"checkpoints only (add \"model_type\": \"llama\" if this is one)")
    if model_type is not None and model_type != "llama":
        raise ValueError(f"{file} holds a {model_type!r} model; only LLaMA-family models are supported "
                         f"(model_type 'llama', architectures {list(ARCHITECTURES)})")
    if archs is not None and (not isinstance(archs, list) or not set(archs) <= set(ARCHITECTURES) or not archs):
        raise ValueError(f"{file} declares architectures {archs!r}; the course model implements only "
                         f"{list(ARCHITECTURES)} (other families differ in biases, norms or attention)")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise ValueError(f"{file} sets {flag}: true, but the course model has no biases; its weights would be "
                             f"loaded without them and answer wrongly. Use a checkpoint with {flag}: false")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{file}: hidden_act {hf['hidden_act']!r} is not supported; the course model uses 'silu'")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}  # transformers >= 5 nests theta here
    if not isinstance(rope, dict):
        raise ValueError(f"{file}: rope_parameters/rope_scaling must be an object, got {rope!r}")
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"{file}: RoPE scaling {rope.get('rope_type', rope.get('type'))!r} is not supported by the "
                         f"course model; only plain RoPE ('default')")


def _config(hf: dict, file: Path, path: Path) -> ModelConfig:
    dim, n_heads = _get(hf, file, "hidden_size", int), _get(hf, file, "num_attention_heads", int)
    if n_heads <= 0 or dim % n_heads:
        raise ValueError(f"{file}: hidden_size {dim} is not a multiple of num_attention_heads {n_heads}")
    if _get(hf, file, "head_dim", int, dim // n_heads) != dim // n_heads:
        raise ValueError(f"{file}: head_dim {hf['head_dim']} != hidden_size / num_attention_heads; not supported")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    eos = hf.get("eos_token_id")
    return ModelConfig(
        vocab_size=_get(hf, file, "vocab_size", int), dim=dim, n_layers=_get(hf, file, "num_hidden_layers", int),
        n_heads=n_heads, n_kv_heads=_get(hf, file, "num_key_value_heads", int, n_heads),
        ffn_dim=_get(hf, file, "intermediate_size", int), norm_eps=_get(hf, file, "rms_norm_eps", float, 1e-6),
        rope_theta=_get(rope, file, "rope_theta", float, _get(hf, file, "rope_theta", float, 1e4)),
        max_seq_len=_get(hf, file, "max_position_embeddings", int, 2048),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), rope_layout="half",
        bos_id=hf.get("bos_token_id"), eos_id=eos[0] if isinstance(eos, list) and eos else eos,
        name=str(hf.get("_name_or_path") or path.name),
    )


def _chat_template(path: Path) -> ChatTemplate | None:
    """The chat template: ``chat_template.jinja`` (transformers >= 5) first, then ``tokenizer_config.json``."""
    jinja = path / "chat_template.jinja"
    if jinja.exists():
        return ChatTemplate(jinja.read_text(encoding="utf-8"), str(jinja))
    config_file = path / "tokenizer_config.json"
    if not config_file.exists():
        return None
    template = _read_json(config_file).get("chat_template")
    if isinstance(template, list):  # several named templates: the course uses the default one
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    if template is not None and not isinstance(template, str):
        raise ValueError(f"{config_file}: chat_template must be a string, got {type(template).__name__}")
    return ChatTemplate(template, str(config_file)) if template else None


def read_hf_dir(path: Path) -> Checkpoint:
    """Read a local Hugging Face LlamaForCausalLM directory (config.json, *.safetensors, tokenizer files)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise ValueError(f"{path} is a directory without config.json; expected a Hugging Face model directory "
                         f"(config.json + *.safetensors), e.g. one written by save_pretrained")
    hf = _read_json(config_file)
    _check_llama(hf, config_file)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{path} has no *.safetensors weight files (PyTorch .bin files are not read: they can run "
                         f"code); save the model with save_pretrained(safe_serialization=True)")
    config = _config(hf, config_file, path)
    state = {}
    for file in files:
        try:
            tensors = load_file(file)
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{file} is not a readable safetensors file ({type(error).__name__}: {error}); it may "
                             f"be truncated, re-save or re-download it") from error
        for name, tensor in tensors.items():
            name = name[len("model."):] if name.startswith("model.") else name
            if config.tie_embeddings and name == "lm_head.weight":
                continue
            state[name] = tensor.float()
    check_tensor_names(set(state), config, str(path))
    tokenizer_json = ""
    if (path / "tokenizer.json").exists():
        tokenizer_json = (path / "tokenizer.json").read_text(encoding="utf-8")
    return Checkpoint(config, state, tokenizer_json, _chat_template(path))


def export_hf_dir(checkpoint: Checkpoint, directory: Path) -> None:
    """Write a checkpoint as a Hugging Face LLaMA directory (q/k rows permuted to the half-split layout)."""
    from safetensors.torch import save_file

    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"export_hf_dir expects a Checkpoint (from load_checkpoint()), got {type(checkpoint).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"cannot export to {directory}: it is a file, not a folder; choose a folder path")
    config = checkpoint.config
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in checkpoint.state_dict.items():
        if config.rope_layout == "interleaved" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.n_heads if "q_proj" in name else config.n_kv_heads
            tensor = permute_qk_rows(tensor, heads, to_layout="half")
        state[f"model.{name}" if name != "lm_head.weight" else name] = tensor.contiguous()
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    hf_config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": config.vocab_size,
        "hidden_size": config.dim, "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads, "intermediate_size": config.ffn_dim, "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "max_position_embeddings": config.max_seq_len,
        "tie_word_embeddings": config.tie_embeddings, "hidden_act": "silu", "bos_token_id": config.bos_id,
        "eos_token_id": config.eos_id, "torch_dtype": "float32", "_name_or_path": config.name,
    }
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2))
    if checkpoint.tokenizer_json:
        (directory / "tokenizer.json").write_text(checkpoint.tokenizer_json)
    if checkpoint.chat_template:
        (directory / "tokenizer_config.json").write_text(json.dumps({"chat_template": checkpoint.chat_template}))


