"""The coverage gate of the self-checks (tests/checks_coverage.py) gates what it should; the mutation table applies."""

from __future__ import annotations

import ast

import pytest

import checks_coverage as gate
from mutation.run import ROOT, baseline_args, load_table, stale_reason


def test_the_gate_covers_every_self_check_and_the_helpers_that_judge():
    names = {(f.path.name, f.name) for f in gate.gated_functions()}
    decorated = set()
    for path in gate.PACKAGE.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and "_blank_safe" in gate._decorators(node):
                decorated.add((path.name, node.name))
    assert len(decorated) >= 30 and decorated <= names
    # helpers a check judges with: private ones of its module, and the shared ones that reject an answer themselves
    assert {("tensor_checks.py", "_codes_mistake"), ("checks.py", "read_range"), ("checks.py", "as_number"), ("pretrained_checks.py", "_near"),
            ("qat_checks.py", "_fake_quant_instance")} <= names
    # not what only shows a verdict, and not a same-named helper of another module the check does not call
    assert not {n for _, n in names} & gate.SHOWN_ONLY
    assert ("pretrained_checks.py", "_number") in names and ("tensor_checks.py", "_number") in names


def test_the_gate_runs_the_exercise_tests_and_its_own():
    assert "tests/test_check_branches.py" in gate.TESTS and "tests/test_decision_checks_widgets.py" in gate.TESTS
    assert sum(t.startswith("tests/test_exercises_0") for t in gate.TESTS) >= 9


@pytest.mark.parametrize(
    "statements, missing, expected",
    [([1, 2, 3, 5, 8], {2, 3, 8}, [[2, 3], [8]]), ([1, 2, 3], set(), []), ([4, 6], {4, 6}, [[4, 6]]), ([4, 6, 7], {4, 7}, [[4], [7]])],
)
def test_missing_lines_are_reported_once_per_block(statements, missing, expected):
    assert gate.blocks(statements, missing) == expected


def test_every_mutation_applies_to_todays_code():
    """A row whose code was rewritten is STALE for the mutation tier: point it at the new code (tests/mutation/)."""
    rows = load_table()
    stale = {r["id"]: stale_reason(r) for r in rows if stale_reason(r)}
    assert not stale, stale
    for r in rows:  # a mutant that does not compile would only show that Python checks syntax
        source = (ROOT / r["path"]).read_text().replace(r["old"], r["new"])
        compile(source, r["path"], "exec")


def test_every_mutation_names_tests_that_exist():
    for r in load_table():
        assert r["old"] != r["new"] and r["what"] and r["owner"]
        for arg in r["tests"]:
            if arg.startswith("tests/"):
                path = arg.split("::")[0]
                assert (ROOT / path).is_file(), f"{r['id']}: {path} does not exist"
                if "::" in arg:
                    assert f"def {arg.split('::')[1]}(" in (ROOT / path).read_text(), f"{r['id']}: no test {arg}"
    union = baseline_args(load_table())
    assert "-k" not in union and len(union) == len(set(union)) and "tests/test_check_branches.py" in union
