"""LoRA adapter files: save an adapter (weights and its config in one safetensors file, atomically) and load it back.

A load checks everything first (file, format, base model, layer names and shapes, values) and only then touches the
model, so a failed load leaves the model as it was and says what is wrong in one line (``AdapterError``).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .lora import LoRAModule, add_lora, check_hyperparameters, lora_modules

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"  # written by earlier versions next to the weights; read for compatibility
ADAPTER_FORMAT = "course-lora-v1"
CONFIG_KEY = "course_lora_config"  # the adapter's config (JSON) inside the safetensors header


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
    """Call ``write(temporary_path)`` on a file in ``path``'s folder, flush it to disk, then rename it onto ``path``.

    A rename within one folder is atomic: readers see the old file or the new one, never a half-written one, and a
    kill at any moment leaves at most a ``*.tmp`` file that is removed on the next try.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Save the LoRA tensors AND their config as one file, ``adapter.safetensors`` (the config lives in its header).

    One file replaced by an atomic rename: an interrupted save leaves the previous adapter intact, never new
    weights with an old alpha. The adapter must be unmerged: a merged weight no longer tells W0 and BA apart.
    Returns the directory.
    """
    modules = lora_modules(model)
    if not modules:
        raise ValueError("this model has no LoRA layers to save; call add_lora first")
    if any(m.merged for m in modules.values()):
        raise ValueError("unmerge the LoRA layers (unmerge_lora) before saving the adapter")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is a file; give save_adapter a folder to write {ADAPTER_WEIGHTS} into")
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, module in modules.items():
        tensors[f"{name}.lora_A"] = module.lora_A.detach().cpu().contiguous()
        tensors[f"{name}.lora_B"] = module.lora_B.detach().cpu().contiguous()
    config = adapter_config(model)
    metadata = {"format": config.format, CONFIG_KEY: json.dumps(asdict(config))}
    _atomic_write(directory / ADAPTER_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    stale = directory / ADAPTER_CONFIG  # an earlier version's separate config would now contradict the file
    if stale.is_file():
        stale.unlink()
    return directory


class AdapterError(ValueError):
    """An adapter file that cannot be used; the message names the file, what is wrong and what to do."""


def _config_from_dict(raw, source: Path) -> AdapterConfig:
    if not isinstance(raw, dict):
        raise AdapterError(f"{source}: the adapter config must be a JSON object, got {type(raw).__name__}")
    if "peft_type" in raw:
        raise AdapterError(f"{source} is a Hugging Face PEFT adapter config ({raw['peft_type']}); course_utils "
                           f"reads adapters written by course_utils.lora_adapters.save_adapter")
    names = {f.name for f in fields(AdapterConfig)}
    missing = sorted(names - set(raw) - {"format"})
    unknown = sorted(set(raw) - names)
    if missing or unknown:
        raise AdapterError(f"{source}: the adapter config lacks {missing} / has unknown keys {unknown}; "
                           f"save it again with save_adapter")
    config = AdapterConfig(**raw)
    if config.format != ADAPTER_FORMAT:
        raise AdapterError(f"{source}: adapter format {config.format!r} is not supported; expected {ADAPTER_FORMAT!r}")
    try:
        check_hyperparameters(config.r, config.alpha, config.dropout)
    except (TypeError, ValueError) as error:
        raise AdapterError(f"{source}: {error}") from None
    shapes_ok = isinstance(config.base_shapes, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(type(n) is int for n in v)
        for k, v in config.base_shapes.items())
    if not shapes_ok or not isinstance(config.targets, list) or not config.base_shapes:
        raise AdapterError(f"{source}: base_shapes must map layer names to weight shapes and targets must be a list")
    return config


def _read_adapter(directory: str | os.PathLike, with_tensors: bool):
    """(config, tensors or None) from an adapter folder; every problem becomes one AdapterError line."""
    directory = Path(directory)
    path = directory / ADAPTER_WEIGHTS
    if directory.is_file():
        raise AdapterError(f"{directory} is a file; pass the folder that save_adapter wrote (it holds "
                           f"{ADAPTER_WEIGHTS})")
    if not path.is_file():
        hint = " (a Hugging Face PEFT adapter?)" if (directory / "adapter_model.safetensors").is_file() else ""
        raise AdapterError(f"no adapter file at {path}{hint}; write one with save_adapter(model, {str(directory)!r})")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()} if with_tensors else None
    except (SafetensorError, OSError, RuntimeError) as error:
        raise AdapterError(f"{path} is damaged or not a safetensors file ({str(error).splitlines()[0]}); "
                           f"save the adapter again") from None
    if CONFIG_KEY in metadata:
        text, source = metadata[CONFIG_KEY], path
    elif (directory / ADAPTER_CONFIG).is_file():  # an adapter saved by an earlier version: two files
        source = directory / ADAPTER_CONFIG
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise AdapterError(f"{source} cannot be read ({error}); save the adapter again") from None
    else:
        raise AdapterError(f"{path} carries no adapter config; was it written by "
                           f"course_utils.lora_adapters.save_adapter?")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise AdapterError(f"{source}: the adapter config is not valid JSON ({error}); "
                           f"save the adapter again") from None
    return _config_from_dict(raw, source), tensors


def read_adapter_config(directory: str | os.PathLike) -> AdapterConfig:
    """The config saved with an adapter (from the header of its ``adapter.safetensors``)."""
    return _read_adapter(directory, with_tensors=False)[0]


def _lora_shapes(weight_shape: list[int], r: int) -> dict[str, tuple[int, ...]]:
    """Shapes of lora_A and lora_B for a base weight: linear (d, k) or convolution (out, in, kh, kw)."""
    if len(weight_shape) == 2:
        d, k = weight_shape
        return {"A": (r, k), "B": (d, r)}
    out_ch, in_ch, kh, kw = weight_shape
    return {"A": (r, in_ch, kh, kw), "B": (out_ch, r, 1, 1)}


def _check_adapter_fits(model: nn.Module, config: AdapterConfig, tensors: dict, source: Path) -> None:
    """Raise AdapterError unless ``tensors`` can be loaded into ``model`` exactly as they are. Changes nothing."""
    name = _model_name(model)
    if config.base_model != name:
        raise AdapterError(f"this adapter was trained on base model {config.base_model!r}, not {name!r}")
    for module_name, shape in config.base_shapes.items():
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise AdapterError(f"the adapter needs layer {module_name!r}, which this model does not have") from None
        weight = module.base.weight if isinstance(module, LoRAModule) else getattr(module, "weight", None)
        if weight is None or list(weight.shape) != shape:
            got = None if weight is None else list(weight.shape)
            raise AdapterError(f"layer {module_name!r} has weight shape {got}, the adapter expects {shape}")
    present = lora_modules(model)
    if present:
        have = adapter_config(model)
        if (have.r, have.alpha, have.targets, sorted(present)) != (config.r, config.alpha, sorted(config.targets),
                                                                   sorted(config.base_shapes)):
            raise AdapterError(f"the model's LoRA layers (r={have.r}, alpha={have.alpha}, targets={have.targets}) "
                               f"differ from the adapter's (r={config.r}, alpha={config.alpha}, "
                               f"targets={config.targets}); load it into a fresh model")
        if any(m.merged for m in present.values()):
            raise AdapterError("unmerge the LoRA layers (unmerge_lora) before loading an adapter into them")
    else:
        would_wrap = sorted(n for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in config.targets
                            and isinstance(m, (nn.Linear, nn.Conv2d)))
        if would_wrap != sorted(config.base_shapes):
            raise AdapterError(f"{source}: targets {config.targets} select {len(would_wrap)} layers of this model, "
                               f"the adapter holds {len(config.base_shapes)}")
    expected = {f"{n}.lora_{part}": shape for n, base in config.base_shapes.items()
                for part, shape in _lora_shapes(base, config.r).items()}
    if set(tensors) != set(expected):
        missing, unexpected = sorted(set(expected) - set(tensors))[:3], sorted(set(tensors) - set(expected))[:3]
        raise AdapterError(f"{source}: tensors do not match the config: missing {missing}, unexpected {unexpected}")
    for key, shape in expected.items():
        tensor = tensors[key]
        if tuple(tensor.shape) != shape or not tensor.is_floating_point():
            raise AdapterError(f"{source}: {key} has shape {tuple(tensor.shape)} ({tensor.dtype}), expected {shape}")
        if not bool(torch.isfinite(tensor).all()):
            raise AdapterError(f"{source}: {key} holds NaN or infinite values; the adapter was saved from a diverged "
                               f"run")


def load_adapter(model: nn.Module, directory: str | os.PathLike, seed: int = 0) -> list[str]:
    """Add the saved adapter to a fresh ``model`` (or into its matching LoRA layers) and load its tensors.

    Everything is checked before the model is touched: a missing or damaged file, bad JSON, a PEFT adapter, an
    adapter for another base model, other layer shapes or other LoRA hyper-parameters raise an ``AdapterError``
    (a ValueError) in one line and leave the model exactly as it was. Returns the adapted module names.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config, tensors = _read_adapter(directory, with_tensors=True)
    _check_adapter_fits(model, config, tensors, Path(directory) / ADAPTER_WEIGHTS)
    if not lora_modules(model):
        add_lora(model, tuple(config.targets), r=config.r, alpha=config.alpha, dropout=config.dropout, seed=seed)
    modules = lora_modules(model)
    with torch.no_grad():
        for module_name, module in modules.items():
            for part in ("A", "B"):
                target = getattr(module, f"lora_{part}")
                target.copy_(tensors[f"{module_name}.lora_{part}"].to(target.dtype))
    return sorted(modules)


def file_size_mib(path: str | os.PathLike) -> float:
    """Size of a file, or of all files in a directory, in MiB."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if not files:
        raise ValueError(f"nothing to measure at {path}")
    return sum(p.stat().st_size for p in files) / 2**20
