"""A small Vision-Transformer-style digits classifier, made of plain ``nn.Linear`` layers.

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

Each 28x28 image is cut into 16 patches of 7x7 pixels; a ``nn.Linear`` embeds
each patch as a token, a learned position embedding is added, and pre-LayerNorm
encoder blocks (multi-head self-attention whose query, key, value and output
projections are four ``nn.Linear``; then a GELU MLP of two ``nn.Linear``) mix
the tokens. The mean token goes through a final LayerNorm and a ``nn.Linear``
head. Every weight matrix is an ``nn.Linear``, so torchao's ``quantize_`` (which
works on ``nn.Linear`` only) reaches all of them.

The trained checkpoint ships in ``data/digit_transformer.pt`` with its metadata
in ``data/digit_transformer.json``; rebuild it (seeded, about two minutes on two
cores) with ``python -m qhelpers.rebuild transformer`` (``make transformer``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .registry import ModelSpec, load_model, model_metadata, train_model

__all__ = [
    "Attention",
    "EncoderBlock",
    "DigitTransformer",
    "train_digit_transformer",
    "load_digit_transformer",
    "digit_transformer_metadata",
    "TRANSFORMER_CHECKPOINT_NAME",
    "TRANSFORMER_METADATA_NAME",
    "TRANSFORMER_RECIPE",
    "TRANSFORMER_RETRAIN_COMMAND",
]

TRANSFORMER_CHECKPOINT_NAME = "digit_transformer.pt"
TRANSFORMER_METADATA_NAME = "digit_transformer.json"
TRANSFORMER_RETRAIN_COMMAND = "python -m qhelpers.rebuild transformer"
# The recipe that made data/digit_transformer.pt (also written into its metadata).
TRANSFORMER_RECIPE = {
    "seed": 0,
    "epochs": 30,
    "batch_size": 64,
    "max_lr": 3e-3,
    "weight_decay": 0.05,
    "shift_pixels": 2,
    "patch": 7,
    "dim": 64,
    "depth": 3,
    "heads": 4,
    "mlp_dim": 128,
}
_ARCH_KEYS = ("patch", "dim", "depth", "heads", "mlp_dim")


class Attention(nn.Module):
    """Multi-head self-attention with four plain ``nn.Linear``: ``q``, ``k``, ``v`` and ``out`` (dim -> dim).

    Input and output (N, T, dim); ``softmax(q k^T / sqrt(head_dim)) v`` per head.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        h = self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(n, t, h, d // h).transpose(1, 2)  # (N, heads, T, head_dim)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(n, t, d)
        return self.out(y)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))`` then ``x + fc2(gelu(fc1(ln2(x))))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class DigitTransformer(nn.Module):
    """Digits classifier, input (N, 1, 28, 28) normalized floats, output (N, 10) logits.

    patches (N, 16, 49) -> ``embed`` Linear -> + position -> ``depth`` encoder blocks ->
    LayerNorm -> mean over tokens -> ``head`` Linear.
    """

    def __init__(self, patch: int = 7, dim: int = 64, depth: int = 3, heads: int = 4, mlp_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        if 28 % patch:
            raise ValueError(f"patch must divide 28 (1, 2, 4, 7, 14 or 28), got {patch}")
        self.patch = patch
        tokens = (28 // patch) ** 2
        self.embed = nn.Linear(patch * patch, dim)
        self.pos = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) images -> (N, tokens, patch*patch) flattened patches, row by row."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        p = self.patch
        n = x.shape[0]
        return x.reshape(n, 28 // p, p, 28 // p, p).permute(0, 1, 3, 2, 4).reshape(n, -1, p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(self.patches(x)) + self.pos
        for block in self.blocks:
            z = block(z)
        return self.head(self.norm(z).mean(dim=1))


TRANSFORMER_MODEL = ModelSpec(
    name="transformer", checkpoint=TRANSFORMER_CHECKPOINT_NAME, metadata=TRANSFORMER_METADATA_NAME,
    label="qhelpers.transformer.DigitTransformer", recipe=TRANSFORMER_RECIPE,
    build=lambda recipe: DigitTransformer(**{k: recipe[k] for k in _ARCH_KEYS}),
    # One thread: the model is so small that a second thread costs more in synchronisation than it gains,
    # and on a busy machine far more.
    threads=1,
)  # fmt: skip


def train_digit_transformer(progress: bool = False, epochs: Optional[int] = None) -> DigitTransformer:
    """Train ``DigitTransformer`` from scratch on the train split with ``TRANSFORMER_RECIPE``; returns it in eval mode.

    Trains on one thread (restored after): the model is so small that a second
    thread costs more in synchronisation than it gains, and on a busy machine
    far more.
    """
    return train_model(TRANSFORMER_MODEL, epochs=epochs, progress=progress)


def digit_transformer_metadata(data_dir: Optional[Path] = None) -> dict:
    """The metadata beside the transformer checkpoint (test accuracy, recipe, torch version, sha256).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    return model_metadata(TRANSFORMER_MODEL, data_dir)


def load_digit_transformer(data_dir: Optional[Path] = None) -> DigitTransformer:
    """The trained float ``DigitTransformer`` in eval mode, checksum verified, loaded with ``weights_only=True``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    return load_model(TRANSFORMER_MODEL, data_dir)
