"""scripts/lab_settings.py: the course's JupyterLab defaults (no news prompt), merged, and read by a real JupyterLab."""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
from pathlib import Path

import pytest
from lab_server import jupyterlab

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lab_settings", REPO / "scripts" / "lab_settings.py")
ls = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ls)


def test_install_merges_with_existing_settings(tmp_path):
    overrides = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    overrides.parent.mkdir(parents=True)
    overrides.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}, ls.NOTIFICATION: {"doNotDisturbMode": True}}))
    paths = ls.install(tmp_path)
    data = json.loads(overrides.read_text())
    assert data["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert data[ls.NOTIFICATION] == {"doNotDisturbMode": True, "fetchNews": "false", "checkForUpdates": False}
    assert json.loads(paths[1].read_text())["LabApp"]["news_url"] is None
    assert ls.install(tmp_path) == paths  # idempotent
    assert json.loads(overrides.read_text()) == data


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="is not an existing folder"):
        ls.install(tmp_path / "missing")
    bad = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ls.install(tmp_path)


@pytest.mark.slow
def test_jupyterlab_serves_the_news_setting_off_by_default(tmp_path):
    """A real JupyterLab pointed at the written settings folder reports fetchNews "false" as the default."""
    pytest.importorskip("jupyterlab")
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    overrides, _ = ls.install(prefix)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    lab_args = [
        f"--LabApp.app_settings_dir={overrides.parent}",
        f"--LabApp.user_settings_dir={tmp_path / 'user-settings'}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}",
    ]  # fmt: skip
    with jupyterlab(tmp_path, lab_args, env, tmp_path / "lab.log", timeout_s=90) as (base, token):
        with urllib.request.urlopen(f"{base}/lab/api/settings/{ls.NOTIFICATION}?token={token}", timeout=10) as r:
            setting = json.loads(r.read())
    props = setting["schema"]["properties"]
    assert props["fetchNews"]["default"] == "false"
    assert props["checkForUpdates"]["default"] is False


def _makefile_lab_args() -> list[str]:
    """The arguments the Makefile's ``lab`` recipe gives ``jupyter lab``, with its variables filled in."""
    import re
    import shlex

    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    line = next(x for x in recipe.splitlines() if "jupyter lab" in x)
    open_ = re.search(r"^LAB_OPEN\s*:=\s*(\S+)", text, re.M).group(1)
    line = line.split("jupyter lab", 1)[1].replace("$(LAB_FLAGS)", "").replace("$(CURDIR)", str(REPO)).replace("$(LAB_OPEN)", open_)
    assert "$(" not in line, f"a Makefile variable the test does not know: {line}"
    return shlex.split(line)


def test_make_lab_opens_the_course_folder_at_the_learners_first_notebook():
    args = _makefile_lab_args()
    assert f"--ServerApp.root_dir={REPO}" in args, args
    files = [a for a in args if not a.startswith("-")]
    assert files == [f"{ls.LEARNER_FOLDER}/00_start_here.ipynb"], "make lab opens the first student copy"
    assert (REPO / files[0]).is_file()
    assert "notebooks/" not in args, "a folder argument would make that folder the root (student/ out of reach)"


def test_the_landing_message_names_the_learners_folder(tmp_path, capsys):
    assert ls.main(["--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Work in student/" in out and "notebooks/ holds the same notebooks with their solutions" in out


@pytest.mark.slow
def test_make_lab_serves_student_notebooks_and_docs(tmp_path):
    """JupyterLab started with the Makefile's arguments lists student/, notebooks/ and docs/ and opens student/00.

    tests/lab_server.py gives the same ``--ServerApp.root_dir`` (the course folder) and starts in it, as make does.
    """
    pytest.importorskip("jupyterlab")
    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(runtime))
    args = [a for a in _makefile_lab_args() if not a.startswith("--ServerApp.root_dir")]  # lab_server.py passes it
    args += [f"--LabApp.workspaces_dir={tmp_path / 'ws'}", f"--LabApp.user_settings_dir={tmp_path / 'us'}"]
    with jupyterlab(REPO, args, env, tmp_path / "lab.log", timeout_s=90) as (base, token):
        with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=10) as r:
            names = {c["name"] for c in json.loads(r.read())["content"]}
        assert {"student", "notebooks", "docs"} <= names
        with urllib.request.urlopen(f"{base}/api/contents/student?token={token}", timeout=10) as r:
            student = {c["name"] for c in json.loads(r.read())["content"]}
        assert "00_start_here.ipynb" in student
        with urllib.request.urlopen(f"{base}/api/contents/docs/REFERENCES.md?content=0&token={token}", timeout=10) as r:
            assert r.status == 200  # the notebooks' ../docs/REFERENCES.md links resolve inside the root
        opened = [p.read_text() for p in runtime.glob("jpserver-file-to-run-*-open.html")]
    assert opened and "/lab/tree/student/00_start_here.ipynb" in opened[0], opened
