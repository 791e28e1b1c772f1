"""The self-checks of notebook 01's exercises: a qparams function, codes, per-channel scales, the SQNR prediction.

Introduced in notebooks/01_manual_tensor_quantization.ipynb. Each check prints what is right or what is off
and returns True/False, through ``qhelpers.checks`` (``report``, ``_blank_safe``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .quantmath import QParams, qparams_from_tensor, quant_range, quantize
from .checks import _blank_safe, _first_prediction_scored, not_filled, NotFilledIn, read_range, report, WrongAnswer

__all__ = [
    "check_qparams_function",
    "check_codes",
    "check_per_channel_scales",
    "check_sqnr_prediction",
    "sqnr_prediction_ready",
]


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if not_filled(value):
        raise NotFilledIn(name)
    try:
        return torch.as_tensor(value).detach()
    except Exception as exc:
        raise TypeError(f"{name} must be a number or tensor, got {type(value).__name__}") from exc


def _number(value: Any, name: str) -> float:
    t = _as_tensor(value, name)
    if t.numel() != 1:
        raise TypeError(f"{name} must be one number, got a tensor of shape {tuple(t.shape)}")
    return float(t.reshape(-1)[0])


def _scale_zero_point_mistakes(scale: Any, zero_point: Any, x: torch.Tensor, signed: bool) -> tuple[str, str]:
    """The hints for a wrong scale and a wrong zero point of ``x`` ("" where that one is right).

    Raises ``WrongAnswer`` for a zero point that is not one integer (a tensor of several values, or a
    fraction: no code can stand for it).
    """
    qp = qparams_from_tensor(x, 8, signed, "affine")
    qmin, qmax = quant_range(8, signed)
    s_ok = qp.scale.item()
    s = _number(scale, "scale")
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    close = lambda a, b: abs(a - b) <= 1e-5 * abs(b) + 1e-12  # noqa: E731
    if close(s, s_ok):
        scale_hint = ""
    elif close(s, (x.max().item() - x.min().item()) / (qmax - qmin)):
        scale_hint = "widen the range to include 0 before computing the scale"
    elif close(s, hi / (qmax - qmin)) or close(s, max(abs(lo), hi) / (qmax - qmin)):
        scale_hint = "your scale covers 0..max only: the range runs from min to max, and min is negative here"
    elif close(s, (hi - lo) / (qmax - qmin + 1)):
        scale_hint = "divide by the number of steps between the end codes (qmax - qmin), not the number of codes"
    else:
        scale_hint = f"got {s:.6g}; compare with section 2: the range (widened to include 0) divided by the steps between the end codes"
    zp = _as_tensor(zero_point, "zero_point")
    if zp.numel() != 1:
        raise WrongAnswer("zero_point", f"the zero point is one integer, got a tensor of shape {tuple(zp.shape)}")
    zp_val = float(zp.reshape(-1)[0])
    if zp_val != round(zp_val):
        raise WrongAnswer("zero_point", f"{zp_val:g} is not an integer: the zero point is a code, round it")
    zp_int, zp_ok = int(round(zp_val)), int(qp.zero_point)
    if zp_int == zp_ok:
        return scale_hint, ""
    exact = qmin - lo / s_ok
    if zp_int in (math.floor(exact), math.ceil(exact)) and abs(exact - round(exact)) > 0.05:
        return scale_hint, (
            f"qmin - min/scale is {exact:.2f} here: round it to the nearest code ({zp_ok}); int() truncates and floor/ceil "
            f"go one way, which gives {zp_int}"
        )
    if zp_int == qmin != zp_ok:
        zp_hint = "the zero point is missing: min is negative, so 0.0 does not sit at code qmin; which code stands for 0.0?"
    elif zp_int == qmin + round(lo / s_ok) or zp_int == -zp_ok + 2 * qmin:
        zp_hint = "the sign is flipped: min is negative, so subtracting round(min / scale) moves the zero point up"
    elif not qmin <= zp_int <= qmax:
        zp_hint = f"{zp_int} is not a code in {qmin}..{qmax}: the zero point is the code that stands for 0.0"
    else:
        zp_hint = f"got {zp_int}; the zero point is the code that stands for 0.0 (section 2)"
    return scale_hint, zp_hint


_ALL_ZERO = "an all-zero tensor (max - min = 0, like a dead ReLU channel's output)"


_TINY = "a tensor from 0 to 1e-6 (its scale (max - min) / 255 is below float32 eps)"


_TINY_HINT = ("(max - min) / 255 is below torch.finfo(torch.float32).eps here: torch's observers floor every scale at "
              "eps (max(scale, eps)), not only a scale of 0, and not from a threshold of your own")


_TINY_NEGATIVE = "a tensor from -1e-6 to 0 (its (max - min) / 255 is below float32 eps, and its min is negative)"


_TINY_AROUND_ZERO = "a tensor from -5e-7 to 5e-7 (its (max - min) / 255 is below float32 eps, and 0 is inside)"


_FLOORED_ZP_HINT = ("the zero point must come from the floored scale: compute scale = max((max - min) / 255, eps) first, "
                    "then the zero point with that scale, as torch's observers do (yours used (max - min) / 255)")


_ABOVE_FLOOR_HINT = ("(max - min) / 255 is above torch.finfo(torch.float32).eps here, so it is the scale: the floor is "
                     "max((max - min) / 255, eps), which replaces a scale only where it is below eps, not below a "
                     "threshold of your own")


_EPS_HINT = ("max - min is 0 here: floor the scale at torch.finfo(torch.float32).eps, as torch's observers do "
             "(section 2), so that it is never 0")


def _qparams_probes(x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """``x`` and tensors built from it whose range excludes 0 from either side (where widening to 0 matters)."""
    x = x.detach().float()
    spread = (x.max() - x.min()).clamp(min=1e-3)
    positive = x - x.min() + 0.25 * spread  # all values positive: min is above 0
    # min = -0.7 steps: qmin - min/scale = 0.7 rounds to 1, int()/floor give 0; negated (min = -254.3 steps): 254.3
    # rounds to 254, ceil gives 255
    step = spread / 255
    fractional = (x - x.min()) / spread * 255 * step - 0.7 * step
    return [
        ("the tensor you were given", x),
        ("a tensor whose values are all positive", positive),
        ("a tensor whose values are all negative", -positive),
        ("a tensor whose min is -0.7 steps (its zero point must be rounded, not truncated)", fractional),
        ("a tensor whose min is -254.3 steps (its zero point must be rounded, not taken up)", -fractional),
        (_ALL_ZERO, torch.zeros_like(x)),  # max - min = 0: torch's observers floor the scale at float32 eps
        (_TINY, torch.linspace(0.0, 1e-6, x.numel()).reshape(x.shape)),  # (max - min) / 255 below eps: floored too
        # below the floor with a negative min: the zero point must come from the floored scale (torch: (eps, 8), (eps, 4))
        (_TINY_NEGATIVE, torch.linspace(-1e-6, 0.0, x.numel()).reshape(x.shape)),
        (_TINY_AROUND_ZERO, torch.linspace(-5e-7, 5e-7, x.numel()).reshape(x.shape)),
    ] + [
        # widths on both sides of 255 eps (3.04e-5), where (max - min) / 255 and eps cross: only max(scale, eps)
        # gives every one, a floor applied below a threshold of one's own (1e-6, 1e-5, 3e-5) misses one of them
        (_near_floor(f), torch.linspace(0.0, f * _FLOOR_WIDTH, x.numel()).reshape(x.shape)) for f in _FLOOR_FACTORS
    ]


_FLOOR_WIDTH = 255 * torch.finfo(torch.float32).eps  # the range at which (max - min) / 255 equals eps: 3.04e-5


_FLOOR_FACTORS = (0.1, 0.5, 0.9, 0.99, 1.01, 1.1, 1.3)  # probe widths, in units of _FLOOR_WIDTH (all within 0..4e-5)


def _near_floor(factor: float) -> str:
    where = "below" if factor < 1 else "above"
    return f"a tensor from 0 to {factor * _FLOOR_WIDTH:.3g} (its (max - min) / 255 is {factor:g} eps, {where} eps)"


@_blank_safe
def check_qparams_function(qparams_fn: Any, x: torch.Tensor, signed: bool = False) -> bool:
    """Exercise: a function ``qparams_fn(t) -> (scale, zero_point)``, the affine 8-bit quantization parameters of any ``t``.

    Runs it on ``x``, on two tensors whose range excludes 0 (all
    positive, all negative), where skipping the widening to include 0 gives
    a different answer, on two whose ``-min/scale`` is 0.7 and 254.3,
    where truncating, flooring or ceiling the zero point differs from
    rounding it, and on an all-zero tensor, where the scale must be
    floored at ``torch.finfo(torch.float32).eps`` as torch's observers do
    (expected: ``(eps, 0)``), on one from 0 to 1e-6, whose (max - min) / 255
    is below eps and is floored too (a floor applied only to a scale of 0
    fails there), and on tensors from 0 to widths just below and just above
    255 eps (3.04e-5), where (max - min) / 255 and eps cross (a floor applied
    below a threshold of one's own, such as ``hi - lo > 1e-6``, fails one of
    them); on the first probe it gets wrong it names the mistake and says
    which probe it was.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    name = "qparams function"
    if not_filled(qparams_fn):
        raise NotFilledIn(name)
    if not callable(qparams_fn):
        return report(name, False, f"expected a function t -> (scale, zero_point), got {type(qparams_fn).__name__}")
    for what, t in _qparams_probes(x):
        try:
            out = qparams_fn(t.clone())
        except Exception as exc:  # the learner's function failed: say how, do not crash the notebook
            hint = f"; {_EPS_HINT}" if what == _ALL_ZERO else ""
            return report(name, False, f"your function raised {type(exc).__name__} on {what}: {exc}{hint}")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            return report(name, False, f"on {what} it returned {type(out).__name__}; return the pair (scale, zero_point)")
        try:
            if what == _ALL_ZERO:  # a scale of 0 (its zero point 0/0 = nan), or a stand-in such as 1.0
                s = _number(out[0], "scale")
                if s != torch.finfo(torch.float32).eps:
                    return report(name, False, f"on {what}: got a scale of {s:.6g}; {_EPS_HINT}")
            else:  # every other probe has a range: floored at eps where (max - min) / 255 is below it, only there
                eps = torch.finfo(torch.float32).eps
                s, floored = _number(out[0], "scale"), (t.max() - t.min()).item() / 255 < eps
                if floored and abs(s - eps) > 1e-6 * eps:  # a floor only at max == min, or below a threshold of one's own
                    return report(name, False, f"on {what}: got a scale of {s:.6g}; {_TINY_HINT}")
                if not floored and abs(s - eps) <= 1e-6 * eps:  # floored below a threshold of one's own, above 255 eps
                    return report(name, False, f"on {what}: got a scale of eps; {_ABOVE_FLOOR_HINT}")
                lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
                if floored and lo < 0 and _number(out[1], "zero_point") == quant_range(8, signed)[0] - round(lo / ((hi - lo) / 255)):
                    return report(name, False, f"on {what}: got a zero point of {_number(out[1], 'zero_point'):g}; {_FLOORED_ZP_HINT}")
            scale_hint, zp_hint = _scale_zero_point_mistakes(out[0], out[1], t, signed)
        except WrongAnswer as wrong:
            return report(name, False, f"on {what}: {wrong.hint}")
        except TypeError as exc:
            return report(name, False, f"on {what}: {exc}")
        if scale_hint or zp_hint:
            return report(name, False, f"on {what}: " + "; ".join(h for h in (scale_hint, zp_hint) if h))
    return report(name, True)


_TIE = 1e-3  # values this close to a rounding boundary may round either way between float32 x/scale and x*(1/scale)


@_blank_safe
def check_codes(codes: Any, x: torch.Tensor, scale: float, zero_point: int, signed: bool = False) -> bool:
    """Exercise: the integer codes of ``x`` for the given scale and zero point (8 bits).

    ``codes`` is a function ``codes(t)`` that quantizes any tensor ``t``;
    it runs on ``x`` and on values outside the range (far below the smallest
    and above the largest representable value), so a missing clamp or zero
    point fails. A tensor of codes is refused: ``x`` fits the range of its
    own scale and zero point, so its codes cannot show a missing clamp.
    Names the typical mistakes: no rounding (truncation), no zero point, no
    clamp (codes that wrapped around in uint8), a float dtype, another
    integer dtype than the 8-bit one asked for, a zero point that is not an
    integer (``int()`` would truncate it silently).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not_filled(codes, scale, zero_point):  # the codes, or the scale and zero point they need, are still blank
        raise NotFilledIn("codes")
    zp_value = _number(zero_point, "zero_point")
    if zp_value != round(zp_value):  # int() would truncate it, and so would the learner's integer conversion
        raise WrongAnswer("codes", f"the zero point {zp_value:g} is not an integer: round it first (exercise 2), then compute the codes")
    qmin, qmax = quant_range(8, signed)
    want_dtype = torch.int8 if signed else torch.uint8
    qp = QParams(torch.tensor([float(scale)]), torch.tensor([int(zp_value)]), qmin, qmax, 8, signed, "affine")
    lo_real, hi_real = (qmin - int(zero_point)) * float(scale), (qmax - int(zero_point)) * float(scale)
    probe = torch.tensor([lo_real - 10 * abs(lo_real) - 1.0, lo_real - float(scale), 0.0, hi_real + float(scale), hi_real + 10 * abs(hi_real) + 1.0])
    if not callable(codes) or isinstance(codes, torch.Tensor):  # x fits its own range: only a function shows the clamp
        return report("codes", False, f"the task asks for a function t -> codes (e.g. lambda t: ...), got {type(codes).__name__}: "
                      "codes of the tensor alone cannot show what happens to values outside the range your scale covers")
    inputs = [("the tensor", x.detach()), ("values outside the range", probe)]
    outputs = []
    for what, t in inputs:
        try:
            outputs.append(codes(t.clone()))
        except Exception as exc:  # the learner's function failed: say how, do not crash the notebook
            return report("codes", False, f"your function raised {type(exc).__name__} on {what}: {exc}")
    for (what, t), out in zip(inputs, outputs):
        c = _as_tensor(out, "codes")
        if c.is_floating_point():
            return report("codes", False, f"codes must be integers (torch.uint8/int8), got {c.dtype}: convert after rounding and clamping")
        expected = quantize(t, qp)
        if c.shape != expected.shape:
            return report("codes", False, f"expected shape {tuple(expected.shape)}, got {tuple(c.shape)}")
        wrong = c.long() != expected.long()
        if wrong.any():
            ratio = t.double() / float(scale)
            near_tie = ((ratio - ratio.floor()) - 0.5).abs() < _TIE
            if not ((c.long() - expected.long()).abs()[wrong].le(1).all() and near_tie[wrong].all()):
                return report("codes", False, _codes_mistake(c, t, float(scale), int(zero_point), qmin, qmax, what))
    for out in outputs:  # the dtype only once the values are right on every input
        c = _as_tensor(out, "codes")
        if c.dtype != want_dtype:
            on = "on every input" if len(outputs) > 1 else ""
            return report("codes", False, f"the values are right{' ' + on if on else ''}, but the task asks for {want_dtype} codes (one byte each), got {c.dtype}: convert with .to({want_dtype})")
    return report("codes", True)


def _codes_mistake(c: torch.Tensor, t: torch.Tensor, scale: float, zero_point: int, qmin: int, qmax: int, what: str) -> str:
    """Name the mistake that produced codes ``c`` for ``t``."""
    r = t.float() / scale  # in float32, as a learner's code computes it
    store = c.dtype if c.dtype in (torch.uint8, torch.int8) else torch.int64
    c = c.long()
    as_dtype = lambda v: v.to(store).long()  # noqa: E731  (values outside the dtype wrap, as in the learner's code)
    clamp = lambda v: torch.clamp(v, qmin, qmax).long()  # noqa: E731
    candidates = [
        ("values outside the range must clamp to the end codes before the conversion to 8 bits (they wrapped around)"
         if store != torch.int64 else "values outside the range must clamp to the end codes (yours go below or above them)",
         as_dtype(torch.round(r) + zero_point)),
        ("the zero point is missing: add it after rounding", clamp(torch.round(r))),
        ("the zero point is missing and values outside the range must clamp", as_dtype(torch.round(r))),
        ("round to the nearest code: converting to an integer type truncates", clamp(torch.trunc(r) + zero_point)),
        ("round to the nearest code: converting to an integer type truncates", clamp(torch.trunc(r + zero_point))),
        ("round to the nearest code: converting to an integer type truncates", as_dtype(torch.trunc(r) + zero_point)),
        ("round to the nearest code: converting to an integer type truncates", as_dtype(r + zero_point)),
        ("round to the nearest code, not down", clamp(torch.floor(r) + zero_point)),
        ("the zero point is subtracted: add it", clamp(torch.round(r) - zero_point)),
    ]
    for hint, cand in candidates:
        if torch.equal(cand, c):
            return hint
    wrong = c != torch.clamp(torch.round(r) + zero_point, qmin, qmax).long()
    n = int(wrong.sum())
    return f"{n} codes of {what} differ: divide by the scale, round, add the zero point, clamp to {qmin}..{qmax}"


@_blank_safe
def check_per_channel_scales(scales: Any, weight: torch.Tensor) -> bool:
    """Exercise: symmetric signed 8-bit per-channel scales of ``weight`` along axis 0, as torch's observer computes them.

    Names the typical mistakes: one scale for the whole tensor, scales along
    the wrong axis, the restricted range (``/127``, TFLite's convention),
    ``max`` instead of the largest absolute value, an affine range.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    expected = qparams_from_tensor(weight, 8, True, "symmetric", axis=0).scale.double()
    a = _as_tensor(scales, "per-channel scales").double()
    name = "per-channel scales"
    w = weight.detach().double().reshape(weight.shape[0], -1)
    if a.numel() == 1:
        return report(name, False, "that is one scale for the whole tensor: per-channel means one scale per output row")
    if a.numel() != expected.numel():
        return report(name, False, f"expected one scale per output row ({expected.numel()}), got {a.numel()}: reduce over the other axes")
    a = a.reshape(-1)
    if torch.allclose(a, expected, rtol=1e-5, atol=0):
        return report(name, True)
    absmax = w.abs().amax(dim=1)
    if torch.allclose(a, absmax / 127, rtol=1e-5):
        return report(name, False, "that is the restricted range [-127, 127] (TFLite's convention); torch's observer spreads [-m, m] over all 256 codes")
    if torch.allclose(a, w.amax(dim=1) / 127.5, rtol=1e-5) or torch.allclose(a, w.amax(dim=1) / 127, rtol=1e-5):
        return report(name, False, "symmetric means the largest absolute value: negative weights count too")
    if torch.allclose(a, (w.amax(dim=1) - w.amin(dim=1)) / 255, rtol=1e-5):
        return report(name, False, "that is the affine scale (max - min); symmetric ranges are [-m, m] around zero")
    if torch.allclose(a, absmax / 255, rtol=1e-5) or torch.allclose(a, absmax / 256, rtol=1e-5):
        return report(name, False, "a symmetric range [-m, m] is 2m wide: spread it over the codes, not m alone")
    worst = int((a - expected).abs().argmax())
    return report(name, False, f"row {worst}: got {a[worst].item():.6g}; compare with section 5's symmetric scale")


@_blank_safe
def sqnr_prediction_ready(prediction: Any, *, max_width: float = 6.0, quiet: bool = False) -> bool:
    """Exercise (predict first), before measuring: True when ``prediction`` is a ``(low, high)`` range in dB the
    measurement can judge (``read_range``'s tests: two numbers, low not above high, at most ``max_width`` dB wide).

    Otherwise shows what to change (or "not filled in yet") and returns False, so that the notebook measures and
    prints the SQNR only after a well-formed prediction is written; prints nothing when it returns True. With
    ``quiet=True`` it shows nothing either way (a later cell that must not reveal the answer before the prediction).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    try:
        read_range("prediction", prediction, max_width=max_width, unit="dB")
    except (NotFilledIn, WrongAnswer):
        if quiet:
            return False
        raise
    return True


_HALF_PRINTED_DIGIT_DB = 0.05  # a number printed or written with one decimal stands for anything within 0.05 of it


@_blank_safe
@_first_prediction_scored(lambda measured_db, *, reference_db, bits_from, bits_to, max_width=6.0: f"sqnr {bits_from}->{bits_to} bits from {reference_db!r} dB")
def check_sqnr_prediction(prediction: Any, measured_db: float, *, reference_db: float, bits_from: int, bits_to: int, max_width: float = 6.0) -> bool:
    """Exercise (predict first): a ``(low, high)`` range in dB for the SQNR at ``bits_to`` bits, knowing ``reference_db`` at ``bits_from``.

    Accepts a range at most ``max_width`` dB wide that contains the measured
    value (the reasoning: about 6 dB per bit) and none of the values the
    typical wrong reasonings give: no change with fewer bits, SQNR
    proportional to the bit count, 5 dB per bit (too few); a range that holds
    one of those as well as the measurement does not tell the reasoning from
    the mistake. A wrong reasoning's value is taken both from the unrounded
    reference and from the reference as printed with one decimal, widened by
    half a printed digit for the printed reference and for the range's own
    bounds: a range reaching that interval holds the value (so "5 dB per
    bit" worked from a printed 39.0 dB, (14.0, 19.0) or (13.0, 18.9), is
    refused). Names the wrong reasoning a range holds, or else which side
    it missed on; a range too wide to predict anything is refused.

    The notebook shows the measurement once a well-formed prediction is
    filled in (``sqnr_prediction_ready``), so the first well-formed
    prediction judged is the one scored:
    after it missed, a different range is refused with a hint saying so (the
    same range again gets the same verdict). In Jupyter and VS Code the first
    prediction is kept beside the progress log, so a restarted kernel
    remembers it; elsewhere only this process remembers it.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    name = "prediction"
    low, high = read_range(name, prediction, max_width=max_width, unit="dB")
    printed = round(reference_db, 1)  # the reference as the notebook prints it, which a learner may work from
    # each wrong reasoning's value, from the unrounded reference and from the printed one; ``slope`` is how much
    # it moves per dB of reference (the printed reference is off by up to half a printed digit)
    proportional = reference_db * bits_to / bits_from
    five_per_bit = reference_db - 5.0 * (bits_from - bits_to)

    def holds(value: float, value_printed: float, slope: float) -> bool:
        # the wrong value as an interval, widened by the rounding of the printed reference and of the range's own
        # bounds (written with one decimal): a range overlapping it holds that value as far as one can tell
        rounding = _HALF_PRINTED_DIGIT_DB * slope + _HALF_PRINTED_DIGIT_DB + 1e-9
        return low <= max(value, value_printed) + rounding and high >= min(value, value_printed) - rounding

    if holds(reference_db, printed, 1.0):
        hint = "you expected about the same SQNR: fewer bits mean a coarser grid and more noise"
    elif holds(proportional, printed * bits_to / bits_from, bits_to / bits_from):
        hint = (f"your range reaches {proportional:.1f} dB, what an SQNR proportional to the bit count would give, but it is"
                " not proportional: each removed bit about halves the step and costs about 20 log10 2 = 6.02 dB")
    elif holds(five_per_bit, printed - 5.0 * (bits_from - bits_to), 1.0):
        hint = (f"your range reaches {five_per_bit:.1f} dB, what 5 dB per removed bit would give: each removed bit about halves"
                " the step and costs about 20 log10 2 = 6.02 dB")
    elif low <= measured_db <= high:
        return report(name, True)
    elif high < measured_db:
        hint = "you expected more noise than the grid gives: count the dB that each removed bit costs"
    else:
        hint = ("you expected less noise than the grid gives: count the dB that each removed bit costs"
                " (each bit about halves the step: about 20 log10 2 = 6.02 dB)")
    if low <= measured_db <= high:  # right, and wrong too: the range does not tell them apart
        return report(name, False, f"measured {measured_db:.1f} dB, inside your range, and so is a wrong reasoning's value: {hint}; narrow it")
    return report(name, False, f"measured {measured_db:.1f} dB, outside your range; {hint}")
