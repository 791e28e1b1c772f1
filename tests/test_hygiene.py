"""The notebook hygiene checker (``qhelpers.notebooks.hygiene_problems``) fails on each thing it guards.

One small notebook per rule: a clean one has no problem, and each broken one has exactly the problem of its
rule, named by cell. tests/test_notebooks.py runs the checker on the course's notebooks (which are clean).
"""

from __future__ import annotations

import json

import nbformat
import pytest

from qhelpers.notebooks import MACHINE_PATH, hygiene_problems


KIND = {"machine": "x86_64", "isa": "AVX512", "engines": ["fbgemm", "onednn", "qnnpack", "x86"], "saturating_engines": []}


def _notebook(*cells, recorded=KIND):
    nb = nbformat.v4.new_notebook(cells=list(cells))
    if recorded is not None:
        nb.metadata["qhelpers"] = {"outputs_recorded_on": recorded}
    return nb


def _code(source, count, *outputs, tags=()):
    cell = nbformat.v4.new_code_cell(source, execution_count=count, outputs=list(outputs))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _printed(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _error(ename="ValueError", evalue="bad"):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _problems(tmp_path, nb):
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return [p.replace(str(path), "NB") for p in hygiene_problems(path)]


def test_a_clean_notebook_has_no_problem(tmp_path):
    nb = _notebook(
        nbformat.v4.new_markdown_cell("# Title\nfiles live in /home/<you>/course on Linux"),  # markdown is not an output
        _code("x = 1", 1),
        _code("print(x)", 2, _printed("1\nsee https://pytorch.org/home/docs and data/home/x\n")),
        _code("", None),  # an empty cell needs no count
        _code("# NBVAL_RAISES_EXCEPTION\n1 / 0", 3, _error("ZeroDivisionError", "division by zero"), tags=["raises-exception"]),
    )
    assert _problems(tmp_path, nb) == []


@pytest.mark.parametrize(
    "cells, expected",
    [
        ([_code("x = 1", 1), _code("y = 2", None)], "NB: 1 code cells not executed"),
        ([_code("x = 1", 2), _code("y = 2", 1)], "NB: execution counts are not 1..N in order (run Restart & Run All)"),
        ([_code("x = 1", 1), _code("y = 2", 3)], "NB: execution counts are not 1..N in order (run Restart & Run All)"),
        ([_code("1 / 0", 1, _error("ZeroDivisionError"))], "NB cell 0: committed traceback (ZeroDivisionError)"),
        ([_code("# NBVAL_IGNORE_OUTPUT timings\nx = 1", 1)], "NB cell 0: nbval marker must stand alone on its line, got '# NBVAL_IGNORE_OUTPUT timings'"),
        ([_code("#NBVAL_SKIP:\nx = 1", 1)], "NB cell 0: nbval marker must stand alone on its line, got '#NBVAL_SKIP:'"),
        ([_code("# NBVAL_RAISES_EXCEPTION\n1 / 0", 1, _error())],
         "NB cell 0: a cell that fails on purpose needs the 'raises-exception' tag too (or Run All stops there)"),
    ],
    ids=["unexecuted", "out-of-order", "gap", "traceback", "glued-marker", "glued-marker-no-space", "raises-without-tag"],
)
def test_each_rule_catches_its_problem(tmp_path, cells, expected):
    assert _problems(tmp_path, _notebook(*cells)) == [expected]


@pytest.mark.parametrize(
    "text, shown",
    [
        ("saved to /home/ann/course/model.pt", "/home/ann"),
        ("saved to /Users/ann/course/model.pt", "/Users/ann"),
        ("saved to C:\\Users\\ann\\course\\model.pt", "C:\\Users"),
        ("cache D:\\torch_cache\\x", "D:\\torch_cache"),
        ("File /tmp/ipykernel_123/456.py:3", "/tmp/ipykernel_123"),
        ("/root/.cache/torch", "/root/.cache"),
        ("/work/course/data", "/work/course"),
        ("/private/var/folders/x", "/private/var"),
    ],
)
def test_a_machine_path_in_any_output_is_caught(tmp_path, text, shown):
    for output in (_printed(text), nbformat.v4.new_output("execute_result", data={"text/plain": repr(text)}, execution_count=1),
                   nbformat.v4.new_output("display_data", data={"text/html": f"<pre>{text}</pre>"})):
        problems = _problems(tmp_path, _notebook(_code("f()", 1, output)))
        assert len(problems) == 1 and problems[0].startswith("NB cell 0: output shows a machine path (") and (
            shown in problems[0] or shown.replace("\\", "\\\\") in problems[0]), problems  # a repr doubles backslashes


@pytest.mark.parametrize("recorded", [None, {}, {"machine": "x86_64", "isa": "AVX2"}, "AVX512"])
def test_a_notebook_must_say_which_cpu_kind_printed_its_outputs(tmp_path, recorded):
    (problem,) = _problems(tmp_path, _notebook(_code("x = 1", 1), recorded=recorded))
    assert problem.startswith("NB: metadata.qhelpers.outputs_recorded_on (the CPU kind of its outputs) is missing")


def test_the_path_pattern_leaves_urls_and_relative_paths_alone():
    for text in ("https://pytorch.org/home/docs", "data/home/x", "ratio 3:1", "a:b\\c", "results/tmp/x"):
        assert not MACHINE_PATH.search(text), text


def test_a_file_that_is_not_json_is_one_problem(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    (problem,) = hygiene_problems(path)
    assert "not valid JSON" in problem


def test_several_problems_are_all_listed(tmp_path):
    nb = _notebook(_code("x = 1", 2, _printed("/Users/ann/x")), _code("y", None, _error("NameError")))
    problems = _problems(tmp_path, nb)
    assert problems == [
        "NB: 1 code cells not executed",
        "NB: execution counts are not 1..N in order (run Restart & Run All)",
        "NB cell 0: output shows a machine path (/Users/ann...)",
        "NB cell 1: committed traceback (NameError)",
    ], json.dumps(problems, indent=1)
