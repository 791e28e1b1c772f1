"""Notebook hygiene, structure and student copies (nbval runs the notebooks, and tests/student_flow.py walks each
exercise as a learner inside that run; see tests/README.md)."""

import json

import pytest

from qhelpers.notebooks import STUDENT_DIR, _blank_solution, hygiene_problems, notebook_paths, student_copy, write_student_copies
from qhelpers.files import course_root
from student_flow import is_exercise, shown_text

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
        printed = shown_text(cells[i + 1]["outputs"])
        assert "correct" in printed and "not yet" not in printed and "❌" not in printed, "the committed solution must pass its own self-check"


def test_blank_solution_keeps_the_answer_names():
    src = "x = 1\n# BEGIN SOLUTION\nlo, hi = 0, 1\nscale = hi - lo\nscale = scale / 2\n  inner = 3\nzp = 0\n# END SOLUTION\nprint(scale)"
    assert _blank_solution(src) == "x = 1\nscale = ...  # your code here\nzp = ...  # your code here\nprint(scale)"
    with pytest.raises(ValueError):
        _blank_solution("# BEGIN SOLUTION\nx = 1")


def test_blank_solution_keeps_a_name_the_exercise_builds_on():
    """An exercise that updates a model from the cell above in place (as ``ex_model = ex_model.apply(...)``)."""
    blank = _blank_solution("# BEGIN SOLUTION\nex_model = ex_model.apply(torch.ao.quantization.disable_observer)\n# END SOLUTION")
    assert blank.startswith("ex_model = ex_model  # your code here")
    assert "..." not in blank.split("#")[0]
    # The blank runs after the cell that makes ex_model and keeps it; the hinted next step then works.
    env = {"ex_model": [1, 2]}
    exec(blank, env)
    assert env["ex_model"] == [1, 2]
    # A name only assigned (not read first) is still blanked, also after another name is built on.
    src = "# BEGIN SOLUTION\nm = m.apply(f)\nacc = evaluate(m)\ntotal = 0\ntotal += acc\n# END SOLUTION"
    assert _blank_solution(src).splitlines() == [
        "m = m  # your code here: start from the m above and change it",
        "acc = ...  # your code here",
        "total = ...  # your code here",
    ]
    assert _blank_solution("# BEGIN SOLUTION\nqh.set_engine('x86')\n# END SOLUTION") == "# your code here"


def test_blank_solution_blanks_a_function_the_solution_defines_and_then_calls():
    """A function defined in the solution and called after it is the learner's to write, not one built on."""
    src = "# BEGIN SOLUTION\ndef agreement(a, b):\n    return 100.0 * (a == b).float().mean().item()\n\n\nvalue = agreement(x, y)\n# END SOLUTION"
    assert _blank_solution(src).splitlines() == ["agreement = ...  # your code here", "value = ...  # your code here"]
    # a decorator reads a name before the definition assigns anything
    src = "# BEGIN SOLUTION\nhelper = helper\n@helper\ndef f():\n    pass\n# END SOLUTION"
    assert _blank_solution(src).splitlines()[0].startswith("helper = helper  # your code here")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_student_copy_has_no_solutions_and_no_outputs(path):
    nb = json.loads(path.read_text())
    student = student_copy(nb)
    for original, copy in zip(code_cells(nb), code_cells(student)):
        assert copy["outputs"] == [] and copy["execution_count"] is None
        if "exercise" in original["metadata"].get("tags", []):
            assert "BEGIN SOLUTION" not in copy["source"] and "# your code here" in copy["source"]
            assert "jupyter" not in copy["metadata"]
        assert "NBVAL_" not in copy["source"], "the test harness's markers are not for learners"
    assert "widgets" not in student.get("metadata", {}), "saved widget state (tens of kB) belongs to the executed notebook only"
    markdown = "\n".join(c["source"] for c in student["cells"] if c["cell_type"] == "markdown")
    assert "click the bar" not in markdown and "collapsed cell" not in markdown, "a student copy has no collapsed solutions"
    assert "docs/ANSWERS.md" in student["cells"][0]["source"], "the first cell says where the answers are"


def test_student_copy_of_notebook_00_does_not_send_the_answers_of_notebooks_copies_to_answers_md():
    # the full notebook: "in the copies in `notebooks/`, its solution sits in the collapsed cell above the check"
    nb = json.loads((course_root() / "notebooks" / "00_start_here.ipynb").read_text())
    markdown = "\n".join(c["source"] for c in student_copy(nb)["cells"] if c["cell_type"] == "markdown")
    assert "its solution is in `docs/ANSWERS.md`" in markdown
    assert "copies in `notebooks/`, its solution" not in " ".join(markdown.split())


def _solution_block(source: str) -> str:
    return source.split("# BEGIN SOLUTION", 1)[1].split("# END SOLUTION", 1)[0]


def _calls_with_arguments(source: str) -> set[str]:
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {
        ast.unparse(n) for n in ast.walk(tree)
        if isinstance(n, ast.Call) and (n.args or n.keywords) and not ast.unparse(n.func).split(".")[-1].startswith("check_")
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_student_check_cells_do_not_contain_the_solution(path):
    """The check after an exercise gets its expected value from a helper, never by redoing the solution in the open."""
    nb = json.loads(path.read_text())
    student = student_copy(nb)
    leaks = []
    for i, cell in enumerate(nb["cells"][:-1]):
        if cell["cell_type"] != "code" or not is_exercise(cell):
            continue
        solution = _solution_block("".join(cell["source"]))
        check = student["cells"][i + 1]["source"]
        lines = {line.strip() for line in solution.splitlines() if line.strip() and not line.strip().startswith("#")}
        shared = sorted(lines & {line.strip() for line in check.splitlines()}) + sorted(_calls_with_arguments(solution) & _calls_with_arguments(check))
        if shared:
            leaks.append(f"cell {i + 1} repeats the solution of cell {i}: {shared[0][:100]}")
    assert not leaks, leaks


def test_committed_student_copies_are_up_to_date(tmp_path):
    fresh = write_student_copies(tmp_path)
    committed_dir = course_root() / STUDENT_DIR
    assert sorted(p.name for p in committed_dir.glob("*.ipynb")) == sorted(p.name for p in fresh), "run: make student"
    for p in fresh:
        assert (committed_dir / p.name).read_text() == p.read_text(), f"{STUDENT_DIR}/{p.name} is stale; run: make student"


def test_every_nbval_run_walks_the_exercises_as_a_learner(pytestconfig):
    """pyproject.toml loads tests/student_flow.py into every pytest run, so nbval's runs check each blank and each answer."""
    assert pytestconfig.pluginmanager.has_plugin("student_flow")
    nb = json.loads(NOTEBOOKS[0].read_text())
    exercises = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and is_exercise(c)]
    assert exercises and all(nb["cells"][i + 1]["cell_type"] == "code" for i in exercises), "each exercise is followed by its check"
