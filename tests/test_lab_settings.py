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
