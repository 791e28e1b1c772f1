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


def report(name: str, ok: bool, detail: str = "") -> bool:
    """Print ``✅ name`` or ``❌ name: detail`` and return ``ok``."""
    print(f"✅ {name}: correct" if ok else f"❌ {name}: {detail}")
    return bool(ok)


def _blank_safe(check):
    """Turn a blank answer (``...``) into a printed "not filled in yet" instead of an exception."""
    import functools

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except NotFilledIn as blank:
            return report(str(blank), False, "not filled in yet: replace ... with your answer and run the cell again")

    return wrapper


class NotFilledIn(Exception):
    """The learner has not replaced ``...`` with an answer yet."""


def not_filled(*values: Any) -> bool:
    """True when any value is still ``...`` or ``None`` (an exercise left blank in a student copy)."""
    return any(v is None or v is Ellipsis for v in values)


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
