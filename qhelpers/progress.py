"""A learner's progress: every self-check appends one line to a small local log, and a command prints it.

Introduced in notebooks/00_start_here.ipynb (the first self-check). Each ``qh.check_...`` call in a
notebook opened through Jupyter appends ``{"time", "learner", "notebook", "exercise", "ok"}`` as one
JSON line to ``progress/<learner>.jsonl`` in the course folder (``qh.course_root()``; git-ignored; the
current directory when the notebook runs outside the course folder), or to the file named by
``QHELPERS_PROGRESS``. Nothing is written outside a Jupyter server (scripts, ``nbclient`` runs) or
under pytest unless ``QHELPERS_PROGRESS`` asks for it, and a log that cannot be written never
breaks a check.

    python -m qhelpers.progress                      # this laptop's table (progress/*.jsonl)
    python -m qhelpers.progress collected/           # a teacher's folder of collected logs
    python -m qhelpers.progress a.jsonl b.jsonl

The learner's name is ``QHELPERS_LEARNER`` if set, else ``user@host``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Iterable, Optional

from .files import course_root

__all__ = ["progress_log_path", "learner_name", "record", "read_progress", "progress_table"]

PROGRESS_ENV = "QHELPERS_PROGRESS"
LEARNER_ENV = "QHELPERS_LEARNER"
PROGRESS_DIR = "progress"


def learner_name() -> str:
    """``QHELPERS_LEARNER`` if set, else ``user@host`` (used as the log's file name)."""
    name = os.environ.get(LEARNER_ENV, "").strip()
    if not name:
        try:
            user = getpass.getuser()
        except Exception:
            user = "learner"
        name = f"{user}@{socket.gethostname()}"
    return name


def _safe_file_name(name: str) -> str:
    return re.sub(r"[^\w@.-]+", "_", name) or "learner"


def progress_log_path() -> Optional[Path]:
    """Where ``record`` writes, or ``None`` when no log is kept (outside Jupyter, or under pytest).

    ``QHELPERS_PROGRESS`` (a ``.jsonl`` file, or a folder for ``<learner>.jsonl``) always wins;
    otherwise a kernel started by a Jupyter server (which sets ``JPY_SESSION_NAME``) writes to
    ``progress/<learner>.jsonl`` in the course folder.
    """
    explicit = os.environ.get(PROGRESS_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir() or explicit.endswith(("/", os.sep)):
            return path / f"{_safe_file_name(learner_name())}.jsonl"
        return path
    if "PYTEST_CURRENT_TEST" in os.environ or not os.environ.get("JPY_SESSION_NAME"):
        return None
    return _progress_dir() / f"{_safe_file_name(learner_name())}.jsonl"


def _progress_dir() -> Path:
    """``progress/`` in the course folder, or in the current directory outside one (never beside the package)."""
    return (course_root(required=False) or Path.cwd()) / PROGRESS_DIR


def _notebook_name() -> str:
    session = os.environ.get("JPY_SESSION_NAME", "").strip()
    if not session:
        return "(no notebook)"
    return Path(session).stem


def record(exercise: str, ok: bool, *, notebook: Optional[str] = None) -> Optional[Path]:
    """Append one check's result to the progress log; returns the log's path, or ``None`` if none is kept.

    Never raises: a full disk or a read-only folder only means this line is not logged.
    """
    path = progress_log_path()
    if path is None:
        return None
    entry = {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "learner": learner_name(),
        "notebook": notebook if notebook is not None else _notebook_name(),
        "exercise": str(exercise),
        "ok": bool(ok),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    except Exception:
        return None
    return path


def _log_files(paths: Iterable[Path]) -> list[Path]:
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(p.glob("*.jsonl")))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"paths: {str(p)!r} is neither a .jsonl file nor a folder of them")
    return files


def read_progress(paths: Iterable[Path]) -> tuple[list[dict], int]:
    """All entries of the given logs (files or folders of ``*.jsonl``) and the number of unreadable lines."""
    entries, bad = [], 0
    for f in _log_files(paths):
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                if not isinstance(e, dict) or not {"notebook", "exercise", "ok"} <= e.keys():
                    raise ValueError
            except ValueError:
                bad += 1
                continue
            e.setdefault("learner", f.stem)
            e.setdefault("time", "")
            entries.append(e)
    return entries, bad


def progress_table(entries: list[dict]) -> str:
    """A plain-text table per learner: each check's latest result, its number of tries, when first correct.

    With more than one learner, a summary (checks correct per notebook, per learner) comes first.
    """
    if not entries:
        return "no self-check results yet: run a notebook's exercises and their check cells first"
    by_learner: dict[str, dict[tuple[str, str], dict]] = {}
    for e in sorted(entries, key=lambda e: e.get("time", "")):
        rows = by_learner.setdefault(str(e["learner"]), {})
        key = (str(e["notebook"]), str(e["exercise"]))
        row = rows.setdefault(key, {"tries": 0, "ok": False, "first_ok": "", "last": ""})
        row["tries"] += 1
        row["ok"] = bool(e["ok"])
        row["last"] = e.get("time", "")
        if e["ok"] and not row["first_ok"]:
            row["first_ok"] = e.get("time", "")
    out = []
    if len(by_learner) > 1:
        notebooks = sorted({nb for rows in by_learner.values() for nb, _ in rows})
        header = ["learner"] + [nb[:2] if re.match(r"\d\d_", nb) else nb for nb in notebooks]
        lines = []
        for learner, rows in sorted(by_learner.items()):
            cells = [learner]
            for nb in notebooks:
                mine = [r for (n, _), r in rows.items() if n == nb]
                cells.append(f"{sum(r['ok'] for r in mine)}/{len(mine)}" if mine else "-")
            lines.append(cells)
        out.append("Checks correct / checks tried, per notebook:")
        out.append(_format(header, lines))
        out.append("")
    for learner, rows in sorted(by_learner.items()):
        correct = sum(r["ok"] for r in rows.values())
        out.append(f"{learner}: {correct} of {len(rows)} checks correct")
        lines = [
            [nb, ex, "correct" if r["ok"] else "not yet", str(r["tries"]), _hhmm(r["first_ok"]) or "-"]
            for (nb, ex), r in sorted(rows.items())
        ]
        out.append(_format(["notebook", "check", "latest", "tries", "first correct (UTC)"], lines))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _hhmm(iso: str) -> str:
    return iso[11:16] if len(iso) >= 16 else iso


def _format(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.progress", description="Print self-check progress from the local logs.")
    parser.add_argument(
        "paths", nargs="*", type=Path,
        help=f"log files or folders of *.jsonl (default: ${PROGRESS_ENV} if set, else the course's {PROGRESS_DIR}/ folder)",
    )
    args = parser.parse_args(argv)
    paths = args.paths
    if not paths:
        explicit = os.environ.get(PROGRESS_ENV, "").strip()
        paths = [Path(explicit)] if explicit else [_progress_dir()]
        if not paths[0].exists():
            print(f"no progress log at {paths[0]} yet: the self-checks write it when run in JupyterLab (make lab)")
            return 0
    try:
        entries, bad = read_progress(paths)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(progress_table(entries), end="")
    if bad:
        print(f"({bad} unreadable line{'s' if bad != 1 else ''} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
