"""LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models") written out by hand.

A frozen layer W0 (d x k, so y = W0 x maps k inputs to d outputs) gets a trainable low-rank update:
    h = W0 x + (alpha / r) * B A x,   A in R^{r x k} (random Gaussian), B in R^{d x r} (zeros), r << min(d, k).
B = 0 at the start, so the adapted model is exactly the pre-trained one until training moves B.
Adapters can be merged into W0 after training (no extra inference cost); saving and loading them as a small file is
``lora_adapters.py``.
Stays one piece: at ~260 lines, the wrappers and the functions that add, count, merge and remove them share one
contract (``LoRAModule``), and lesson 08 reads them in that order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .validation import check_int, check_real

ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR_TARGETS = ATTENTION_TARGETS + MLP_TARGETS


def check_hyperparameters(r: int, alpha: float, dropout: float) -> None:
    """Refuse a LoRA rank below 1, an alpha not above 0 or a dropout outside [0, 1) (TypeError/ValueError)."""
    check_int("LoRA rank r", r, minimum=1)
    check_real("LoRA alpha", alpha, low=0, low_open=True)
    check_real("LoRA dropout", dropout, low=0, high=1, high_open=True)


def _adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    """Adapters train in float32 even when the frozen base is stored in a half-precision type."""
    return torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype


class LoRAModule(nn.Module):
    """What every LoRA wrapper shares: the frozen ``base`` layer, ``lora_A``, ``lora_B``, scaling and merging."""

    base: nn.Module
    lora_A: nn.Parameter
    lora_B: nn.Parameter

    def _setup(self, base: nn.Module, r: int, alpha: float, dropout: float) -> None:
        check_hyperparameters(r, alpha, dropout)
        self.base = base
        self.base.requires_grad_(False)
        self.r, self.alpha = r, float(alpha)
        self.scaling = self.alpha / r
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) * B A, reshaped like the base weight."""
        raise NotImplementedError

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: W <- W0 + (alpha / r) B A. The adapter branch is then skipped."""
        if self.merged:
            raise ValueError("this LoRA layer is already merged")
        refusal = getattr(self.base, "merge_refusal", None)  # a base that cannot absorb the update says why
        if refusal:
            raise ValueError(refusal)
        weight = self.base.weight
        weight.copy_((weight.to(self.lora_A.dtype) + self.delta_weight()).to(weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update again, restoring W0 (up to float rounding) and re-enabling the adapter branch."""
        if not self.merged:
            raise ValueError("this LoRA layer is not merged")
        weight = self.base.weight
        weight.copy_((weight.to(self.lora_A.dtype) - self.delta_weight()).to(weight.dtype))
        self.merged = False


class LoRALinear(LoRAModule):
    """``base(x) + (alpha / r) * B(A(dropout(x)))`` with the LoRA paper's shapes; only A and B are trainable.

    A (r x k) starts Gaussian with standard deviation 1/sqrt(k), so A x has about the scale of one input
    coordinate; B (d x r) starts at zero. Dropout acts on the adapter branch only, never on the frozen path.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        self._setup(base, r, alpha, dropout)
        d, k = base.out_features, base.in_features
        dtype, device = _adapter_dtype(base.weight), base.weight.device
        a = torch.randn(r, k, generator=generator, dtype=dtype) / math.sqrt(k)
        self.lora_A = nn.Parameter(a.to(device))
        self.lora_B = nn.Parameter(torch.zeros(d, r, dtype=dtype, device=device))

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        update = self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T @ self.lora_B.T
        return out + (update * self.scaling).to(out.dtype)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


class LoRAConv2d(LoRAModule):
    """The same idea on a 2-D convolution: A is a conv with the base kernel (in -> r channels), B a 1x1 conv (r -> out).

    Flattening the base kernel to a matrix W0 of shape (out, in * kh * kw), the update is again (alpha / r) B A
    with A in R^{r x (in * kh * kw)} and B in R^{out x r}, so it merges into W0 exactly like the linear case.
    """

    def __init__(self, base: nn.Conv2d, r: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(base, nn.Conv2d):
            raise TypeError(f"LoRAConv2d wraps an nn.Conv2d, got {type(base).__name__}")
        if base.groups != 1:
            raise ValueError(f"LoRAConv2d supports groups=1 only, got groups={base.groups}")
        self._setup(base, r, alpha, dropout)
        out_ch, in_ch, kh, kw = base.weight.shape
        dtype, device = _adapter_dtype(base.weight), base.weight.device
        fan_in = in_ch * kh * kw
        a = torch.randn(r, in_ch, kh, kw, generator=generator, dtype=dtype) / math.sqrt(fan_in)
        self.lora_A = nn.Parameter(a.to(device))
        self.lora_B = nn.Parameter(torch.zeros(out_ch, r, 1, 1, dtype=dtype, device=device))

    def delta_weight(self) -> torch.Tensor:
        out_ch = self.lora_B.shape[0]
        flat = self.lora_B.flatten(1) @ self.lora_A.flatten(1)
        return (flat * self.scaling).view(out_ch, *self.lora_A.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        conv = self.base
        hidden = nn.functional.conv2d(self.dropout(x).to(self.lora_A.dtype), self.lora_A, None, conv.stride,
                                      conv.padding, conv.dilation)
        update = nn.functional.conv2d(hidden, self.lora_B)
        return out + (update * self.scaling).to(out.dtype)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def lora_modules(model: nn.Module) -> dict[str, LoRAModule]:
    """Every LoRA wrapper in ``model`` by its module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRAModule)}


def _target_names(model: nn.Module) -> set[str]:
    """Last name components of the layers that may be adapted (lm_head is tied to the embedding, so excluded)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, (nn.Linear, nn.Conv2d)) and not isinstance(module, LoRAModule)}
    names.discard("lm_head")
    return names


def add_lora(model: nn.Module, targets: tuple[str, ...] = ("q_proj", "v_proj"), r: int = 8, alpha: float = 16.0,
             dropout: float = 0.0, seed: int = 0) -> list[str]:
    """Freeze every parameter of ``model`` and wrap each layer whose name ends in one of ``targets`` with LoRA.

    Linear layers get ``LoRALinear``, 2-D convolutions ``LoRAConv2d``. Returns the wrapped module names.
    ``seed`` makes the Gaussian initialisation of every A reproducible.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    present = lora_modules(model)
    if present:  # checked first: the wrapped layers' own names no longer count as targets
        raise ValueError(f"this model already has LoRA ({len(present)} layers, e.g. {next(iter(present))!r}); "
                         f"load a fresh model to add another adapter, or train/merge the one it has")
    check_hyperparameters(r, alpha, dropout)
    check_int("seed", seed, minimum=0)
    if isinstance(targets, str):
        targets = (targets,)
    allowed = _target_names(model)
    if not isinstance(targets, (tuple, list)) or not all(isinstance(t, str) for t in targets):
        raise TypeError(f"targets must be a tuple of layer names, got {targets!r}; allowed: {sorted(allowed)}")
    if not targets:
        raise ValueError(f"give at least one LoRA target; allowed: {sorted(allowed)}")
    unknown = sorted(set(targets) - allowed)
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; allowed: {sorted(allowed)}")
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    wrapped = []
    for name, module in list(model.named_modules()):
        if name.rsplit(".", 1)[-1] not in targets:
            continue
        wrapper = LoRALinear if isinstance(module, nn.Linear) else LoRAConv2d
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, wrapper(module, r, alpha, dropout, generator=generator))
        wrapped.append(name)
    return wrapped


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameters (shared/tied tensors counted once)."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total

    def __str__(self) -> str:
        return f"trainable {self.trainable:,} of {self.total:,} parameters ({self.percent:.3f}%)"


def count_parameters(model: nn.Module) -> ParameterCount:
    """How many parameters ``model`` has and how many of them will be trained."""
    params = list(model.parameters())  # nn.Module.parameters() already yields a tied tensor once
    return ParameterCount(trainable=sum(p.numel() for p in params if p.requires_grad),
                          total=sum(p.numel() for p in params))


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer into its base weight; returns how many were merged."""
    modules = lora_modules(model)
    if not modules:
        raise ValueError("this model has no LoRA layers to merge")
    for module in modules.values():
        module.merge()
    return len(modules)


def unmerge_lora(model: nn.Module) -> int:
    """Undo ``merge_lora``; returns how many layers were unmerged."""
    modules = lora_modules(model)
    if not modules:
        raise ValueError("this model has no LoRA layers to unmerge")
    for module in modules.values():
        module.unmerge()
    return len(modules)


def remove_lora(model: nn.Module) -> int:
    """Put every LoRA layer's frozen base layer back in its place (unmerged first); returns how many were removed.

    The base weights are never trained, so the model computes the pre-trained function again (its parameters stay
    frozen, as ``add_lora`` left them). Cheaper than loading a fresh model for the next adapter.
    """
    modules = lora_modules(model)
    if not modules:
        raise ValueError("this model has no LoRA layers to remove")
    for name, module in modules.items():
        if module.merged:
            module.unmerge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module.base)
    return len(modules)
