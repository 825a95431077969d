"""Helpers for the weights tests: a tiny LLaMA GGUF written on the spot, byte flips, and on-disk snapshots."""
from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import numpy as np

TINY_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + list("abcdefghij ĠĊ") + ["ab", "cd"]
TINY_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_gguf(path: Path, name: str = "tiny-llama", seed: int = 0, extra_tensor: bool = False) -> Path:
    """A 1-layer LLaMA GGUF (dim 16, 2 heads, 1 kv head, vocab 18) with a byte-level BPE tokenizer and template."""
    rng = np.random.default_rng(seed)
    dim, ffn, vocab = 16, 32, len(TINY_TOKENS)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(dim)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(TINY_TOKENS)
    writer.add_token_merges(["a b", "c d"])
    writer.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(TINY_TEMPLATE)
    shapes = {"token_embd.weight": (vocab, dim), "output_norm.weight": (dim,),
              "blk.0.attn_norm.weight": (dim,), "blk.0.ffn_norm.weight": (dim,),
              "blk.0.attn_q.weight": (dim, dim), "blk.0.attn_k.weight": (8, dim), "blk.0.attn_v.weight": (8, dim),
              "blk.0.attn_output.weight": (dim, dim), "blk.0.ffn_gate.weight": (ffn, dim),
              "blk.0.ffn_up.weight": (ffn, dim), "blk.0.ffn_down.weight": (dim, ffn)}
    if extra_tensor:
        shapes["blk.0.attn_q.bias"] = (dim,)
    for tensor_name, shape in shapes.items():
        writer.add_tensor(tensor_name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def flip_byte(path: Path, offset: int, mask: int = 0x7F) -> None:
    """XOR one byte of ``path`` in place (same size), e.g. a float32's exponent byte to make it huge."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ mask]))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root`` with its mode and (for files) size and SHA-256."""
    state = {}
    if not root.exists():
        return state
    for path in sorted([root, *root.rglob("*")]):
        key = str(path.relative_to(root))
        if path.is_file():
            state[key] = ("file", path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            state[key] = ("dir",)
    return state
