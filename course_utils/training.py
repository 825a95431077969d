"""A small, readable training loop for chat fine-tuning: the masked loss, its configuration, one step, the loop.

The loss counts answer tokens only: the labels come from ``chat_data.encode_example`` (``IGNORE_INDEX`` elsewhere).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .chat_data import IGNORE_INDEX, collate
from .precision import autocast_for
from .seeding import seed_everything
from .validation import check_choice, check_int, check_real

SCHEDULES = ("constant", "linear")


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN/infinite loss or gradient; raised before the update, so the parameters stay finite."""


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not ``IGNORE_INDEX``.

    The logits at position t predict the token at t + 1, hence the shift by one. The labels are shifted, not the
    logits: slicing [batch, time, vocab] logits would copy them, and copy their gradient back, on every step.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on [batch, time]")
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # nothing to predict after the last position
    if not (targets != IGNORE_INDEX).any():
        raise ValueError("no answer tokens to learn from: every label is ignored")
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)


@dataclass
class TrainConfig:
    """Hyper-parameters of ``train``. Gradients are clipped to ``max_grad_norm``.

    ``schedule``: "constant" keeps the learning rate at ``lr``; "linear" decays it linearly from ``lr`` to zero.
    """

    steps: int
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 0
    seed: int = 0
    schedule: str = "constant"

    def __post_init__(self) -> None:
        self.steps = check_int("TrainConfig.steps", self.steps, minimum=1)
        self.batch_size = check_int("TrainConfig.batch_size", self.batch_size, minimum=1)
        self.lr = check_real("TrainConfig.lr", self.lr, low=0, low_open=True)
        self.weight_decay = check_real("TrainConfig.weight_decay", self.weight_decay, low=0)
        self.max_grad_norm = check_real("TrainConfig.max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        self.eval_every = check_int("TrainConfig.eval_every", self.eval_every, minimum=0, hint="0 = never")
        self.seed = check_int("TrainConfig.seed", self.seed, minimum=0)
        check_choice("TrainConfig.schedule", self.schedule, SCHEDULES)

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` for the 0-based ``step``."""
        return 1.0 if self.schedule == "constant" else 1.0 - step / self.steps


@dataclass
class TrainHistory:
    """Loss after every step, evaluation results by step, and the wall time spent."""

    losses: list[float] = field(default_factory=list)
    evals: dict[int, dict] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(len(self.losses), 1)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that will be updated; raises if there are none."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (everything is frozen)")
    return params


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, labels: torch.Tensor,
               max_grad_norm: float) -> float:
    """One optimisation step on one batch: forward, masked loss, backward, clip, update. Returns the loss.

    The loss and the gradient norm are read together (one host read, as the loss alone was before); if either is
    NaN or infinite the update is skipped and ``NonFiniteLossError`` is raised, so the parameters stay finite.
    """
    device = model.device if hasattr(model, "device") else next(model.parameters()).device
    ids, labels = ids.to(device), labels.to(device)
    with autocast_for(device):
        logits = model(ids)
    loss = masked_lm_loss(logits, labels)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]],
                                          max_grad_norm)
    loss_value, norm_value = torch.stack([loss.detach().float(), norm.detach().float().to(loss.device)]).tolist()
    if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"the loss is {loss_value} and the gradient norm {norm_value}: training diverged "
                                 f"(or the input overflowed); the update was skipped. Lower the learning rate")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_value


def train(model: nn.Module, examples: Sequence[tuple[list[int], list[int]]], config: TrainConfig, pad_id: int,
          evaluate: Callable[[nn.Module], dict] | None = None, progress: bool = True) -> TrainHistory:
    """Train the model's trainable parameters with AdamW on batches drawn (seeded) from ``examples``.

    ``evaluate(model)`` runs every ``config.eval_every`` steps (and after the last step) in eval mode.
    The model is left in eval mode.
    """
    if len(examples) < config.batch_size:
        raise ValueError(f"need at least batch_size={config.batch_size} examples, got {len(examples)}")
    generator = seed_everything(config.seed)
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
    history = TrainHistory()
    order = torch.randperm(len(examples), generator=generator).tolist()
    start = time.perf_counter()
    bar = tqdm(range(1, config.steps + 1), desc="training", disable=not progress)
    for step in bar:
        if len(order) < config.batch_size:  # a new epoch: reshuffle
            order = torch.randperm(len(examples), generator=generator).tolist()
        batch, order = [examples[i] for i in order[:config.batch_size]], order[config.batch_size:]
        model.train()
        try:
            loss = train_step(model, optimizer, *collate(batch, pad_id), config.max_grad_norm)
        except NonFiniteLossError as error:
            model.eval()
            raise NonFiniteLossError(f"training stopped at step {step} of {config.steps}: {error} "
                                     f"(lr={config.lr:g}; try 10x lower). The model keeps the parameters of step "
                                     f"{step - 1}") from None
        scheduler.step()
        history.losses.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}")
        if evaluate is not None and ((config.eval_every and step % config.eval_every == 0) or step == config.steps):
            model.eval()
            history.evals[step] = evaluate(model)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
