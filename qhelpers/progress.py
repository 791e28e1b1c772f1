"""A learner's progress: every self-check appends one line to a small local log, and a command prints it.

Introduced in notebooks/00_start_here.ipynb (the first self-check). Each ``qh.check_...`` call in a
notebook opened through Jupyter appends one JSON line to ``progress/<learner>.jsonl`` in the course folder
(``qh.course_root()``; git-ignored; the current directory when the notebook runs outside the course folder),
or to the file named by ``QHELPERS_PROGRESS``::

    {"time", "learner", "notebook", "source", "exercise", "of", "check", "status", "ok", "run"}

* ``exercise``: the number of the exercise whose self-check ran (``"1"``, ``"2"``, ...: the exercise cells, tag
  ``exercise``, in notebook order; the check is the exercise cell itself or the cell right after it), or ``""``
  for a check outside an exercise; ``of``: how many exercises the notebook has;
* ``source``: ``"student"`` when the exercise cell holds the learner's code, ``"solution"`` when it holds the
  course's solution (``# BEGIN SOLUTION``: the full notebook in ``notebooks/``), ``"unknown"`` when the
  notebook file cannot be read;
* ``status``: ``"blank"`` (the answer is still ``...``), ``"wrong"`` or ``"correct"``; ``check``: the name the
  check printed; ``run``: one id per cell execution (an exercise with two checks is correct when both are).

The executing cell is the one JupyterLab names in its request (``cellId``), found in the notebook file the kernel
was started for (``JPY_SESSION_NAME``, or VS Code's ``__vsc_ipynb_file__``); when no cell has that id (an editor
that sends none) the cell whose code is the code being run. Nothing is written outside a notebook kernel
(scripts, ``nbclient`` runs) or under pytest unless ``QHELPERS_PROGRESS`` asks for it, and a log that cannot
be written never breaks a check.

    python -m qhelpers.progress                      # this laptop's table (progress/*.jsonl)
    python -m qhelpers.progress collected/           # a teacher's folder of collected logs
    python -m qhelpers.progress a.jsonl b.jsonl
    python -m qhelpers.progress --hub /srv/qhelpers-hub [--watch 30]   # every learner of a classroom server, live

The learner's name is ``QHELPERS_LEARNER`` if set, else ``user@host``. Beside the log, the predict-first checks
keep each exercise's first prediction in ``<learner>.first-predictions.json`` (``qhelpers.prediction_memory``),
so that a restarted kernel still scores it; the table reads only ``*.jsonl``.
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

__all__ = ["progress_log_path", "learner_name", "record", "read_progress", "read_hub", "exercise_states", "exercise_of_cell", "progress_table"]

PROGRESS_ENV = "QHELPERS_PROGRESS"
LEARNER_ENV = "QHELPERS_LEARNER"
PROGRESS_DIR = "progress"
HUB_LEARNERS = "learners"  # a classroom server's layout (hub/classroom.py): <hub dir>/learners/<name>/progress/*.jsonl


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


def _session_notebook() -> Optional[str]:
    """The notebook file this kernel runs: ``JPY_SESSION_NAME`` (Jupyter's server) or VS Code's ``__vsc_ipynb_file__``."""
    session = os.environ.get("JPY_SESSION_NAME", "").strip()
    if session:
        return session
    shell = _shell()
    vsc = shell.user_ns.get("__vsc_ipynb_file__") if shell is not None else None
    return str(vsc) if isinstance(vsc, (str, os.PathLike)) and str(vsc) else None


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the course
        return None
    return get_ipython()


def progress_log_path() -> Optional[Path]:
    """Where ``record`` writes, or ``None`` when no log is kept (outside a notebook kernel, or under pytest).

    ``QHELPERS_PROGRESS`` (a ``.jsonl`` file, or a folder for ``<learner>.jsonl``) always wins;
    otherwise a kernel started for a notebook (Jupyter's server sets ``JPY_SESSION_NAME``; VS Code sets
    ``__vsc_ipynb_file__``) writes to ``progress/<learner>.jsonl`` in the course folder.
    """
    explicit = os.environ.get(PROGRESS_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir() or explicit.endswith(("/", os.sep)):
            return path / f"{_safe_file_name(learner_name())}.jsonl"
        return path
    if "PYTEST_CURRENT_TEST" in os.environ or not _session_notebook():
        return None
    return _progress_dir() / f"{_safe_file_name(learner_name())}.jsonl"


def _progress_dir() -> Path:
    """``progress/`` in the course folder, or in the current directory outside one (never beside the package)."""
    return (course_root(required=False) or Path.cwd()) / PROGRESS_DIR


def _notebook_name() -> str:
    session = _session_notebook()
    return Path(session).stem if session else "(no notebook)"


def _running_cell() -> tuple[Optional[str], Optional[str], str]:
    """``(cell id, code, run id)`` of the cell this kernel is executing (``None`` s outside a kernel)."""
    shell = _shell()
    kernel = getattr(shell, "kernel", None)
    run = f"{os.getpid()}:{getattr(shell, 'execution_count', 0)}"
    try:
        parent = kernel.get_parent() if kernel is not None else {}
    except Exception:
        parent = {}
    cell_id = (parent.get("metadata") or {}).get("cellId")
    code = (parent.get("content") or {}).get("code")
    return (str(cell_id) if cell_id else None), code, run


_NOTEBOOK_CACHE: dict[str, tuple[float, list[dict]]] = {}


def _notebook_cells(path: str) -> Optional[list[dict]]:
    """The cells of the notebook file at ``path`` (cached by modification time), or ``None`` if unreadable."""
    try:
        mtime = os.stat(path).st_mtime
        cached = _NOTEBOOK_CACHE.get(path)
        if cached is None or cached[0] != mtime:
            with open(path, encoding="utf-8") as f:
                cells = json.load(f)["cells"]
            _NOTEBOOK_CACHE[path] = cached = (mtime, cells)
        return cached[1]
    except Exception:
        return None


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _is_exercise(cell: dict) -> bool:
    return cell.get("cell_type") == "code" and "exercise" in (cell.get("metadata") or {}).get("tags", [])


def exercise_of_cell(cells: list[dict], cell_id: Optional[str], code: Optional[str]) -> tuple[str, int, str]:
    """``(exercise, of, source)`` for the running cell of a notebook (see the module's docstring).

    The cell is found by ``cell_id``, else by ``code``; its exercise is the exercise cell it is, or the one right
    before it. ``exercise`` is ``""`` for a cell outside any exercise; ``source`` is ``"student"``,
    ``"solution"`` (the exercise cell holds ``# BEGIN SOLUTION``) or ``"unknown"``.
    """
    exercises = [i for i, c in enumerate(cells) if _is_exercise(c)]
    index = next((i for i, c in enumerate(cells) if cell_id and c.get("id") == cell_id), None)
    if index is None and code is not None:
        index = next((i for i, c in enumerate(cells) if c.get("cell_type") == "code" and _source(c).strip() == code.strip()), None)
    if index is None:
        return "", len(exercises), "unknown"
    for k, i in enumerate(exercises, start=1):
        if i == index or i == index - 1:
            return str(k), len(exercises), "solution" if "# BEGIN SOLUTION" in _source(cells[i]) else "student"
    return "", len(exercises), "solution" if any("# BEGIN SOLUTION" in _source(cells[i]) for i in exercises) else "student"


def record(check: str, ok: bool, *, blank: bool = False, notebook: Optional[str] = None) -> Optional[Path]:
    """Append one check's result to the progress log; returns the log's path, or ``None`` if none is kept.

    ``blank``: the answer was still ``...`` (``qhelpers.checks.report`` says so). Never raises: a full disk or
    a read-only folder only means this line is not logged.
    """
    path = progress_log_path()
    if path is None:
        return None
    try:
        cell_id, code, run = _running_cell()
        session = _session_notebook()
        cells = _notebook_cells(session) if session else None
        exercise, of, source = exercise_of_cell(cells, cell_id, code) if cells is not None else ("", 0, "unknown")
        entry = {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "learner": learner_name(),
            "notebook": notebook if notebook is not None else _notebook_name(),
            "source": source,
            "exercise": exercise,
            "of": of,
            "check": str(check),
            "status": "correct" if ok else "blank" if blank else "wrong",
            "ok": bool(ok),
            "run": run,
        }
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
    """All entries of the given logs (files or folders of ``*.jsonl``) and the number of unreadable lines.

    Lines written before exercises were recorded (``exercise`` was the check's name, no ``status``) are read as
    checks outside an exercise, from an unknown source.
    """
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
            if "status" not in e:  # the old format: one line per check, no exercise
                e.update(check=str(e["exercise"]), exercise="", status="correct" if e["ok"] else "wrong")
            e.setdefault("source", "unknown")
            e.setdefault("of", 0)
            e.setdefault("check", "")
            e.setdefault("run", e["time"])
            entries.append(e)
    return entries, bad


def read_hub(hub_dir: Path) -> tuple[list[dict], list[str], list[str]]:
    """Every learner's log on a classroom server (``make hub``): ``(entries, learners, notes)``.

    ``learners``: every learner folder in ``<hub dir>/learners/``, with or without a log; each entry's learner is
    its folder's name (a learner can write only their own log, but could write any name into it). ``notes``: one
    line per learner with no self-check yet, a log that could not be read, or unreadable lines (skipped).
    """
    root = Path(hub_dir) / HUB_LEARNERS
    if not root.is_dir():
        raise ValueError(f"--hub: {str(hub_dir)!r} has no {HUB_LEARNERS}/ folder (the classroom server's folder: make hub's HUB_DIR, /srv/qhelpers-hub by default)")
    entries, learners, notes = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name, logs = folder.name, folder / PROGRESS_DIR
        learners.append(name)
        try:
            files = sorted(logs.glob("*.jsonl")) if logs.is_dir() else []
            mine, bad = read_progress(files)
        except OSError as exc:
            notes.append(f"{name}: cannot read {logs} ({exc.strerror}): run this as root on the server")
            continue
        if not files:
            notes.append(f"{name}: signed in, no self-check yet")
        if bad:
            notes.append(f"{name}: {bad} unreadable line{'s' if bad != 1 else ''} in {logs} skipped")
        for e in mine:
            e["learner"] = name
        entries.extend(mine)
    return entries, learners, notes


def exercise_states(entries: list[dict]) -> dict[tuple[str, str, str, str], dict]:
    """Each learner's exercises: ``{(learner, notebook, source, exercise): state}``, oldest entry first.

    ``state``: ``status`` (of the latest run of the exercise's checks: ``correct`` when every check in it is,
    ``blank`` when every one is blank, else ``wrong``), ``tries`` (runs with something filled in), ``first_ok``
    (time of the first correct run, or ``""``), ``of`` (exercises in the notebook). Checks outside an exercise
    are left out.
    """
    runs: dict[tuple, dict[str, list[dict]]] = {}
    for e in sorted(entries, key=lambda e: str(e.get("time", ""))):
        if not str(e.get("exercise", "")):
            continue
        key = (str(e["learner"]), str(e["notebook"]), str(e["source"]), str(e["exercise"]))
        runs.setdefault(key, {}).setdefault(str(e["run"]), []).append(e)
    states = {}
    for key, by_run in runs.items():
        state = {"status": "blank", "tries": 0, "first_ok": "", "of": 0}
        for checks in by_run.values():  # in order of their first entry
            statuses = {c["status"] for c in checks}
            status = "correct" if statuses == {"correct"} else "blank" if statuses == {"blank"} else "wrong"
            state["status"] = status
            state["tries"] += status != "blank"
            state["of"] = max(state["of"], *(int(c.get("of") or 0) for c in checks))
            if status == "correct" and not state["first_ok"]:
                state["first_ok"] = str(checks[-1].get("time", ""))
        states[key] = state
    return states


def progress_table(entries: list[dict], learners: Iterable[str] = ()) -> str:
    """The teacher's table, then one table per learner (``learners``: also those with no entry yet, shown as ``-``).

    The summary has one row per learner and one column per notebook: exercises correct / exercises in the notebook
    in the student copy, ``S`` after it when the learner ran the solution notebook's checks (those never count as
    correct), ``-`` for a notebook not started. Each learner's table lists every exercise: where it ran (student
    copy or solution), its latest status, the tries with something filled in, and when it was first correct.
    """
    learners = sorted({str(e["learner"]) for e in entries} | set(learners))
    if not entries:
        waiting = f" ({len(learners)} learner{'s' if len(learners) != 1 else ''} signed in: {', '.join(learners)})" if learners else ""
        return f"no self-check results yet{waiting}: run a notebook's exercises and their check cells first\n"
    states = exercise_states(entries)
    notebooks = sorted({nb for (_, nb, _, _) in states})
    out = []
    if notebooks:
        header = ["learner"] + [nb[:2] if re.match(r"\d\d_", nb) else nb for nb in notebooks]
        lines = []
        for learner in learners:
            cells = [learner]
            for nb in notebooks:
                mine = {k: v for k, v in states.items() if k[0] == learner and k[1] == nb}
                student = [v for k, v in mine.items() if k[2] != "solution"]
                of = max((v["of"] for v in mine.values()), default=0)
                cell = f"{sum(v['status'] == 'correct' for v in student)}/{of or len(student)}" if student else ("0/" + str(of) if mine else "-")
                if any(k[2] == "solution" for k in mine):
                    cell += " S"
                cells.append(cell)
            lines.append(cells)
        out.append("Exercises correct in the student copy / exercises in the notebook (S: also ran the solution notebook's checks):")
        out.append(_format(header, lines))
        out.append("")
    for learner in learners:
        mine = sorted((k, v) for k, v in states.items() if k[0] == learner)
        if not any(str(e["learner"]) == learner for e in entries):
            out.append(f"{learner}: no self-check yet")
            out.append("")
            continue
        correct = sum(v["status"] == "correct" and k[2] != "solution" for k, v in mine)
        out.append(f"{learner}: {correct} exercise{'s' if correct != 1 else ''} correct in the student copies")
        if mine:
            lines = [[nb, ex, src, v["status"], str(v["tries"]), _hhmm(v["first_ok"]) or "-"] for (_, nb, src, ex), v in mine]
            out.append(_format(["notebook", "exercise", "copy", "latest", "tries", "first correct (UTC)"], lines))
        outside: dict[tuple[str, str], str] = {}  # the latest status of each check outside an exercise
        for e in sorted(entries, key=lambda e: str(e.get("time", ""))):
            if str(e["learner"]) == learner and not str(e.get("exercise", "")):
                outside[(str(e["notebook"]), str(e["check"]))] = str(e["status"])
        if outside:
            out.append("checks outside the exercises (latest): " + ", ".join(f"{nb} {check} {st}" for (nb, check), st in sorted(outside.items())))
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
    parser.add_argument("--hub", type=Path, metavar="DIR", help="a classroom server's folder (make hub's HUB_DIR): every learner's log in it")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="with --hub: print the table again every SECONDS until Ctrl+C")
    args = parser.parse_args(argv)
    if args.hub is not None:
        if args.paths:
            parser.error("--hub reads the server's logs: give either --hub or paths")
        return _hub_main(args.hub, args.watch)
    if args.watch is not None:
        parser.error("--watch goes with --hub")
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


def _hub_main(hub_dir: Path, watch: Optional[float]) -> int:
    import time

    try:
        while True:
            try:
                entries, learners, notes = read_hub(hub_dir)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if watch:
                print("\033[H\033[J", end="")  # clear the terminal
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S UTC")
            print(f"{len(learners)} learner{'s' if len(learners) != 1 else ''} on the classroom server {hub_dir}, at {stamp}")
            print(progress_table(entries, learners), end="")
            for note in notes:
                print(note)
            if not watch:
                return 0
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
