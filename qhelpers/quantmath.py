"""Quantization arithmetic on plain integer tensors.

Introduced in notebooks/01_manual_tensor_quantization.ipynb.

Everything here works on ordinary ``torch.int8`` / ``torch.uint8`` (or wider)
tensors and keeps the scale and zero point beside them, the way the ecosystem
goes after the quantized dtypes (``torch.qint8`` ...) were deprecated in
PyTorch 2.13. The results are bit-exact with ``torch.quantize_per_tensor`` /
``torch.quantize_per_channel`` and equal to torch's own observers, which the
tests check.

Vocabulary used across the course:

* ``x``      float32 tensor (any shape)
* ``q``      integer codes (``torch.int8``/``torch.uint8`` for 8 bits)
* ``scale``  float32, step between neighbouring codes (units of ``x``)
* ``zero_point`` integer code that stands for the real value 0.0

The integer arithmetic of a quantized layer (``int8_linear``, ``requantize``) is in ``qhelpers.int8_arithmetic``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch

__all__ = [
    "QParams",
    "quant_range",
    "storage_dtype",
    "qparams_from_minmax",
    "qparams_from_tensor",
    "quantize",
    "dequantize",
    "fake_quantize",
    "max_abs_error",
    "mse",
    "sqnr_db",
]


Scheme = Literal["affine", "symmetric"]


_EPS = torch.finfo(torch.float32).eps  # the floor torch's observers put under a scale


@dataclass(frozen=True)
class QParams:
    """Quantization parameters: what you need to go between floats and codes.

    ``scale`` (float32) and ``zero_point`` (int64) are 1-element tensors for
    per-tensor quantization and 1-D tensors of length C for per-channel
    quantization along ``axis``.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    quant_min: int
    quant_max: int
    bits: int
    signed: bool
    scheme: str
    axis: Optional[int] = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    @property
    def dtype(self) -> torch.dtype:
        """The plain integer dtype that stores the codes."""
        return storage_dtype(self.bits, self.signed)


# --------------------------------------------------------------------------- checks


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int from 2 to 16, got {bits!r} ({type(bits).__name__})")
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be from 2 to 16, got {bits}")


def _check_scheme(scheme: str) -> None:
    if scheme not in ("affine", "symmetric"):
        raise ValueError(f"scheme must be 'affine' or 'symmetric', got {scheme!r}")


def _check_float_tensor(x: object, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_quantized:
        raise TypeError(f"{name} is a quantized tensor ({x.dtype}); call .dequantize() first or pass the float tensor")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); there is no range to quantize")
    if not torch.isfinite(x).all():
        bad = "NaN" if torch.isnan(x).any() else "inf"
        raise ValueError(f"{name} contains {bad}; quantization needs finite values")
    return x


def _check_axis(x: torch.Tensor, axis: Optional[int]) -> Optional[int]:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis must be an int or None, got {axis!r}")
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} is out of range for a tensor with {x.dim()} dimensions (shape {tuple(x.shape)})")
    return axis % x.dim()


# --------------------------------------------------------------------------- ranges


def quant_range(bits: int = 8, signed: bool = True, reduce_range: bool = False) -> tuple[int, int]:
    """Smallest and largest integer code for ``bits``-bit codes.

    >>> quant_range(8, signed=True)
    (-128, 127)
    >>> quant_range(8, signed=False, reduce_range=True)   # torch's fbgemm activation range
    (0, 127)

    ``reduce_range`` drops one bit, as torch's observers do for the fbgemm
    backend (so that int16 intermediate sums on older x86 cannot overflow).
    """
    _check_bits(bits)
    b = bits - 1 if reduce_range else bits
    if signed:
        return -(2 ** (b - 1)), 2 ** (b - 1) - 1
    return 0, 2**b - 1


def storage_dtype(bits: int = 8, signed: bool = True) -> torch.dtype:
    """The smallest plain integer dtype that holds ``bits``-bit codes."""
    _check_bits(bits)
    if bits <= 8:
        return torch.int8 if signed else torch.uint8
    if signed:
        return torch.int16
    return torch.int32


# --------------------------------------------------------------------------- qparams


def qparams_from_minmax(
    min_val: torch.Tensor | float,
    max_val: torch.Tensor | float,
    bits: int = 8,
    signed: bool = True,
    scheme: Scheme = "affine",
    reduce_range: bool = False,
    axis: Optional[int] = None,
) -> QParams:
    """Scale and zero point for the range ``[min_val, max_val]``.

    Follows torch's observers exactly (``MinMaxObserver._calculate_qparams``):
    the range is first widened to include 0.0 (so that 0 is exactly
    representable, which zero padding and ReLU rely on), the scale has a floor
    of float32 eps, and:

    * affine:    ``scale = (max - min) / (qmax - qmin)``,
                 ``zero_point = qmin - round(min / scale)`` clamped to the range;
    * symmetric: ``scale = max(|min|, |max|) / ((qmax - qmin) / 2)``,
                 ``zero_point = 0`` for signed codes and the middle code for
                 unsigned ones (128 for full-range 8 bits, as torch does).

    ``min_val``/``max_val`` are scalars (per tensor) or 1-D tensors with one
    entry per channel (per channel; give the ``axis`` they came from).
    """
    _check_bits(bits)
    _check_scheme(scheme)
    min_t = torch.as_tensor(min_val, dtype=torch.float32).detach().reshape(-1)
    max_t = torch.as_tensor(max_val, dtype=torch.float32).detach().reshape(-1)
    if min_t.numel() == 0 or max_t.numel() == 0:
        raise ValueError("min_val and max_val must not be empty")
    if min_t.shape != max_t.shape:
        raise ValueError(f"min_val has {min_t.numel()} entries but max_val has {max_t.numel()}")
    if not (torch.isfinite(min_t).all() and torch.isfinite(max_t).all()):
        raise ValueError(f"min_val and max_val must be finite, got min={min_t.tolist()[:4]} max={max_t.tolist()[:4]}")
    if (min_t > max_t).any():
        i = int(torch.nonzero(min_t > max_t)[0])
        raise ValueError(f"min_val must be <= max_val, got min={min_t[i].item()} > max={max_t[i].item()} (entry {i})")
    if axis is None and min_t.numel() != 1:
        raise ValueError(f"per-tensor qparams need one min and one max, got {min_t.numel()}; pass axis= for per-channel")

    qmin, qmax = quant_range(bits, signed, reduce_range)
    zero = torch.zeros_like(min_t)
    min_neg = torch.minimum(min_t, zero)
    max_pos = torch.maximum(max_t, zero)
    eps = torch.tensor(_EPS, dtype=torch.float32)
    if scheme == "symmetric":
        max_pos = torch.maximum(-min_neg, max_pos)
        scale = torch.maximum(max_pos / (float(qmax - qmin) / 2), eps)
        if signed:
            zp = torch.zeros_like(scale, dtype=torch.int64)
        else:
            if reduce_range:
                raise ValueError("reduce_range is not supported for unsigned symmetric quantization (torch's observers refuse it too)")
            # torch's observers use 128 for 8 bits and the rounded-down middle of a custom range otherwise
            mid = 128 if bits == 8 else (qmin + qmax) // 2
            zp = torch.full_like(scale, mid, dtype=torch.int64)
    else:
        scale = torch.maximum((max_pos - min_neg) / float(qmax - qmin), eps)
        zp = qmin - torch.round(min_neg / scale).to(torch.int64)
        zp = torch.clamp(zp, qmin, qmax)
    return QParams(scale.to(torch.float32), zp.to(torch.int64), qmin, qmax, bits, signed, scheme, axis)


def qparams_from_tensor(
    x: torch.Tensor,
    bits: int = 8,
    signed: bool = True,
    scheme: Scheme = "affine",
    reduce_range: bool = False,
    axis: Optional[int] = None,
) -> QParams:
    """Scale and zero point from a tensor's own min and max.

    ``axis=None`` gives one scale for the whole tensor (per-tensor);
    ``axis=k`` gives one scale per slice along dimension ``k`` (per-channel,
    usually ``axis=0``, the output channels of a weight).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    x = _check_float_tensor(x)
    axis = _check_axis(x, axis)
    x = x.detach()
    if axis is None:
        return qparams_from_minmax(x.min(), x.max(), bits, signed, scheme, reduce_range)
    flat = x.movedim(axis, 0).reshape(x.shape[axis], -1)
    return qparams_from_minmax(flat.min(dim=1).values, flat.max(dim=1).values, bits, signed, scheme, reduce_range, axis)


# --------------------------------------------------------------------------- quantize


def _broadcast(t: torch.Tensor, x: torch.Tensor, axis: Optional[int]) -> torch.Tensor:
    if axis is None:
        return t.reshape(())
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


def _check_qparams_fit(x: torch.Tensor, qp: QParams) -> None:
    if not isinstance(qp, QParams):
        raise TypeError(f"qparams must be a QParams (from qparams_from_tensor/qparams_from_minmax), got {type(qp).__name__}")
    if qp.axis is None:
        if qp.scale.numel() != 1:
            raise ValueError(f"per-tensor QParams must hold one scale, got {qp.scale.numel()}")
        return
    if not -x.dim() <= qp.axis < x.dim():
        raise ValueError(f"QParams axis {qp.axis} does not exist in a tensor of shape {tuple(x.shape)}")
    if x.shape[qp.axis] != qp.scale.numel():
        raise ValueError(
            f"QParams hold {qp.scale.numel()} channels but the tensor has {x.shape[qp.axis]} along axis {qp.axis}"
        )


def quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Float tensor -> integer codes: ``clamp(round(x / scale) + zero_point)``.

    Returns a plain integer tensor of ``qparams.dtype`` (``torch.int8`` for
    signed 8-bit). Rounding is half-to-even and the division is a
    multiplication by the float32 reciprocal of the scale, exactly as
    ``torch.quantize_per_tensor`` / ``quantize_per_channel`` do it, so the
    codes equal their ``int_repr()`` bit for bit.

    Codes are clamped to ``qparams.quant_min..quant_max``, as torch's
    ``FakeQuantize`` does. ``torch.quantize_per_tensor`` clamps to the whole
    dtype instead, so the two differ only for a reduced range (``reduce_range``
    or fewer than 8 bits).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    x = _check_float_tensor(x)
    _check_qparams_fit(x, qparams)
    inv_scale = _broadcast(1.0 / qparams.scale.to(torch.float32), x, qparams.axis)
    zp = _broadcast(qparams.zero_point, x, qparams.axis)
    codes = torch.round(x.detach().to(torch.float32) * inv_scale) + zp
    codes = torch.clamp(codes, qparams.quant_min, qparams.quant_max)
    return codes.to(qparams.dtype)


def dequantize(q: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Integer codes -> float32: ``(q - zero_point) * scale``.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor of integer codes, got {type(q).__name__}")
    if q.is_quantized:
        raise TypeError(f"q is a quantized tensor ({q.dtype}); use q.dequantize() or pass q.int_repr()")
    if q.is_floating_point() or q.dtype == torch.bool:
        raise TypeError(f"q must hold integer codes, got dtype {q.dtype}")
    _check_qparams_fit(q, qparams)
    scale = _broadcast(qparams.scale.to(torch.float32), q, qparams.axis)
    zp = _broadcast(qparams.zero_point, q, qparams.axis)
    return (q.to(torch.int64) - zp).to(torch.float32) * scale


def fake_quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Quantize then dequantize: the float values the integer grid can hold.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    return dequantize(quantize(x, qparams), qparams)


# --------------------------------------------------------------------------- errors


def _pair(x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("x_hat", x_hat)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.numel() == 0:
            raise ValueError(f"{name} is empty")
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    x = x.dequantize() if x.is_quantized else x
    x_hat = x_hat.dequantize() if x_hat.is_quantized else x_hat
    return x.detach().double(), x_hat.detach().double()


def max_abs_error(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Largest ``|x - x_hat|`` (units of x).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    x, x_hat = _pair(x, x_hat)
    return float((x - x_hat).abs().max())


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error (units of x squared).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    x, x_hat = _pair(x, x_hat)
    return float(((x - x_hat) ** 2).mean())


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum x^2 / sum (x - x_hat)^2)``.

    Higher is better; each extra bit adds about 6 dB. Returns ``inf`` when
    ``x_hat`` equals ``x`` exactly.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    x, x_hat = _pair(x, x_hat)
    noise = float(((x - x_hat) ** 2).sum())
    signal = float((x**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
