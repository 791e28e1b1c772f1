"""INT8 inference on plain ``torch.int8`` tensors: the eager INT8 course model run with explicit scales.

Introduced in notebooks/05_beyond_eager_mode.ipynb.

* ``fixed_point_multiplier`` writes a requantization multiplier as an int32
  and a shift, the form ``qh.requantize(..., fixed_point=True)`` uses.
* ``int8_conv2d`` and ``plain_int8_forward`` run the eager INT8 course model
  with plain integer tensors and explicit scales (int32 accumulation, float
  requantization), the way the dtype deprecation says code should keep them.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .int8_arithmetic import _fixed_point_multiplier, requantize
from .quantmath import QParams

__all__ = [
    "fixed_point_multiplier",
    "quantized_weight",
    "int8_conv2d",
    "bias_in_float_for",
    "plain_int8_forward",
]


# --------------------------------------------------------------------------- plain int8 inference


def fixed_point_multiplier(multiplier: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A requantization multiplier as integer kernels store it: ``(M0, n)`` with ``multiplier ~= M0 * 2**-n``.

    ``M0`` is an int32 value in [2**30, 2**31) (the mantissa in Q0.31) and
    ``n`` a right shift, both int64 tensors of the multiplier's shape
    (Jacob et al. 2018, section 2.2; gemmlowp, QNNPACK and TFLite use this
    form). ``qh.requantize(..., fixed_point=True)`` applies it.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float, torch.Tensor)):
        raise TypeError(f"multiplier must be a float or a float tensor, got {type(multiplier).__name__}")
    m = torch.as_tensor(multiplier, dtype=torch.float64)
    m0, shift = _fixed_point_multiplier(m)
    return m0.reshape(m.shape), shift.reshape(m.shape)


def _check_codes(t: object, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.is_quantized or t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be a plain integer tensor of codes, got {getattr(t, 'dtype', type(t).__name__)}")
    return t


def int8_conv2d(
    x_q: torch.Tensor,
    x_qparams: QParams,
    w_q: torch.Tensor,
    w_qparams: QParams,
    bias: Optional[torch.Tensor],
    out_qparams: QParams,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    relu: bool = False,
    *,
    bias_in_float: bool = False,
    fixed_point: bool = False,
) -> torch.Tensor:
    """A 2-D convolution (groups=1) on integer codes, the way an INT8 kernel does it.

    Shapes: ``x_q`` (N, C, H, W) codes with per-tensor ``x_qparams``; ``w_q``
    (O, C, kH, kW) codes, per-tensor or per-channel along axis 0; ``bias``
    float (O,) or None. Steps: subtract zero points; unfold the patches
    (zero padding in real numbers is padding with the zero point in codes,
    i.e. 0 after the subtraction); multiply-accumulate in int32; add the bias;
    requantize to ``out_qparams`` (one float multiply, one rounding half to
    even). ``bias_in_float=False`` rounds the bias to int32 at scale
    ``x_scale * w_scale`` first and adds it to the sum, as PyTorch's QNNPACK
    kernels do; ``True`` adds ``bias / (x_scale * w_scale)`` to the sum in
    float32, unrounded, before the one rounding, as the x86 engine's kernels
    (FBGEMM's requantization, oneDNN) do. ``relu=True`` clamps at the output
    zero point (a fused ConvReLU). ``fixed_point=True`` requantizes the int32
    sums (bias rounded to int32) with an int32 multiplier and a shift instead
    of a float multiply (``qh.requantize(..., fixed_point=True)``: the
    integer-only form of gemmlowp and TFLite's reference kernels). Returns
    (N, O, H', W') codes of ``out_qparams.dtype``.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    x_q, w_q = _check_codes(x_q, "x_q"), _check_codes(w_q, "w_q")
    if x_q.dim() != 4 or w_q.dim() != 4:
        raise ValueError(f"x_q and w_q must be 4-D (N, C, H, W) and (O, C, kH, kW), got {tuple(x_q.shape)} and {tuple(w_q.shape)}")
    if x_q.shape[1] != w_q.shape[1]:
        raise ValueError(f"x_q has {x_q.shape[1]} channels but w_q expects {w_q.shape[1]} (groups other than 1 are not supported)")
    if x_qparams.per_channel or out_qparams.per_channel:
        raise ValueError("x_qparams and out_qparams must be per-tensor (activations use one scale)")
    if w_qparams.per_channel and w_qparams.axis != 0:
        raise ValueError(f"per-channel weight qparams must be along axis 0 (output channels), got axis {w_qparams.axis}")
    n_out, _, kh, kw = w_q.shape
    if w_qparams.scale.numel() not in (1, n_out):
        raise ValueError(f"w_qparams hold {w_qparams.scale.numel()} scales but w_q has {n_out} output channels")

    x_i = x_q.to(torch.int32) - x_qparams.zero_point.to(torch.int32).reshape(())
    w_zp = w_qparams.zero_point.to(torch.int32).reshape(-1, 1, 1, 1) if w_qparams.per_channel else w_qparams.zero_point.to(torch.int32).reshape(())
    w_i = (w_q.to(torch.int32) - w_zp).reshape(n_out, -1)
    # unfold works on floats; small integers are exact in float32, so this is only a reshuffle
    cols = F.unfold(x_i.to(torch.float32), (kh, kw), padding=padding, stride=stride).to(torch.int32)
    acc = w_i @ cols  # (N, O, L) int32
    acc_scale = x_qparams.scale.to(torch.float32).reshape(()) * w_qparams.scale.to(torch.float32).reshape(-1)
    if acc_scale.numel() == 1:
        acc_scale = acc_scale.expand(n_out)
    if not isinstance(bias_in_float, bool) or not isinstance(fixed_point, bool):
        raise TypeError(f"bias_in_float and fixed_point must be True or False, got {bias_in_float!r} and {fixed_point!r}")
    if bias_in_float and fixed_point:
        raise ValueError("fixed_point=True works on int32 sums: it needs the bias rounded to int32 (bias_in_float=False)")
    if bias is not None:
        if bias.shape != (n_out,):
            raise ValueError(f"bias must have shape ({n_out},), got {tuple(bias.shape)}")
        bias_acc = bias.detach().float() / acc_scale  # the bias in units of the int32 sum
        if bias_in_float:
            real = (acc.float() + bias_acc.reshape(1, -1, 1)) * (acc_scale / out_qparams.scale.float().reshape(())).reshape(1, -1, 1)
            codes = torch.round(real) + out_qparams.zero_point.float().reshape(())
            y = torch.clamp(codes, out_qparams.quant_min, out_qparams.quant_max).to(out_qparams.dtype)
        else:
            acc = acc + torch.round(bias_acc).to(torch.int32).reshape(1, -1, 1)
    if bias is None or not bias_in_float:
        y = requantize(acc, acc_scale, out_qparams, fixed_point=fixed_point)
    if relu:
        y = torch.maximum(y, out_qparams.zero_point.to(y.dtype).reshape(()))
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    h_out = (x_q.shape[2] + 2 * p[0] - kh) // s[0] + 1
    w_out = (x_q.shape[3] + 2 * p[1] - kw) // s[1] + 1
    return y.reshape(x_q.shape[0], n_out, h_out, w_out)


def _uint8_qparams(scale: float, zero_point: int) -> QParams:
    """Per-tensor quint8 activation qparams as plain numbers (the kernel clamps to the whole 0..255)."""
    return QParams(torch.tensor([float(scale)]), torch.tensor([int(zero_point)]), 0, 255, 8, False, "affine")


def _weight(module: nn.Module) -> tuple[torch.Tensor, QParams]:
    """The int8 codes and qparams of a quantized Conv/Linear module's weight (per-channel or per-tensor)."""
    w = module.weight()
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        qp = QParams(w.q_per_channel_scales().float(), w.q_per_channel_zero_points().long(), -128, 127, 8, True, "symmetric", 0)
    else:
        qp = QParams(torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()]), -128, 127, 8, True, "symmetric")
    return w.int_repr(), qp


def quantized_weight(module: nn.Module) -> tuple[torch.Tensor, QParams]:
    """The int8 weight codes (a plain ``torch.int8`` tensor) and their ``QParams`` of an eager quantized Conv/Linear module.

    Per-channel along axis 0 (the x86 engine's default) or per-tensor (qnnpack's).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not hasattr(module, "weight") or not callable(module.weight):
        raise TypeError(f"module must be a converted eager quantized Conv/Linear (its .weight() returns the int8 weight), got {type(module).__name__}")
    return _weight(module)


def bias_in_float_for(engine: str) -> bool:
    """How ``engine``'s eager INT8 kernels add the bias: True when in float before the one rounding (x86, fbgemm,
    onednn), False when rounded to int32 first (qnnpack). Read from the kernels' source, checked by
    ``qh.int8_conv2d`` reproducing each engine's codes exactly (tests/test_modern.py).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if engine not in ("x86", "fbgemm", "onednn", "qnnpack"):
        raise ValueError(f"engine must be one of 'x86', 'fbgemm', 'onednn', 'qnnpack', got {engine!r}")
    return engine != "qnnpack"


def _conv(module: nn.Module, x_q: torch.Tensor, x_qp: QParams, relu: bool, bias_in_float: bool) -> tuple[torch.Tensor, QParams]:
    w_q, w_qp = _weight(module)
    out_qp = _uint8_qparams(module.scale, module.zero_point)
    y = int8_conv2d(x_q, x_qp, w_q, w_qp, module.bias(), out_qp, module.stride, module.padding, relu, bias_in_float=bias_in_float)
    return y, out_qp


def _linear(module: nn.Module, x_q: torch.Tensor, x_qp: QParams, relu: bool, bias_in_float: bool) -> tuple[torch.Tensor, QParams]:
    # a Linear is a 1x1 convolution over a 1x1 image: the same arithmetic, and the same bias handling
    w_q, w_qp = _weight(module)
    out_qp = _uint8_qparams(module.scale, module.zero_point)
    y = int8_conv2d(x_q[:, :, None, None], x_qp, w_q[:, :, None, None], w_qp, module.bias(), out_qp, relu=relu, bias_in_float=bias_in_float)
    return y[:, :, 0, 0], out_qp


def plain_int8_forward(qmodel: nn.Module, x: torch.Tensor, *, bias_in_float: Optional[bool] = None) -> torch.Tensor:
    """The eager INT8 ``CourseNet``'s forward pass on plain ``torch.uint8``/``int8`` tensors; returns float logits (N, 10).

    ``qmodel`` is a converted eager INT8 course model (from
    ``qh.quantize_course_model``). Only its numbers are read (scales, zero
    points, int8 weight codes, float biases); every activation between the
    quantize at the input and the dequantize at the output is a plain
    ``torch.uint8`` tensor. ``bias_in_float``: how each layer adds its bias
    (see ``int8_conv2d``); ``None`` does what the current engine's kernels do
    (``bias_in_float_for(torch.backends.quantized.engine)``).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    from .quantmath import dequantize, quantize

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"x must be a float tensor (N, 1, 28, 28), got {getattr(x, 'shape', type(x).__name__)}")
    if not hasattr(qmodel, "quant") or not hasattr(qmodel.stem[0], "weight") or not callable(qmodel.stem[0].weight):
        raise TypeError("qmodel must be a converted eager INT8 CourseNet (see qh.quantize_course_model)")
    fb = bias_in_float_for(torch.backends.quantized.engine) if bias_in_float is None else bias_in_float
    qp = _uint8_qparams(float(qmodel.quant.scale), int(qmodel.quant.zero_point))
    h = quantize(x, qp)
    h, qp = _conv(qmodel.stem[0], h, qp, True, fb)
    h, qp = _conv(qmodel.down1[0], h, qp, True, fb)
    skip, skip_qp = h, qp
    h, qp = _conv(qmodel.res.conv1[0], h, qp, True, fb)
    h, qp = _conv(qmodel.res.conv2[0], h, qp, False, fb)
    # quantized add: both inputs rescaled to the output scale, summed, rounded once
    add_qp = _uint8_qparams(qmodel.res.skip_add.scale, qmodel.res.skip_add.zero_point)
    s = add_qp.scale.reshape(())
    total = (h.to(torch.int32) - qp.zero_point) * (qp.scale / s) + (skip.to(torch.int32) - skip_qp.zero_point) * (skip_qp.scale / s)
    h = torch.clamp(torch.round(total) + add_qp.zero_point, 0, 255).to(torch.uint8)
    h = torch.maximum(h, add_qp.zero_point.to(torch.uint8).reshape(()))  # ReLU on codes: clamp at the zero point
    qp = add_qp
    h, qp = _conv(qmodel.down2[0], h, qp, True, fb)
    # global average pool: same scale in and out, so average the codes
    h = torch.round(h.to(torch.float32).mean(dim=(2, 3))).to(torch.uint8)
    h, qp = _linear(qmodel.fc1, h, qp, True, fb)
    h, qp = _linear(qmodel.fc2, h, qp, False, fb)
    return dequantize(h, qp)
