"""The learner's copy without solutions (scripts/build_student_bundle.py, `make student-bundle`)."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import build_student_bundle as bundle  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    return bundle.build(out)


@pytest.mark.slow
def test_bundle_holds_what_a_learner_needs_and_no_answers(built):
    for rel in ["qhelpers/__init__.py", "data", "student/00_start_here.ipynb", "requirements.txt", "pyproject.toml",
                "Makefile", "README.md", "scripts/lab_settings.py"]:
        assert (built / rel).exists(), rel
    for rel in ["notebooks", "docs/ANSWERS.md", "docs/WORKSHOP.md", "tests"]:
        assert not (built / rel).exists(), rel
    assert len(list((built / "student").glob("*.ipynb"))) == len(list((REPO / "student").glob("[0-9][0-9]_*.ipynb")))
    for path in (built / "student").glob("*.ipynb"):
        text = path.read_text()
        assert "# BEGIN SOLUTION" not in text and "with their solutions, are in `notebooks/`" not in text, path.name
        assert bundle.BUNDLE_NOTE.strip() in "".join(c["source"] for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
    # nothing half-written beside it; the zip holds the same files
    assert sorted(p.name for p in built.parent.iterdir()) == sorted([built.name, built.name + ".zip"])
    names = set(zipfile.ZipFile(built.parent / f"{built.name}.zip").namelist())
    files = {str(p.relative_to(built.parent)) for p in built.rglob("*") if p.is_file()}
    assert files <= names and not any(n.startswith(f"{built.name}/notebooks/") for n in names)


@pytest.mark.slow
def test_bundle_makefile_has_the_learners_targets(built):
    text = (built / "Makefile").read_text()
    for target in ["setup:", "setup-08:", "lab:", "doctor:", "progress:", "$(STAMP):"]:
        assert f"\n{target}" in text, target
    assert "\ntest:" not in text and "nbval" not in text
    dry = subprocess.run(["make", "-n", "-C", str(built), "lab", "PYTHON=python3"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "jupyter lab" in dry.stdout and "student/00_start_here.ipynb" in dry.stdout


def test_missing_target_or_student_copies_are_named(tmp_path):
    with pytest.raises(ValueError, match="no block for"):
        bundle.makefile_for_bundle("PYTHON ?= python3\n\nlab:\n\techo\n")
    (tmp_path / "student").mkdir()
    with pytest.raises(FileNotFoundError, match="make student"):
        bundle.build(tmp_path / "out", repo=tmp_path)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _course_map_cell(nb) -> int:
    """The index, among the code cells of notebook 00, of the course-map cell (the one that lists the notebooks)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    return next(i for i, c in enumerate(code) if "notebook_paths()" in c.source)


def test_the_course_map_cell_runs_where_notebooks_is_left_out(tmp_path, monkeypatch, capsys):
    """Student/00's course-map cell, in a folder shaped like the bundle (data/ and student/, no notebooks/), lists
    the student copies and finds each in the map (it raised IndexError when it read notebooks/ only)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "student").mkdir()
    for path in sorted((REPO / "student").glob("[0-9][0-9]_*.ipynb")):
        (tmp_path / "student" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("QHELPERS_HOME", str(tmp_path))
    nb = nbformat.read(tmp_path / "student" / "00_start_here.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    exec(code[_course_map_cell(nb)].source, {})
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == sorted(p.name for p in (tmp_path / "student").glob("*.ipynb"))
    assert listed[0].startswith("00_start_here.ipynb") and "Start here" in listed[0]
    # the course folder's own notebooks/ still comes first where it exists
    (tmp_path / "notebooks").mkdir()
    from qhelpers.notebooks import notebook_paths

    assert notebook_paths() == []


def test_a_student_copy_runs_from_the_bundle(built):
    """Student/00's cells up to its course map run in a fresh kernel inside the bundle: the course folder, data/
    and the progress log are the bundle's (the package is imported from the bundle, not from this repository),
    and the course map lists the bundle's student copies (there is no notebooks/)."""
    nb = nbformat.read(built / "student" / "00_start_here.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"][: _course_map_cell(nb) + 1]
    probe = nbformat.v4.new_code_cell("import qhelpers as qh\nprint(qh.__file__)\nprint(qh.course_root())\nprint(qh.data_dir())")
    env = {**os.environ, "PYTHONPATH": str(built), "QHELPERS_HOME": ""}
    env.pop("QHELPERS_DATA", None)
    run = nbformat.v4.new_notebook(cells=[*code, probe])
    NotebookClient(run, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(built / "student")}}).execute(env=env)
    out = "".join(o.get("text", "") for o in run.cells[-1].outputs)
    listed = "".join(o.get("text", "") for o in run.cells[-2].outputs)
    assert listed.startswith("00_start_here.ipynb") and "09_server_runtimes.ipynb" in listed, listed
    assert str(built / "qhelpers") in out and f"{built}\n" in out and str(built / "data") in out, out
