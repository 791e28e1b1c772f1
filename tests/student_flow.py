"""A learner's path through each exercise, checked inside nbval's run of the notebook (no second run).

When nbval reaches an exercise cell (tag ``exercise``), the same kernel first runs what the student
copy has there: the cell with its solution blanked (``qhelpers.notebooks._blank_solution``), then the
self-check after it. The check must give at least one verdict and all of them "not yet" (never
"correct"), raise nothing and echo no ``Out: ...``. Then nbval runs the solution and the check as
committed, and every verdict of the check must be "correct" (compared with the committed output under
``--nbval``; asserted here too, so that ``--nbval-lax`` runs on other CPUs check it as well).
The verdicts are read from the kernel, not from the printed words: ``qhelpers.checks.report``
appends each ``CheckResult`` to ``qhelpers.checks.RESULTS``, which this plugin reads and clears around
each check (``VERDICTS``); so a multi-part check with one part still blank fails, and a hint that
happens to contain the word "correct" ("bias correction") cannot pass for a verdict. Everything after an exercise therefore
runs in the state a learner has who filled the blank in after seeing "not yet": if a blank broke
what a later cell builds on, nbval fails at that cell.

The student copies in ``student/`` are these cells verbatim (``tests/test_notebooks.py`` checks that
they are up to date), minus the ``# NBVAL_*`` lines. A pytest plugin: pyproject.toml loads it for every
run (``-p student_flow``, with ``tests/`` on the path), so ``make test`` and ``make test-cpus`` both use it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from qhelpers.notebooks import _blank_solution, _strip_nbval_markers

OUTPUT_TIMEOUT_S = 60


def is_exercise(cell: Any) -> bool:
    return "exercise" in cell.get("metadata", {}).get("tags", [])


def shown_text(outputs: list) -> str:
    """What outputs show as text: printed streams and the plain-text form of displayed data."""
    parts = []
    for o in outputs:
        text = o.get("text") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", "")
        parts.append("".join(text) if isinstance(text, list) else str(text or ""))
    return "\n".join(parts)


def _neighbours(item: Any) -> tuple[Any, Any]:
    """The code cells before and after nbval's current cell."""
    code = [c for c in item.parent.nb.cells if c.cell_type == "code"]
    i = next(k for k, c in enumerate(code) if c is item.cell)
    return (code[i - 1] if i else None), (code[i + 1] if i + 1 < len(code) else None)


def run_in_kernel(item: Any, source: str, timeout: float) -> list[dict]:
    """Execute ``source`` in the kernel nbval runs the notebook in; returns its outputs (streams, data, errors)."""
    kernel = item.parent.kernel
    msg_id = kernel.execute_cell_input(source, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=timeout)
    outputs: list[dict] = []
    while True:
        msg = item.parent.get_kernel_message(timeout=OUTPUT_TIMEOUT_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return outputs
        if kind == "stream":
            outputs.append({"output_type": "stream", "text": content["text"]})
        elif kind in ("display_data", "execute_result"):
            outputs.append({"output_type": kind, "data": content["data"]})
        elif kind == "error":
            outputs.append({"output_type": "error", "ename": content["ename"], "evalue": content["evalue"]})


VERDICTS = """\
def __qh_verdicts():
    import json, sys
    checks = sys.modules.get("qhelpers.checks")
    found = [[r.name, r.ok, r.detail] for r in getattr(checks, "RESULTS", [])]
    if checks is not None:
        checks.RESULTS.clear()
    print("QH_VERDICTS" + json.dumps(found))
__qh_verdicts()
del __qh_verdicts
"""


def verdicts(item: Any) -> list[tuple[str, bool, str]]:
    """The self-check verdicts (name, ok, detail) given in the kernel since the last call, oldest first; clears them."""
    outputs = run_in_kernel(item, VERDICTS, OUTPUT_TIMEOUT_S)
    text = "".join(o["text"] for o in outputs if o["output_type"] == "stream")
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert not errors and "QH_VERDICTS" in text, f"{_where(item)}: could not read the verdicts in the kernel: {errors or text[:200]!r}"
    return [tuple(v) for v in json.loads(text.split("QH_VERDICTS", 1)[1].strip().splitlines()[0])]


def _listed(found: list) -> str:
    return "; ".join(f"{'✅' if ok else '❌'} {name}{': ' + detail if detail and not ok else ''}" for name, ok, detail in found) or "none"


def _where(item: Any) -> str:
    return f"{item.parent.path.name} {item.name}"


def blank_first(item: Any) -> None:
    """Before nbval runs an exercise's solution: run the student copy's blank and its check; the check says "not yet"."""
    _, check = _neighbours(item)
    assert check is not None, f"{_where(item)}: an exercise cell must be followed by its self-check"
    timeout = item.config.option.nbval_cell_timeout
    verdicts(item)  # forget the verdicts of earlier cells
    for label, source in (("blank exercise", _blank_solution(item.cell.source)), ("check after the blank", check.source)):
        outputs = run_in_kernel(item, _strip_nbval_markers(source), timeout)
        errors = [o for o in outputs if o["output_type"] == "error"]
        assert not errors, f"{_where(item)}: the {label} (student copy) raised {errors[0]['ename']}: {errors[0]['evalue']}"
    found = verdicts(item)
    assert found, f"{_where(item)}: the check after the blank gave no verdict (qhelpers.checks.report was not called)"
    assert not any(ok for _, ok, _ in found), f"{_where(item)}: a blank must be flagged, got {_listed(found)}"
    assert not [o for o in outputs if o["output_type"] == "execute_result"], f"{_where(item)}: the check echoed its return value (Out: ...)"


def answered_check_passes(item: Any) -> None:
    """After nbval ran the check that follows an exercise's solution: every verdict it gave is "correct", and it echoed nothing."""
    found = verdicts(item)
    assert found, f"{_where(item)}: the check after the answer gave no verdict (qhelpers.checks.report was not called)"
    assert all(ok for _, ok, _ in found), f"{_where(item)}: after the answer every part of the check must pass, got {_listed(found)}"
    outputs = [dict(o) for o in (item.test_outputs or [])]
    assert not [o for o in outputs if o["output_type"] == "execute_result"], f"{_where(item)}: the check echoed its return value (Out: ...)"


def follows_exercise(item: Any) -> bool:
    before, _ = _neighbours(item)
    return before is not None and is_exercise(before)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if type(item).__name__ != "IPyNbCell":  # a notebook cell run by nbval
        return (yield)
    blank_problem = None
    if is_exercise(item.cell):
        try:
            blank_first(item)
        except AssertionError as problem:  # still run the solution, so that later cells are not failed by this one
            blank_problem = problem
    if follows_exercise(item):
        verdicts(item)  # forget the verdicts of earlier cells (the blank's check, or a check in the exercise cell)
    result = yield
    if blank_problem is not None:
        raise blank_problem
    if follows_exercise(item):
        answered_check_passes(item)
        if _answers_above_on(item.config):
            answers_above_rejected(item)
    return result


# --------------------------------------------------------------------------- no answer printed above its exercise
#
# After an exercise's answered check passed (nbval ran the solution and the check), each number and word printed
# in the committed outputs of the code cells above the exercise is submitted, one at a time, as the answer: the
# check cell runs again in the kernel with that value in place of one answer name, and must not pass. An answer
# printed above its exercise can be copied instead of worked out. What is submitted depends on the kind of the
# right answer the solution made: a number gets each printed number, a string each printed word, a (low, high)
# range (one name, or two names with "low"/"lo" and "high"/"hi" in them) a narrow range around each printed
# number; answers of other kinds (tensors, models, functions, dicts) are not tried. Nearest cells first, within
# ANSWERS_BUDGET_S seconds per exercise (what is left untried is said in a warning). The answer names are those
# the solution assigns at its top level that the check cell reads; each is restored after its candidates.
# On by default in strict runs (--nbval); off under --nbval-lax (the other CPU kinds); --answers-above=on|off.

ANSWERS_BUDGET_S = 60.0

# Cases known to fail today, one line each with the reason: (notebook, exercise number, answer name, printed value).
# The notebooks' own branches change these exercises; after they merge, this list is emptied. A listed case that no
# longer happens fails too (so that the list cannot go stale).
KNOWN_ANSWERS_ABOVE: dict[tuple[str, int, str, str], str] = {
}

_NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*[A-Za-z0-9_]|[A-Za-z_]")


def printed_candidates(cells: list, upto: int) -> tuple[list[str], list[str]]:
    """Numbers and words shown by the committed outputs of the code cells before ``cells[upto]``, nearest cell first."""
    numbers: list[str] = []
    words: list[str] = []
    for cell in reversed(cells[:upto]):
        if cell.get("cell_type") != "code":
            continue
        text = shown_text([dict(o) for o in cell.get("outputs", [])])
        for n in _NUMBER.findall(text):
            n = n.replace(",", "").replace("−", "-")
            if n not in numbers:
                numbers.append(n)
        for w in _WORD.findall(text):
            if w not in words:
                words.append(w)
    return numbers, words


def answer_names(exercise_source: str, check_source: str) -> list[str]:
    """Names the solution block assigns at its top level and the check cell reads, in the solution's order."""
    import ast
    import textwrap

    solution = exercise_source.split("# BEGIN SOLUTION", 1)[-1].split("# END SOLUTION", 1)[0]
    try:
        sol = ast.parse(textwrap.dedent(solution))
        check = ast.parse(_strip_nbval_markers(check_source))
    except SyntaxError:
        return []
    assigned: list[str] = []
    for stmt in sol.body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id not in assigned:
                assigned.append(n.id)
    read = {n.id for n in ast.walk(check) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return [n for n in assigned if n in read]


ANSWERS_ABOVE = r'''
def __qh_answers_above(plan):
    import contextlib, io, json, time, warnings
    import qhelpers.checks as checks, qhelpers.progress as progress
    ns = get_ipython().user_ns
    names, numbers, words, source, budget = plan["names"], plan["numbers"], plan["words"], plan["check"], plan["budget"]

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def as_number(text):
        v = float(text)
        return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v

    def near(v):
        d = max(abs(v) * 1e-3, 1e-6)
        return (v - d, v + d)

    kinds = {}
    for n in names:
        v = ns.get(n)
        if is_number(v):
            kinds[n] = "number"
        elif isinstance(v, str):
            kinds[n] = "word"
        elif isinstance(v, (tuple, list)) and len(v) == 2 and all(is_number(x) for x in v):
            kinds[n] = "range"
        else:
            kinds[n] = type(v).__name__
    lows = [n for n in names if kinds[n] == "number" and any(k in n.lower() for k in ("low", "lo"))]
    highs = [n for n in names if kinds[n] == "number" and any(k in n.lower() for k in ("high", "hi"))]
    plans = []  # (label, {name: value}, shown text)
    if len(lows) == 1 and len(highs) == 1 and lows != highs:
        plans += [(f"{lows[0]}, {highs[0]}", dict(zip((lows[0], highs[0]), near(as_number(t)))), t) for t in numbers]
    for n in names:
        if n in lows + highs and len(lows) == 1 and len(highs) == 1:
            continue
        if kinds[n] == "number":
            plans += [(n, {n: as_number(t)}, t) for t in numbers]
        elif kinds[n] == "range":
            plans += [(n, {n: near(as_number(t))}, t) for t in numbers]
        elif kinds[n] == "word":
            plans += [(n, {n: t}, t) for t in words]
    saved = {n: ns[n] for n in names if n in ns}
    show, record = checks._show_check_line, progress.record
    checks._show_check_line, progress.record = (lambda result: None), (lambda *a, **k: None)
    passed, tried, start = [], 0, time.perf_counter()
    code = compile(source, "<check cell>", "exec")
    try:
        for label, values, shown in plans:
            if time.perf_counter() - start > budget:
                break
            ns.update(values)
            checks.RESULTS.clear()
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exec(code, ns)
            except Exception:
                checks.RESULTS.clear()  # a value the check refuses with an error is not accepted
            found = list(checks.RESULTS)
            if found and all(r.ok for r in found):
                passed.append([label, shown])
            tried += 1
            ns.update(saved)
    finally:
        ns.update(saved)
        checks._show_check_line, progress.record = show, record
        checks.RESULTS.clear()
    skipped = {n: k for n, k in kinds.items() if k not in ("number", "word", "range")}
    print("QH_ANSWERS" + json.dumps({"passed": passed, "tried": tried, "planned": len(plans), "skipped": skipped}))
__qh_answers_above(%s)
del __qh_answers_above
'''


def check_statements(check_source: str, names: tuple[str, ...] = ()) -> str:
    """The statements of a check cell that call a self-check (``qh.check_...(...)``), or the whole cell if none does.

    The rest of the cell (a measurement the check compares with, a print) ran once already; submitting a
    candidate reruns only the verdict. A check inside an ``if`` (a cell that measures only once a well-formed
    answer is written: ``if qh.prediction_ready(...): <measure>; qh.check_...(...)``) keeps its ``if`` and, in
    its branches, the check calls and the statements that read an answer name (``names``: a measurement of the
    learner's answer is made again for each candidate); a measurement that does not read the answer is not
    redone for each candidate (it gives the same numbers: notebook 03's exercise 4 calibrated a PTQ model
    for each of 155 printed values, 60 s, and notebook 00's exercise 4 took 44 s).
    """
    import ast

    source = _strip_nbval_markers(check_source)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source

    def calls_check(stmt: ast.AST) -> bool:
        return any(isinstance(n, ast.Call) and ast.unparse(n.func).split(".")[-1].startswith("check_") for n in ast.walk(stmt))

    def reads_answer(stmt: ast.AST) -> bool:
        return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(stmt))

    def inner(body: list) -> list:
        kept = []
        for stmt in body:
            if isinstance(stmt, ast.If) and calls_check(stmt):
                kept.append(ast.If(test=stmt.test, body=inner(stmt.body) or [ast.Pass()], orelse=inner(stmt.orelse)))
            elif calls_check(stmt) or reads_answer(stmt):
                kept.append(stmt)
        return kept

    calls = [
        ast.If(test=stmt.test, body=inner(stmt.body) or [ast.Pass()], orelse=inner(stmt.orelse)) if isinstance(stmt, ast.If) else stmt
        for stmt in tree.body if calls_check(stmt)
    ]
    return "\n".join(ast.unparse(stmt) for stmt in calls) if calls else source


def _exercise_number(item: Any, exercise: Any) -> int:
    exercises = [c for c in item.parent.nb.cells if c.cell_type == "code" and is_exercise(c)]
    return next(k for k, c in enumerate(exercises, 1) if c is exercise)


def answers_above_rejected(item: Any) -> None:
    """After an exercise's check passed: each value printed above the exercise, given as its answer, fails the check."""
    exercise, _ = _neighbours(item)
    cells = list(item.parent.nb.cells)
    at = next(i for i, c in enumerate(cells) if c is exercise)
    names = answer_names(exercise.source, item.cell.source)
    if not names:
        return
    numbers, words = printed_candidates(cells, at)
    plan = {"names": names, "numbers": numbers, "words": words, "check": check_statements(item.cell.source, tuple(names)), "budget": ANSWERS_BUDGET_S}
    outputs = run_in_kernel(item, ANSWERS_ABOVE % repr(json.loads(json.dumps(plan))), ANSWERS_BUDGET_S * 4 + 60)
    text = "".join(o["text"] for o in outputs if o["output_type"] == "stream")
    errors = [o for o in outputs if o["output_type"] == "error"]
    assert not errors and "QH_ANSWERS" in text, f"{_where(item)}: could not submit the printed values: {errors or text[-300:]!r}"
    result = json.loads(text.split("QH_ANSWERS", 1)[1].strip().splitlines()[0])
    notebook, k = item.parent.path.name, _exercise_number(item, exercise)
    if result["tried"] < result["planned"]:
        import warnings

        warnings.warn(f"{notebook} exercise {k}: {result['planned'] - result['tried']} of {result['planned']} printed values "
                      f"not submitted (the check is slow: {ANSWERS_BUDGET_S:g} s budget)", stacklevel=1)
    passed = {(notebook, k, label, shown) for label, shown in result["passed"]}
    known = {key for key in KNOWN_ANSWERS_ABOVE if key[:2] == (notebook, k)}
    new = sorted(passed - known)
    gone = sorted(known - passed) if result["tried"] == result["planned"] else []
    assert not new, (f"{_where(item)}: exercise {k}: values printed above it pass its check (the answer can be copied): "
                     + "; ".join(f"{label} = {shown}" for _, _, label, shown in new))
    assert not gone, f"{_where(item)}: exercise {k}: listed in KNOWN_ANSWERS_ABOVE but rejected now, remove: {gone}"


def pytest_addoption(parser):
    parser.addoption("--answers-above", choices=("auto", "on", "off"), default="auto",
                     help="submit each value printed above an exercise as its answer (auto: on with --nbval, off with --nbval-lax)")


def _answers_above_on(config) -> bool:
    choice = config.getoption("--answers-above", default="auto")
    return choice == "on" or (choice == "auto" and not config.getoption("nbval_lax", default=False))
