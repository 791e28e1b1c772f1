"""What the command-line tool's subcommands share: the errors and exit codes, argument types, printing, the
engine, files and images read with one-line errors, and the facts every report records.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "CLIError", "UsageError", "Terminated", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_SIGINT", "EXIT_SIGTERM",
    "positive_int_arg", "non_negative_float_arg", "float_list_arg", "out", "check_engine", "existing_file", "torch_load",
    "read_image", "finite_or_none", "to_json", "fmt_list", "torchvision_arch", "run_info",
]  # fmt: skip

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class CLIError(Exception):
    """A failure reported as one line on stderr; exit code 1."""

    exit_code = EXIT_FAILURE


class UsageError(CLIError):
    """A value no run could accept (unknown architecture, contradictory options); exit code 2."""

    exit_code = EXIT_USAGE


class Terminated(BaseException):
    """Raised by the SIGTERM handler so that ``finally``/cleanup code runs, like ``KeyboardInterrupt``."""


def positive_int_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_float_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def float_list_arg(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def out(text: str = "") -> None:
    print(text, flush=True)


def run_info(*extra_versions: str) -> dict:
    """The ``versions`` and ``machine`` a report records: parts of ``qh.machine_info()`` (``extra_versions`` adds
    packages to the versions, e.g. ``"executorch"``)."""
    from .versions import machine_info

    info = machine_info()
    return {
        "versions": {k: info[k] for k in ("qhelpers", "python", "torch", "torchvision", *extra_versions)},
        "machine": {k: info[k] for k in ("platform", "machine", "cpu_capability", "cpu_count")},
    }


def check_engine(engine: Optional[str]) -> str:
    """Make ``engine`` the active quantized engine (None: the course's default here, ``qh.default_engine()``,
    which honours ``QHELPERS_ENGINE`` and the engines a non-x86 CPU lacks), or fail with one line naming what
    this CPU offers."""
    from .environment import set_engine

    try:
        return set_engine(engine)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from exc


def existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise CLIError(f"{what} not found: {path}")
    if not path.is_file():
        raise CLIError(f"{what} is not a file: {path}")
    return path


def torch_load(path: Path, what: str) -> Any:
    import torch

    existing_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, not a torch file ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(f"cannot read {what} {path}: {first}") from exc


def read_image(path: Path, mode: str) -> "Any":
    """uint8 (C, H, W) image from a PNG/JPEG file; ``mode`` 'gray' (C=1) or 'rgb' (C=3)."""
    from torchvision.io import ImageReadMode, decode_image

    existing_file(path, "image")
    try:
        return decode_image(str(path), mode=ImageReadMode.GRAY if mode == "gray" else ImageReadMode.RGB)
    except Exception as exc:
        text = str(exc).strip()
        if "Unsupported image file" in text or not text:
            text = "not a PNG or JPEG image"
        raise CLIError(f"cannot read image {path}: {text.splitlines()[0]}") from exc


def finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def to_json(obj: Any) -> str:
    """Strict JSON (no NaN/Infinity, which JavaScript's JSON.parse rejects)."""
    return json.dumps(obj, indent=2, allow_nan=False)


def fmt_list(values: list, spec: str) -> str:
    """One number as itself, several as ``[a, b, ...]``."""
    if len(values) == 1:
        return format(values[0], spec)
    return "[" + ", ".join(format(v, spec) for v in values) + "]"


def torchvision_arch(name: str) -> str:
    """``resnet18`` or ``quantized_resnet18`` -> ``quantized_resnet18``; unknown names are a usage error."""
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm.quantization)
    arch = name if name.startswith("quantized_") else f"quantized_{name}"
    if arch not in known:
        names = ", ".join(["course"] + [k.removeprefix("quantized_") for k in known])
        raise UsageError(f"unknown architecture {name!r}; known: {names}")
    return arch
