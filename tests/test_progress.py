"""qhelpers.progress: each self-check appends to a local log (only when asked or in Jupyter), and a table prints it."""

from __future__ import annotations

import json


import qhelpers as qh
from qhelpers import progress
from qhelpers.checks import CheckResult, report


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
    qh.check_close("scale", 1.0, 2.0)
    qh.check_close("scale", 2.0, 2.0)
    log = tmp_path / "progress" / "ada_lovelace.jsonl"
    entries = _lines(log)
    assert [(e["notebook"], e["exercise"], e["ok"], e["learner"]) for e in entries] == [
        ("01_manual_tensor_quantization", "scale", False, "ada lovelace"),
        ("01_manual_tensor_quantization", "scale", True, "ada lovelace"),
    ]
    assert all(e["time"].endswith("+00:00") for e in entries)


def test_qhelpers_progress_asks_for_a_log_even_under_pytest(monkeypatch, tmp_path):
    log = tmp_path / "mine.jsonl"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(log))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    qh.check_close("zero_point", ..., 3)  # a blank answer is logged as not correct
    (e,) = _lines(log)
    assert (e["notebook"], e["exercise"], e["ok"]) == ("(no notebook)", "zero_point", False)
    folder = tmp_path / "logs"
    folder.mkdir()
    monkeypatch.setenv(progress.PROGRESS_ENV, str(folder))
    monkeypatch.setenv(progress.LEARNER_ENV, "bob")
    report("codes", True)
    assert _lines(folder / "bob.jsonl")[0]["exercise"] == "codes"


def test_a_log_that_cannot_be_written_never_breaks_a_check(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(progress.PROGRESS_ENV, str(blocker / "sub" / "log.jsonl"))
    result = qh.check_close("scale", 2.0, 2.0)
    assert result and isinstance(result, CheckResult)
    assert "✅ scale: correct" in capsys.readouterr().out
    assert progress.record("scale", True) is None


def test_the_table_shows_latest_result_tries_and_first_correct_time():
    entries = [
        {"time": "2026-11-30T09:00:00+00:00", "learner": "ann", "notebook": "01_x", "exercise": "scale", "ok": False},
        {"time": "2026-11-30T09:05:00+00:00", "learner": "ann", "notebook": "01_x", "exercise": "scale", "ok": True},
        {"time": "2026-11-30T09:07:00+00:00", "learner": "ann", "notebook": "01_x", "exercise": "codes", "ok": False},
    ]
    table = progress.progress_table(entries)
    assert "ann: 1 of 2 checks correct" in table
    assert all(line == line.rstrip() for line in table.splitlines())
    scale_row = next(line for line in table.splitlines() if " scale " in f" {line} ")
    assert scale_row.split() == ["01_x", "scale", "correct", "2", "09:05"]
    codes_row = next(line for line in table.splitlines() if "codes" in line)
    assert codes_row.split() == ["01_x", "codes", "not", "yet", "1", "-"]
    assert "per notebook" not in table  # one learner: no summary
    # A later wrong try is the latest result (the learner changed a right answer).
    later = entries + [{"time": "2026-11-30T09:09:00+00:00", "learner": "ann", "notebook": "01_x", "exercise": "scale", "ok": False}]
    assert "ann: 0 of 2 checks correct" in progress.progress_table(later)


def test_a_teacher_reads_a_folder_of_collected_logs(tmp_path, capsys):
    for learner, oks in {"ann": [True, True], "bob": [False]}.items():
        lines = [
            json.dumps({"time": f"2026-11-30T10:0{i}:00+00:00", "learner": learner, "notebook": "00_start_here", "exercise": f"ex{i}", "ok": ok})
            for i, ok in enumerate(oks)
        ]
        (tmp_path / f"{learner}.jsonl").write_text("\n".join(lines + ["{not json"]) + "\n")
    assert progress.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "per notebook" in out
    summary = out.split("\n\n")[0].splitlines()
    assert next(line for line in summary if line.startswith("ann")).split() == ["ann", "2/2"]
    assert next(line for line in summary if line.startswith("bob")).split() == ["bob", "0/1"]
    assert "bob: 0 of 1 checks correct" in out and "(2 unreadable lines skipped)" in out


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
