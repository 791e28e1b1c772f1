"""Where the course lives and how its files are read and written: the course folder, ``data/``, checksums,
atomic writes, checkpoints.

One rule for every output (bench results, progress logs, student copies, the README's results section):
it goes into the course folder the learner works in, ``course_root()``, never into the folder the package
is installed in (a ``pip install .`` puts that in site-packages).

Introduced in notebooks/00_start_here.ipynb (``qh.data_dir()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

__all__ = ["course_root", "data_dir", "sha256_file", "verify_file", "atomic_write_bytes"]

HOME_ENV = "QHELPERS_HOME"
DATA_ENV = "QHELPERS_DATA"
INSTALL_HINT = (
    "install the course with `pip install -e .` from the course folder (or `make setup`), "
    f"or set {HOME_ENV} to the course folder (or {DATA_ENV} to its data/ folder)"
)


def _is_course_folder(path: Path) -> bool:
    """``data/`` beside ``notebooks/`` (the course) or ``student/`` (the learner's copy, scripts/build_student_bundle.py)."""
    return (path / "data").is_dir() and ((path / "notebooks").is_dir() or (path / "student").is_dir())


def course_root(*, required: bool = True) -> Optional[Path]:
    """The course folder the learner works in: ``$QHELPERS_HOME`` if set, else the nearest folder holding
    ``data/`` and ``notebooks/`` (or ``student/``, in the learner's copy without solutions) among the current
    directory and its parents.

    Outputs go there (``results/``, ``progress/``, ``student/``, the README), never beside the installed
    package. Where no course folder is found: ``FileNotFoundError`` saying how to point at one, or ``None``
    with ``required=False`` (a caller whose output makes sense in the current directory falls back to it).

    Introduced in the README ("Command-line tools").
    """
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        path = Path(env).expanduser().resolve()
        if not _is_course_folder(path):
            raise FileNotFoundError(f"{HOME_ENV}={env!r} is not the course folder (it needs data/ and notebooks/ or student/)")
        return path
    cwd = Path.cwd().resolve()
    for path in (cwd, *cwd.parents):
        if _is_course_folder(path):
            return path
    if required:
        raise FileNotFoundError(
            f"no course folder (one holding data/ and notebooks/ or student/) at or above {cwd}: run this from the course "
            f"folder, or set {HOME_ENV} to it"
        )
    return None


def _package_course_folder() -> Optional[Path]:
    """The folder the package sits in, when it is the course folder (the editable install); else None."""
    path = Path(__file__).resolve().parent.parent
    return path if _is_course_folder(path) else None


def data_dir() -> Path:
    """The course's ``data/``: ``$QHELPERS_DATA`` if set, else ``data/`` of ``course_root()``, else ``data/``
    beside the package when that is the course folder (the editable install, used from another folder).

    Where none of these exists (a non-editable ``pip install .`` used outside the course folder) this raises
    ``FileNotFoundError`` saying how to install or where to point ``QHELPERS_DATA``/``QHELPERS_HOME``.

    Introduced in notebooks/00_start_here.ipynb.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{DATA_ENV}={env!r} is not a folder; point it at the course's data/ folder")
        return path
    root = course_root(required=False) or _package_course_folder()
    if root is None:
        raise FileNotFoundError(f"the course's data/ folder was not found (not at or above {Path.cwd()}, not beside the package): {INSTALL_HINT}")
    return root / "data"


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
