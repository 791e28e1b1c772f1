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

from qhelpers.files import course_root
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
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(course_root() / "tests"), str(course_root())]))
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


@pytest.mark.slow
def test_an_answer_printed_above_its_exercise_fails(tmp_path):
    """A number, a word and a range printed above their exercises pass the checks: each is named; values printed
    elsewhere, and answers that are not printed, pass."""
    code = nbformat.v4.new_code_cell
    shown = "the layer has 41,968 weights; engine qnnpack; accuracy 98.8 %"
    printing = code(f"print({shown!r})")
    printing.outputs = [nbformat.v4.new_output("stream", name="stdout", text=shown + "\n")]  # committed, as nbval reads them
    out = _run(tmp_path, [
        printing,
        _exercise("n = 41968"), code("check(n=(n, 41968))"),                                   # cells 2, 3: printed above
        _exercise("engine = 'qnnpack'"), code("check(engine=(engine, 'qnnpack'))"),            # 4, 5: a word printed above
        _exercise("low = 98.0\nhigh = 99.5"), code("report('prediction', not not_filled(low, high) and low <= 98.8 <= high)"),  # 6, 7: the measurement printed above
        _exercise("m = 7"), code("check(m=(m, 7))"),                                            # 8, 9: 7 is not printed above
    ], "--answers-above=on")
    assert "3 failed, 7 passed" in out, out[-3000:]
    assert "Cell 3: exercise 1: values printed above it pass its check (the answer can be copied): n = 41968" in out
    assert "Cell 5: exercise 2: values printed above it pass its check (the answer can be copied): engine = qnnpack" in out
    assert "Cell 7: exercise 3: values printed above it pass its check (the answer can be copied): low, high = 98.8" in out


def test_printed_candidates_nearest_cell_first():
    from student_flow import printed_candidates

    out = lambda text: {"output_type": "stream", "name": "stdout", "text": text}  # noqa: E731
    cells = [
        {"cell_type": "code", "outputs": [out("scale 0.0123, zero point 115; total 1,234 (x86)\n")]},
        {"cell_type": "markdown", "source": "42 is not printed"},
        {"cell_type": "code", "outputs": [{"output_type": "execute_result", "data": {"text/plain": "tensor([-3.5e-02, 7])"}}]},
        {"cell_type": "code", "outputs": [out("after the exercise: 99")]},
    ]
    numbers, words = printed_candidates(cells, 3)
    assert numbers == ["-3.5e-02", "7", "0.0123", "115", "1234"]
    assert words[:1] == ["tensor"] and {"scale", "zero", "point", "total", "x86"} <= set(words) and "99" not in numbers


def test_answer_names_are_the_solution_names_the_check_reads():
    from student_flow import answer_names

    exercise = "x = 1\n# BEGIN SOLUTION\nr1 = w1.abs()\nmy_scales = r1.sqrt()\nlow, high = 1, 2\n# END SOLUTION"
    assert answer_names(exercise, "# NBVAL_CHECK_OUTPUT\nqh.check(my_scales, w1)\nqh.check_range(low, high)") == ["my_scales", "low", "high"]
    assert answer_names("# BEGIN SOLUTION\nx = (\n# END SOLUTION", "check(x)") == []


def test_only_the_check_calls_are_submitted_again():
    from student_flow import check_statements

    cell = "# NBVAL_IGNORE_OUTPUT\n# (timing)\nacc = qh.accuracy(model, loader)\nprint(acc)\nqh.check_int8_accuracy_prediction(p, 98.8, acc)\n"
    assert check_statements(cell) == "qh.check_int8_accuracy_prediction(p, 98.8, acc)"
    assert check_statements("ok = check(x=(x, 1)) and True\nprint(ok)") == "ok = check(x=(x, 1)) and True\nprint(ok)"  # no check_ call


def test_a_check_inside_an_if_keeps_its_if_and_drops_a_measurement_that_does_not_read_the_answer():
    """Notebook 03's exercise 4: the PTQ run that the range is judged against is made once, not once per candidate;
    a statement of the branch that reads an answer name is run again with each candidate."""
    from student_flow import check_statements

    cell = ("name = 'sqnr'\nif qh.prediction_ready(name, low, high):\n    m = qh.post_training_quantize(f, data)\n"
            "    s = qh.sqnr_db(f(x), m(x))\n    w = high - low\n    qh.check_prediction(name, low, high, s)\n    print(s)\n"
            "else:\n    print('not yet')\nprint('done')")
    assert check_statements(cell, ("low", "high")) == (
        "if qh.prediction_ready(name, low, high):\n    w = high - low\n    qh.check_prediction(name, low, high, s)")
    assert check_statements("if ok:\n    if ready(p):\n        qh.check_x(p, s)\n        t = 1\nprint(p)", ("p",)) == (
        "if ok:\n    if ready(p):\n        qh.check_x(p, s)")
