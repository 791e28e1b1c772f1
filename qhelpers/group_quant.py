"""Per-group and int4 weights, and the weight-only matmul (notebook 06).

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

* ``group_qparams`` / ``group_quantize`` / ``group_dequantize``: one scale per
  group of ``group_size`` consecutive input features of each output row of a
  weight (out, in). Built on ``qhelpers.quantmath`` (the groups are treated as
  the "channels" of a (out * in / group_size, group_size) view), and equal to
  torchao's ``choose_qparams_affine`` / ``quantize_affine`` with
  ``block_size=(1, group_size)``, which the tests check.
* ``pack_int4`` / ``unpack_int4``: two signed 4-bit codes in one ``uint8``.
* ``weight_only_linear``: float activations, integer weights, dequantize then
  matmul (W8A16 / W4A16); ``weight_storage_bytes``: the bytes of such a weight with its scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .quantmath import QParams, _check_float_tensor, dequantize, qparams_from_tensor, quantize
from .helper_trap import _UsedHelper  # noqa: F401  (the trap linear_checks swaps into this module's helpers raises it)

__all__ = [
    "GroupQParams",
    "group_qparams",
    "group_quantize",
    "group_dequantize",
    "group_fake_quantize",
    "pack_int4",
    "unpack_int4",
    "weight_only_linear",
    "weight_storage_bytes",
]


# --------------------------------------------------------------------------- per-group quantization


@dataclass(frozen=True)
class GroupQParams:
    """Per-group quantization parameters of a 2-D weight of ``shape`` (out, in).

    ``qparams`` is per-channel (axis 0) over the (out * in / group_size, group_size)
    view in which each row is one group; ``scale``/``zero_point`` show them as
    (out, in / group_size).
    """

    qparams: QParams
    group_size: int
    shape: tuple[int, int]

    @property
    def scale(self) -> torch.Tensor:
        return self.qparams.scale.reshape(self.shape[0], -1)

    @property
    def zero_point(self) -> torch.Tensor:
        return self.qparams.zero_point.reshape(self.shape[0], -1)

    @property
    def bits(self) -> int:
        return self.qparams.bits

    @property
    def groups(self) -> int:
        """Number of groups (= number of scales)."""
        return self.qparams.scale.numel()


def _check_weight_2d(w: object, name: str = "weight") -> torch.Tensor:
    w = _check_float_tensor(w, name)
    if w.dim() != 2:
        raise ValueError(f"{name} must be 2-D (out_features, in_features), got shape {tuple(w.shape)}")
    return w


def _check_group_size(group_size: object, in_features: int) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int, got {group_size!r} ({type(group_size).__name__})")
    if group_size < 1 or in_features % group_size:
        divisors = [d for d in (16, 32, 64, 128, 256) if in_features % d == 0] or [d for d in range(2, min(in_features, 256) + 1) if in_features % d == 0]
        raise ValueError(
            f"group_size must divide in_features={in_features}, got {group_size}; "
            f"divisors include {divisors[:6]} (group_size=in_features is per-channel)"
        )
    return group_size


def group_qparams(
    weight: torch.Tensor, *, group_size: int, bits: int = 8, signed: bool = True, scheme: str = "symmetric"
) -> GroupQParams:
    """Scales (and zero points) for groups of ``group_size`` consecutive input features of ``weight`` (out, in).

    ``group_size == in_features`` is per-channel quantization; smaller groups
    follow the weight's local range more closely and cost more scales.
    ``bits=4, signed=True`` gives the int4 codes -8..7 (symmetric: the scale is
    ``max|w| / 7.5``, notebook 01's ``(qmax - qmin) / 2``, so both ends are used).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    w = _check_weight_2d(weight)
    g = _check_group_size(group_size, w.shape[1])
    qp = qparams_from_tensor(w.detach().reshape(-1, g), bits, signed, scheme, axis=0)
    return GroupQParams(qp, g, (int(w.shape[0]), int(w.shape[1])))


def _check_gqp(gqp: object, shape: tuple[int, ...], name: str) -> GroupQParams:
    if not isinstance(gqp, GroupQParams):
        raise TypeError(f"gqp must be a GroupQParams (from group_qparams), got {type(gqp).__name__}")
    if tuple(shape) != gqp.shape:
        raise ValueError(f"{name} has shape {tuple(shape)} but the GroupQParams were made for {gqp.shape}")
    return gqp


def group_quantize(weight: torch.Tensor, gqp: GroupQParams) -> torch.Tensor:
    """Float weight (out, in) -> integer codes (out, in) of ``gqp``'s dtype (``torch.int8`` also for 4 bits).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    w = _check_weight_2d(weight)
    _check_gqp(gqp, tuple(w.shape), "weight")
    return quantize(w.reshape(-1, gqp.group_size), gqp.qparams).reshape(gqp.shape)


def group_dequantize(codes: torch.Tensor, gqp: GroupQParams) -> torch.Tensor:
    """Integer codes (out, in) -> float32 weight: ``(q - zero_point) * scale`` of each code's group.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor of integer codes, got {type(codes).__name__}")
    _check_gqp(gqp, tuple(codes.shape), "codes")
    return dequantize(codes.reshape(-1, gqp.group_size), gqp.qparams).reshape(gqp.shape)


def group_fake_quantize(weight: torch.Tensor, *, group_size: int, bits: int = 8, scheme: str = "symmetric") -> torch.Tensor:
    """Quantize per group then dequantize: the float weight the integer grid can hold.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    gqp = group_qparams(weight, group_size=group_size, bits=bits, scheme=scheme)
    return group_dequantize(group_quantize(weight, gqp), gqp)


# --------------------------------------------------------------------------- int4 packing


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Signed 4-bit codes (-8..7, any integer dtype, last dimension even) -> ``uint8``, two codes per byte.

    Element ``2i`` goes to the low nibble and ``2i + 1`` to the high nibble of
    byte ``i``; each code is stored as its 4-bit two's complement (``code & 0xF``).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.is_floating_point() or codes.is_quantized or codes.dtype == torch.bool:
        raise TypeError(f"codes must be a plain integer tensor, got dtype {codes.dtype}")
    if codes.dim() == 0 or codes.shape[-1] % 2:
        raise ValueError(f"the last dimension of codes must be even (two codes per byte), got shape {tuple(codes.shape)}")
    lo, hi = (int(codes.min()), int(codes.max())) if codes.numel() else (0, 0)
    if lo < -8 or hi > 7:
        raise ValueError(f"int4 codes must lie in -8..7, got values from {lo} to {hi}")
    nibbles = codes.to(torch.int16) & 0xF
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).to(torch.uint8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """``uint8`` bytes from ``pack_int4`` -> signed 4-bit codes as ``torch.int8`` (last dimension doubled).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be torch.uint8 (from pack_int4), got dtype {packed.dtype}")
    p = packed.to(torch.int16)
    lo, hi = p & 0xF, p >> 4
    both = torch.stack([lo, hi], dim=-1).reshape(*packed.shape[:-1], -1)
    return ((both ^ 8) - 8).to(torch.int8)  # sign-extend: 0..7 stay, 8..15 become -8..-1


# --------------------------------------------------------------------------- weight-only linear


def weight_only_linear(x: torch.Tensor, codes: torch.Tensor, gqp: GroupQParams, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``y = x @ dequantize(codes).T + bias``: float activations, integer weights (W8A16 / W4A16).

    ``codes`` (out, in) as integer codes, or ``uint8`` (out, in / 2) packed by
    ``pack_int4`` for 4-bit ``gqp``. The weight is dequantized to float first;
    a fused kernel does the same inside the matmul, never writing the float
    weight to memory.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if isinstance(codes, torch.Tensor) and codes.dtype == torch.uint8 and gqp.bits <= 4:
        codes = unpack_int4(codes)
    w = group_dequantize(codes, gqp)
    x = _check_float_tensor(x, "x")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features but the weight expects {w.shape[1]}")
    return F.linear(x, w.to(x.dtype), bias)


def weight_storage_bytes(out_features: int, in_features: int, *, bits: int, group_size: Optional[int] = None, scale_bytes: int = 4) -> int:
    """Bytes of a quantized weight: ``bits``-bit codes plus one ``scale_bytes`` scale per group (per row if ``group_size`` is None)."""
    for name, v in (("out_features", out_features), ("in_features", in_features), ("bits", bits)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    g = in_features if group_size is None else _check_group_size(group_size, in_features)
    return math.ceil(out_features * in_features * bits / 8) + out_features * (in_features // g) * scale_bytes
