"""The integer arithmetic of a quantized layer: an INT8 linear layer with int32 accumulation, and requantization.

Introduced in notebooks/01_manual_tensor_quantization.ipynb.

``int8_linear`` multiplies int8 codes with int32 accumulation and a float or int32 bias; ``requantize`` maps the
int32 accumulator to the output's int8 grid, in float or in fixed point (``_fixed_point_multiplier``).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch

from .quantmath import _check_qparams_fit, QParams

__all__ = [
    "int8_linear",
    "requantize",
]


# --------------------------------------------------------------------------- integer linear


BiasMode = Literal["float", "int32"]


def int8_linear(
    x_q: torch.Tensor,
    x_qparams: QParams,
    w_q: torch.Tensor,
    w_qparams: QParams,
    bias: Optional[torch.Tensor],
    out_qparams: QParams,
    *,
    bias_mode: BiasMode,
    saturate_int16_pairs: bool = False,
) -> torch.Tensor:
    """``y = x @ w.T + b`` computed the way an INT8 kernel does.

    ``bias_mode`` has no default: ``"float"`` is the ``x86``/``fbgemm`` engines'
    way and ``"int32"`` qnnpack's (see below), and a default would be one
    engine's answer on the other engine.

    Shapes: ``x_q`` (N, in) codes, ``w_q`` (out, in) codes (per-tensor, or
    per-channel along axis 0), ``bias`` float (out,) or None. Steps:

    1. subtract zero points and multiply-accumulate in int32
       (``acc = (x_q - x_zp) @ (w_q - w_zp).T``);
    2. add the bias, in one of two ways (``bias_mode``):

       * ``"int32"``: quantize the bias to int32 with scale ``x_scale * w_scale``
         and add it to the accumulator, then requantize
         ``y_q = clamp(round(acc * x_scale * w_scale / out_scale) + out_zp)``.
         This is what qnnpack (and TFLite) do.
       * ``"float"``: scale the accumulator to float first and add the float
         bias there, ``y_q = clamp(round((acc * x_scale * w_scale + bias) / out_scale) + out_zp)``.
         This is what fbgemm/x86 (and onednn) do.

    The two differ by one code where the bias's rounding to int32 tips a value
    over a rounding boundary. Each matches ``torch.ao.nn.quantized.Linear`` on
    its own engine with 0 differing codes (tested), as long as the kernel does
    not saturate (full-range activations on a CPU without VNNI: see
    ``qh.int8_pairs_saturate`` and notebook 01).

    ``saturate_int16_pairs=True`` computes step 1 the way FBGEMM's AVX2 kernels
    do on a CPU without VNNI: the raw codes are multiplied (u8 x s8), each
    pair of neighbouring products along the input dimension is added in 16
    bits with saturation to -32768..32767, and the zero points are corrected
    afterwards in int32. With ``bias_mode="float"`` that reproduces the
    ``x86``/``fbgemm`` kernel on such a CPU code for code (checked on all
    16,384 output codes of notebook 01's fc1 under qemu with a Haswell CPU,
    ``scripts/cpu_kind.sh haswell``).

    Returns codes of ``out_qparams.dtype``.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    for name, t in (("x_q", x_q), ("w_q", w_q)):
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_quantized:
            raise TypeError(f"{name} must be a plain integer tensor of codes, got {getattr(t, 'dtype', type(t).__name__)}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if bias_mode not in ("float", "int32"):
        raise ValueError(
            f"bias_mode must be 'float' (float bias added after scaling: fbgemm/x86) or 'int32' "
            f"(bias quantized to int32 at x_scale*w_scale: qnnpack/TFLite), got {bias_mode!r}"
        )
    if x_q.shape[1] != w_q.shape[1]:
        raise ValueError(f"x_q has {x_q.shape[1]} features but w_q expects {w_q.shape[1]}")
    if x_qparams.per_channel:
        raise ValueError("x_qparams must be per-tensor (activations use one scale)")
    if w_qparams.per_channel and w_qparams.axis != 0:
        raise ValueError(f"per-channel weight qparams must be along axis 0 (output features), got axis {w_qparams.axis}")
    if out_qparams.per_channel:
        raise ValueError("out_qparams must be per-tensor")
    _check_qparams_fit(w_q, w_qparams)
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (w_q.shape[0],)):
        raise ValueError(f"bias must be a float tensor of shape ({w_q.shape[0]},), got {getattr(bias, 'shape', type(bias).__name__)}")

    x_zp = x_qparams.zero_point.reshape(())
    w_zp = w_qparams.zero_point.reshape(-1, 1) if w_qparams.per_channel else w_qparams.zero_point.reshape(())
    x_i32 = x_q.to(torch.int32) - x_zp.to(torch.int32)
    w_i32 = w_q.to(torch.int32) - w_zp.to(torch.int32)
    if saturate_int16_pairs:
        x_raw, w_raw = x_q.to(torch.int32), w_q.to(torch.int32)
        products = x_raw[:, None, :] * w_raw[None, :, :]  # (N, out, in), each |u8 x s8| < 2**15
        if products.shape[-1] % 2:
            products = torch.nn.functional.pad(products, (0, 1))
        pairs = products.reshape(*products.shape[:-1], -1, 2).sum(dim=-1).clamp(-32768, 32767)
        k = x_q.shape[1]
        acc = (
            pairs.sum(dim=-1)
            - x_zp.to(torch.int32) * w_raw.sum(dim=1).reshape(1, -1)
            - (w_zp.to(torch.int32).reshape(1, -1) * x_raw.sum(dim=1, keepdim=True))
            + k * x_zp.to(torch.int32) * w_zp.to(torch.int32).reshape(1, -1)
        )
    else:
        acc = x_i32 @ w_i32.T  # int32 accumulation, shape (N, out)

    acc_scale = (x_qparams.scale.to(torch.float32).reshape(()) * w_qparams.scale.to(torch.float32).reshape(-1))
    if bias_mode == "float":
        y = acc.to(torch.float32) * acc_scale.reshape(1, -1)
        if bias is not None:
            y = y + bias.detach().to(torch.float32).reshape(1, -1)
        y = torch.round(y / out_qparams.scale.to(torch.float32).reshape(())) + out_qparams.zero_point.reshape(())
        return torch.clamp(y, out_qparams.quant_min, out_qparams.quant_max).to(out_qparams.dtype)
    if bias is not None:
        # bias * (1 / scale), as torch rounds a bias to qint32 (its quantize_val multiplies by the inverse scale):
        # at an exact float32 tie, dividing instead can round to the neighbouring code
        acc = acc + torch.round(bias.detach().float() * (1.0 / acc_scale)).to(torch.int32)
    return requantize(acc, acc_scale, out_qparams)


def _fixed_point_multiplier(multiplier: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``multiplier`` (float, > 0) as ``M0 * 2**-n``: ``M0`` an int32 in [2**30, 2**31), ``n`` a right shift (int64 tensors)."""
    m = multiplier.detach().to(torch.float64).reshape(-1)
    if not bool(torch.isfinite(m).all()) or bool((m <= 0).any()) or bool((m >= 2.0**30).any()):
        raise ValueError(f"a fixed-point multiplier must be finite and in (0, 2**30), got {m.tolist()[:4]}")
    mantissa, exponent = torch.frexp(m)  # m = mantissa * 2**exponent, mantissa in [0.5, 1)
    m0 = torch.round(mantissa * 2.0**31).to(torch.int64)
    carry = m0 == 2**31  # the mantissa rounded up to 1.0: halve it, one more in the exponent
    m0 = torch.where(carry, m0 // 2, m0)
    shift = 31 - (exponent.to(torch.int64) + carry.to(torch.int64))
    too_far = (shift - 62).clamp(min=0)  # tiny multipliers: keep the shift within int64 (the result is 0 or 1 anyway)
    return m0 >> too_far, shift - too_far


def requantize(acc: torch.Tensor, acc_scale: torch.Tensor, out_qparams: QParams, *, fixed_point: bool = False) -> torch.Tensor:
    """int32 accumulator -> output codes: ``clamp(round(acc * acc_scale / out_scale) + out_zp)``.

    ``acc`` has shape (N, C, ...) with one ``acc_scale`` per channel C (dim 1),
    or a single ``acc_scale``; ``out_qparams`` is per-tensor. Shared by
    ``int8_linear`` here and the int8 convolution of notebooks/05.

    ``fixed_point=True`` is a single-rounding version of what integer kernels do
    (gemmlowp, QNNPACK, TFLite; Jacob et al. 2018, section 2.2; TFLite's
    ``MultiplyByQuantizedMultiplier`` rounds twice, a rounding high multiply then a
    rounding shift, and can differ by one code near a half): the multiplier
    ``M = acc_scale / out_scale`` is stored as an int32 ``M0`` in [2**30, 2**31)
    and a right shift ``n`` (``M = M0 * 2**-n``); the product ``acc * M0`` is
    formed in int64 and shifted right by ``n`` with rounding half away from
    zero. No float is touched; the result is within 1 code of the float form, which
    rounds the product to float32 first: they differ only where ``acc * M`` is within
    float32 rounding of a half (or on an exact half: half to even against half away).
    Introduced (fixed point) in notebooks/05_beyond_eager_mode.ipynb.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(fixed_point, bool):
        raise TypeError(f"fixed_point must be True or False, got {fixed_point!r}")
    shape = [1, -1] + [1] * (acc.dim() - 2) if acc_scale.numel() > 1 else [1] * acc.dim()
    multiplier = (acc_scale.to(torch.float32) / out_qparams.scale.to(torch.float32).reshape(())).reshape(shape)
    if fixed_point:
        if acc.is_floating_point() or acc.is_quantized:
            raise TypeError(f"acc must be an integer tensor (int32 sums) for fixed_point=True, got {acc.dtype}")
        m0, shift = _fixed_point_multiplier(multiplier)
        m0, shift = m0.reshape(shape), shift.reshape(shape)
        product = acc.to(torch.int64) * m0
        half = torch.ones_like(shift) << (shift - 1)
        rounded = torch.sign(product) * ((product.abs() + half) >> shift)  # round half away from zero
        y = rounded + out_qparams.zero_point.reshape(()).to(torch.int64)
        return torch.clamp(y, out_qparams.quant_min, out_qparams.quant_max).to(out_qparams.dtype)
    y = torch.round(acc.to(torch.float32) * multiplier) + out_qparams.zero_point.reshape(())
    return torch.clamp(y, out_qparams.quant_min, out_qparams.quant_max).to(out_qparams.dtype)
