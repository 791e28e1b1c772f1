"""Tooling for the course's notebooks: execute them cleanly, and check their hygiene.

``python -m qhelpers.notebooks execute notebooks/01_*.ipynb`` runs each
notebook from a clean kernel, top to bottom, writes it back with its outputs
(through a temporary file, so an interrupted run leaves the old notebook) and
prints each notebook's run time. ``python -m qhelpers.notebooks student``
writes copies for learners to ``student/``: blanks instead of solutions, no
outputs, no ``# NBVAL_*`` markers or saved widget state, and a note that the
answers are in ``docs/ANSWERS.md``. ``python -m qhelpers.notebooks check``
reports what the tests also check: every code cell executed, counts 1..N in
order, no machine paths, no unexpected tracebacks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Optional

from .files import atomic_write_bytes, course_root

__all__ = ["execute_notebook", "hygiene_problems", "notebook_paths", "notebook_title", "student_copy", "write_student_copies", "STUDENT_DIR"]

NBVAL_MARKERS = {"NBVAL_IGNORE_OUTPUT", "NBVAL_CHECK_OUTPUT", "NBVAL_RAISES_EXCEPTION", "NBVAL_SKIP"}
# A path that names this machine: Linux and macOS home and scratch folders, and any Windows drive path.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users|private|var/folders)/[\w.-]+|\b[A-Za-z]:\\{1,2}[\w .-]+")


STUDENT_DIR = "student"
_NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


def _full_notebook_paths() -> list[Path]:
    """The full notebooks (``notebooks/NN_*.ipynb`` of ``qh.course_root()``), the ones the tooling executes and copies."""
    return sorted((course_root() / "notebooks").glob(_NOTEBOOK_GLOB))


def notebook_paths() -> list[Path]:
    """The course notebooks the learner has, in order: ``notebooks/NN_*.ipynb`` of ``qh.course_root()``, or
    ``student/NN_*.ipynb`` where there is no ``notebooks/`` (a workshop's student bundle leaves it out)."""
    root = course_root()
    folder = root / "notebooks" if (root / "notebooks").is_dir() else root / STUDENT_DIR
    return sorted(folder.glob(_NOTEBOOK_GLOB))


_ASSIGNMENT = re.compile(r"^(?:def\s+(?P<function>[A-Za-z_]\w*)\s*\(|(?P<name>[A-Za-z_]\w*)\s*=(?!=))")  # `name = ...` or `def name(`


def _names_built_on(solution: str) -> set[str]:
    """Names the solution reads before (or while) first assigning them: the exercise builds on their value.

    ``ex_model = ex_model.apply(...)`` builds on ``ex_model`` (made in an earlier cell), so its blank
    must keep the value, not replace it by ``...``.
    """
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(solution))
    except SyntaxError:
        return set()
    assigned: set[str] = set()
    built_on: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):  # a definition: its body runs later
            built_on |= {n.id for d in stmt.decorator_list for n in ast.walk(d) if isinstance(n, ast.Name)} - assigned
            assigned.add(stmt.name)
            continue
        loads = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            loads.add(stmt.target.id)
        built_on |= loads - assigned
        assigned |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return built_on


def _blank_solution(source: str) -> str:
    """Replace the lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` by blanks.

    Each name the solution assigns at the top level becomes ``name = ...  # your code here``, except a
    name the solution builds on (reads before assigning, as in ``m = m.apply(f)``): that one keeps its
    value, ``m = m  # your code here ...``. A solution that assigns nothing leaves ``# your code here``.
    """
    out, inside, names, block = [], False, [], []
    for line in source.splitlines():
        marker = line.strip()
        if marker == "# BEGIN SOLUTION":
            inside, names, block = True, [], []
            continue
        if marker == "# END SOLUTION":
            if not inside:
                raise ValueError("'# END SOLUTION' without '# BEGIN SOLUTION'")
            inside = False
            built_on = _names_built_on("\n".join(block))
            for n in names:
                if n in built_on:
                    out.append(f"{n} = {n}  # your code here: start from the {n} above and change it")
                else:
                    out.append(f"{n} = ...  # your code here")
            if not names:
                out.append("# your code here")
            continue
        if inside:
            block.append(line)
            m = _ASSIGNMENT.match(line)
            if m and (m["function"] or m["name"]) not in names:
                names.append(m["function"] or m["name"])
            continue
        out.append(line)
    if inside:
        raise ValueError("'# BEGIN SOLUTION' without '# END SOLUTION'")
    return "\n".join(out)


# Where a notebook tells the learner to unfold a solution, the student copy (which has none) says
# where the answers are instead.
ANSWERS_DOC = "docs/ANSWERS.md"
_SOLUTION_PHRASES = [
    (re.compile(r"in\s+the copies in `notebooks/`, its solution sits in"), "its solution sits in"),
    (re.compile(r"\s*\(click the bar to reveal it\)"), ""),
    (re.compile(r"(?:in |sits in )?the collapsed cell (?:above the check|under the task|above)"), f"is in `{ANSWERS_DOC}` (the answers, with reasoning; in a workshop your teacher has it)"),
]
STUDENT_NOTE = (
    "\n\n> **Student copy.** Each exercise has blanks (`...`) to fill in, and the self-check after it says "
    "**correct** or **not yet** with a hint. The answers, with reasoning, are in `" + ANSWERS_DOC + "`, and the "
    "full notebooks, with their solutions, are in `notebooks/`."
)


def _student_markdown(text: str) -> str:
    for pattern, replacement in _SOLUTION_PHRASES:
        text = pattern.sub(replacement, text)
    return text.replace(" sits is in ", " is in ").replace(" has its solution is in ", " has its solution in ")


def _strip_nbval_markers(source: str) -> str:
    """Drop ``# NBVAL_*`` lines (the test harness's, not the learner's) and the ``# (why ...)`` line after an ignore marker."""
    lines, out, skip_reason = source.splitlines(), [], False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#") and stripped.lstrip("#").strip() in NBVAL_MARKERS:
            skip_reason = stripped.lstrip("#").strip() != "NBVAL_RAISES_EXCEPTION"
            continue
        if skip_reason and stripped.startswith("# (") and stripped.endswith(")"):
            skip_reason = False
            continue
        skip_reason = False
        out.append(line)
    return "\n".join(out)


def student_copy(nb: dict) -> dict:
    """A copy of a notebook (nbformat JSON) for learners: no solutions, no outputs, no test-harness clutter.

    Exercise cells (tag ``exercise``) get blanks in place of their solution and are shown (not
    collapsed); every output and execution count is cleared so that the learner starts clean; the
    ``# NBVAL_*`` markers and the saved widget state go; text that points at a collapsed solution
    points at ``docs/ANSWERS.md`` instead, and the first cell says so.
    """
    import copy

    nb = copy.deepcopy(nb)
    nb.get("metadata", {}).pop("widgets", None)
    nb.get("metadata", {}).pop("qhelpers", None)  # the CPU kind of outputs a student copy does not have
    first_markdown = True
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = _student_markdown("".join(cell["source"]))
            if first_markdown:
                text, first_markdown = text.rstrip("\n") + STUDENT_NOTE, False
            cell["source"] = text
            continue
        if cell["cell_type"] != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
        source = "".join(cell["source"])
        if "exercise" in cell.get("metadata", {}).get("tags", []):
            if "# BEGIN SOLUTION" not in source:
                raise ValueError(f"exercise cell has no '# BEGIN SOLUTION' marker: {source[:60]!r}")
            source = _blank_solution(source)
            cell["metadata"].pop("jupyter", None)
        cell["source"] = _strip_nbval_markers(source)
    return nb


def write_student_copies(out_dir: Optional[Path] = None, paths: Optional[list[Path]] = None) -> list[Path]:
    """Write student copies of the notebooks to ``out_dir`` (default ``student/`` of ``qh.course_root()``); returns their paths."""
    out_dir = Path(out_dir) if out_dir is not None else course_root() / STUDENT_DIR
    written = []
    for path in paths or _full_notebook_paths():
        nb = student_copy(json.loads(Path(path).read_text()))
        target = out_dir / Path(path).name
        atomic_write_bytes(target, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode())
        written.append(target)
    return written


def notebook_title(path: Path) -> str:
    """The first ``# heading`` of a notebook's first markdown cell."""
    nb = json.loads(Path(path).read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError(f"{path} has no '# title' line in a markdown cell")


def execute_notebook(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in place from a clean kernel; returns the wall time in seconds."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # a cell that fails on purpose for nbval is allowed to fail here too
        if cell.cell_type == "code" and "NBVAL_RAISES_EXCEPTION" in cell.source.split("\n", 1)[0]:
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")
    for cell in nb.cells:  # per-cell timestamps would make every re-run a diff of hundreds of lines
        cell.metadata.pop("execution", None)
    from .cpu import outputs_kind

    # which kind of CPU printed these outputs: make test compares them strictly only on the same kind (tests/nbval_cpu_kind.py)
    nb.metadata.setdefault("qhelpers", {})["outputs_recorded_on"] = outputs_kind()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    atomic_write_bytes(path, (nbformat.writes(nb) + "\n").encode())
    return seconds


def _strings(value) -> list[str]:
    """Every string inside an output (stream text, each MIME type's data, a traceback's lines), as the reader sees it."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def hygiene_problems(path: Path) -> list[str]:
    """What is wrong with a committed notebook (empty list when it is clean)."""
    problems = []
    try:
        nb = json.loads(Path(path).read_text())
    except Exception as exc:
        return [f"{path}: not valid JSON ({exc})"]
    cells = nb.get("cells", [])
    recorded = nb.get("metadata", {}).get("qhelpers", {}).get("outputs_recorded_on")
    if not isinstance(recorded, dict) or not {"machine", "isa", "engines", "saturating_engines"} <= set(recorded):
        problems.append(f"{path}: metadata.qhelpers.outputs_recorded_on (the CPU kind of its outputs) is missing: "
                        "re-execute it with python -m qhelpers.notebooks execute")
    counts = [c.get("execution_count") for c in cells if c.get("cell_type") == "code" and "".join(c.get("source", "")).strip()]
    if counts and any(n is None for n in counts):
        problems.append(f"{path}: {sum(n is None for n in counts)} code cells not executed")
    numbered = [n for n in counts if n is not None]
    if numbered and numbered != list(range(1, len(numbered) + 1)):
        problems.append(f"{path}: execution counts are not 1..N in order (run Restart & Run All)")
    for i, cell in enumerate(cells):
        source = "".join(cell.get("source", ""))
        for line in source.splitlines():
            marker = line.strip().lstrip("#").strip()
            if line.strip().startswith("#") and marker.startswith("NBVAL_") and marker not in NBVAL_MARKERS:
                problems.append(f"{path} cell {i}: nbval marker must stand alone on its line, got {line.strip()!r}")
        first = source.split("\n", 1)[0].strip()
        if first == "# NBVAL_RAISES_EXCEPTION" and "raises-exception" not in cell.get("metadata", {}).get("tags", []):
            problems.append(f"{path} cell {i}: a cell that fails on purpose needs the 'raises-exception' tag too (or Run All stops there)")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and "NBVAL_RAISES_EXCEPTION" not in source:
                problems.append(f"{path} cell {i}: committed traceback ({out.get('ename')})")
            m = MACHINE_PATH.search("\n".join(_strings(out)))
            if m:
                problems.append(f"{path} cell {i}: output shows a machine path ({m.group(0)}...)")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.notebooks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute notebooks in place from a clean kernel")
    ex.add_argument("paths", nargs="*", type=Path)
    ch = sub.add_parser("check", help="report hygiene problems")
    ch.add_argument("paths", nargs="*", type=Path)
    st = sub.add_parser("student", help="write student copies (no solutions, no outputs) to student/")
    st.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "student":
        for p in write_student_copies(args.out):
            print(f"wrote {p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p}")
        return 0
    paths = args.paths or _full_notebook_paths()
    if args.command == "execute":
        for p in paths:
            seconds = execute_notebook(p)
            print(f"{p.name}: executed in {seconds:.1f} s")
        return 0
    problems = [msg for p in paths for msg in hygiene_problems(p)]
    for msg in problems:
        print(msg)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
