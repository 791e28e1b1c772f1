"""Self-checks for the exercises: each prints what is right or what is off, and returns True/False.

Introduced in notebooks/01_manual_tensor_quantization.ipynb. A check never
raises on a wrong answer (so "Run All" carries on in a student copy); it
raises ``TypeError`` only when the answer is of the wrong kind altogether.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = [
    "report",
    "not_filled",
    "NotFilledIn",
]


RESULTS: list = []  # every CheckResult report() made, oldest first (the last 100); the test plugin tests/student_flow.py reads and clears it


def report(name: str, ok: bool, detail: str = "") -> "CheckResult":
    """Show ``✅ name: correct`` (green) or ``❌ name: not yet: detail`` (red); return a ``CheckResult``.

    The word and the colour carry the verdict where an emoji font is missing. In a notebook the
    line is shown as coloured HTML (plain text beside it); elsewhere it is printed. Each call is
    also appended to the learner's progress log when one is kept (see ``qhelpers.progress``).
    """
    result = CheckResult(bool(ok), str(name), str(detail))
    RESULTS.append(result)
    del RESULTS[:-100]
    _show_check_line(result)
    try:
        from .progress import record

        record(result.name, result.ok, blank=not result.ok and result.detail.startswith("not filled in yet"))
    except Exception:  # the log is a convenience: a check never fails because of it
        pass
    return result


def as_number(value: Any, name: str) -> float:
    """A learner's answer as one float; ``NotFilledIn`` for a blank, ``TypeError`` naming ``name`` for anything else.

    Shared by the self-checks of notebooks 05, 06 and 08.
    """
    if not_filled(value):
        raise NotFilledIn(name)
    try:
        return float(torch.as_tensor(value).reshape(()))
    except Exception as exc:
        raise TypeError(f"{name} must be a single number, got {type(value).__name__}") from exc


# How close a learner's number must be to the expected one, for every self-check that compares numbers: a value
# copied from a printout with 4 significant digits is within 1e-3 of the exact one, while the typical slips
# (256 for 255 steps, a 7-bit range for 8 bits, a missing zero point) are off by 0.4 % or far more.
ANSWER_REL_TOL = 1e-3


def is_close(answer: float, expected: float, *, rel: float = ANSWER_REL_TOL, abs_tol: float = 1e-12) -> bool:
    """The one tolerance of the self-checks: ``answer`` (a float, e.g. from ``as_number``) equals ``expected``
    within ``rel`` of it (``ANSWER_REL_TOL`` unless a check says why it needs another), or within ``abs_tol``
    near zero."""
    return abs(answer - expected) <= max(rel * abs(expected), abs_tol)


def _blank_safe(check):
    """Turn a blank answer (``...``) into a printed "not filled in yet" instead of an exception."""
    import functools

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        try:
            result = check(*args, **kwargs)
        except NotFilledIn as blank:
            return report(str(blank), False, NOT_FILLED_DETAIL)
        except WrongAnswer as wrong:
            return report(wrong.name, False, wrong.hint)
        if isinstance(result, bool):  # a check that combined verdicts with and/all: still shows no ``Out: True``
            return CheckResult(result, check.__name__)
        return result

    return wrapper


class NotFilledIn(Exception):
    """The learner has not replaced ``...`` with an answer yet."""


class WrongAnswer(Exception):
    """An answer rejected before it is compared with anything; ``_blank_safe`` shows ``hint`` under ``name``."""

    def __init__(self, name: str, hint: str):
        super().__init__(hint)
        self.name, self.hint = name, hint


def read_range(name: str, prediction: Any, *, max_width: float, unit: str) -> tuple[float, float]:
    """A predicted ``(low, high)`` as two floats, or ``WrongAnswer`` saying why it is not a prediction.

    The shape test every predict-first exercise shares (notebooks 00, 01, 02,
    03, 04, 05): ``NotFilledIn`` for a blank; ``WrongAnswer`` for one number, a
    pair that is not two numbers, low above high, and a range wider than
    ``max_width`` ``unit`` (a range that wide predicts nothing). The caller
    then compares the range with its measurement and names the reasoning
    that missed.

    Introduced in notebooks/00_start_here.ipynb.
    """
    if not_filled(prediction) or (isinstance(prediction, (tuple, list)) and not_filled(*prediction)):
        raise NotFilledIn(name)
    if isinstance(prediction, (int, float, str)) and not isinstance(prediction, bool):  # "12" would iterate as (1, 2)
        raise WrongAnswer(name, "give a range (low, high) of two numbers, not one value: a prediction says how sure you are")
    try:
        low, high = (float(v) for v in prediction)
    except (TypeError, ValueError):
        raise WrongAnswer(name, f"expected a (low, high) pair of numbers{' in ' + unit if unit else ''}, got {prediction!r}") from None
    if low > high:
        raise WrongAnswer(name, f"low {low:g} is above high {high:g}: swap them")
    if high - low > max_width + 1e-9:  # (3.4, 3.7) is 0.30000000000000027 wide in floats
        u = f" {unit}" if unit else ""
        raise WrongAnswer(name, f"a range {high - low:.3g}{u} wide predicts little; commit to at most {max_width:g}{u}")
    return low, high


def not_filled(*values: Any) -> bool:
    """True when any value is still ``...`` or ``None`` (an exercise left blank in a student copy).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb (a measurement that waits for the learner's prediction).
    """
    return any(v is None or v is Ellipsis for v in values)


# --------------------------------------------------------------------------- how a verdict is shown
# (report's helpers: one line per check, a word and a colour besides the mark, and no "Out: True")

NOT_FILLED_DETAIL = "not filled in yet: replace ... with your answer and run the cell again"


class CheckResult:
    """What a self-check returns: true when the answer is right, false otherwise.

    Use it like a bool (``if qh.check_...(...):``, ``assert qh.check_...(...)``). A notebook shows the
    check's coloured line, not this value: it displays as nothing, so no ``Out: True`` follows a check.
    """

    __slots__ = ("ok", "name", "detail")

    def __init__(self, ok: bool, name: str = "", detail: str = "") -> None:
        self.ok, self.name, self.detail = bool(ok), name, detail

    def __bool__(self) -> bool:
        return self.ok

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (bool, CheckResult)):
            return self.ok == bool(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.ok)

    def __repr__(self) -> str:
        return f"CheckResult(ok={self.ok}, name={self.name!r})"

    def _ipython_display_(self) -> None:
        """Display nothing: the check already showed its line."""

    @property
    def line(self) -> str:
        """The plain-text verdict: ``✅ name: correct`` or ``❌ name: not yet: detail``."""
        if self.ok:
            return f"✅ {self.name}: correct"
        if self.detail.startswith("not filled in yet"):
            return f"❌ {self.name}: {self.detail}"
        return f"❌ {self.name}: not yet: {self.detail}" if self.detail else f"❌ {self.name}: not yet"

    def _repr_html_line(self) -> str:
        import html

        colour = "#1a7f37" if self.ok else "#c62828"
        word, rest = ("correct", "") if self.ok else ("not yet", self.detail)
        if not self.ok and self.detail.startswith("not filled in yet"):
            word, rest = "not filled in yet", self.detail[len("not filled in yet"):].lstrip(": ")
        mark = "&#x2705;" if self.ok else "&#x274C;"
        badge = f'<span style="background:{colour};color:#fff;font-weight:bold;padding:0 0.4em;border-radius:3px">{word}</span>'
        tail = f" {html.escape(rest)}" if rest else ""
        return f'<div class="qh-check" style="font-family:sans-serif;color:{colour}">{mark} <b>{html.escape(self.name)}</b>: {badge}{tail}</div>'


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (which shows HTML), False in a terminal or under pytest."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the course
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _show_check_line(result: CheckResult) -> None:
    if _in_notebook():
        from IPython.display import display

        display({"text/plain": result.line, "text/html": result._repr_html_line()}, raw=True)
        return
    import sys

    line = result.line
    if getattr(sys.stdout, "isatty", lambda: False)():
        line = f"\033[{32 if result.ok else 31}m{line}\033[0m"
    print(line)


# key -> [the answer as given, whether it passed, its hint] of the first filled prediction a predict-first check judged
# in this Python process (a kernel; a test clears it to start as a fresh one); see _first_prediction_scored and
# qhelpers.prediction_memory, which also keeps it beside the progress log, for a restarted kernel
_FIRST_JUDGED: dict[str, list] = {}


def _as_given(prediction: Any) -> Any:
    """A filled prediction in a form that compares equal when the learner gives the same answer again."""
    if isinstance(prediction, (tuple, list)):
        try:
            return tuple(float(v) for v in prediction)
        except (TypeError, ValueError):
            pass
    return repr(prediction)


def _shown(given: Any) -> str:
    return f"({given[0]:g}, {given[1]:g})" if isinstance(given, tuple) and len(given) == 2 else str(given)


def _first_prediction_scored(key: Callable[..., str], name: str = "prediction"):
    """Make a predict-first check score the first filled prediction it judges in this process (per ``key(...)``).

    ``name``: what its verdict lines are called (the check's own ``report`` name).

    For a notebook cell that shows the measurement as soon as a well-formed prediction is filled in: once a first
    well-formed prediction has missed, a *different* one is refused with a hint that the first is the one
    scored, since it was written after the measurement was shown; the same one again gets the same verdict, and a
    first prediction that passed leaves later ones to be judged as usual. A blank, and a malformed answer (the check
    raises ``WrongAnswer``: one number, swapped or too wide bounds), is never remembered. Where the learner's
    progress log is kept (a notebook opened in Jupyter) the first prediction is also kept beside it
    (``qhelpers.prediction_memory``), so that a restarted kernel still scores it; elsewhere (nbval, scripts) a
    fresh process starts with no memory.
    """
    import functools

    from .prediction_memory import recall, remember

    def decorate(check):
        @functools.wraps(check)
        def wrapper(prediction: Any, *args: Any, **kwargs: Any):
            if not_filled(prediction) or (isinstance(prediction, (tuple, list)) and not_filled(*prediction)):
                raise NotFilledIn(name)
            memory, given = key(*args, **kwargs), _as_given(prediction)
            first = recall(_FIRST_JUDGED, memory)
            if first is not None and isinstance(first[0], list):
                first = [tuple(first[0]), *first[1:]]  # as _as_given gives it (JSON keeps a tuple as a list)
            if first is not None and not first[1] and given != first[0]:
                return report(
                    name, False,
                    f"your first prediction, {_shown(first[0])}, is the one scored: it missed ({first[2]}), and the cell "
                    "has shown the measurement since, so a range written after it is not a prediction. Keep the first "
                    "one and work out what it missed",
                )
            result = check(prediction, *args, **kwargs)  # a malformed answer raises WrongAnswer: not remembered
            remember(_FIRST_JUDGED, memory, [given, bool(result), getattr(result, "detail", "")])
            return result

        return wrapper

    return decorate
