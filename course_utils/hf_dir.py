"""Read a local Hugging Face LLaMA directory into a Checkpoint, and export a Checkpoint as one."""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import Checkpoint
from .model import ModelConfig
from .positional import permute_qk_rows


def read_hf_dir(path: Path) -> Checkpoint:
    """Read a local Hugging Face LLaMA directory (config.json, *.safetensors, tokenizer.json)."""
    from safetensors.torch import load_file

    config_path = path / "config.json"
    if not config_path.exists():
        raise ValueError(f"{path} is a directory without config.json; expected a Hugging Face model directory")
    hf = json.loads(config_path.read_text())
    if hf.get("model_type") not in ("llama", None):
        raise ValueError(f"{path} holds a {hf.get('model_type')!r} model; only LLaMA-family models are supported")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{path} has no *.safetensors weight files")
    n_heads = hf["num_attention_heads"]
    eos = hf.get("eos_token_id")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}  # transformers >= 5 nests theta here
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"{path}: RoPE scaling {rope.get('rope_type', rope.get('type'))!r} is not supported by the "
                         f"course model; only plain RoPE ('default')")
    if hf.get("head_dim", hf["hidden_size"] // n_heads) != hf["hidden_size"] // n_heads:
        raise ValueError(f"{path}: head_dim {hf['head_dim']} != hidden_size / num_attention_heads; not supported")
    config = ModelConfig(
        vocab_size=hf["vocab_size"], dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads", n_heads), ffn_dim=hf["intermediate_size"],
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 1e4))),
        max_seq_len=hf.get("max_position_embeddings", 2048), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        rope_layout="half", bos_id=hf.get("bos_token_id"), eos_id=eos[0] if isinstance(eos, list) else eos,
        name=hf.get("_name_or_path") or path.name,
    )
    state = {}
    for file in files:
        for name, tensor in load_file(file).items():
            if name.startswith("model."):
                name = name[len("model."):]
            if config.tie_embeddings and name == "lm_head.weight":
                continue
            state[name] = tensor.float()
    tokenizer_json, template = "", None
    if (path / "tokenizer.json").exists():
        tokenizer_json = (path / "tokenizer.json").read_text()
    if (path / "tokenizer_config.json").exists():
        template = json.loads((path / "tokenizer_config.json").read_text()).get("chat_template")
    return Checkpoint(config, state, tokenizer_json, template)


def export_hf_dir(checkpoint: Checkpoint, directory: Path) -> None:
    """Write a checkpoint as a Hugging Face LLaMA directory (q/k rows permuted to the half-split layout)."""
    from safetensors.torch import save_file

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


