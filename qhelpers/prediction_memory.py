"""The first prediction a predict-first self-check judged, kept beside the learner's progress log.

A predict-first exercise (notebooks 00, 01, 03, 04) shows its measurement as soon as a well-formed prediction is
written, so the first well-formed prediction is the one scored. A check remembers it in its own in-process
dictionary (a test clears that dictionary to start as a fresh kernel) and, where the learner's progress log is kept
(``qhelpers.progress.progress_log_path``: a notebook opened through Jupyter or VS Code, or wherever
``QHELPERS_PROGRESS`` points), also in ``<learner>.first-predictions.json`` beside that log, so that a restarted
kernel remembers it too. Entries are keyed by the notebook file the kernel runs and the check's own key, so the
solution notebook and the student copy keep theirs apart. The first entry of a key is never replaced: giving the
same answer again is judged again (the same verdict, so a second "Run All" of a notebook prints the same), and a
check decides what a different later answer gets.

Where no log is kept (scripts, ``nbclient`` and nbval runs, pytest unless ``QHELPERS_PROGRESS`` is set) only the
in-process dictionary remembers. A file that cannot be written, or read, never breaks a check: it prints one line
saying so (once per file and kind of problem in a process), and the in-process memory still counts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, MutableMapping, Optional

__all__: list[str] = []

MEMORY_SUFFIX = ".first-predictions.json"
_FORMAT = "qhelpers first predictions 1"
_SAID: set[tuple[str, str]] = set()  # (file, kind of problem) already reported in this process


def memory_path() -> Optional[Path]:
    """``<learner>.first-predictions.json`` beside the progress log, or ``None`` where no log is kept."""
    from .progress import progress_log_path

    log = progress_log_path()
    if log is None:
        return None
    return log.with_name(log.name[: -len(".jsonl")] + MEMORY_SUFFIX if log.name.endswith(".jsonl") else log.name + MEMORY_SUFFIX)


def _scope(key: str) -> str:
    from .progress import _session_notebook

    return f"{_session_notebook() or ''}::{key}"


def _say_once(path: Path, kind: str, line: str) -> None:
    if (str(path), kind) not in _SAID:
        _SAID.add((str(path), kind))
        print(line)


def _reason(exc: OSError) -> str:
    return f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)


def _read(path: Path) -> dict[str, Any]:
    """The entries kept in ``path`` ({} when there is no file yet, or when it cannot be read: said once)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # nothing kept yet (a folder that cannot hold it: said on writing)
        return {}
    except OSError as exc:
        _say_once(path, "read", f"(note: could not read the first predictions kept in {path} ({_reason(exc)}); "
                                "only this kernel remembers them)")
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("first"), dict):
            raise ValueError("not a file of first predictions")
    except ValueError as exc:
        _say_once(path, "corrupt", f"(note: {path} is damaged ({str(exc).splitlines()[0]}): the first predictions it "
                                   "kept are forgotten, and it is written afresh)")
        return {}
    return data["first"]


def recall(memory: MutableMapping[str, Any], key: str) -> Optional[Any]:
    """The first answer remembered under ``key``: from the file when it has one (it survives a restart), else from
    ``memory`` (this process's); ``None`` when there is none. Values come back as JSON gives them (lists, not tuples)."""
    scoped = _scope(key)
    path = memory_path()
    if path is not None:
        kept = _read(path).get(scoped)
        if kept is not None:
            return kept
    return memory.get(scoped)


def remember(memory: MutableMapping[str, Any], key: str, value: Any) -> None:
    """Keep ``value`` (JSON-able) as the first answer under ``key``, unless one is kept already, in ``memory`` and in
    the file. A file that cannot be written prints one line; ``memory`` still holds the value."""
    scoped = _scope(key)
    value = json.loads(json.dumps(value))  # the form the file gives back, so that both memories compare alike
    memory.setdefault(scoped, value)
    path = memory_path()
    if path is None:
        return
    kept = _read(path)
    if scoped in kept:
        return
    kept[scoped] = value
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": _FORMAT, "first": kept}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        _say_once(path, "write", f"(note: could not keep your first prediction in {path} ({_reason(exc)}); "
                                 "it counts until this kernel restarts)")
