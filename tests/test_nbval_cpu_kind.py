"""The CPU-kind plugin (tests/nbval_cpu_kind.py): strict nbval compares outputs on the CPU kind that printed them,
and only there.

A one-cell notebook whose committed output is wrong runs under strict nbval twice: recorded on this machine's kind,
the wrong output fails; recorded on another kind, the cell runs with its assert only and the run says why. A
failing assert fails on either kind.
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

from qhelpers.cpu import outputs_kind
from qhelpers.files import course_root


def _run(tmp_path, recorded, source="print(1 + 1)", committed="3\n"):
    cell = nbformat.v4.new_code_cell(source, execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text=committed)])
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["qhelpers"] = {"outputs_recorded_on": recorded}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(course_root() / "tests"), str(course_root())]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "nbval_cpu_kind", "--rootdir", str(tmp_path),
         "--nbval", "--nbval-current-env", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    return run.stdout + run.stderr


OTHER = {"machine": "x86_64", "isa": "AVX512-of-another-machine", "engines": ["qnnpack"], "saturating_engines": []}


@pytest.mark.slow
def test_outputs_are_compared_on_the_kind_that_printed_them(tmp_path):
    out = _run(tmp_path, outputs_kind())
    assert "1 failed" in out and "Cell outputs differ" in out, out[-2000:]
    assert "asserts only" not in out


@pytest.mark.slow
def test_on_another_kind_the_cell_runs_with_its_asserts_only_and_says_so(tmp_path):
    out = _run(tmp_path, OTHER)
    assert "1 passed" in out, out[-2000:]
    assert "nb.ipynb: outputs recorded on another CPU kind (" in out
    assert "isa AVX512-of-another-machine there" in out and "asserts only, outputs not compared" in out


@pytest.mark.slow
def test_on_another_kind_a_failing_assert_still_fails(tmp_path):
    out = _run(tmp_path, OTHER, source="assert 1 + 1 == 3", committed="")
    assert "1 failed" in out and "AssertionError" in out, out[-2000:]
