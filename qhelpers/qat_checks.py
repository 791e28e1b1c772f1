"""The self-checks of notebook 04's exercises: the STE, the low-bit qconfig, PTQ accuracy, frozen observers.

Introduced in notebooks/04_quantization_aware_training.ipynb.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from torch.ao.quantization import (
    FakeQuantizeBase, FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver, QConfig,
)

from .checks import NotFilledIn, _blank_safe, not_filled, report
from .fake_quant import (
    _check_bits, _MADE_BY_HELPER, _moved_since_calibration, _never_observed, fake_quant_modules, observers_frozen,
)

__all__ = [
    "check_ste",
    "check_low_bit_qconfig",
    "check_ptq_accuracy",
    "check_frozen",
]


# --------------------------------------------------------------------------- exercise self-checks


def _tensor_answer(value: Any, name: str) -> torch.Tensor:
    if not_filled(value):
        raise NotFilledIn(name)
    try:
        return torch.as_tensor(value).detach().double()
    except Exception as exc:
        raise TypeError(f"{name} must be a tensor or a list of numbers, got {type(value).__name__}") from exc


@_blank_safe
def check_ste(y: Any, grad: Any, x: torch.Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> bool:
    """Exercise: fake-quantized values ``y`` and STE gradient ``grad`` of ``x`` by hand, against torch's op.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    xr = x.detach().float().clone().requires_grad_(True)
    expected = torch.fake_quantize_per_tensor_affine(xr, scale, zero_point, quant_min, quant_max)
    expected.sum().backward()
    ya, ga = _tensor_answer(y, "y"), _tensor_answer(grad, "grad")
    xd = x.detach().double()
    codes = torch.round(xd / scale) + zero_point

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and torch.allclose(a, b.double(), atol=1e-6)

    ok_y = same(ya, expected.detach())
    grad_fn = type(y.grad_fn).__name__ if isinstance(y, torch.Tensor) and y.grad_fn is not None else ""
    if ok_y and "FakeQuantize" in grad_fn:
        ok_y = report("fake-quantized values", False, f"y's autograd history ends in {grad_fn}: torch's fake-quant op computed "
                      "these values. Compute them yourself with torch.round, torch.clamp and arithmetic")
    elif ok_y:
        report("fake-quantized values", True)
    elif same(ya, (codes - zero_point) * scale):
        report("fake-quantized values", False, "values outside the range must clamp to [quant_min, quant_max] before going back to float")
    elif same(ya, torch.clamp(torch.round(xd / scale), quant_min, quant_max) * scale) or same(ya, torch.clamp(codes, quant_min, quant_max) * scale):
        report("fake-quantized values", False, "the zero point is missing: add it to get the code, subtract it again to go back to float")
    elif same(ya, torch.clamp(codes, quant_min, quant_max)):
        report("fake-quantized values", False, "these are the integer codes: fake quantization returns floats, (code - zero_point) * scale")
    else:
        report("fake-quantized values", False, "round(x / scale) + zero_point, clamp to [quant_min, quant_max], then back to float")
    low, high = (quant_min - zero_point) * scale, (quant_max - zero_point) * scale
    expected_grad = xr.grad.double()
    ok_g = ga.shape == expected_grad.shape and torch.equal(ga, expected_grad)
    if ok_g and (x.grad is not None or (isinstance(grad, torch.Tensor) and grad.grad_fn is not None)):
        return report("STE gradient", False, "x has a .grad (or grad an autograd history): backward() computed this "
                      "gradient. Build the mask yourself with comparisons on the rounded codes")
    if ok_g:
        return report("STE gradient", True) and ok_y
    clamped = torch.clamp(codes, quant_min, quant_max)
    if ga.shape == expected_grad.shape and torch.equal(ga, ((xd >= low) & (xd <= high)).double()):
        hint = ("torch decides on the rounded code before the clamp, not on x and not on the clamped code: a value less than "
                "half a step outside the range still rounds inside (compare with <= and >=)")
    elif ga.shape == expected_grad.shape and torch.equal(ga, torch.ones_like(expected_grad)):
        hint = "that is the hand-written STE (gradient 1 everywhere): torch's STE is 0 where the code was clamped"
    elif ga.shape == expected_grad.shape and not ga.any():
        hint = ("all zeros: torch.round has a zero gradient almost everywhere, so autograd through it gives 0; that is why the "
                "STE exists. Build the mask yourself: 1 where the rounded code lies in [quant_min, quant_max]")
    elif ga.shape == expected_grad.shape and torch.equal(ga, ((clamped > quant_min) & (clamped < quant_max)).double()):
        hint = ("compare the codes before clamping, with <= and >=: after the clamp every code is in range, and a strict "
                "comparison then also zeroes the values that land exactly on the edge codes")
    else:
        hint = "1 where the code passes the clamp unchanged, 0 where it was clamped"
    report("STE gradient", False, hint)
    return False


def _fake_quant_instance(factory: Any, role: str) -> tuple[Optional[FakeQuantizeBase], str]:
    try:
        module = factory()
    except Exception as exc:  # a wrong with_args raises here
        return None, f"the {role} factory fails when called: {type(exc).__name__}: {exc}"
    if not isinstance(module, FakeQuantizeBase):
        return None, (
            f"the {role} is a {type(module).__name__}, an observer: QAT needs FakeQuantize.with_args(observer=..., ...), "
            "which rounds in the forward pass (an observer only watches)"
        )
    return module, ""


@_blank_safe
def check_low_bit_qconfig(qconfig: Any, bits: int, *, per_channel: bool = True) -> bool:
    """Exercise: a QConfig of plain ``FakeQuantize`` modules with moving-average min/max observers: signed symmetric
    ``bits``-bit weights ``-(2**(bits-1) - 1)..2**(bits-1) - 1`` (qint8; per output channel, ``ch_axis=0``, when
    ``per_channel``) and unsigned ``bits``-bit activations ``0..2**bits - 1`` (quint8, per tensor, affine).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    _check_bits(bits)
    if not_filled(qconfig):
        raise NotFilledIn("qconfig")
    if not isinstance(qconfig, QConfig):
        return report("qconfig", False, f"expected a torch.ao.quantization.QConfig(activation=..., weight=...), got {type(qconfig).__name__}")
    weight, why_w = _fake_quant_instance(qconfig.weight, "weight")
    act, why_a = _fake_quant_instance(qconfig.activation, "activation")
    if weight is None or act is None:
        return report("qconfig", False, why_w or why_a)
    for role, fq in (("weight", weight), ("activation", act)):
        if type(fq) is not FakeQuantize:
            return report("qconfig", False, f"the {role} is a {type(fq).__name__}; the exercise asks for plain FakeQuantize "
                          "(the fused module picks another scale at symmetric ranges, section 6)")
    want_act_obs = MovingAverageMinMaxObserver
    want_w_obs = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
    if type(act.activation_post_process) is not want_act_obs:
        return report("qconfig", False, f"the activation observer is {type(act.activation_post_process).__name__}, "
                      f"the exercise asks for {want_act_obs.__name__}")
    limit = 2 ** (bits - 1) - 1
    if weight.dtype != torch.qint8:
        ok_w = report("weight range", False, f"weights are {weight.dtype}: weights are signed, use torch.qint8")
    elif (weight.quant_min, weight.quant_max) == (-limit, limit):
        ok_w = report("weight range", True)
    elif weight.quant_min >= 0:
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] has no negative codes: weights are signed")
    elif (weight.quant_min, weight.quant_max) == (-limit - 1, limit):
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] is the two's-complement range; the "
                      f"exercise asks for the symmetric -{limit}..{limit} (code {-limit - 1} has no positive twin)")
    else:
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] is not a signed {bits}-bit range: count the levels")
    scheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    if weight.qscheme != scheme:
        words = "per-channel symmetric" if per_channel else "per-tensor symmetric"
        why = "one scale per output channel needs a per-channel observer (and qscheme)" if per_channel != (
            weight.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)) else "pass qscheme explicitly: the default is affine"
        ok_s = report("weight qscheme", False, f"{str(weight.qscheme).replace('torch.', '')}, the exercise asks for {words}: {why}")
    elif type(weight.activation_post_process) is not want_w_obs:
        ok_s = report("weight qscheme", False, f"the weight observer is {type(weight.activation_post_process).__name__}, "
                      f"the exercise asks for {want_w_obs.__name__}")
    elif per_channel and weight.ch_axis != 0:
        ok_s = report("weight qscheme", False, f"ch_axis={weight.ch_axis}: a conv weight is (out, in, kh, kw), a Linear's (out, in); "
                      "one scale per OUTPUT channel is axis 0")
    else:
        ok_s = report("weight qscheme", True)
    if act.dtype != torch.quint8:
        ok_a = report("activation range", False, f"activations are {act.dtype}: after a ReLU they are non-negative, use unsigned torch.quint8")
    elif act.qscheme != torch.per_tensor_affine:
        ok_a = report("activation range", False, f"activation qscheme {str(act.qscheme).replace('torch.', '')}: use per_tensor_affine (the default)")
    elif (act.quant_min, act.quant_max) == (0, 2**bits - 1):
        ok_a = report("activation range", True)
    else:  # quant_min < 0 cannot reach here: FakeQuantize asserts quant_min >= iinfo(quint8).min = 0 (fake_quantize.py __init__)
        ok_a = report("activation range", False, f"[{act.quant_min}, {act.quant_max}] is not an unsigned {bits}-bit range: count the levels")
    helper = getattr(qconfig.weight, _MADE_BY_HELPER, None) or getattr(qconfig.activation, _MADE_BY_HELPER, None)
    if ok_w and ok_s and ok_a and helper:
        return report("qconfig", False, f"these factories were built by {helper}: the exercise asks you to build them "
                      "yourself with FakeQuantize.with_args(observer=..., quant_min=..., ...)")
    return ok_w and ok_s and ok_a


def check_ptq_accuracy(name: str, accuracy: Any, expected: float) -> bool:
    """Exercise: the accuracy a learner's qconfig gave in a PTQ simulation equals the one the notebook measured
    with the qconfig the exercise describes (the same choices give the same model, to the last image).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    got = float(accuracy)
    return report(  # 1e-3: float32 means of the same predictions differ by ~1e-6; one image of 10,000 is 0.01
        name, abs(got - float(expected)) < 1e-3,
        f"{got:.1f} % where the notebook measured {float(expected):.1f} % with the qconfig the exercise describes: some "
        "setting of yours differs (observer, range, dtype, qscheme or channel axis)",
    )


@_blank_safe
def check_frozen(model: Any) -> bool:
    """Exercise: a prepared model ready for the last QAT epochs: fake quantization on, every observer disabled after
    it saw data, every
    fused Conv-BN using frozen statistics (``freeze_bn`` set and its BatchNorm out of training mode), and every range
    and BatchNorm statistic still the one its first ``calibrate_fake_quant`` left (the exercise runs no data between
    calibrating and freezing, so a change means data moved them; modules never calibrated by that helper are not
    compared).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not_filled(model):
        raise NotFilledIn("model")
    if not isinstance(model, nn.Module) or not fake_quant_modules(model):
        return report("frozen model", False, "expected the QAT-prepared model (with FakeQuantize modules)")
    fqs = fake_quant_modules(model).values()
    if any(int(fq.fake_quant_enabled[0]) == 0 for fq in fqs):
        return report(
            "frozen model", False,
            "fake quantization is switched off (disable_fake_quant is not a freeze: the model would train in float); "
            "switch it back on with enable_fake_quant",
        )
    never = _never_observed(model)
    if never:
        return report(
            "frozen model", False,
            f"{len(never)} fake quant(s) never saw data (e.g. {never[0]}): freezing an observer that saw nothing freezes "
            "its default scale 1.0 (and a per-channel one cannot even run); run data through the model with the observers "
            "on first (qh.calibrate_fake_quant), then freeze",
        )
    moved_fq, moved_bn = _moved_since_calibration(model)
    if moved_fq:
        ok_obs = report(
            "observers frozen", False,
            f"{len(moved_fq)} range(s) are no longer the ones calibration left (e.g. {moved_fq[0]}): data went through the "
            "model while its observers were on (model.eval() does not stop them; calibrating again moves them too), so "
            "that data chose the ranges the last epochs would train with. Re-run the cell above to rebuild ex_model, then "
            "freeze before anything runs through it",
        )
    else:
        ok_obs = report(
            "observers frozen", observers_frozen(model),
            "some FakeQuantize still has its observer enabled (model.eval() does not stop observers): use disable_observer",
        )
    fused = [m for m in model.modules() if hasattr(m, "freeze_bn")]
    if fused and all(m.freeze_bn for m in fused) and any(m.bn.training for m in fused):
        report(
            "BatchNorm frozen", False,
            "freeze_bn is set but BatchNorm is still in training mode (its running statistics keep changing): freeze_bn_stats "
            "sets both, use model.apply(freeze_bn_stats)",
        )
        return False
    if moved_bn:
        report(
            "BatchNorm frozen", False,
            f"{len(moved_bn)} BatchNorm(s) have other running statistics than when calibration ended (e.g. {moved_bn[0]}): "
            "data went through the model in training mode before freeze_bn_stats. Re-run the cell above, then freeze first",
        )
        return False
    ok_bn = report(
        "BatchNorm frozen", bool(fused) and all(m.freeze_bn and not m.bn.training for m in fused),
        "some fused Conv-BN still updates its running statistics: disabling observers does not freeze BatchNorm",
    )
    return ok_obs and ok_bn
