"""A tiny decoder-only transformer with a pluggable positional scheme, and a position-sensitive toy task.

The task ("k back"): read a random token sequence and, at every position t >= k, predict the token seen k steps
earlier. Token content gives no hint where to look, so the model must use positional information; the right
answer depends only on the distance k, which makes it a clean test of length generalisation.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .positional import (
    LearnedPositionEmbedding,
    alibi_slopes,
    relative_distances,
    sinusoidal_encoding,
    t5_relative_buckets,
)
from .rope import ROPE_SCALINGS, apply_rope, scaled_rope_angles
from .threads import single_thread
from .validation import check_bool, check_choice, check_int, check_real

POSITION_SCHEMES = ("none", "sinusoidal", "learned", "relative", "alibi", "rope")
IGNORE_INDEX = -100


@dataclass
class TinyConfig:
    """Hyper-parameters of the tiny model. ``max_len`` is the longest sequence it accepts (the learned table's size)."""

    scheme: str = "rope"
    vocab_size: int = 16
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 256
    rope_base: float = 10000.0
    relative_buckets: int = 16
    relative_max_distance: int = 64

    def __post_init__(self) -> None:
        check_choice("TinyConfig.scheme", self.scheme, POSITION_SCHEMES)
        for field in ("vocab_size", "dim", "n_layers", "n_heads", "max_len", "relative_buckets",
                      "relative_max_distance"):
            setattr(self, field, check_int(f"TinyConfig.{field}", getattr(self, field), minimum=1))
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim={self.dim} must split into n_heads={self.n_heads} heads of even size")
        self.rope_base = check_real("TinyConfig.rope_base", self.rope_base, low=0, low_open=True)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class TinyAttention(nn.Module):
    """Causal multi-head self-attention; positions enter as a score bias (relative, ALiBi) or a q/k rotation (RoPE)."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        if config.scheme == "relative":  # T5-style: one learned scalar per head and distance bucket
            self.bucket_bias = nn.Parameter(torch.zeros(config.relative_buckets, config.n_heads))
        if config.scheme == "alibi":
            self.register_buffer("slopes", alibi_slopes(config.n_heads).float(), persistent=False)

    def score_bias(self, steps: int, device: torch.device) -> torch.Tensor | None:
        """Additive bias [heads, T, T] of the relative schemes (None for the others); the causal mask comes later."""
        distances = relative_distances(steps, steps).to(device)
        if self.config.scheme == "relative":
            buckets = t5_relative_buckets(distances, bidirectional=False, num_buckets=self.config.relative_buckets,
                                          max_distance=self.config.relative_max_distance)
            return self.bucket_bias[buckets].permute(2, 0, 1)
        if self.config.scheme == "alibi":
            return -self.slopes[:, None, None] * distances.abs()
        return None

    def forward(self, x: torch.Tensor, rope_scaling: str = "none", rope_factor: float = 1.0) -> torch.Tensor:
        batch, steps, dim = x.shape
        heads, head_dim = self.config.n_heads, self.config.head_dim
        q, k, v = (t.view(batch, steps, heads, head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        if self.config.scheme == "rope":
            cos, sin = scaled_rope_angles(torch.arange(steps, device=x.device), head_dim, self.config.rope_base,
                                          rope_scaling, rope_factor)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril()
        mask = torch.zeros(steps, steps, device=x.device).masked_fill(~causal, float("-inf"))
        bias = self.score_bias(steps, x.device)
        if bias is not None:
            mask = mask + bias
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(batch, steps, dim))


class TinyBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.dim), nn.LayerNorm(config.dim)
        self.attn = TinyAttention(config)
        hidden = 4 * config.dim
        self.mlp = nn.Sequential(nn.Linear(config.dim, hidden), nn.GELU(), nn.Linear(hidden, config.dim))

    def forward(self, x: torch.Tensor, rope_scaling: str, rope_factor: float) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope_scaling, rope_factor)
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """``model(ids[B, T]) -> logits[B, T, V]``. Sinusoidal and learned vectors are added to the token embeddings."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)  # N(0, 1): same scale as sin/cos values
        if config.scheme == "learned":
            self.positions = LearnedPositionEmbedding(config.max_len, config.dim, init_std=1.0)
        self.blocks = nn.ModuleList(TinyBlock(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    def forward(self, ids: torch.Tensor, rope_scaling: str = "none", rope_factor: float = 1.0) -> torch.Tensor:
        """Logits [B, T, V]; ``rope_scaling`` / ``rope_factor`` as in ``rope.scaled_rope_angles`` (RoPE only)."""
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must have shape [batch, time] with time >= 1, got {tuple(ids.shape)}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds max_len={self.config.max_len}")
        check_choice("rope_scaling", rope_scaling, ROPE_SCALINGS)
        steps = ids.shape[1]
        x = self.embed(ids)
        if self.config.scheme == "sinusoidal":
            x = x + sinusoidal_encoding(steps, self.config.dim).to(x.device)
        elif self.config.scheme == "learned":
            x = x + self.positions(torch.arange(steps, device=ids.device))
        for block in self.blocks:
            x = block(x, rope_scaling, rope_factor)
        return self.head(self.norm(x))


def k_back_batch(generator: torch.Generator, batch_size: int, length: int, vocab_size: int = 16,
                 offset: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens [B, T] and targets [B, T]: target[t] = token[t - offset], IGNORE_INDEX for t < offset."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    length = check_int("length", length, minimum=2, hint="one token to read and one to predict at least")
    vocab_size = check_int("vocab_size", vocab_size, minimum=1)
    offset = check_int("offset", offset, minimum=1, maximum=length - 1, hint=f"smaller than length={length}")
    tokens = torch.randint(vocab_size, (batch_size, length), generator=generator)
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, offset:] = tokens[:, :-offset]
    return tokens, targets


@dataclass
class TrainResult:
    """A trained tiny model with its loss curve and wall-clock training time."""

    model: TinyTransformer
    losses: list[float]
    seconds: float


def train_tiny(config: TinyConfig, train_len: int = 32, steps: int = 400, batch_size: int = 32, lr: float = 3e-3,
               offset: int = 3, seed: int = 0, progress: bool = False) -> TrainResult:
    """Train a fresh TinyTransformer on the k-back task at length ``train_len`` (AdamW, no weight decay, cosine lr).

    No weight decay on purpose: learned position vectors that never get a gradient keep their initial values.
    Runs on one CPU thread (see ``course_utils.threads.single_thread``).
    """
    if not isinstance(config, TinyConfig):
        raise TypeError(f"config must be a TinyConfig, got {type(config).__name__}")
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_real("lr", lr, low=0, low_open=True)
    train_len = check_int("train_len", train_len, minimum=2, maximum=config.max_len,
                          hint=f"at most the model's max_len={config.max_len}")
    seed = check_int("seed", seed, minimum=0)
    progress = check_bool("progress", progress)
    torch.manual_seed(seed)
    model = TinyTransformer(config)
    data = torch.Generator().manual_seed(seed + 10_000)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    losses = []
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"{config.scheme} seed {seed}", leave=False)
    start = time.perf_counter()
    model.train()
    with single_thread():
        for _ in iterator:
            tokens, targets = k_back_batch(data, batch_size, train_len, config.vocab_size, offset)
            logits = model(tokens)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
    model.eval()
    return TrainResult(model, losses, time.perf_counter() - start)


@torch.no_grad()
def k_back_accuracy(model: TinyTransformer, length: int, offset: int = 3, n_sequences: int = 256, seed: int = 1234,
                    rope_scaling: str = "none", rope_factor: float = 1.0) -> float:
    """Fraction of positions t >= offset where the model's argmax is the token ``offset`` steps back."""
    tokens, targets = k_back_batch(torch.Generator().manual_seed(seed), n_sequences, length,
                                   model.config.vocab_size, offset)
    with single_thread():
        predictions = model(tokens, rope_scaling=rope_scaling, rope_factor=rope_factor).argmax(-1)
    scored = targets != IGNORE_INDEX
    return (predictions[scored] == targets[scored]).float().mean().item()
