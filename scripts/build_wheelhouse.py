"""Build a wheelhouse: every dependency in requirements.txt as wheels, for installing in a room with no internet.

Run it on a machine with internet and the same OS, CPU architecture and Python version as the learners'
laptops (or pass pip's --platform/--python-version/--only-binary=:all: after ``--``):

    python scripts/build_wheelhouse.py                      # -> wheelhouse/
    python scripts/build_wheelhouse.py -r requirements.txt -o wheelhouse -- --python-version 3.11

It runs ``pip download`` for the pinned requirements (with all their dependencies), ``pip wheel --no-deps``
for the local projects (the ``-e .`` line: qhelpers), and ``pip download`` of those projects' build
requirements (setuptools), so that ``-e .`` also installs offline. Then, on each laptop, in a copy of the repo:

    python3 -m venv .venv
    .venv/bin/pip install --no-index --find-links wheelhouse -r requirements.txt

(``PIP_NO_INDEX=1 PIP_FIND_LINKS=wheelhouse make setup`` does the same through the Makefile.)
The full wheelhouse is several GB, almost all of it the CUDA build of torch and its nvidia-* libraries
(see docs/WORKSHOP.md).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_SOURCE = (".git", ".venv", "build", "wheelhouse", "student", "results", "*.egg-info", "__pycache__", ".hypothesis")
OFFLINE_INSTALL = "pip install --no-index --find-links {wheelhouse} -r {requirements}"


def split_requirements(path: Path) -> tuple[list[str], list[Path]]:
    """Requirement lines for PyPI, and local project folders (``-e .``, ``-e path``, ``./path``), relative to the cwd."""
    remote, local = [], []
    for raw in Path(path).read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e ", "--editable ")):
            local.append(Path(line.split(None, 1)[1]))
        elif line.startswith((".", "/")):
            local.append(Path(line))
        elif line.startswith("-r "):
            sub_remote, sub_local = split_requirements(Path(path).parent / line.split(None, 1)[1])
            remote += sub_remote
            local += sub_local
        elif line.startswith("-"):
            raise ValueError(f"{path}: option line {line!r} is not supported here; keep index options out of requirements")
        else:
            remote.append(line)
    return remote, local


def build_requirements(project: Path) -> list[str]:
    """``[build-system].requires`` of a local project (what pip needs to build it, offline too)."""
    pyproject = project / "pyproject.toml"
    if not pyproject.exists():
        return ["setuptools"]
    return tomllib.loads(pyproject.read_text()).get("build-system", {}).get("requires", ["setuptools"])


def _pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build_wheelhouse(requirements: Path, out: Path, pip_args: list[str] = ()) -> list[Path]:
    """Download/build every wheel that ``requirements`` needs into ``out``; returns the wheel files."""
    requirements, out = Path(requirements), Path(out)
    if not requirements.exists():
        raise ValueError(f"requirements={str(requirements)!r} does not exist")
    remote, local = split_requirements(requirements)
    out.mkdir(parents=True, exist_ok=True)
    build_reqs = sorted({r for project in local for r in build_requirements(project)})
    if remote or build_reqs:
        # One resolve for the pins and the build backends, so the versions fit together.
        _pip(["download", "--dest", str(out), *pip_args, *remote, *build_reqs])
    for project in local:
        # Built from a clean copy: setuptools reuses an in-tree build/lib, which can carry deleted modules.
        with tempfile.TemporaryDirectory() as tmp:
            clean = Path(tmp) / Path(project).resolve().name
            shutil.copytree(project, clean, ignore=shutil.ignore_patterns(*NOT_SOURCE))
            _pip(["wheel", "--no-deps", "--wheel-dir", str(out.resolve()), *pip_args, str(clean)])
    # A dependency with no wheel on PyPI arrives as a source archive: build it here, where the internet is.
    for sdist in sorted(p for p in out.iterdir() if p.is_file() and p.suffix != ".whl"):
        _pip(["wheel", "--no-deps", "--wheel-dir", str(out), str(sdist)])
        sdist.unlink()
    return sorted(out.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--requirements", type=Path, default=Path("requirements.txt"))
    parser.add_argument("-o", "--out", type=Path, default=Path("wheelhouse"))
    parser.add_argument("pip_args", nargs="*", help="extra pip arguments after --, e.g. -- --python-version 3.11")
    args = parser.parse_args(argv)
    wheels = build_wheelhouse(args.requirements, args.out, args.pip_args)
    size = sum(p.stat().st_size for p in wheels)
    print(f"{len(wheels)} wheels in {args.out}/, {size / 2**20:.0f} MiB")
    print("Offline install:", OFFLINE_INSTALL.format(wheelhouse=args.out, requirements=args.requirements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
