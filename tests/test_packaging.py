"""The package installed as an engineer would: `pip install .` (not editable), then used from elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import qhelpers
from qhelpers.versions import parse_requirements

REPO = Path(__file__).resolve().parents[1]


def test_version_lives_in_one_place():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in meta["project"] and meta["project"]["dynamic"] == ["version"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qhelpers.__version__"}
    assert qhelpers.__version__.count(".") == 2


def _declared() -> dict[str, Requirement]:
    """pyproject.toml's dependencies and extras, by canonical name."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = meta["dependencies"] + [r for extra in meta["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in lines}


def test_dependencies_cover_what_the_package_imports():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = {canonicalize_name(Requirement(d).name) for d in meta["project"]["dependencies"]}
    assert {"torch", "torchvision", "torchao", "numpy", "scipy", "matplotlib", "ipywidgets", "tqdm", "packaging"} <= deps
    assert set(meta["project"]["optional-dependencies"]) == {"deploy", "dev", "docs", "server", "hub"}
    server = {canonicalize_name(Requirement(r).name) for r in meta["project"]["optional-dependencies"]["server"]}
    assert server == set(parse_requirements((REPO / "requirements-server.txt").read_text())), "the server extra is requirements-server.txt"
    assert not server & set(parse_requirements((REPO / "requirements.txt").read_text())), "a learner's install leaves the server runtimes out"
    hub = {canonicalize_name(Requirement(r).name) for r in meta["project"]["optional-dependencies"]["hub"]}
    assert hub == set(parse_requirements((REPO / "requirements-hub.txt").read_text())), "the hub extra is requirements-hub.txt"
    assert not hub & set(parse_requirements((REPO / "requirements.txt").read_text())), "a learner's install leaves the classroom server out"
    assert (REPO / "LICENSE").is_file() and meta["project"]["license"] == "MIT"
    assert any(r.startswith("setuptools>=77") for r in meta["build-system"]["requires"])  # SPDX license string


def test_every_pin_lies_in_the_declared_range():
    """requirements*.txt pin what pyproject.toml declares (dependencies or an extra), each pin inside its range:
    the ranges are the tested ones because the pins are what the tests run with."""
    declared = _declared()
    for name in ("requirements.txt", "requirements-deploy.txt", "requirements-dev.txt", "requirements-server.txt", "requirements-hub.txt"):
        pins = parse_requirements((REPO / name).read_text())
        for pkg, pin in pins.items():
            if pkg in ("jupyterlab", "coverage", "ruff"):  # the lab itself, and tools the package never imports
                continue
            assert pkg in declared, f"{name} pins {pkg}, which pyproject.toml does not declare"
            version = str(pin.specifier).removeprefix("==")
            assert declared[pkg].specifier.contains(version), f"{name}: {pkg}=={version} is outside pyproject's {declared[pkg]}"
    major, minor = map(int, tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"].removeprefix(">=").split("."))
    assert (major, minor) == (3, 11) and sys.version_info[:2] >= (major, minor)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_non_editable_install_writes_into_the_course_folder_never_site_packages(tmp_path):
    """`pip install .` (a copy in site-packages, here a --target folder): data is found through the course folder
    the learner works in (or QHELPERS_DATA), and bench results, the progress log and the doctor's pins come from and
    go to that folder (or the current directory), never to the installed package's folder."""
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    installed = _files(target)
    course = tmp_path / "course"  # a learner's course folder: notebooks/, data/, requirements.txt
    (course / "notebooks").mkdir(parents=True)
    shutil.copytree(REPO / "data", course / "data")
    shutil.copy(REPO / "requirements.txt", course / "requirements.txt")
    shutil.copy(REPO / "requirements-deploy.txt", course / "requirements-deploy.txt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("QHELPERS_DATA", "QHELPERS_HOME", "PYTHONPATH", "PYTEST_CURRENT_TEST")}
    env["PYTHONPATH"] = str(target)  # before the editable install of this venv on sys.path

    def run(code: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600, env={**env, **extra})

    where = run("import qhelpers as qh; print(qh.__file__); print(qh.data_dir()); print(type(qh.load_course_model()).__name__)", course / "notebooks")
    assert where.returncode == 0, where.stderr[-2000:]
    lines = where.stdout.splitlines()
    assert lines[0].startswith(str(target)), "the installed copy must be the one imported"
    assert lines[1:] == [str(course.resolve() / "data"), "CourseNet"]
    with_data = run("import qhelpers as qh; print(type(qh.load_course_model()).__name__)", elsewhere, QHELPERS_DATA=str(REPO / "data"))
    assert with_data.returncode == 0 and with_data.stdout.split() == ["CourseNet"], with_data.stderr[-2000:]
    without = run("import qhelpers as qh; qh.load_course_model()", elsewhere)
    assert without.returncode != 0
    assert "pip install -e ." in without.stderr and "QHELPERS_HOME" in without.stderr

    # a self-check in a Jupyter kernel logs to the course folder's progress/
    check = "import qhelpers as qh; qh.report('scale', True)"
    kernel = {"JPY_SESSION_NAME": str(course / "notebooks" / "01_x.ipynb"), "QHELPERS_LEARNER": "ada"}
    assert run(check, course / "notebooks", **kernel).returncode == 0
    assert (course / "progress" / "ada.jsonl").read_text().count('"ok": true') == 1
    # the benchmark's results go to results/ in the course folder, or in the current directory outside one
    bench = "from qhelpers.deployment_benchmark import main; main(['--quick', '--paths', 'eager_int8'])"
    done = run(bench, course / "notebooks")
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"bench_quick.json", "bench_quick.md"} <= set(os.listdir(course / "results"))
    # the doctor reads the course's requirements.txt; outside the course folder it says what it checks instead
    doctor = "from qhelpers.doctor import check_versions; [print(f.status, f.what, f.message) for f in check_versions()]"
    inside, outside = run(doctor, course), run(doctor, elsewhere)
    assert inside.returncode == 0 and outside.returncode == 0, inside.stderr + outside.stderr
    assert "requirements.txt not found" not in inside.stdout and "executorch" in inside.stdout
    assert "WARN pins requirements.txt not found: checking the installed qhelpers package's declared" in outside.stdout
    assert _files(target) == installed, "nothing may be written beside the installed package"
    assert not (elsewhere / "progress").exists()
