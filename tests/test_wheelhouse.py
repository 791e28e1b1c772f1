"""scripts/build_wheelhouse.py: a wheelhouse that installs with no index at all.

Cheap but real: builds a wheelhouse for a small subset of requirements.txt (tqdm, pinned as there, and
qhelpers itself through ``-e .``), then installs from it into a fresh venv with ``--no-index``, both the
documented command and the Makefile route (PIP_NO_INDEX/PIP_FIND_LINKS). The full wheelhouse (torch
with its CUDA libraries, several GB) is never built here. Needs PyPI for the download step.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_wheelhouse", REPO / "scripts" / "build_wheelhouse.py")
bw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bw)


def _pinned(name: str) -> str:
    """The requirements.txt line that pins ``name`` (the subset uses the course's own pins)."""
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if re.match(rf"{name}\s*==", line):
            return line.strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def test_split_requirements_reads_the_course_file():
    remote, local = bw.split_requirements(REPO / "requirements.txt")
    assert local == [Path(".")]
    names = {re.split(r"[=<>!~ ]", r)[0].lower() for r in remote}
    assert {"torch", "torchvision", "jupyterlab", "tqdm"} <= names
    assert all("==" in r for r in remote), "every remote requirement is pinned"
    assert bw.build_requirements(REPO) == ["setuptools>=77"]


def test_the_deploy_file_is_the_course_plus_executorch():
    """requirements-deploy.txt (notebook 08: what make wheelhouse builds from) holds every pin of requirements.txt and ExecuTorch's."""
    core, _ = bw.split_requirements(REPO / "requirements.txt")
    deploy, local = bw.split_requirements(REPO / "requirements-deploy.txt")
    assert local == [Path(".")] and set(core) < set(deploy)
    assert [r for r in deploy if r not in core] == ["executorch==1.5.1"] and not any(r.startswith("executorch") for r in core)


def test_split_requirements_rejects_index_options(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("tqdm==4.70.1\n--index-url http://example.invalid/simple\n")
    with pytest.raises(ValueError, match="index-url"):
        bw.split_requirements(req)
    with pytest.raises(ValueError, match="requirements="):
        bw.build_wheelhouse(tmp_path / "missing.txt", tmp_path / "wh")


@pytest.mark.network
@pytest.mark.slow
def test_wheelhouse_installs_offline(tmp_path):
    req = tmp_path / "requirements-subset.txt"
    req.write_text(f"# a subset of requirements.txt\n{_pinned('tqdm')}\n-e .\n")
    wh = tmp_path / "wheelhouse"
    # As `make wheelhouse` does, from the repo root (the `-e .` line is relative to it).
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_wheelhouse.py"), "-r", str(req), "-o", str(wh)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    names = sorted(p.name for p in wh.iterdir())
    assert any(n.startswith("tqdm-4.70.1-") for n in names), names
    assert any(n.startswith("qhelpers-0.1.0-") for n in names), names
    assert any(n.startswith("setuptools-") for n in names), names  # to build `-e .` offline
    assert all(n.endswith(".whl") for n in names), names
    assert "Offline install: pip install --no-index --find-links" in run.stdout

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # No index at all and no machine pip config: pip may only look in the wheelhouse. (qhelpers' own
    # dependencies, torch and friends, are not in this subset, hence --no-deps for it.) This venv's pip
    # runs the install into the fresh venv (--python), which saves bootstrapping pip there.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(py), "install"]
    subprocess.run([*pip, "--no-index", "--find-links", str(wh), _pinned("tqdm")], check=True, env=env, cwd=REPO, timeout=120)
    # The Makefile route: `PIP_NO_INDEX=1 PIP_FIND_LINKS=wheelhouse make setup`, editable install built offline.
    offline_env = dict(env, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wh))
    subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True, env=offline_env, cwd=tmp_path, timeout=180)
    check = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m, tqdm; print(tqdm.__version__, m.version('qhelpers'))"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == [_pinned("tqdm").split("==")[1], "0.1.0"]

    # The wheelhouse really is the only source: a package that is not in it cannot be installed.
    missing = subprocess.run([*pip, "--no-index", "--find-links", str(wh), "six"], capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode != 0
    assert "No matching distribution found for six" in missing.stdout + missing.stderr
