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
    return result
