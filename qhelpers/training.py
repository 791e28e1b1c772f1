"""Training loops: one epoch, and training from scratch with a seeded recipe (every model in ``data/``), reused by
quantization-aware training.

Introduced in notebooks/01_manual_tensor_quantization.ipynb (the checkpoint it loads);
``train_one_epoch`` is reused by notebooks/04_quantization_aware_training.ipynb.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

__all__ = ["random_shift", "train_one_epoch"]


def random_shift(x: torch.Tensor, pixels: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Shift each image (N, C, H, W) by up to ``pixels`` in x and y (zero padding): cheap augmentation."""
    if pixels == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels), value=float(x.min()))
    offsets = torch.randint(0, 2 * pixels + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    shift_pixels: int = 0,
    generator: Optional[torch.Generator] = None,
    desc: str = "train",
    progress: bool = True,
    after_step: Optional[Callable[[], None]] = None,
) -> float:
    """One pass over ``loader`` with cross-entropy; returns the mean training loss.

    The model is put in training mode. ``after_step`` runs after every
    optimizer step (QAT uses it to freeze observers at a set point).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    model.train()
    total, count = 0.0, 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        x = random_shift(x, shift_pixels, generator)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
        total += loss.item() * len(y)
        count += len(y)
    if count == 0:
        raise ValueError("the training loader yielded no batches")
    return total / count


def train_with_recipe(make_model: Callable[[], nn.Module], recipe: dict, progress: bool = True) -> nn.Module:
    """Train a fresh ``make_model()`` on the train split with a recipe (seed, epochs, batch size, AdamW + one-cycle
    learning rate, random shifts); returns it in eval mode. The seed is set before the model is built, so the same
    recipe gives the same weights. Shared by the course model, the depthwise model (03) and the transformer (06).
    """
    from .data import digits_loader

    torch.manual_seed(recipe["seed"])
    gen = torch.Generator().manual_seed(recipe["seed"])
    model = make_model()
    loader = digits_loader("train", batch_size=recipe["batch_size"], shuffle=True, seed=recipe["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["max_lr"], weight_decay=recipe["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["max_lr"], total_steps=recipe["epochs"] * len(loader))
    for epoch in range(recipe["epochs"]):
        loss = train_one_epoch(model, loader, opt, sched, recipe["shift_pixels"], gen, f"epoch {epoch + 1}", progress)
        if progress:
            print(f"epoch {epoch + 1}/{recipe['epochs']}: loss {loss:.4f}", flush=True)
    return model.eval()
