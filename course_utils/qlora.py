"""QLoRA's memory saving made real: frozen projections kept in their 4-bit Q4_1 blocks, dequantised on the fly.

Q4_1 (GGUF/llama.cpp) stores a row of weights in blocks of 32. Each block takes 20 bytes:
    bytes 0-1   d, the scale (float16)       bytes 2-3   m, the minimum (float16)
    bytes 4-19  32 codes q in 0..15, two per byte: byte j holds weight j in its low nibble, weight j + 16 in its high
and weight = d * q + m (computed in float32). That is 5 bits per weight instead of 32.

``Q4Linear`` keeps only those bytes. Its product runs through ``Q4LinearFunction``, which dequantises the weight in
forward, throws it away, and dequantises it again in backward: plain autograd would save the float weight for the
backward pass and all of the saving would be gone. LoRA adapters (``course_utils.lora.add_lora``) train on top in
full precision, as in Dettmers et al. (2023), "QLoRA: Efficient Finetuning of Quantized LLMs".
"""
from __future__ import annotations

import functools
import os

import numpy as np
import torch
from torch import nn

from .lora import ALL_LINEAR_TARGETS, LoRALinear, lora_modules

BLOCK = 32            # weights per Q4_1 block
BLOCK_BYTES = 20      # 2 (d) + 2 (m) + 16 (32 codes of 4 bits)
_GGUF_PARTS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
               "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def _check_blocks(blocks: torch.Tensor) -> None:
    if not isinstance(blocks, torch.Tensor):
        raise TypeError(f"Q4_1 blocks must be a torch.Tensor, got {type(blocks).__name__}")
    if blocks.dtype != torch.uint8:
        raise TypeError(f"Q4_1 blocks must be raw bytes (torch.uint8), got {blocks.dtype}")
    if blocks.dim() != 3 or blocks.shape[-1] != BLOCK_BYTES:
        raise ValueError(f"Q4_1 blocks must have shape [rows, blocks per row, {BLOCK_BYTES}], "
                         f"got {tuple(blocks.shape)}")


def dequantize_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    """float32 weight [rows, 32 * blocks per row] from Q4_1 bytes [rows, blocks per row, 20]."""
    _check_blocks(blocks)
    rows, n_blocks, _ = blocks.shape
    d_and_m = blocks[..., :4].view(torch.float16).float()      # [rows, n_blocks, 2]
    d, m = d_and_m[..., :1], d_and_m[..., 1:]                   # [rows, n_blocks, 1] each
    packed = blocks[..., 4:]                                    # [rows, n_blocks, 16]
    codes = torch.cat([packed & 0x0F, packed >> 4], dim=-1)     # [rows, n_blocks, 32]: weights 0-15, then 16-31
    # d * q is exact in float32 (11-bit d times a 4-bit q), so the fused m + d * q rounds once, like d * q + m
    return torch.addcmul(m, d, codes.float()).reshape(rows, n_blocks * BLOCK)


def quantize_q4_1(weight: torch.Tensor) -> torch.Tensor:
    """Q4_1 bytes [rows, in / 32, 20] of a float weight [rows, in]: per block d = (max - min) / 15, m = min,
    q = round((w - m) / d) in 0..15 (the rounding of llama.cpp / gguf: truncate(x + 0.5))."""
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {type(weight).__name__} "
                        f"{getattr(weight, 'dtype', '')}")
    if weight.dim() != 2 or weight.shape[1] % BLOCK:
        raise ValueError(f"weight must be 2-D with a multiple of {BLOCK} columns, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    w = weight.detach().float().reshape(rows, cols // BLOCK, BLOCK)
    low, high = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    d = (high - low) / 15
    inverse = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = torch.trunc((w - low) * inverse + 0.5).clamp(0, 15).to(torch.uint8)          # [rows, n_blocks, 32]
    packed = q[..., :BLOCK // 2] | (q[..., BLOCK // 2:] << 4)                         # weight j and j + 16 share a byte
    d_and_m = torch.cat([d, low], -1).to(torch.float16).view(torch.uint8)            # [rows, n_blocks, 4]
    return torch.cat([d_and_m, packed], -1).contiguous()


def q4_1_blocks_from_bytes(raw: np.ndarray | torch.Tensor, in_features: int) -> torch.Tensor:
    """Reshape the raw bytes of a Q4_1 matrix (one row of bytes per weight row) into [rows, in / 32, 20]."""
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8:
        raw = torch.from_numpy(np.array(raw, copy=True))   # a copy: the reader's memory map is read-only
    if not isinstance(raw, torch.Tensor) or raw.dtype != torch.uint8:
        raise TypeError(f"raw Q4_1 data must be a uint8 array, got {type(raw).__name__} "
                        f"{getattr(raw, 'dtype', '')}")
    if not isinstance(in_features, int) or in_features < 1 or in_features % BLOCK:
        raise ValueError(f"in_features must be a positive multiple of {BLOCK}, got {in_features!r}")
    if raw.dim() != 2:
        raise ValueError(f"raw Q4_1 data must be 2-D [rows, bytes per row], got shape {tuple(raw.shape)}")
    expected = in_features // BLOCK * BLOCK_BYTES
    if raw.shape[1] != expected:
        raise ValueError(f"a row of {in_features} weights takes {in_features // BLOCK} blocks = {expected} bytes, "
                         f"got {raw.shape[1]} bytes per row ({raw.shape[1] / BLOCK_BYTES:g} blocks)")
    return raw.reshape(raw.shape[0], in_features // BLOCK, BLOCK_BYTES).contiguous()


class Q4LinearFunction(torch.autograd.Function):
    """y = x W^T with W dequantised from Q4_1 blocks in forward AND in backward; only the bytes are saved."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        weight = dequantize_q4_1(blocks).to(x.dtype)   # [out, in], freed when forward returns
        ctx.save_for_backward(blocks)                  # 5 bits per weight; x is not needed (W gets no gradient)
        return x @ weight.T

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (blocks,) = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out @ dequantize_q4_1(blocks).to(grad_out.dtype)   # dL/dx = dL/dy W
        return grad_x, None                                                 # the frozen W: no gradient


class Q4Linear(nn.Linear):
    """A frozen ``nn.Linear`` (no bias) whose weight lives as Q4_1 bytes (buffer ``blocks``, [out, in / 32, 20]).

    It subclasses ``nn.Linear`` so that ``add_lora`` wraps it like any linear layer. ``weight`` reads as the
    dequantised float32 matrix, made afresh on each access and read-only: writing into it (e.g. merging LoRA into a
    4-bit base) raises, since the sum would no longer be 4-bit. Use ``merge_lora_to_float`` instead.
    """

    merge_refusal = ("this LoRA layer's base keeps its weight as 4-bit Q4_1 blocks, which cannot absorb the float "
                     "update without a new rounding error; use course_utils.qlora.merge_lora_to_float(model), which "
                     "replaces each adapted layer by a float32 layer holding W0 + (alpha / r) B A")

    def __init__(self, blocks: torch.Tensor):
        nn.Module.__init__(self)   # not nn.Linear.__init__: it would allocate a float weight
        _check_blocks(blocks)
        self.out_features, self.in_features = blocks.shape[0], blocks.shape[1] * BLOCK
        self.register_buffer("blocks", blocks)
        self.bias = None

    @property
    def weight(self) -> torch.Tensor:
        with torch.inference_mode():   # an inference tensor: in-place writes (a merge) fail instead of being lost
            return dequantize_q4_1(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input has {x.shape[-1]} features, this layer takes {self.in_features}")
        return Q4LinearFunction.apply(x, self.blocks)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, Q4_1"


@functools.lru_cache(maxsize=2)
def _reader(path: str, modified_ns: int):
    """A GGUFReader per file version (parsing the tokenizer metadata takes seconds; the tensors are memory-mapped)."""
    import gguf

    return gguf.GGUFReader(path)


def _open_gguf(path: str | os.PathLike):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"no GGUF file at {path}")
    return _reader(path, os.stat(path).st_mtime_ns)


def read_q4_1_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every Q4_1 tensor of a GGUF file as blocks [rows, in / 32, 20], by GGUF name (e.g. ``blk.0.attn_q.weight``)."""
    import gguf

    reader = _open_gguf(path)
    out = {}
    for tensor in reader.tensors:
        if tensor.tensor_type == gguf.GGMLQuantizationType.Q4_1:
            out[tensor.name] = q4_1_blocks_from_bytes(np.asarray(tensor.data), int(tensor.shape[0]))
    return out


def gguf_q4_1_blocks(path: str | os.PathLike, name: str) -> torch.Tensor:
    """The blocks of one tensor of a GGUF file; ValueError when it is missing or not Q4_1."""
    import gguf

    reader = _open_gguf(path)
    for tensor in reader.tensors:
        if tensor.name == name:
            if tensor.tensor_type != gguf.GGMLQuantizationType.Q4_1:
                raise ValueError(f"tensor {name!r} is stored as {tensor.tensor_type.name}, not Q4_1")
            return q4_1_blocks_from_bytes(np.asarray(tensor.data), int(tensor.shape[0]))
    raise ValueError(f"no tensor {name!r} in {path}")


def quantize_model_4bit(model: nn.Module, path: str | os.PathLike | None = None,
                        targets: tuple[str, ...] = ALL_LINEAR_TARGETS, check: bool = True) -> int:
    """Replace the projections of a model loaded by ``load_model()`` by ``Q4Linear`` layers holding the GGUF's blocks.

    ``path``: the GGUF file the model was loaded from (default: the course file). The embedding / tied output head
    and the norms stay in float. With ``check``, each dequantised weight must EQUAL the float weight it replaces
    (the float model is the dequantised file), which also proves the q/k row order matches. Returns the count.
    """
    from .cache_layout import default_weights_path

    if not isinstance(model, nn.Module) or not hasattr(model, "layers"):
        raise TypeError(f"expected the LlamaModel returned by load_model(), got {type(model).__name__}")
    unknown = sorted(set(targets) - set(ALL_LINEAR_TARGETS))
    if not targets or unknown:
        raise ValueError(f"targets must be a non-empty subset of {ALL_LINEAR_TARGETS}, got {targets!r}")
    if lora_modules(model):
        raise ValueError("quantise the base model before add_lora, not after")
    stored = read_q4_1_tensors(path or default_weights_path())
    replaced = 0
    for index, block in enumerate(model.layers):
        for parent in (block.self_attn, block.mlp):
            for child, layer in list(parent.named_children()):
                if child not in targets or isinstance(layer, Q4Linear):
                    continue
                name = f"blk.{index}.{_GGUF_PARTS[child]}.weight"
                if name not in stored:
                    raise ValueError(f"{name} is not a Q4_1 tensor in the GGUF file; only Q4_1 layers can be swapped")
                blocks = stored[name].to(layer.weight.device)
                if check and not torch.equal(dequantize_q4_1(blocks), layer.weight.detach().float()):
                    raise ValueError(f"{name} does not dequantise to the model's weight: was the model loaded from "
                                     f"this GGUF file, in float32, with its q/k rows in the GGUF's order?")
                setattr(parent, child, Q4Linear(blocks))
                replaced += 1
    with torch.no_grad():   # own copies of the float tensors left, so the float file's memory map can be released
        for param in model.parameters():
            param.data = param.data.clone()
    _reader.cache_clear()
    return replaced


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes held by the model's tensors: 4-bit blocks, frozen float weights, trainable parameters (shared once)."""
    seen, parts = set(), {"q4_1 blocks": 0, "frozen float": 0, "trainable": 0}
    for tensor in [*model.buffers(), *model.parameters()]:
        key = (tensor.device.type, tensor.untyped_storage().data_ptr())
        if key in seen:
            continue
        seen.add(key)
        kind = "q4_1 blocks" if tensor.dtype == torch.uint8 else "trainable" if tensor.requires_grad else "frozen float"
        parts[kind] += tensor.untyped_storage().nbytes()
    return parts


@torch.no_grad()
def merge_lora_to_float(model: nn.Module) -> int:
    """Merge each LoRA layer on a 4-bit base into a NEW float layer W = dequantised W0 + (alpha / r) B A.

    The merged weight is no longer 4-bit (re-quantising it would add rounding error), so the merged layers take
    float memory again. Returns how many layers were merged.
    """
    merged = 0
    for name, module in lora_modules(model).items():
        if not isinstance(module, LoRALinear) or not isinstance(module.base, Q4Linear):
            continue
        base = module.base
        layer = nn.Linear(base.in_features, base.out_features, bias=False, device=base.blocks.device,
                          dtype=module.lora_A.dtype)
        layer.weight.copy_(dequantize_q4_1(base.blocks).to(layer.weight.dtype) + module.delta_weight())
        layer.requires_grad_(False)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        merged += 1
    if not merged:
        raise ValueError("no LoRA layer on a 4-bit base to merge (call quantize_model_4bit, then add_lora)")
    return merged
