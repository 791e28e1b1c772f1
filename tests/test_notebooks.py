"""Notebook hygiene, structure and student copies (nbval itself runs the notebooks; see tests/README.md)."""

import json
from pathlib import Path

import pytest

from qhelpers.notebooks import STUDENT_DIR, _blank_solution, hygiene_problems, notebook_paths, student_copy, write_student_copies
from qhelpers.data import repo_dir

NOTEBOOKS = notebook_paths()
IDS = [p.name for p in NOTEBOOKS]


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_course_has_its_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_hygiene(path):
    assert hygiene_problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_structure_follows_the_house_style(path):
    nb = json.loads(path.read_text())
    first_md = "".join(nb["cells"][0]["source"])
    assert first_md.startswith("# ") and "**Learning objectives**" in first_md and "**Contents**" in first_md
    assert "run time" in first_md.lower()
    setup = "".join(code_cells(nb)[0]["source"])
    assert "import qhelpers as qh" in setup and "qh.setup(" in setup
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "Summary" in text and "Check yourself" in text
    assert "../data" not in "\n".join("".join(c["source"]) for c in code_cells(nb))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_at_least_three_exercises_each_with_a_hidden_solution_and_a_self_check(path):
    cells = code_cells(json.loads(path.read_text()))
    exercises = [i for i, c in enumerate(cells) if "exercise" in c["metadata"].get("tags", [])]
    assert len(exercises) >= 3
    for i in exercises:
        cell = cells[i]
        assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, "solution must be collapsed"
        assert "# BEGIN SOLUTION" in "".join(cell["source"])
        check = "".join(cells[i + 1]["source"])
        assert "check" in check, f"the cell after exercise {i} must call a self-check"
        printed = "".join("".join(o.get("text", "")) for o in cells[i + 1]["outputs"])
        assert "✅" in printed and "❌" not in printed, "the committed solution must pass its own self-check"


def test_blank_solution_keeps_the_answer_names():
    src = "x = 1\n# BEGIN SOLUTION\nlo, hi = 0, 1\nscale = hi - lo\nscale = scale / 2\n  inner = 3\nzp = 0\n# END SOLUTION\nprint(scale)"
    assert _blank_solution(src) == "x = 1\nscale = ...  # your code here\nzp = ...  # your code here\nprint(scale)"
    with pytest.raises(ValueError):
        _blank_solution("# BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_student_copy_has_no_solutions_and_no_outputs(path):
    nb = json.loads(path.read_text())
    student = student_copy(nb)
    for original, copy in zip(code_cells(nb), code_cells(student)):
        assert copy["outputs"] == [] and copy["execution_count"] is None
        if "exercise" in original["metadata"].get("tags", []):
            assert "BEGIN SOLUTION" not in copy["source"] and "# your code here" in copy["source"]
            assert "jupyter" not in copy["metadata"]


def test_committed_student_copies_are_up_to_date(tmp_path):
    fresh = write_student_copies(tmp_path)
    committed_dir = repo_dir() / STUDENT_DIR
    assert sorted(p.name for p in committed_dir.glob("*.ipynb")) == sorted(p.name for p in fresh), "run: make student"
    for p in fresh:
        assert (committed_dir / p.name).read_text() == p.read_text(), f"{STUDENT_DIR}/{p.name} is stale; run: make student"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_student_copy_runs_top_to_bottom_and_flags_each_blank(path, tmp_path):
    """A learner's Restart & Run All on the student copy: no error, and every self-check says what is missing."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.reads(json.dumps(student_copy(json.loads(path.read_text()))), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    exercises = sum("exercise" in c.metadata.get("tags", []) for c in nb.cells)
    assert printed.count("not filled in yet") >= exercises
    assert "✅" not in "".join(
        "".join(o.get("text", "")) for i, c in enumerate(nb.cells) if i > 0 and "exercise" in nb.cells[i - 1].metadata.get("tags", []) for o in c.outputs
    ), "a blank exercise must not pass its self-check"
