"""The mutation tier (``make test-mutation``): break one guarded thing at a time; the tests that own it must fail.

Each row of ``tests/mutation/mutations.json`` replaces one exact piece of code (``old``, found exactly once in
``path``) by ``new`` in a copy of the repository, and runs only the tests that own that code (``tests``: pytest
arguments, files or node ids, maybe ``-k``). A mutation is

* CAUGHT when pytest reports a failed test (exit 1);
* SURVIVED when every test passes: the tests cannot see that break; write the test that does;
* STALE when ``old`` is not found exactly once: the code changed (after a rewrite or a merge); point the row
  at the new code (or delete it, with the reason, when the guarded thing is gone);
* ERROR for any other pytest exit (a collection error, no test selected): fix the row's ``tests``.

Before the mutations, every test file the rows name runs once on the unmutated copy (the baseline, one pytest
run): a test that fails already would make every mutation look caught.

    .venv/bin/python tests/mutation/run.py              # every row (about 10 minutes on 2 busy cores)
    .venv/bin/python tests/mutation/run.py CK3 LAT1     # some rows
    .venv/bin/python tests/mutation/run.py --no-baseline CK3
    .venv/bin/python tests/mutation/run.py --jobs 2     # two rows at a time, each in its own copy (CI)

The copy lives in a temporary folder (the worktree is never modified); ``data/``, ``notebooks/`` and the other
top-level entries are symlinked into it. Exit 0 only when every row selected is CAUGHT.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = Path(__file__).with_name("mutations.json")
COPIED = ("qhelpers", "tests", "pyproject.toml")  # copied (mutations edit them); everything else is symlinked
TIMEOUT_S = 1200


def load_table(path: Path = TABLE) -> list[dict]:
    rows = json.loads(path.read_text())
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate mutation ids in {path}")
    return rows


def stale_reason(row: dict, root: Path = ROOT) -> str:
    """Why the row cannot be applied to the code under ``root`` ("" when it can)."""
    target = root / row["path"]
    if not target.is_file():
        return f"{row['path']} does not exist"
    n = target.read_text().count(row["old"])
    return "" if n == 1 else f"the code to mutate is found {n} times in {row['path']} (expected once)"


def make_copy() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="qh-mutation-"))
    for entry in ROOT.iterdir():
        if entry.name in (".git", ".venv", "build", "results", "__pycache__") or entry.name.startswith(".pytest"):
            continue
        if entry.name in COPIED:
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(entry, tmp / entry.name)
        else:
            (tmp / entry.name).symlink_to(entry)
    return tmp


def run_pytest(copy: Path, args: list[str]) -> tuple[int, str, float]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:warnings", *args], cwd=copy, env=env,
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    return r.returncode, r.stdout + r.stderr, time.perf_counter() - start


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0][:110]
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1][:110] if lines else ""


def baseline_args(rows: list[dict]) -> list[str]:
    """Every file or node id the rows name, once, without their -k filters: one pytest run (one import of torch)."""
    out: list[str] = []
    for r in rows:
        args, skip = r["tests"], False
        for i, a in enumerate(args):
            if skip:
                skip = False
                continue
            if a == "-k":
                skip = True
                continue
            file = a.split("::")[0]
            if a not in out and file not in out:
                out.append(a)
    return [a for a in out if "::" not in a or a.split("::")[0] not in out]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="mutation ids to run (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the selected rows' tests")
    parser.add_argument("--jobs", type=int, default=1, help="rows run at a time, each in its own copy (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, not {args.jobs}")
    rows = load_table()
    if args.ids:
        unknown = sorted(set(args.ids) - {r["id"] for r in rows})
        if unknown:
            parser.error(f"unknown mutation ids {unknown}; the table has {[r['id'] for r in rows]}")
        rows = [r for r in rows if r["id"] in args.ids]
    copy = make_copy()
    copies: list[Path] = []  # the extra copies of --jobs
    results: list[tuple[str, str, float, str]] = []
    try:
        if not args.no_baseline:
            sel = baseline_args([r for r in rows if not stale_reason(r, copy)])
            rc, out, secs = run_pytest(copy, sel)
            print(f"baseline (no mutation) {' '.join(sel)}: exit {rc} ({secs:.0f} s)", flush=True)
            if rc != 0:
                print(out[-3000:])
                print("the tests fail without any mutation: fix them first")
                return 2
        spare = [copy] + [make_copy() for _ in range(min(args.jobs, len(rows)) - 1)]
        copies.extend(spare[1:])
        lock = threading.Lock()

        def one(r: dict) -> tuple[str, str, float, str]:
            with lock:
                mine = spare.pop()
            try:
                reason = stale_reason(r, mine)
                if reason:
                    res = (r["id"], "STALE", 0.0, reason)
                    print(f"{r['id']}: STALE ({reason})", flush=True)
                    return res
                target = mine / r["path"]
                original = target.read_text()
                target.write_text(original.replace(r["old"], r["new"]))
                try:
                    rc, out, secs = run_pytest(mine, r["tests"])
                finally:
                    target.write_text(original)
                verdict = {0: "SURVIVED", 1: "CAUGHT"}.get(rc, "ERROR")
                detail = _first_failure(out) if rc else "every selected test passed"
                print(f"{r['id']}: {verdict} in {secs:.0f} s: {detail}", flush=True)
                return (r["id"], verdict, secs, detail)
            finally:
                with lock:
                    spare.append(mine)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results.extend(pool.map(one, rows))  # in the table's order, whatever order they finish in
    finally:
        for c in [copy, *copies]:
            shutil.rmtree(c, ignore_errors=True)
    print("\n| id | mutation | result | caught by / why |\n|---|---|---|---|")
    what = {r["id"]: r["what"] for r in rows}
    for mid, verdict, _, detail in results:
        print(f"| {mid} | {what[mid]} | {verdict} | {detail} |")
    bad = [m for m, v, _, _ in results if v != "CAUGHT"]
    total = sum(s for _, _, s, _ in results)
    print(f"\n{len(results) - len(bad)} of {len(results)} caught in {total:.0f} s of test runs" + (f"; not caught: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
