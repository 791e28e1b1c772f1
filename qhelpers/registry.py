"""The models the course ships in ``data/``, described once each: a ``ModelSpec`` says where a model's files are,
how to build, load, train and rebuild it; four functions do that for any spec.

The specs live beside their models (``models.COURSE_MODEL``, ``models_depthwise.DEPTHWISE_MODEL``,
``transformer.TRANSFORMER_MODEL``, ``pretrained.INT8_MODEL``); ``python -m qhelpers.rebuild NAME`` finds them by
name. The notebooks keep their named helpers (``qh.load_course_model()``, ``qh.depthwise_model_metadata()``, ...),
each a one-line call of the functions here.

Introduced in the README ("Rebuilding data/").
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from . import files

__all__ = ["ModelSpec", "model_metadata", "load_model", "train_model", "rebuild_model"]


@dataclass(frozen=True)
class ModelSpec:
    """One model (or artifact) that ships in ``data/``.

    * ``name``: its rebuild target, ``python -m qhelpers.rebuild NAME`` (``make NAME``);
    * ``checkpoint`` / ``metadata``: its file names in ``data/`` (a state dict; a JSON file with its sha256);
    * ``label``: what the metadata records as ``"model"``;
    * ``recipe``: the seeded training recipe (seed, epochs, batch size, learning rate ...; architecture keys too);
    * ``build``: ``build(recipe) -> nn.Module``, an untrained model of the recipe's shape (None: not loadable here);
    * ``threads``: train on this many threads (None: as set), restored after;
    * ``rebuild``: a rebuild of its own (``rebuild(epochs) -> metadata``) for an artifact that is not trained,
      such as the INT8 model; None: train with the recipe, evaluate, write checkpoint and metadata.
    """

    name: str
    checkpoint: str
    metadata: str
    label: str
    recipe: Mapping[str, Any] = field(default_factory=dict)
    build: Optional[Callable[[Mapping[str, Any]], nn.Module]] = None
    threads: Optional[int] = None
    rebuild: Optional[Callable[[Optional[int]], dict]] = None

    @property
    def rebuild_command(self) -> str:
        """The command that rebuilds the files, named in every error about them."""
        return f"python -m qhelpers.rebuild {self.name}"


def _directory(data_dir: Optional[Path]) -> Path:
    return Path(data_dir) if data_dir is not None else files.data_dir()


def model_metadata(spec: ModelSpec, data_dir: Optional[Path] = None) -> dict:
    """The metadata beside ``spec``'s checkpoint (test accuracy, recipe, torch version, sha256, ...)."""
    return files.read_metadata(_directory(data_dir) / spec.metadata, spec.rebuild_command)


def load_model(spec: ModelSpec, data_dir: Optional[Path] = None) -> nn.Module:
    """``spec``'s trained model in eval mode: checksum verified, loaded with ``weights_only=True``, built with the
    recipe recorded in its metadata (the spec's own recipe where the metadata has none)."""
    if spec.build is None:
        raise TypeError(f"the {spec.name!r} model is not built from a recipe; load it with its own helper")
    state, meta = files.load_checkpoint(_directory(data_dir), spec.checkpoint, spec.metadata, spec.rebuild_command)
    model = spec.build({**spec.recipe, **meta.get("recipe", {})})
    model.load_state_dict(state)
    return model.eval()


def train_model(spec: ModelSpec, *, epochs: Optional[int] = None, progress: bool = True) -> nn.Module:
    """Train ``spec``'s model from scratch on the train split with its recipe (``epochs`` overrides the recipe's);
    returns it in eval mode. The same recipe gives the same weights (``training.train_with_recipe``)."""
    from .training import train_with_recipe

    if spec.build is None:
        raise TypeError(f"the {spec.name!r} model is not trained from a recipe")
    recipe = {**spec.recipe, **({"epochs": epochs} if epochs is not None else {})}
    threads = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    try:
        return train_with_recipe(lambda: spec.build(recipe), recipe, progress)
    finally:
        torch.set_num_threads(threads)


def rebuild_model(spec: ModelSpec, *, epochs: Optional[int] = None) -> dict:
    """Rebuild ``spec``'s files in ``data/``: train with the recipe, evaluate on the test split, write the checkpoint
    and its metadata JSON atomically; returns the metadata. (A spec with ``rebuild`` of its own runs that.)"""
    if spec.rebuild is not None:
        return spec.rebuild(epochs)
    from .data import digits_dataset, digits_loader
    from .metrics import accuracy

    recipe = {**spec.recipe, **({"epochs": epochs} if epochs is not None else {})}
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = train_model(spec, epochs=epochs)
    seconds = time.perf_counter() - start
    acc = accuracy(model, digits_loader("test"))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    directory = files.data_dir()
    path = directory / spec.checkpoint
    files.atomic_write_bytes(path, buf.getvalue())
    meta = {
        "model": spec.label,
        "test_accuracy": round(acc, 2),
        "test_images": len(digits_dataset("test")),
        "training_command": spec.rebuild_command,
        "recipe": recipe,
        "training_seconds_when_built": round(seconds, 1),
        "torch": torch.__version__,
        "sha256": files.sha256_file(path),
    }
    files.atomic_write_bytes(directory / spec.metadata, (json.dumps(meta, indent=2) + "\n").encode())
    return meta
