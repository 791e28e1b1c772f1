"""The student-flow plugin (tests/student_flow.py) fails when an exercise's blank or answer is wrong.

A small notebook runs under nbval with the plugin, as ``make test-cpus`` runs the course (``--nbval-lax``:
outputs are not compared, so the plugin is the only guard). Its checks report through
``qhelpers.checks.report``, as the course's do, and the plugin reads their ``CheckResult``s in the kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

from qhelpers.data import repo_dir
from student_flow import VERDICTS, _listed

SETUP = '''\
from qhelpers.checks import NOT_FILLED_DETAIL, not_filled, report

def check(**parts):
    """One verdict per part: (value, expected); a blank part says "not filled in yet"."""
    for name, (value, expected) in parts.items():
        if not_filled(value):
            report(name, False, NOT_FILLED_DETAIL)
        else:
            report(name, value == expected, "look again")
'''


def _exercise(solution: str, rest: str = ""):
    cell = nbformat.v4.new_code_cell(f"# BEGIN SOLUTION\n{solution}\n# END SOLUTION{rest}")
    cell.metadata["tags"] = ["exercise"]
    return cell


def _run(tmp_path, cells, *flags):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP), *cells])
    for i, cell in enumerate(nb.cells):
        cell.execution_count = i + 1
    path = tmp_path / "exercises.ipynb"
    nbformat.write(nb, path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo_dir() / "tests"), str(repo_dir())]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "student_flow", "--rootdir", str(tmp_path),
         "--nbval-lax", "--nbval-current-env", *flags, str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    return run.stdout + run.stderr


@pytest.mark.slow
def test_the_student_flow_fails_each_wrong_blank_and_each_wrong_answer(tmp_path):
    """A good exercise passes; a blank that passes its check, a blank that raises, an answer with one part
    still blank, and an answer whose failing part is named "bias correction" each fail, named by cell."""
    code = nbformat.v4.new_code_cell
    out = _run(tmp_path, [
        _exercise("x = 1"), code("check(x=(x, 1))"),                            # cells 1, 2: right
        _exercise("y = 1"), code("report('y', True)"),                          # 3, 4: "correct" to the blank
        _exercise("z = 1", "\nw = z + 1"), code("check(w=(w, 2))"),             # 5, 6: the blank raises
        _exercise("a = 1\nb = ..."), code("check(a=(a, 1), b=(b, 2))"),         # 7, 8: the answer leaves b blank
        _exercise("bc = None"), code("check(**{'bias correction': (bc, 1)})"),  # 9, 10: "❌ bias correction: not filled in yet"
    ])
    assert "4 failed, 7 passed" in out, out[-3000:]
    assert "Cell 3: a blank must be flagged, got ✅ y" in out
    assert "Cell 5: the blank exercise (student copy) raised TypeError" in out
    assert "Cell 8: after the answer every part of the check must pass, got ✅ a; ❌ b: not filled in yet" in out
    assert "Cell 10: after the answer every part of the check must pass, got ❌ bias correction: not filled in yet" in out


@pytest.mark.slow
def test_a_check_that_gives_no_verdict_fails(tmp_path):
    """A check cell that only prints (no ``report``) is not a self-check: its blank and its answer both fail."""
    out = _run(tmp_path, [_exercise("x = 1"), nbformat.v4.new_code_cell("print('✅ x: correct')")])
    assert "1 failed, 2 passed" in out or "2 failed, 1 passed" in out, out[-3000:]
    assert "the check after the blank gave no verdict" in out


def test_the_verdicts_are_read_and_cleared_in_the_kernel(capsys):
    """The snippet the plugin runs in the kernel, run here: it prints the verdicts since the last call, then forgets them."""
    from qhelpers.checks import RESULTS, report

    RESULTS.clear()
    report("a", True)
    report("bias correction", False, "correct it")
    capsys.readouterr()
    exec(VERDICTS, {})
    printed = capsys.readouterr().out
    assert printed.startswith("QH_VERDICTS") and '["a", true, ""]' in printed and '["bias correction", false, "correct it"]' in printed
    assert RESULTS == []
    assert _listed([("a", True, ""), ("bias correction", False, "correct it")]) == "✅ a; ❌ bias correction: correct it"


def test_report_keeps_its_last_hundred_results():
    from qhelpers.checks import RESULTS, report

    RESULTS.clear()
    for i in range(120):
        report(f"r{i}", i % 2 == 0)
    assert len(RESULTS) == 100 and RESULTS[0].name == "r20" and RESULTS[-1].name == "r119" and RESULTS[-1].ok is False
    RESULTS.clear()
