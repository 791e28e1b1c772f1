"""The CPU-kind plugin (tests/nbval_cpu_kind.py): strict nbval compares outputs on the CPU kind that printed them,
and only there.

One strict nbval run over two small notebooks whose committed outputs are wrong: one recorded on this machine's
kind (its wrong output fails), one recorded on another kind (its wrong output is not compared, the run says why, and
its failing assert still fails).
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

from qhelpers.cpu import outputs_kind
from qhelpers.files import course_root

OTHER = {"machine": "x86_64", "isa": "AVX512-of-another-machine", "engines": ["qnnpack"], "saturating_engines": []}


def _notebook(path, recorded, *cells):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(source, execution_count=i + 1,
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text=committed)] if committed else [])
        for i, (source, committed) in enumerate(cells)
    ])
    nb.metadata["qhelpers"] = {"outputs_recorded_on": recorded}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_outputs_are_compared_only_on_the_kind_that_printed_them(tmp_path):
    _notebook(tmp_path / "same_kind.ipynb", outputs_kind(), ("print(1 + 1)", "3\n"))
    _notebook(tmp_path / "other_kind.ipynb", OTHER, ("print(1 + 1)", "3\n"), ("assert 1 + 1 == 3", ""))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(course_root() / "tests"), str(course_root())]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-p", "nbval_cpu_kind", "--rootdir", str(tmp_path),
         "--nbval", "--nbval-current-env", str(tmp_path / "same_kind.ipynb"), str(tmp_path / "other_kind.ipynb")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    out = run.stdout + run.stderr
    assert "2 failed, 1 passed" in out, out[-3000:]
    assert "FAILED same_kind.ipynb::Cell 0" in out and "Cell outputs differ" in out  # same kind: a wrong output fails
    assert "FAILED other_kind.ipynb::Cell 1" in out and "AssertionError" in out      # another kind: a failing assert fails
    assert "other_kind.ipynb: outputs recorded on another CPU kind (" in out           # and its wrong output passes, said
    assert "isa AVX512-of-another-machine there" in out and "asserts only, outputs not compared" in out
    assert "same_kind.ipynb: outputs recorded" not in out
