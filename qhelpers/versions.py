"""Versions: the ones the course is checked with (``requirements.txt``, their one source), and the ones this run
has, with the machine it runs on (``machine_info``, the one description of both for every report and result file).

The course folder's ``requirements.txt`` holds the exact pins (the notebooks' printed numbers are measured
with them). Where it cannot be found (a ``pip install .`` used outside the course folder), the version ranges
that the installed ``qhelpers`` declares (``pyproject.toml``, read back through ``importlib.metadata``) stand
in, and ``course_requirements`` says which of the two it read. Nothing else in the package writes a version
number down: the laptop doctor, the install hints (``pip install executorch==...``) and the tests ask here.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .files import _package_course_folder, course_root

__all__ = ["CourseRequirements", "course_requirements", "pip_spec", "machine_info"]

REQUIREMENTS_NAME = "requirements.txt"
# Beside it: what only notebook 08, ``--target xnnpack`` and the benchmark's ExecuTorch rows need (``-r requirements.txt``
# plus the ExecuTorch pin); its pins are the course's too, marked optional.
DEPLOY_REQUIREMENTS_NAME = "requirements-deploy.txt"


@dataclass(frozen=True)
class CourseRequirements:
    """``requirements``: canonical package name -> ``Requirement``; ``source``: where they were read;
    ``exact``: True for the pins of ``requirements.txt``, False for the installed package's version ranges;
    ``optional``: names that only notebook 08's extra needs (``requirements-deploy.txt`` beside ``requirements.txt``,
    or ``qhelpers[deploy]`` in the installed metadata)."""

    requirements: dict[str, Requirement]
    source: str
    exact: bool
    optional: frozenset[str] = frozenset()


def parse_requirements(text: str) -> dict[str, Requirement]:
    """``name -> Requirement`` for each requirement line (comments, ``-e``/``-r``/``--`` options and blank lines skipped)."""
    found: dict[str, Requirement] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ValueError(f"{REQUIREMENTS_NAME}: cannot read {line!r} ({exc})") from exc
        found[canonicalize_name(req.name)] = req
    return found


def _requirements_file() -> Optional[Path]:
    root = course_root(required=False) or _package_course_folder()
    path = root / REQUIREMENTS_NAME if root is not None else None
    return path if path is not None and path.is_file() else None


def course_requirements(requirements: Optional[Path] = None) -> CourseRequirements:
    """The course's requirements: ``requirements`` (a file) if given, else the course folder's
    ``requirements.txt``, each with the pins of ``requirements-deploy.txt`` beside it (marked optional), else the
    installed ``qhelpers`` distribution's declared dependencies (extras ``deploy`` included, marked optional;
    ``dev`` and ``docs`` left out)."""
    path = Path(requirements) if requirements is not None else _requirements_file()
    if path is not None:
        found = parse_requirements(path.read_text())
        deploy = path.with_name(DEPLOY_REQUIREMENTS_NAME)
        extra = {k: v for k, v in parse_requirements(deploy.read_text()).items() if k not in found} if deploy.is_file() else {}
        source = str(path) + (f" and {deploy.name}" if extra else "")
        return CourseRequirements({**found, **extra}, source, exact=True, optional=frozenset(extra))
    found: dict[str, Requirement] = {}
    optional = set()
    try:
        declared = md.requires("qhelpers") or []
    except md.PackageNotFoundError:
        declared = []
    for line in declared:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if req.marker is None:
            found[name] = req
        elif req.marker.evaluate({"extra": "deploy"}) and not req.marker.evaluate({"extra": ""}):
            found[name] = req
            optional.add(name)
    return CourseRequirements(found, "the installed qhelpers package's declared version ranges", exact=False, optional=frozenset(optional))


def pip_spec(name: str) -> str:
    """What to ``pip install`` for ``name`` at the course's version, e.g. ``"executorch==1.5.1"`` (the bare
    name when the course does not pin it; ExecuTorch's pin is in ``requirements-deploy.txt``)."""
    req = course_requirements().requirements.get(canonicalize_name(name))
    return f"{name}{req.specifier}" if req is not None and req.specifier else name


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _installed(name: str) -> Optional[str]:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """What a measured number depends on, as one JSON-ready dict: the CPU (model name, ``platform.machine()``,
    torch's vector ISA, core count), the OS, the versions (Python, qhelpers, torch, torchvision, torchao,
    executorch; None where not installed), torch's quantized engines, the 1-minute load average and the UTC time.

    The benchmark's result files and the CLI's reports record it (or a part of it); what the INT8 kernels do on
    this CPU is ``qh.cpu_facts()``.
    """
    import torch

    from . import __version__

    return {
        "cpu": _cpu_name(),
        "machine": platform.machine(),
        "platform": platform.platform(terse=True),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "qhelpers": __version__,
        "torch": torch.__version__,
        "torchvision": _installed("torchvision"),
        "torchao": _installed("torchao"),
        "executorch": _installed("executorch"),
        "quantized_engines": [e for e in torch.backends.quantized.supported_engines if e != "none"],
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
