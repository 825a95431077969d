"""LoRA (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models") written out by hand.

A frozen layer W0 (d x k, so y = W0 x maps k inputs to d outputs) gets a trainable low-rank update:
    h = W0 x + (alpha / r) * B A x,   A in R^{r x k} (random Gaussian), B in R^{d x r} (zeros), r << min(d, k).
B = 0 at the start, so the adapted model is exactly the pre-trained one until training moves B.
Adapters can be merged into W0 after training (no extra inference cost) and saved as a small file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR_TARGETS = ATTENTION_TARGETS + MLP_TARGETS
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FORMAT = "course-lora-v1"


def _check_hyperparameters(r: int, alpha: float, dropout: float) -> None:
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"LoRA alpha must be a positive finite number, got {alpha!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must lie in [0, 1), got {dropout!r}")


def _adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    """Adapters train in float32 even when the frozen base is stored in a half-precision type."""
    return torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype


class LoRAModule(nn.Module):
    """What every LoRA wrapper shares: the frozen ``base`` layer, ``lora_A``, ``lora_B``, scaling and merging."""

    base: nn.Module
    lora_A: nn.Parameter
    lora_B: nn.Parameter

    def _setup(self, base: nn.Module, r: int, alpha: float, dropout: float) -> None:
        _check_hyperparameters(r, alpha, dropout)
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
            raise ValueError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
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
            raise ValueError(f"LoRAConv2d wraps an nn.Conv2d, got {type(base).__name__}")
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
    _check_hyperparameters(r, alpha, dropout)
    if isinstance(targets, str):
        targets = (targets,)
    allowed = _target_names(model)
    if not targets:
        raise ValueError(f"give at least one LoRA target; allowed: {sorted(allowed)}")
    unknown = sorted(set(targets) - allowed)
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; allowed: {sorted(allowed)}")
    if lora_modules(model):
        raise ValueError("this model already has LoRA layers; load a fresh model to add a different adapter")
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


@dataclass
class AdapterConfig:
    """What an adapter file needs besides its tensors: hyper-parameters and the identity of its base model."""

    base_model: str
    r: int
    alpha: float
    dropout: float
    targets: list[str]
    base_shapes: dict[str, list[int]]
    format: str = ADAPTER_FORMAT


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "name", None) or type(model).__name__


def adapter_config(model: nn.Module) -> AdapterConfig:
    """The configuration describing the LoRA layers currently in ``model``."""
    modules = lora_modules(model)
    if not modules:
        raise ValueError("this model has no LoRA layers; call add_lora first")
    first = next(iter(modules.values()))
    return AdapterConfig(base_model=_model_name(model), r=first.r, alpha=first.alpha, dropout=first.dropout.p,
                         targets=sorted({name.rsplit(".", 1)[-1] for name in modules}),
                         base_shapes={name: list(m.base.weight.shape) for name, m in modules.items()})


def _atomic_write(path: Path, write) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file onto ``path``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Save only the LoRA tensors (``adapter.safetensors``) and their config (``adapter_config.json``).

    The adapter must be unmerged: a merged weight no longer tells W0 and BA apart. Returns the directory.
    """
    modules = lora_modules(model)
    if not modules:
        raise ValueError("this model has no LoRA layers to save; call add_lora first")
    if any(m.merged for m in modules.values()):
        raise ValueError("unmerge the LoRA layers (unmerge_lora) before saving the adapter")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, module in modules.items():
        tensors[f"{name}.lora_A"] = module.lora_A.detach().cpu().contiguous()
        tensors[f"{name}.lora_B"] = module.lora_B.detach().cpu().contiguous()
    config = adapter_config(model)
    _atomic_write(directory / ADAPTER_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": config.format}))
    _atomic_write(directory / ADAPTER_CONFIG,
                  lambda tmp: Path(tmp).write_text(json.dumps(asdict(config), indent=2), encoding="utf-8"))
    return directory


def read_adapter_config(directory: str | os.PathLike) -> AdapterConfig:
    """The config stored next to an adapter's tensors."""
    path = Path(directory) / ADAPTER_CONFIG
    if not path.is_file():
        raise ValueError(f"no adapter config at {path}; was the adapter written with save_adapter?")
    config = AdapterConfig(**json.loads(path.read_text(encoding="utf-8")))
    if config.format != ADAPTER_FORMAT:
        raise ValueError(f"adapter format {config.format!r} is not supported; expected {ADAPTER_FORMAT!r}")
    return config


def load_adapter(model: nn.Module, directory: str | os.PathLike, seed: int = 0) -> list[str]:
    """Add the saved adapter to a fresh ``model`` (or into its matching LoRA layers) and load its tensors.

    Refuses, with a ValueError saying what differs, an adapter made for another base model, other layer shapes,
    or other LoRA hyper-parameters than the layers already present. Returns the adapted module names.
    """
    config = read_adapter_config(directory)
    name = _model_name(model)
    if config.base_model != name:
        raise ValueError(f"this adapter was trained on base model {config.base_model!r}, not {name!r}")
    for module_name, shape in config.base_shapes.items():
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise ValueError(f"the adapter needs layer {module_name!r}, which this model does not have") from None
        weight = module.base.weight if isinstance(module, LoRAModule) else getattr(module, "weight", None)
        if weight is None or list(weight.shape) != shape:
            got = None if weight is None else list(weight.shape)
            raise ValueError(f"layer {module_name!r} has weight shape {got}, the adapter expects {shape}")
    if lora_modules(model):
        present = adapter_config(model)
        if (present.r, present.alpha, present.targets) != (config.r, config.alpha, config.targets):
            raise ValueError(f"the model's LoRA layers (r={present.r}, alpha={present.alpha}, "
                             f"targets={present.targets}) differ from the adapter's (r={config.r}, "
                             f"alpha={config.alpha}, targets={config.targets})")
    else:
        add_lora(model, tuple(config.targets), r=config.r, alpha=config.alpha, dropout=config.dropout, seed=seed)
    modules = lora_modules(model)
    tensors = load_file(str(Path(directory) / ADAPTER_WEIGHTS))
    expected = {f"{n}.lora_{part}" for n in modules for part in "AB"}
    if set(tensors) != expected:
        raise ValueError(f"adapter tensors do not match the LoRA layers: missing {sorted(expected - set(tensors))[:3]},"
                         f" unexpected {sorted(set(tensors) - expected)[:3]}")
    with torch.no_grad():
        for module_name, module in modules.items():
            if module.merged:
                raise ValueError("unmerge the LoRA layers (unmerge_lora) before loading an adapter into them")
            for part in ("A", "B"):
                target = getattr(module, f"lora_{part}")
                source = tensors[f"{module_name}.lora_{part}"]
                if source.shape != target.shape:
                    raise ValueError(f"{module_name}.lora_{part} has shape {tuple(source.shape)} in the file, "
                                     f"{tuple(target.shape)} in the model")
                target.copy_(source.to(target.dtype))
    return sorted(modules)


def file_size_mib(path: str | os.PathLike) -> float:
    """Size of a file, or of all files in a directory, in MiB."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if not files:
        raise ValueError(f"nothing to measure at {path}")
    return sum(p.stat().st_size for p in files) / 2**20
