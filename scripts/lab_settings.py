"""Course defaults for JupyterLab in the course's venv: no "official Jupyter news?" prompt, no update check.

    python scripts/lab_settings.py                 # into this Python's prefix (the venv `make lab` uses)
    python scripts/lab_settings.py --prefix /path  # another prefix (tests)

Writes two small files, merged with what is already there (other settings are kept):

* ``<prefix>/share/jupyter/lab/settings/overrides.json``: JupyterLab's default-settings overrides;
  ``fetchNews: "false"`` and ``checkForUpdates: false`` for the notification extension, so learners are
  not greeted by a prompt about news (and a closed room's network is not asked for it);
* ``<prefix>/etc/jupyter/jupyter_server_config.d/qhelpers-course.json``: the server side of the same
  (no news URL, never check for updates).

A learner can still turn the news on in Settings; the override only changes the default.

It ends by printing where a learner works (``LEARNER_FOLDER``), the line ``make lab`` shows just before
JupyterLab opens the course folder at ``student/00_start_here.ipynb`` (the Makefile's ``LAB_OPEN``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NOTIFICATION = "@jupyterlab/apputils-extension:notification"
OVERRIDES = {NOTIFICATION: {"fetchNews": "false", "checkForUpdates": False}}
LEARNER_FOLDER = "student"
LANDING_MESSAGE = (
    "Work in student/: the notebooks with blanks to fill in (JupyterLab opens student/00_start_here.ipynb).\n"
    "notebooks/ holds the same notebooks with their solutions; run those only to compare."
)
SERVER_CONFIG = {"LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}


def _merge_json(path: Path, update: dict) -> dict:
    """Merge ``update`` into the JSON object at ``path`` (one level deep per top-level key) and write it."""
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); fix or remove it, then run this again") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def install(prefix: Path) -> list[Path]:
    """Write the overrides and the server config under ``prefix``; returns the two paths."""
    prefix = Path(prefix)
    if not prefix.is_dir():
        raise ValueError(f"prefix={str(prefix)!r} is not an existing folder")
    overrides = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    server = prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "qhelpers-course.json"
    _merge_json(overrides, OVERRIDES)
    _merge_json(server, SERVER_CONFIG)
    return [overrides, server]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix), help="default: this Python's prefix (%(default)s)")
    args = parser.parse_args(argv)
    for path in install(args.prefix):
        print(f"wrote {path}")
    course = Path(__file__).resolve().parents[1]
    # the learner's copy without solutions (scripts/build_student_bundle.py) has no notebooks/ to point at
    print(LANDING_MESSAGE if (course / "notebooks").is_dir() else LANDING_MESSAGE.splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
