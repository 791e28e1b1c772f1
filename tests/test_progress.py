"""qhelpers.progress: each self-check appends to a local log (only when asked or in Jupyter), and a table prints it."""

from __future__ import annotations

import json
import os

import pytest


from qhelpers import progress
from qhelpers.checks import CheckResult, _blank_safe, as_number, is_close, report


@_blank_safe
def sample_check(name, answer, expected):
    """A self-check like the course's (blank-safe, one verdict through report): what the progress log records."""
    return report(name, is_close(as_number(answer, name), expected), f"expected {expected:g}")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_nothing_is_logged_under_pytest_even_in_a_jupyter_kernel(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "01_manual_tensor_quantization.ipynb"))
    monkeypatch.setattr(progress, "course_root", lambda required=True: tmp_path)
    assert progress.progress_log_path() is None  # PYTEST_CURRENT_TEST is set while this test runs
    report("scale", True)
    assert not (tmp_path / "progress").exists()


def test_nothing_is_logged_outside_jupyter(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.setattr(progress, "course_root", lambda required=True: tmp_path)
    assert progress.progress_log_path() is None


def test_a_jupyter_kernel_logs_to_the_course_progress_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "/somewhere/student/01_manual_tensor_quantization.ipynb")
    monkeypatch.setenv(progress.LEARNER_ENV, "ada lovelace")
    monkeypatch.setattr(progress, "course_root", lambda required=True: tmp_path)
    sample_check("scale", 1.0, 2.0)
    sample_check("scale", 2.0, 2.0)
    log = tmp_path / "progress" / "ada_lovelace.jsonl"
    entries = _lines(log)
    assert [(e["notebook"], e["check"], e["status"], e["learner"], e["exercise"], e["source"]) for e in entries] == [
        ("01_manual_tensor_quantization", "scale", "wrong", "ada lovelace", "", "unknown"),  # no notebook file to read
        ("01_manual_tensor_quantization", "scale", "correct", "ada lovelace", "", "unknown"),
    ]
    assert all(e["time"].endswith("+00:00") for e in entries)


def test_qhelpers_progress_asks_for_a_log_even_under_pytest(monkeypatch, tmp_path):
    log = tmp_path / "mine.jsonl"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(log))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    sample_check("zero_point", ..., 3)  # a blank answer is logged as not correct
    (e,) = _lines(log)
    assert (e["notebook"], e["check"], e["status"], e["ok"]) == ("(no notebook)", "zero_point", "blank", False)
    folder = tmp_path / "logs"
    folder.mkdir()
    monkeypatch.setenv(progress.PROGRESS_ENV, str(folder))
    monkeypatch.setenv(progress.LEARNER_ENV, "bob")
    report("codes", True)
    assert _lines(folder / "bob.jsonl")[0]["check"] == "codes"


def test_a_log_that_cannot_be_written_never_breaks_a_check(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(progress.PROGRESS_ENV, str(blocker / "sub" / "log.jsonl"))
    result = sample_check("scale", 2.0, 2.0)
    assert result and isinstance(result, CheckResult)
    assert "✅ scale: correct" in capsys.readouterr().out
    assert progress.record("scale", True) is None


def _e(learner, minute, exercise, status, *, source="student", run=None, check="c", notebook="01_x", of=4):
    return {"time": f"2026-11-30T09:{minute:02d}:00+00:00", "learner": learner, "notebook": notebook, "source": source,
            "exercise": exercise, "of": of, "check": check, "status": status, "ok": status == "correct",
            "run": run or f"1:{minute}"}


def test_the_table_counts_exercises_not_checks_and_blanks_are_not_tries():
    entries = [
        _e("ann", 0, "1", "blank"), _e("ann", 1, "1", "wrong"), _e("ann", 5, "1", "correct"),
        # exercise 2 has two checks in one run: correct only when both are
        _e("ann", 7, "2", "correct", check="scale", run="1:7"), _e("ann", 7, "2", "wrong", check="zero_point", run="1:7"),
        _e("ann", 9, "3", "blank"),
    ]
    table = progress.progress_table(entries)
    assert "ann: 1 exercise correct in the student copies" in table
    assert all(line == line.rstrip() for line in table.splitlines())
    rows = {line.split()[1]: line.split() for line in table.splitlines() if line.startswith("01_x")}
    assert rows["1"] == ["01_x", "1", "student", "correct", "2", "09:05"]  # the blank run is not a try
    assert rows["2"] == ["01_x", "2", "student", "wrong", "1", "-"]
    assert rows["3"] == ["01_x", "3", "student", "blank", "0", "-"]
    summary = table.split("\n\n")[0].splitlines()
    assert next(line for line in summary if line.startswith("ann")).split() == ["ann", "1/4"]  # of the notebook's 4
    # A later wrong run is the latest status (the learner changed a right answer).
    later = entries + [_e("ann", 11, "1", "wrong")]
    assert "ann: 0 exercises correct" in progress.progress_table(later)


def test_the_solution_notebook_never_counts_as_correct():
    entries = [_e("sol", m, str(m), "correct", source="solution") for m in (1, 2, 3, 4)]
    entries += [_e("mixed", 1, "1", "correct"), _e("mixed", 2, "2", "correct", source="solution")]
    table = progress.progress_table(entries)
    summary = {line.split()[0]: line.split()[1:] for line in table.split("\n\n")[0].splitlines()[3:]}
    assert summary == {"sol": ["0/4", "S"], "mixed": ["1/4", "S"]}
    assert "sol: 0 exercises correct in the student copies" in table
    assert any(line.split()[:4] == ["01_x", "1", "solution", "correct"] for line in table.splitlines())


def test_old_log_lines_are_read_as_checks_outside_exercises(tmp_path):
    old = {"time": "2026-11-30T09:00:00+00:00", "learner": "ann", "notebook": "01_x", "exercise": "scale", "ok": True}
    (tmp_path / "ann.jsonl").write_text(json.dumps(old) + "\n")
    (e,), bad = progress.read_progress([tmp_path])
    assert bad == 0 and (e["check"], e["exercise"], e["status"], e["source"]) == ("scale", "", "correct", "unknown")
    assert "ann: 0 exercises correct" in progress.progress_table([e])
    assert "checks outside the exercises (latest): 01_x scale correct" in progress.progress_table([e])


def _cells(*specs):
    """Notebook cells: ("ex", source) an exercise cell, ("code", source), ("md", source); ids c0, c1, ..."""
    kinds = {"ex": ("code", ["exercise"]), "code": ("code", []), "md": ("markdown", [])}
    return [{"id": f"c{i}", "cell_type": kinds[k][0], "metadata": {"tags": kinds[k][1]} if kinds[k][1] else {}, "source": src}
            for i, (k, src) in enumerate(specs)]


def test_the_running_cell_names_its_exercise_and_the_copy():
    student = _cells(("code", "import qhelpers as qh"), ("md", "**Exercise 1.**"), ("ex", "a = ...  # your code here"),
                     ("code", "qh.check_a(a)"), ("ex", "b = ...\nqh.check_b(b)"), ("code", "print(1)"))
    assert progress.exercise_of_cell(student, "c3", None) == ("1", 2, "student")  # the cell after the exercise
    assert progress.exercise_of_cell(student, "c4", None) == ("2", 2, "student")  # a check inside the exercise cell
    assert progress.exercise_of_cell(student, "c0", None) == ("", 2, "student")  # outside the exercises
    assert progress.exercise_of_cell(student, "vscode-cell-uri", "qh.check_a(a)\n") == ("1", 2, "student")  # by code
    assert progress.exercise_of_cell(student, None, "something typed later") == ("", 2, "unknown")
    solution = _cells(("ex", "# BEGIN SOLUTION\na = 1\n# END SOLUTION"), ("code", "qh.check_a(a)"))
    assert progress.exercise_of_cell(solution, "c1", None) == ("1", 1, "solution")


def test_a_kernel_records_the_exercise_status_and_copy(monkeypatch, tmp_path):
    """record() in a (simulated) JupyterLab kernel: the cell id JupyterLab sends, the notebook file it was started for."""
    nb = tmp_path / "student" / "01_x.ipynb"
    nb.parent.mkdir()
    nb.write_text(json.dumps({"cells": _cells(("ex", "a = ..."), ("code", "qh.check_a(a)")), "nbformat": 4}))
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    monkeypatch.setenv(progress.LEARNER_ENV, "ann")
    monkeypatch.setattr(progress, "course_root", lambda required=True: tmp_path)
    runs = iter(["1:1", "1:2", "1:3"])
    monkeypatch.setattr(progress, "_running_cell", lambda: ("c1", None, next(runs)))
    sample_check("a", ..., 2.0)
    sample_check("a", 1.0, 2.0)
    sample_check("a", 2.0, 2.0)
    entries = _lines(tmp_path / "progress" / "ann.jsonl")
    assert [(e["notebook"], e["exercise"], e["of"], e["source"], e["status"]) for e in entries] == [
        ("01_x", "1", 1, "student", s) for s in ("blank", "wrong", "correct")
    ]
    assert "ann: 1 exercise correct" in progress.progress_table(entries)


def test_a_vs_code_kernel_logs_too(monkeypatch, tmp_path):
    """VS Code starts no Jupyter server (no JPY_SESSION_NAME); it puts the notebook's path in __vsc_ipynb_file__."""

    class Shell:
        user_ns = {"__vsc_ipynb_file__": str(tmp_path / "student" / "02_y.ipynb")}

    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setenv(progress.LEARNER_ENV, "bo")
    monkeypatch.setattr(progress, "_shell", lambda: Shell())
    monkeypatch.setattr(progress, "course_root", lambda required=True: tmp_path)
    assert progress.progress_log_path() == tmp_path / "progress" / "bo.jsonl"
    assert progress._notebook_name() == "02_y"
    monkeypatch.setattr(progress, "_shell", lambda: None)
    assert progress.progress_log_path() is None


def test_a_teacher_reads_a_folder_of_collected_logs(tmp_path, capsys):
    for learner, statuses in {"ann": ["correct", "correct"], "bob": ["wrong"]}.items():
        lines = [json.dumps(_e(learner, i, str(i + 1), st, notebook="00_start_here")) for i, st in enumerate(statuses)]
        (tmp_path / f"{learner}.jsonl").write_text("\n".join(lines + ["{not json"]) + "\n")
    assert progress.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Exercises correct in the student copy / exercises in the notebook")
    summary = out.split("\n\n")[0].splitlines()
    assert next(line for line in summary if line.startswith("ann")).split() == ["ann", "2/4"]
    assert next(line for line in summary if line.startswith("bob")).split() == ["bob", "0/4"]
    assert "bob: 0 exercises correct" in out and "(2 unreadable lines skipped)" in out


def test_the_command_without_logs_and_with_a_bad_path(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(progress, "course_root", lambda required=True: tmp_path)
    assert progress.main([]) == 0
    assert "no progress log" in capsys.readouterr().out
    assert progress.main([str(tmp_path / "missing.jsonl")]) == 2
    assert "neither a .jsonl file nor a folder" in capsys.readouterr().err
    assert progress.progress_table([]).startswith("no self-check results yet")


def test_check_result_is_a_bool_that_notebooks_do_not_echo():
    yes, no = CheckResult(True, "a"), CheckResult(False, "b", "hint")
    assert yes and not no and yes == True and no == False  # noqa: E712 (comparing with bools on purpose)
    assert yes._ipython_display_() is None
    assert yes.line == "✅ a: correct" and no.line == "❌ b: not yet: hint"
    assert CheckResult(False, "c", "not filled in yet: replace ...").line == "❌ c: not filled in yet: replace ..."
    html = no._repr_html_line()
    assert "not yet" in html and "#c62828" in html and "hint" in html
    assert "correct" in yes._repr_html_line() and "#1a7f37" in yes._repr_html_line()


# --------------------------------------------------------------------------- simulated learners, real kernels
def _run_like_jupyterlab(nb_path, steps, env, timeout_s=300):
    """Run ``steps`` (``(cell, code)`` pairs) in one kernel started as JupyterLab starts it for ``nb_path``.

    Like JupyterLab: the kernel's environment has ``JPY_SESSION_NAME`` (the notebook's path), its working
    folder is the notebook's, and each execute request carries the cell's metadata and ``cellId``
    (jupyterlab's CodeCell.execute; nbclient sends none). Errors do not stop the run.
    """
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**env, "JPY_SESSION_NAME": str(nb_path)}, cwd=str(nb_path.parent))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        for cell, code in steps:
            content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}
            msg = kc.session.msg("execute_request", content)
            msg["metadata"] = {**cell.get("metadata", {}), "cellId": cell["id"]}
            kc.shell_channel.send(msg)
            while True:
                reply = kc.get_shell_msg(timeout=timeout_s)
                if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                    break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _solution(source: str) -> str:
    return source.split("# BEGIN SOLUTION\n", 1)[1].split("# END SOLUTION", 1)[0]


@pytest.mark.slow
def test_simulated_learners_in_notebook_00(tmp_path, capsys):
    """Four learners in JupyterLab: one runs the student copy with every blank left, one fills every exercise, one
    gets exercise 1 wrong then right, one runs the solution notebook. The teacher's table tells them apart.

    Notebook 00's stories are scored on the first complete answer (``check_recommendation``; the right reading after
    the hint is said right but not scored), so the learner who fixed exercise 1 has 3/4 and two tries on it."""
    from pathlib import Path

    import nbformat

    repo = Path(__file__).resolve().parents[1]
    student_nb, solution_nb = repo / "student" / "00_start_here.ipynb", repo / "notebooks" / "00_start_here.ipynb"
    student = nbformat.read(student_nb, as_version=4).cells
    solutions = {c.id: _solution(c.source) for c in nbformat.read(solution_nb, as_version=4).cells if "# BEGIN SOLUTION" in c.source}
    code = [c for c in student if c.cell_type == "code"]
    is_ex = lambda c: "exercise" in c.metadata.get("tags", [])  # noqa: E731
    assert sum(map(is_ex, code)) == 4 and set(solutions) == {c.id for c in code if is_ex(c)}
    logs = tmp_path / "collected"
    logs.mkdir()
    base = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    base.update(QHELPERS_PROGRESS=str(logs) + os.sep, PYTHONPATH=str(repo), QHELPERS_FAST="1")

    def env(name):
        return {**base, "QHELPERS_LEARNER": name}

    filled = [(c, solutions[c.id] if is_ex(c) else c.source) for c in code]
    ex1 = next(c for c in code if is_ex(c))
    i1 = code.index(ex1)
    wrong1 = solutions[ex1.id].replace("has_calibration_data=True", "has_calibration_data=False")
    assert wrong1 != solutions[ex1.id]
    fixer = filled[:i1] + [(ex1, wrong1), filled[i1 + 1], (ex1, solutions[ex1.id]), filled[i1 + 1]] + filled[i1 + 2 :]

    _run_like_jupyterlab(student_nb, [(c, c.source) for c in code], env("blank"))
    _run_like_jupyterlab(student_nb, filled, env("solver"))  # edits not saved: the file on disk still has the blanks
    _run_like_jupyterlab(student_nb, fixer, env("fixer"))
    solution_cells = [c for c in nbformat.read(solution_nb, as_version=4).cells if c.cell_type == "code"]
    _run_like_jupyterlab(solution_nb, [(c, c.source) for c in solution_cells], env("runall"))

    from qhelpers import progress

    assert progress.main([str(logs)]) == 0
    table = capsys.readouterr().out
    summary = {line.split()[0]: line.split()[1:] for line in table.split("\n\n")[0].splitlines()[3:]}
    assert summary == {"blank": ["0/4"], "fixer": ["3/4"], "runall": ["0/4", "S"], "solver": ["4/4"]}, table
    entries, bad = progress.read_progress([logs])
    states = progress.exercise_states(entries)
    assert bad == 0
    assert {k[3]: (v["status"], v["tries"]) for k, v in states.items() if k[0] == "blank"} == {str(i): ("blank", 0) for i in (1, 2, 3, 4)}
    fixed = states[("fixer", "00_start_here", "student", "1")]
    assert (fixed["status"], fixed["tries"]) == ("wrong", 2), fixed
    assert {k[2] for k in states if k[0] == "runall"} == {"solution"}
    (tmp_path / "table.txt").write_text(table)


def _hub(tmp_path):
    """A classroom server's folder (hub/classroom.py's layout), fabricated: four learners, one log each or none."""
    learners = tmp_path / "hub" / progress.HUB_LEARNERS
    for name in ("ann", "bob", "cy", "dee"):
        (learners / name / "student").mkdir(parents=True)
    for name in ("ann", "bob", "cy"):
        (learners / name / progress.PROGRESS_DIR).mkdir()
    ann = [_e("ann", 1, "1", "correct", notebook="01_manual_tensor_quantization"), _e("ann", 2, "2", "wrong", notebook="01_manual_tensor_quantization")]
    bob = [_e("bob", 3, "1", "wrong", notebook="01_manual_tensor_quantization"), _e("ann", 4, "2", "correct", notebook="01_manual_tensor_quantization")]
    (learners / "ann" / "progress" / "ann.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ann))
    # bob's log: one malformed line (a kernel killed mid-write), and a line claiming to be ann's
    (learners / "bob" / "progress" / "bob.jsonl").write_text(json.dumps(bob[0]) + "\n" + '{"time": "2026-11-30T09:0' + "\n" + json.dumps(bob[1]) + "\n")
    return tmp_path / "hub"  # cy: an empty progress/ folder; dee: none (signed in, never ran a check)


def test_the_teacher_reads_every_learners_log_on_a_classroom_server(tmp_path, capsys):
    hub = _hub(tmp_path)
    entries, learners, notes = progress.read_hub(hub)
    assert learners == ["ann", "bob", "cy", "dee"]
    assert {e["learner"] for e in entries} == {"ann", "bob"}  # the folder names the learner, not the line
    assert progress.main(["--hub", str(hub)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"4 learners on the classroom server {hub}, at ")
    summary = out.split("\n\n")[0].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in summary[4:]}
    assert rows == {"ann": ["1/4"], "bob": ["1/4"], "cy": ["-"], "dee": ["-"]}
    assert "bob: 1 exercise correct in the student copies" in out
    assert "cy: no self-check yet" in out and "dee: no self-check yet" in out
    assert "cy: signed in, no self-check yet" in out and "dee: signed in, no self-check yet" in out
    assert f"bob: 1 unreadable line in {hub / 'learners' / 'bob' / 'progress'} skipped" in out


def test_the_hub_view_with_no_checks_yet_a_wrong_folder_and_the_cli(tmp_path, capsys):
    hub = tmp_path / "hub"
    (hub / progress.HUB_LEARNERS / "ann").mkdir(parents=True)
    assert progress.main(["--hub", str(hub)]) == 0
    out = capsys.readouterr().out
    assert "no self-check results yet (1 learner signed in: ann)" in out
    assert progress.main(["--hub", str(tmp_path)]) == 2
    assert "has no learners/ folder (the classroom server's folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        progress.main(["--watch", "5"])
    assert "--watch goes with --hub" in capsys.readouterr().err
    from qhelpers import cli

    assert cli.main(["progress", "--hub", str(_hub(tmp_path / "other"))]) == 0
    assert "4 learners on the classroom server" in capsys.readouterr().out


def test_the_hub_view_says_which_log_it_cannot_read(tmp_path, capsys, monkeypatch):
    hub = _hub(tmp_path)

    def denied(paths):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(progress, "read_progress", denied)
    entries, learners, notes = progress.read_hub(hub)
    assert entries == [] and len(learners) == 4
    assert f"ann: cannot read {hub / 'learners' / 'ann' / 'progress'} (Permission denied): run this as root on the server" in notes
