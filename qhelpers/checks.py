"""Self-checks for the exercises: each prints what is right or what is off, and returns True/False.

Introduced in notebooks/01_manual_tensor_quantization.ipynb. A check never
raises on a wrong answer (so "Run All" carries on in a student copy); it
raises ``TypeError`` only when the answer is of the wrong kind altogether.
"""

from __future__ import annotations

from typing import Any

import torch

from .quantmath import QParams, qparams_from_tensor, quant_range, quantize

__all__ = ["report", "not_filled", "NotFilledIn", "check_recommendation", "check_close", "check_scale_zero_point", "check_codes", "check_per_channel_scales"]


def report(name: str, ok: bool, detail: str = "") -> "CheckResult":
    """Show ``✅ name: correct`` (green) or ``❌ name: not yet: detail`` (red); return a ``CheckResult``.

    The word and the colour carry the verdict where an emoji font is missing. In a notebook the
    line is shown as coloured HTML (plain text beside it); elsewhere it is printed. Each call is
    also appended to the learner's progress log when one is kept (see ``qhelpers.progress``).
    """
    result = CheckResult(bool(ok), str(name), str(detail))
    _show_check_line(result)
    try:
        from .progress import record

        record(result.name, result.ok)
    except Exception:  # the log is a convenience: a check never fails because of it
        pass
    return result


def _blank_safe(check):
    """Turn a blank answer (``...``) into a printed "not filled in yet" instead of an exception."""
    import functools

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except NotFilledIn as blank:
            return report(str(blank), False, NOT_FILLED_DETAIL)

    return wrapper


class NotFilledIn(Exception):
    """The learner has not replaced ``...`` with an answer yet."""


def not_filled(*values: Any) -> bool:
    """True when any value is still ``...`` or ``None`` (an exercise left blank in a student copy)."""
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


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if not_filled(value):
        raise NotFilledIn(name)
    try:
        return torch.as_tensor(value).detach()
    except Exception as exc:
        raise TypeError(f"{name} must be a number or tensor, got {type(value).__name__}") from exc


@_blank_safe
def check_close(name: str, answer: Any, expected: Any, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """Generic check: ``answer`` equals ``expected`` within ``rtol``/``atol`` (same shape)."""
    a, e = _as_tensor(answer, name).double(), _as_tensor(expected, "expected").double()
    if a.shape != e.shape and a.numel() != e.numel():
        return report(name, False, f"expected shape {tuple(e.shape)}, got {tuple(a.shape)}")
    a = a.reshape(e.shape)
    if torch.allclose(a, e, rtol=rtol, atol=atol):
        return report(name, True)
    worst = (a - e).abs().argmax()
    return report(name, False, f"entry {int(worst)} is {a.flatten()[worst].item():.6g}, expected {e.flatten()[worst].item():.6g}")


@_blank_safe
def check_scale_zero_point(scale: Any, zero_point: Any, x: torch.Tensor, signed: bool = False) -> bool:
    """Exercise: the affine 8-bit scale and zero point for ``x`` (unsigned by default)."""
    qp = qparams_from_tensor(x, 8, signed, "affine")
    ok_scale = check_close("scale", scale, qp.scale, rtol=1e-5)
    zp = _as_tensor(zero_point, "zero_point")
    if zp.is_floating_point() and not torch.equal(zp, zp.round()):
        return report("zero_point", False, f"{zp.item()} is not an integer: the zero point is a code, round it")
    ok_zp = report("zero_point", int(zp.reshape(-1)[0]) == int(qp.zero_point), f"got {int(zp.reshape(-1)[0])}; remember to widen the range to include 0 and round")
    return ok_scale and ok_zp


@_blank_safe
def check_codes(codes: Any, x: torch.Tensor, scale: float, zero_point: int, signed: bool = False) -> bool:
    """Exercise: the integer codes of ``x`` for the given scale and zero point (8 bits)."""
    c = _as_tensor(codes, "codes")
    if c.is_floating_point():
        return report("codes", False, f"codes must be integers (torch.uint8/int8), got {c.dtype}")
    qmin, qmax = quant_range(8, signed)
    qp = QParams(torch.tensor([float(scale)]), torch.tensor([int(zero_point)]), qmin, qmax, 8, signed, "affine")
    expected = quantize(x, qp)
    if c.shape != expected.shape:
        return report("codes", False, f"expected shape {tuple(expected.shape)}, got {tuple(c.shape)}")
    wrong = (c.long() != expected.long())
    if not wrong.any():
        return report("codes", True)
    i = int(wrong.flatten().nonzero()[0])
    return report(
        "codes", False, f"{int(wrong.sum())} codes differ; first at index {i}: got {int(c.flatten()[i])}, expected {int(expected.flatten()[i])} (round, add the zero point, clamp)"
    )


@_blank_safe
def check_per_channel_scales(scales: Any, weight: torch.Tensor) -> bool:
    """Exercise: symmetric signed 8-bit per-channel scales of ``weight`` along axis 0."""
    expected = qparams_from_tensor(weight, 8, True, "symmetric", axis=0).scale
    return check_close("per-channel scales", scales, expected, rtol=1e-5)


@_blank_safe
def check_recommendation(scenario: str, answer: Any) -> bool:
    """Exercise (notebook 00): the ``qh.recommend(...)`` result for one of ``qh.SCENARIOS``."""
    from .decision import SCENARIOS, Recommendation, recommend

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {list(SCENARIOS)}")
    if not_filled(answer):
        raise NotFilledIn(f"scenario {scenario!r}")
    if not isinstance(answer, Recommendation):
        return report(f"scenario {scenario!r}", False, f"expected the result of qh.recommend(...), got {type(answer).__name__}")
    expected = recommend(**SCENARIOS[scenario][1])
    if (answer.method, answer.engine) == (expected.method, expected.engine):
        return report(f"scenario {scenario!r}", True)
    hint = "re-read the story: which of the four questions did you answer differently?"
    if answer.engine != expected.engine:
        hint = "the method may be right, but where does the model run?"
    return report(f"scenario {scenario!r}", False, f"you got {answer.method} on {answer.engine}; {hint}")
