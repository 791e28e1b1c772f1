"""A small MobileNet-style digits model: per-tensor weight quantization loses on it once a channel is dead (``make_dead_channel_model``).

Introduced in notebooks/03_post_training_quantization.ipynb.

Depthwise 3x3 convolutions have one filter per channel; once BatchNorm is
folded into them (``w * gamma / sqrt(var + eps)``) the channels' weight ranges
can differ by orders of magnitude, so one per-tensor scale is far too coarse
for most channels. Per-channel scales fix it. The trained checkpoint ships in
``data/depthwise_model.pt``; rebuild it (seeded, under a minute on two cores)
with ``python -m qhelpers.rebuild depthwise`` (``make depthwise``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules, fuse_modules_qat

from .models import ConvBNReLU
from .registry import ModelSpec, load_model, model_metadata, train_model

__all__ = [
    "DepthwiseNet",
    "load_depthwise_model",
    "depthwise_model_metadata",
    "train_depthwise_model",
    "DEPTHWISE_CHECKPOINT_NAME",
    "DEPTHWISE_METADATA_NAME",
    "DEPTHWISE_RECIPE",
    "DEPTHWISE_RETRAIN_COMMAND",
]

DEPTHWISE_CHECKPOINT_NAME = "depthwise_model.pt"
DEPTHWISE_METADATA_NAME = "depthwise_model.json"
DEPTHWISE_RETRAIN_COMMAND = "python -m qhelpers.rebuild depthwise"
DEPTHWISE_RECIPE = {"seed": 0, "epochs": 6, "batch_size": 64, "max_lr": 1e-2, "weight_decay": 0.0, "shift_pixels": 1}


class DepthwiseNet(nn.Module):
    """Digits classifier built from depthwise-separable blocks, input (N, 1, 28, 28), output (N, 10) logits.

    stem 3x3 conv 28x28x16 -> [depthwise 3x3 stride 2 -> pointwise 1x1] 14x14x32
    -> [depthwise 3x3 stride 2 -> pointwise 1x1] 7x7x64 -> global average pool -> Linear (10).
    Every conv is followed by BatchNorm and ReLU (fusable).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.stem = ConvBNReLU(1, 16)
        self.dw1 = ConvBNReLU(16, 16, stride=2, groups=16)
        self.pw1 = ConvBNReLU(16, 32, kernel_size=1)
        self.dw2 = ConvBNReLU(32, 32, stride=2, groups=32)
        self.pw2 = ConvBNReLU(32, 64, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.pw2(self.dw2(self.pw1(self.dw1(self.stem(x)))))
        x = self.fc(torch.flatten(self.pool(x), 1))
        return self.dequant(x)

    def fuse_model(self, is_qat: bool = False) -> None:
        """Fuse every Conv+BN+ReLU in place (eval mode for PTQ, train mode with ``is_qat=True``)."""
        fuse = fuse_modules_qat if is_qat else fuse_modules
        for block in (self.stem, self.dw1, self.pw1, self.dw2, self.pw2):
            fuse(block, [["0", "1", "2"]], inplace=True)


DEPTHWISE_MODEL = ModelSpec(
    name="depthwise", checkpoint=DEPTHWISE_CHECKPOINT_NAME, metadata=DEPTHWISE_METADATA_NAME,
    label="qhelpers.models_depthwise.DepthwiseNet", recipe=DEPTHWISE_RECIPE, build=lambda recipe: DepthwiseNet(),
)  # fmt: skip


def train_depthwise_model(progress: bool = False) -> DepthwiseNet:
    """Train ``DepthwiseNet`` from scratch on the train split with ``DEPTHWISE_RECIPE``; returns it in eval mode."""
    return train_model(DEPTHWISE_MODEL, progress=progress)


def depthwise_model_metadata(data_dir: Optional[Path] = None) -> dict:
    """The metadata beside the depthwise checkpoint (test accuracy, command, seed, sha256).

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    return model_metadata(DEPTHWISE_MODEL, data_dir)


def load_depthwise_model(data_dir: Optional[Path] = None) -> DepthwiseNet:
    """The trained float ``DepthwiseNet`` in eval mode, checksum verified, loaded with ``weights_only=True``.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    return load_model(DEPTHWISE_MODEL, data_dir)
