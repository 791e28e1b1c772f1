"""The package installed as an engineer would: `pip install .` (not editable), then used from elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import qhelpers

REPO = Path(__file__).resolve().parents[1]


def test_version_lives_in_one_place():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in meta["project"] and meta["project"]["dynamic"] == ["version"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qhelpers.__version__"}
    assert qhelpers.__version__.count(".") == 2


def test_dependencies_cover_what_the_package_imports():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = {d.split("=")[0].split(">")[0].split("<")[0].strip().lower() for d in meta["project"]["dependencies"]}
    assert {"torch", "torchvision", "torchao", "numpy", "matplotlib", "ipywidgets", "tqdm"} <= deps
    assert (REPO / "LICENSE").is_file() and meta["project"]["license"] == "MIT"
    assert any(r.startswith("setuptools>=77") for r in meta["build-system"]["requires"])  # SPDX license string


@pytest.mark.slow
def test_non_editable_install_finds_data_through_QHELPERS_DATA(tmp_path):
    """`pip install .` (a copy in site-packages, here a --target folder) has no data/ beside it."""
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    code = "import qhelpers as qh, sys; print(qh.__file__); m = qh.load_course_model(); print(type(m).__name__)"
    env = {k: v for k, v in os.environ.items() if k not in ("QHELPERS_DATA", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)  # before the editable install of this venv on sys.path
    cwd = tmp_path  # not the course folder
    with_data = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                               env={**env, "QHELPERS_DATA": str(REPO / "data")})  # fmt: skip
    assert with_data.returncode == 0, with_data.stderr[-2000:]
    assert with_data.stdout.splitlines()[0].startswith(str(target)), "the installed copy must be the one imported"
    assert with_data.stdout.splitlines()[-1] == "CourseNet"
    without = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert without.returncode != 0
    assert "pip install -e ." in without.stderr and "QHELPERS_DATA" in without.stderr
