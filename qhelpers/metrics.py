"""Accuracy, model size and parameter count.

Introduced in notebooks/01_manual_tensor_quantization.ipynb.
"""

from __future__ import annotations

import io
from typing import Iterable

import torch
from torch import nn

__all__ = ["accuracy", "predict", "model_size_bytes", "count_parameters"]


def _check_module(model: object) -> nn.Module:
    if not isinstance(model, (nn.Module, torch.jit.ScriptModule)):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and true labels (both int64 (N,)) over a loader of ``(images, labels)``."""
    _check_module(model)
    preds, labels = [], []
    for x, y in loader:
        preds.append(model(x).argmax(dim=1))
        labels.append(y)
    if not preds:
        raise ValueError("the loader yielded no batches")
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: nn.Module, loader: Iterable) -> float:
    """Top-1 accuracy in percent over a loader of ``(images, labels)``.

    The model should be in eval mode; a model left in training mode would
    update BatchNorm statistics and observers while it is being measured, so
    that is refused.

    Introduced in notebooks/00_start_here.ipynb.
    """
    _check_module(model)
    if isinstance(model, nn.Module) and not isinstance(model, torch.jit.ScriptModule) and model.training:
        raise ValueError("model is in training mode; call model.eval() before measuring accuracy")
    preds, labels = predict(model, loader)
    return 100.0 * int((preds == labels).sum()) / len(labels)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's serialized ``state_dict`` (what ``torch.save`` would write).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    _check_module(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def count_parameters(model: nn.Module) -> int:
    """Number of float parameters (a converted INT8 model keeps its weights in packed params, not here).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    _check_module(model)
    return sum(p.numel() for p in model.parameters())
