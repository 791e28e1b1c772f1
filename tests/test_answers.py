"""docs/ANSWERS.md keeps up with the notebooks: one section per notebook, one answer per exercise and per question.

When a notebook gains, loses or renumbers an exercise or a "Check yourself" question, this test names the
section of docs/ANSWERS.md to refresh.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qhelpers.notebooks import notebook_paths

REPO = Path(__file__).resolve().parents[1]
ANSWERS = (REPO / "docs" / "ANSWERS.md").read_text()
NOTEBOOKS = notebook_paths()
ITEM = re.compile(r"^(\d+)\. ", re.MULTILINE)


def _answers_section(nn: str) -> str:
    m = re.search(rf"^## {nn} · .*?(?=^## |\Z)", ANSWERS, re.MULTILINE | re.DOTALL)
    assert m, f"docs/ANSWERS.md has no '## {nn} · ...' section"
    return m.group(0)


def _subsection(section: str, title: str) -> str:
    m = re.search(rf"^### {title}\n(.*?)(?=^### |\Z)", section, re.MULTILINE | re.DOTALL)
    assert m, f"no '### {title}'"
    return m.group(1)


def _check_yourself_count(nb: dict) -> int:
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "**Check yourself**" in text:
            block = text.split("**Check yourself**", 1)[1]
            return len(ITEM.findall(block.split("**Next", 1)[0].split("Next:", 1)[0]))
    return 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_answers_cover_each_exercise_and_question(path):
    nb = json.loads(path.read_text())
    nn = path.name[:2]
    section = _answers_section(nn)
    exercises = sum("exercise" in c["metadata"].get("tags", []) for c in nb["cells"] if c["cell_type"] == "code")
    answered = ITEM.findall(_subsection(section, "Exercises"))
    assert [int(n) for n in answered] == list(range(1, exercises + 1)), f"refresh '## {nn}' exercises in docs/ANSWERS.md"
    questions = _check_yourself_count(nb)
    assert questions >= 1
    answered_q = ITEM.findall(_subsection(section, "Check yourself"))
    assert [int(n) for n in answered_q] == list(range(1, questions + 1)), f"refresh '## {nn}' Check yourself in docs/ANSWERS.md"
