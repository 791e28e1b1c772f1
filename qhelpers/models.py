"""The course model: a small quantizable CNN for 28x28 handwritten digits.

Introduced in notebooks/01_manual_tensor_quantization.ipynb.

Written in the style of torchvision's quantizable models
(``torchvision.models.quantization``): Conv-BN-ReLU blocks, a residual
addition through ``FloatFunctional`` (so that it can become a quantized add),
``QuantStub``/``DeQuantStub`` at the edges and a ``fuse_model(is_qat)`` method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules, fuse_modules_qat

from .registry import ModelSpec, load_model, model_metadata

__all__ = [
    "ConvBNReLU", "ConvBN", "ResidualBlock", "CourseNet", "load_course_model", "course_model_metadata",
    "CHECKPOINT_NAME", "METADATA_NAME", "COURSE_RECIPE",
]  # fmt: skip

CHECKPOINT_NAME = "course_model.pt"
METADATA_NAME = "course_model.json"
# The recipe that made data/course_model.pt (also written into its metadata).
COURSE_RECIPE = {"seed": 0, "epochs": 30, "batch_size": 64, "max_lr": 5e-3, "weight_decay": 5e-4, "shift_pixels": 2}


def _fuse(model: nn.Module, groups: list[list[str]], is_qat: bool) -> None:
    fuse = fuse_modules_qat if is_qat else fuse_modules
    fuse(model, groups, inplace=True)


class ConvBNReLU(nn.Sequential):
    """Conv2d -> BatchNorm2d -> ReLU, fusable into one ``ConvReLU2d``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=False),
        )

    def fuse_model(self, is_qat: bool = False) -> None:
        _fuse(self, [["0", "1", "2"]], is_qat)


class ConvBN(nn.Sequential):
    """Conv2d -> BatchNorm2d, fusable into one ``Conv2d``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def fuse_model(self, is_qat: bool = False) -> None:
        _fuse(self, [["0", "1"]], is_qat)


class ResidualBlock(nn.Module):
    """``relu(x + conv_bn(conv_bn_relu(x)))``; the addition goes through ``FloatFunctional``.

    A plain ``x + y`` would call ``aten::add``, which has no kernel for
    quantized tensors; ``FloatFunctional.add`` becomes ``QFunctional.add``
    after conversion.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(channels, channels)
        self.conv2 = ConvBN(channels, channels)
        self.skip_add = FloatFunctional()
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return self.relu(self.skip_add.add(out, x))

    def fuse_model(self, is_qat: bool = False) -> None:
        self.conv1.fuse_model(is_qat)
        self.conv2.fuse_model(is_qat)


class CourseNet(nn.Module):
    """Digits classifier, input (N, 1, 28, 28) normalized floats, output (N, 10) logits.

    stem 28x28x16 -> down 14x14x32 -> residual 14x14x32 -> down 7x7x64 ->
    global average pool -> Linear+ReLU (64) -> Linear (10).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.stem = ConvBNReLU(1, 16)
        self.down1 = ConvBNReLU(16, 32, stride=2)
        self.res = ResidualBlock(32)
        self.down2 = ConvBNReLU(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(64, 64)
        self.relu_fc = nn.ReLU(inplace=False)
        self.fc2 = nn.Linear(64, num_classes)
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.down2(self.res(self.down1(self.stem(x))))
        x = torch.flatten(self.pool(x), 1)
        x = self.fc2(self.relu_fc(self.fc1(x)))
        return self.dequant(x)

    def fuse_model(self, is_qat: bool = False) -> None:
        """Fuse Conv+BN(+ReLU) and Linear+ReLU in place (eval mode for PTQ, train mode with ``is_qat=True``)."""
        for block in (self.stem, self.down1, self.res, self.down2):
            block.fuse_model(is_qat)
        _fuse(self, [["fc1", "relu_fc"]], is_qat)


COURSE_MODEL = ModelSpec(
    name="model", checkpoint=CHECKPOINT_NAME, metadata=METADATA_NAME, label="qhelpers.models.CourseNet",
    recipe=COURSE_RECIPE, build=lambda recipe: CourseNet(),
)  # fmt: skip


def course_model_metadata(data_dir: Optional[Path] = None) -> dict:
    """The metadata that ships beside the checkpoint (test accuracy, training command, seed, sha256).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    return model_metadata(COURSE_MODEL, data_dir)


def load_course_model(data_dir: Optional[Path] = None) -> CourseNet:
    """The trained float course model in eval mode, checksum verified, loaded with ``weights_only=True``.

    Introduced in notebooks/00_start_here.ipynb.
    """
    return load_model(COURSE_MODEL, data_dir)
