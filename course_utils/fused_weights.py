"""Fused products: the weights of several projections stored as row blocks of one matrix, multiplied at once.

q/k/v of a block (and gate/up) become consecutive row blocks of ONE matrix; each projection's ``weight`` is a view of
its block, so module names, the state dict and LoRA targets stay as they were, and in-place updates
(``load_state_dict``, optimiser steps, ``lora.merge_lora``) land in the joint matrix that the fused product reads.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["join_weights", "joint_matrix", "FusedWeight", "record_fused", "fused_weight"]


def join_weights(layers: list[nn.Linear]) -> None:
    """Store the weights of ``layers`` (same input size, no bias) as consecutive row blocks of ONE matrix.

    Each ``layer.weight`` becomes a view of its block, so in-place updates of a layer's weight land in the joint
    matrix; ``joint_matrix`` hands the whole matrix to a single product.
    """
    joint = torch.cat([layer.weight.detach() for layer in layers])  # [sum of rows, in]
    start = 0
    for layer in layers:
        rows = layer.weight.shape[0]
        layer.weight = nn.Parameter(joint[start:start + rows], requires_grad=layer.weight.requires_grad)
        start += rows


def joint_matrix(layers: list[nn.Module]) -> torch.Tensor | None:
    """The joint matrix behind ``layers`` if their weights are still its consecutive row blocks, else None."""
    weights = []
    for layer in layers:
        if type(layer) is not nn.Linear or layer.bias is not None:
            return None
        weights.append(layer.weight)
    first = weights[0]
    columns, storage, offset = first.shape[1], first.untyped_storage().data_ptr(), first.storage_offset()
    for weight in weights:  # each block must start where the previous one ended, in the same storage
        if (weight.storage_offset() != offset or weight.shape[1] != columns or weight.dtype != first.dtype
                or not weight.is_contiguous() or weight.untyped_storage().data_ptr() != storage):
            return None
        offset += weight.numel()
    rows = (offset - first.storage_offset()) // columns
    return first.detach().as_strided((rows, columns), (columns, 1))


class FusedWeight(NamedTuple):
    """A joint matrix of ``join_weights``, recorded by ``make_fast`` with its layers and where their blocks start.

    The forward pass checks only that each layer is still the module under its name (not wrapped, e.g. by LoRA) and
    that its weight still starts at the recorded address: plain dictionary reads and one C call per layer, instead of
    re-deriving the matrix from storage (``joint_matrix``) or going through ``nn.Module.__getattr__``, which on a
    busy 2-core CPU cost ~0.1 ms per group, 5 % of a batch-1 decoding step over 60 groups. While this record holds
    the matrix its memory cannot be reused, so an unchanged address means the weight is still its view.
    """

    weight: torch.Tensor
    names: tuple[str, ...]
    layers: tuple[nn.Module, ...]
    pointers: tuple[int, ...]


def record_fused(names: tuple[str, ...], layers: list[nn.Module]) -> FusedWeight | None:
    """The ``FusedWeight`` of ``layers`` (children of one module under ``names``), or None if they are not joined."""
    joint = joint_matrix(layers)
    if joint is None:
        return None
    return FusedWeight(joint, names, tuple(layers), tuple(layer.weight.data_ptr() for layer in layers))


def fused_weight(module: nn.Module) -> torch.Tensor | None:
    """``module``'s recorded joint matrix if its layers are still in place and still its views, else None.

    A record whose views were replaced (e.g. by ``model.to(dtype)``) is dropped, freeing the old matrix.
    """
    fused: FusedWeight | None = module.__dict__.get("fused")
    if fused is None:
        return None
    children = module._modules
    for name, layer, pointer in zip(fused.names, fused.layers, fused.pointers):
        if children[name] is not layer:  # wrapped (LoRA) or replaced: keep the record, the layer may come back
            return None
        if layer._parameters["weight"].data_ptr() != pointer:  # converted or replaced: the views are gone
            module.fused = None
            return None
    return fused.weight
