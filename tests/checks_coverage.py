"""The self-check coverage gate (``make test-checks``): every branch of every self-check runs in an exercise test.

A self-check is a function of ``qhelpers`` decorated with ``@_blank_safe`` (``qhelpers.checks``). With it
go the helpers it calls to judge an answer: the functions of ``qhelpers`` it calls (directly or through
another such helper) that are private (``_name``) or that reject an answer themselves (``raise WrongAnswer``
/ ``raise NotFilledIn`` / ``report(...)``), except the ones that only show a verdict (``SHOWN_ONLY``).

This script runs the exercise tests (``TESTS``) under ``coverage`` with branch measurement, then lists every
line and every branch of those functions that no test ran, as ``file:line``, the function, and the source
line, and exits 1 when there is one. A wrong-answer branch that is listed needs a test in
``tests/test_exercises_NN.py`` (or ``tests/test_check_branches.py``) that gives the check that wrong answer
and asserts its hint with ``verdicts.rejected``. A line that cannot run on purpose carries
``# pragma: no cover`` with the reason (coverage's own marker; it excludes the line and its block).

    .venv/bin/python tests/checks_coverage.py            # run the tests, then the gate
    .venv/bin/python tests/checks_coverage.py --report   # the gate on the last run's data (build/checks.coverage)
    .venv/bin/python tests/checks_coverage.py --list     # the functions the gate covers, one per line

Run from the repository root (``PYTHONPATH`` = the root, as for every test).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qhelpers"
DATA_FILE = ROOT / "build" / "checks.coverage"
# The exercise tests: one file per notebook, the checks' own unit tests, and the branch tests of the gate.
TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_exercises_[0-9][0-9].py")) + [
    "tests/test_decision_checks_widgets.py",
    "tests/test_check_branches.py",
]
# Every exercise test but the CI tier's: "not slow" would drop the exercise tests tests/tiers.py marks slow (over
# 0.5 s), and with them the only runs of some wrong-answer branches (20 tests and 10 branches on 2026-12-06).
MARKERS = "not ci and not browser and not network"
SHOWN_ONLY = {"report", "_show_check_line", "_in_notebook", "_blank_safe", "not_filled"}
VERDICT_RAISES = {"WrongAnswer", "NotFilledIn"}


@dataclass(frozen=True)
class Function:
    path: Path
    name: str
    start: int
    end: int
    why: str  # "self-check" or "called by check_x"


def _decorators(node: ast.FunctionDef) -> set[str]:
    return {ast.unparse(d).split("(")[0].split(".")[-1] for d in node.decorator_list}


def _called_names(node: ast.AST) -> set[str]:
    return {ast.unparse(c.func).split(".")[-1] for c in ast.walk(node) if isinstance(c, ast.Call)}


def _judges(node: ast.FunctionDef) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Raise) and n.exc is not None and ast.unparse(n.exc).split("(")[0].split(".")[-1] in VERDICT_RAISES:
            return True
        if isinstance(n, ast.Call) and ast.unparse(n.func).split(".")[-1] == "report":
            return True
    return False


def gated_functions() -> list[Function]:
    """The self-checks of qhelpers and the helpers they call to judge, in file order."""
    defs: dict[tuple[Path, str], ast.FunctionDef] = {}
    imported: dict[tuple[Path, str], Path] = {}  # (module, name) -> the module of qhelpers it was imported from
    checks: list[tuple[Path, ast.FunctionDef]] = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for alias in node.names:
                    imported[(path, alias.asname or alias.name)] = PACKAGE / f"{node.module}.py"
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                defs[(path, node.name)] = node
                if "_blank_safe" in _decorators(node):
                    checks.append((path, node))
    chosen: dict[tuple[Path, str], Function] = {}
    todo = [(path, node, "self-check") for path, node in checks]
    while todo:
        path, node, why = todo.pop(0)
        key = (path, node.name)
        if key in chosen:
            continue
        chosen[key] = Function(path, node.name, node.lineno, node.end_lineno, why)
        for name in sorted(_called_names(node) - SHOWN_ONLY):
            cpath = path if (path, name) in defs else imported.get((path, name))
            cnode = defs.get((cpath, name)) if cpath else None
            if cnode is not None and (name.startswith("_") or _judges(cnode)):
                todo.append((cpath, cnode, f"called by {node.name}"))
    return sorted(chosen.values(), key=lambda f: (f.path.name, f.start))


def run_tests(extra: list[str]) -> int:
    DATA_FILE.parent.mkdir(exist_ok=True)
    if DATA_FILE.exists():
        DATA_FILE.unlink()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "coverage", "run", "--branch", f"--source={PACKAGE}", f"--data-file={DATA_FILE}",
           "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", MARKERS, *TESTS, *extra]
    print("$", " ".join(cmd[2:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def blocks(statements: list[int], missing: set[int]) -> list[list[int]]:
    """The missing statements in runs of consecutive statements (one block that never ran is reported once)."""
    runs: list[list[int]] = []
    for i, n in enumerate(statements):
        if n in missing:
            if runs and statements[i - 1] == runs[-1][-1]:
                runs[-1].append(n)
            else:
                runs.append([n])
    return runs


def uncovered(functions: list[Function]) -> list[str]:
    """One line per line or branch of the gated functions that no test ran: ``file:line: function: what``."""
    import coverage

    cov = coverage.Coverage(data_file=str(DATA_FILE), branch=True)
    cov.load()
    out_json = DATA_FILE.with_suffix(".json")
    cov.json_report(morfs=sorted({str(f.path) for f in functions}), outfile=str(out_json), ignore_errors=False)
    files = json.loads(out_json.read_text())["files"]
    problems = []
    for f in functions:
        rel = f.path.relative_to(ROOT).as_posix()
        data = files.get(rel) or files.get(str(f.path))
        source = f.path.read_text().splitlines()
        if data is None:
            problems.append(f"{rel}:{f.start}: {f.name}: never imported by the tests")
            continue
        missing = {n for n in data["missing_lines"] if f.start <= n <= f.end}
        statements = sorted(n for n in set(data["executed_lines"]) | missing if f.start <= n <= f.end)
        for run in blocks(statements, missing):
            span = f"{run[0]}" if len(run) == 1 else f"{run[0]}-{run[-1]}"
            what = "line never run" if len(run) == 1 else f"{len(run)} lines never run, from"
            problems.append(f"{rel}:{span}: {f.name}: {what}: {source[run[0] - 1].strip()}")
        for a, b in data.get("missing_branches", []):
            if f.start <= a <= f.end and (b < 0 or b not in missing) and a not in missing:
                where = "the function's exit" if b < 0 else f"line {b}"
                problems.append(f"{rel}:{a}: {f.name}: branch to {where} never taken: {source[a - 1].strip()}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="skip the test run; report on the last run's data")
    parser.add_argument("--list", action="store_true", help="list the gated functions and exit")
    args, pytest_args = parser.parse_known_args(argv)  # anything else goes to pytest (e.g. -x, -p no:warnings)
    functions = gated_functions()
    if args.list:
        for f in functions:
            print(f"{f.path.relative_to(ROOT).as_posix()}:{f.start}: {f.name} ({f.why})")
        return 0
    if not args.report:
        rc = run_tests(pytest_args)
        if rc != 0:
            print(f"the exercise tests failed (pytest exit {rc}); fix them first: the gate needs a green run")
            return rc
    problems = uncovered(functions)
    for p in problems:
        print(p)
    checks = sum(f.why == "self-check" for f in functions)
    if problems:
        print(f"\n{len(problems)} line(s)/branch(es) of the self-checks no exercise test runs "
              f"({checks} self-checks and {len(functions) - checks} helpers gated). Each wrong-answer branch needs a test "
              "that gives that answer and asserts the hint (tests/verdicts.py: rejected).")
        return 1
    print(f"every line and branch of {checks} self-checks and {len(functions) - checks} judging helpers runs in an exercise test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
