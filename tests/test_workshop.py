"""docs/WORKSHOP.md: the day plans add up, and the teacher's kit it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEXT = (REPO / "docs" / "WORKSHOP.md").read_text()
SLOT = re.compile(r"^\| (\d\d):(\d\d)-(\d\d):(\d\d) \| (\d+) \|", re.MULTILINE)


def _section(heading: str) -> str:
    start = TEXT.index(heading)
    end = TEXT.find("\n### ", start + 1)
    return TEXT[start:end if end != -1 else None]


@pytest.mark.parametrize("heading, start, end, total", [
    ("### A full day (09:00-17:00, 480 min)", "09:00", "17:00", 480),
    ("### A half day (09:00-12:30, 210 min)", "09:00", "12:30", 210),
])
def test_each_plan_is_contiguous_and_its_minutes_add_up(heading, start, end, total):
    slots = SLOT.findall(_section(heading))
    assert slots, heading
    minutes = 0
    clock = start
    for h0, m0, h1, m1, mins in slots:
        assert f"{h0}:{m0}" == clock, f"gap or overlap before {h0}:{m0}"
        length = (int(h1) * 60 + int(m1)) - (int(h0) * 60 + int(m0))
        assert length == int(mins), f"{h0}:{m0}-{h1}:{m1} is {length} min, the table says {mins}"
        minutes += length
        clock = f"{h1}:{m1}"
    assert clock == end and minutes == total
    assert f"**{total} min**" in _section(heading)


def test_the_full_day_has_every_notebook_triage_open_exercises_and_an_exit_quiz():
    day = _section("### A full day")
    for needed in ("00 ·", "01 ·", "02 ·", "03 ·", "04 ·", "05 ·", "install triage", "Open exercises", "Exit quiz"):
        assert needed in day, needed
    sessions = dict(re.findall(r"^\| (0\d) · [^|]+\|[^|]+\|[^|]+\| (\d+) min \|", TEXT, re.MULTILINE))
    assert sum(map(int, sessions.values())) == 300
    teaching = sum(int(m) for *_, m in SLOT.findall(day)) - 30 - 30 - 20 - 40 - 60
    assert teaching == 300


def test_optional_tracks_and_triage_rows():
    tracks = _section("### Optional tracks")
    for nb in ("06 ·", "07 ·", "08 ·", "09 ·"):
        assert nb in tracks
    assert all(30 <= int(m) <= 45 for m in re.findall(r"^\| 0[6789] ·[^|]+\| (\d+) \|", tracks, re.MULTILINE))
    triage = _section("### Laptop triage")
    for case in ("Windows", "Apple Silicon", "AVX2", "VNNI", "Python version", "proxy", "CERTIFICATE_VERIFY_FAILED", "disk", "admin"):
        assert case in triage, case
    assert "03" in _section("## Fast mode") if "## Fast mode" in TEXT else False


def test_the_kit_it_names_exists():
    for path in ("docs/ANSWERS.md", "qhelpers/doctor.py", "qhelpers/progress.py", "scripts/lab_settings.py", "scripts/build_html.py"):
        assert (REPO / path).is_file(), path


def test_every_triage_reference_of_the_doctor_names_a_row():
    """Each ``triage: NAME`` in the doctor's (and the CPU probes') fix lines is a row of the table starting ``**NAME**``."""
    triage = _section("### Laptop triage")
    rows = re.findall(r"^\| \*\*([^*]+)\*\*", triage, re.MULTILINE)
    refs = set()
    for path in (REPO / "qhelpers").glob("*.py"):
        refs |= set(re.findall(r"triage: ([^)\"]+?)(?:\)|\")", path.read_text()))
    assert refs, "no triage references found"
    assert not refs - set(rows), f"fix lines name triage rows that do not exist: {sorted(refs - set(rows))}"
    for row in ("No module named 'qhelpers'", "no venv module", "Ubuntu 24.04: no Python 3.11", "macOS: system Python 3.9",
                "PowerShell execution policy", "OneDrive or a deep path", "antivirus", "no internet"):
        assert row in rows, row


def test_the_day_before_has_the_pre_install_message_and_the_fall_behind_rule():
    before = TEXT[TEXT.index("## The day before"):TEXT.index("## On the morning")]
    for needed in ("How learners get the course", "student/", "One wheelhouse per OS", "build/html/", "cold compiler cache",
                   "TORCHINDUCTOR_CACHE_DIR", "fall-behind rule", "docs/ANSWERS.md"):
        assert needed in before, needed
    message = _section("### The pre-install message")
    for needed in ("macOS 14", "Intel Macs", "Windows on ARM", "12 GB", "C++ compiler", "xcode-select --install",
                   "Desktop development with C++", "g++", "OneDrive", "WHOLE output"):
        assert needed in message, needed
    # the doctor runs with the course's venv, never a bare `python` (the system one has no qhelpers)
    assert ".venv/bin/python -m qhelpers.doctor" in message and ".venv\\Scripts\\python -m qhelpers.doctor" in message
    assert not re.search(r"^\s*python -m qhelpers\.doctor", message, re.MULTILINE)


def test_every_notebook_has_a_timing_line_and_00_to_05_add_up_to_their_slot():
    """Each notebook's section has a **Timing.** line; for 00-05 (measured with scripts/section_times.py) the minutes
    per section add up to the notebook's slot in the full day."""
    slots = {nb: int(m) for nb, m in re.findall(r"^\| (0\d) · [^|]+\|[^|]+\|[^|]+\| (\d+) min \|", TEXT, re.MULTILINE)}
    for nb in ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09"):
        start = TEXT.index(f"\n### {nb} · ")
        section = TEXT[start:TEXT.index("\n### ", start + 1)]
        timing = re.search(r"^\*\*Timing\.\*\* (.+)$", section, re.MULTILINE)
        assert timing, f"notebook {nb} has no timing line"
        if nb in slots:
            parts = [int(m) for m in re.findall(r"(\d+) min (?!\()", timing.group(1).split(":", 1)[1])]
            assert sum(parts) == slots[nb], (nb, parts, slots[nb])
    assert "scripts/section_times.py" in TEXT and (REPO / "scripts" / "section_times.py").is_file()


def test_the_exit_quiz_has_ten_questions_and_a_key():
    quiz = TEXT[TEXT.index("## Exit quiz"):TEXT.index("### Key (for the teacher)")]
    key = TEXT[TEXT.index("### Key (for the teacher)"):TEXT.index("\n## ", TEXT.index("### Key (for the teacher)"))]
    questions = re.findall(r"^ ?(\d+)\. ", quiz, re.MULTILINE)
    assert questions == [str(i) for i in range(1, 11)], questions
    for q in range(1, 11):
        text = quiz[quiz.index(f"{q}. "):]
        assert all(f"{letter}: " in text[:900] for letter in "ABCD"), q
    answers = re.findall(r"^\| (\d+) \| ([ABCD]) \| .+ \|$", key, re.MULTILINE)
    assert [int(q) for q, _ in answers] == list(range(1, 11))
    assert len({a for _, a in answers}) >= 3, "the key is not one letter throughout"
    assert "[Exit quiz](#exit-quiz)" in _section("### A full day") and "docs/ANSWERS.md" not in key
