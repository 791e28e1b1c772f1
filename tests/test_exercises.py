"""Every exercise in every notebook has tests that prove its self-check rejects typical wrong answers.

The cases themselves live in ``tests/test_exercises_NN.py`` (one file per notebook): for the k-th exercise
cell of notebook NN (cells tagged ``exercise``, in order), ``test_ex<k>_accepts_right_answer`` and at least
two ``test_ex<k>_rejects_<mistake>`` cases (a parametrized test counts once per parameter set). A new
exercise without its wrong-answer cases fails here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from qhelpers.notebooks import notebook_paths

TESTS = Path(__file__).resolve().parent
NOTEBOOKS = notebook_paths()


def exercise_count(path: Path) -> int:
    nb = json.loads(path.read_text())
    return sum("exercise" in c.get("metadata", {}).get("tags", []) for c in nb["cells"] if c["cell_type"] == "code")


def cases_in(module_path: Path) -> dict[str, int]:
    """Test name -> number of cases it runs (parameter sets of a parametrized test, else 1)."""
    spec = importlib.util.spec_from_file_location(module_path.stem, module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counts = {}
    for name, fn in vars(module).items():
        if not (name.startswith("test_") and callable(fn)):
            continue
        n = 1
        for mark in getattr(fn, "pytestmark", []):
            if mark.name == "parametrize":
                n *= len(mark.args[1])
        counts[name] = n
    return counts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_each_exercise_has_a_right_and_two_wrong_answer_cases(path):
    number = path.name[:2]
    exercises = exercise_count(path)
    module_path = TESTS / f"test_exercises_{number}.py"
    assert module_path.is_file(), f"{path.name} has {exercises} exercises but no tests/test_exercises_{number}.py"
    counts = cases_in(module_path)
    for k in range(1, exercises + 1):
        assert f"test_ex{k}_accepts_right_answer" in counts, f"{path.name} exercise {k}: no test_ex{k}_accepts_right_answer"
        wrong = sum(n for name, n in counts.items() if re.match(rf"test_ex{k}_rejects_", name))
        assert wrong >= 2, f"{path.name} exercise {k}: {wrong} wrong-answer case(s), at least 2 needed"
    extra = sorted({int(m.group(1)) for name in counts if (m := re.match(r"test_ex(\d+)_", name))} - set(range(1, exercises + 1)))
    assert not extra, f"tests for exercises {extra} that {path.name} does not have (renumbered?)"


def test_the_course_rejects_at_least_36_wrong_answers():
    total = 0
    for path in NOTEBOOKS:
        module_path = TESTS / f"test_exercises_{path.name[:2]}.py"
        if module_path.is_file():
            total += sum(n for name, n in cases_in(module_path).items() if "_rejects_" in name)
    assert total >= 36, total
