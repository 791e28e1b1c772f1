"""Linear layers quantized the way transformers are: per group, weight-only, 4-bit, and SmoothQuant.

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

* ``group_qparams`` / ``group_quantize`` / ``group_dequantize``: one scale per
  group of ``group_size`` consecutive input features of each output row of a
  weight (out, in). Built on ``qhelpers.quantmath`` (the groups are treated as
  the "channels" of a (out * in / group_size, group_size) view), and equal to
  torchao's ``choose_qparams_affine`` / ``quantize_affine`` with
  ``block_size=(1, group_size)``, which the tests check.
* ``pack_int4`` / ``unpack_int4``: two signed 4-bit codes in one ``uint8``.
* ``weight_only_linear``: float activations, integer weights, dequantize then
  matmul (W8A16 / W4A16).
* the roofline: ``measure_bandwidth``, ``measure_matmul_rate``,
  ``linear_cost`` and ``roofline_ms``.
* activation outliers and SmoothQuant: ``activation_channel_max``,
  ``smoothquant_scales``, ``smooth_layernorm_linears``, ``w8a8_linear``.
* self-checks of the notebook's exercises.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tbench
from torch import nn

from .checks import NotFilledIn, _blank_safe, as_number, not_filled, report
from .quantmath import QParams, _check_float_tensor, dequantize, qparams_from_tensor, quantize

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
    "measure_bandwidth",
    "measure_matmul_rate",
    "LinearCost",
    "linear_cost",
    "roofline_ms",
    "activation_channel_max",
    "smoothquant_scales",
    "smooth_layernorm_linears",
    "w8a8_linear",
    "simulate_w8a8",
    "check_int4_byte",
    "check_group_bytes",
    "check_roofline_speedup",
    "check_smoothquant_scales",
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
    ``bits=4, signed=True`` gives the int4 codes -8..7 (symmetric: -7..7 used
    by the scale, as torchao does).

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


# --------------------------------------------------------------------------- the roofline


def measure_bandwidth(*, megabytes: int = 64, threads: int = 1, min_run_time: float = 0.3) -> float:
    """Memory bandwidth in GB/s: the rate ``torch.sum`` reads a float32 tensor far larger than the caches.

    A read-only stream, like a weight read by a matmul at batch 1.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if isinstance(megabytes, bool) or not isinstance(megabytes, int) or megabytes < 8:
        raise ValueError(f"megabytes must be an int >= 8 (larger than the caches), got {megabytes!r}")
    x = torch.ones(megabytes * (1 << 20) // 4)
    timer = tbench.Timer(stmt="torch.sum(x)", globals={"x": x, "torch": torch}, num_threads=threads)
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    return x.numel() * 4 / seconds / 1e9


def measure_matmul_rate(*, n: int = 512, threads: int = 1, dtype: torch.dtype = torch.float32, min_run_time: float = 0.3) -> float:
    """Matmul rate in GFLOP/s (GOP/s for int8) of an (n, n) @ (n, n) product (``2 n^3`` operations).

    ``dtype=torch.int8`` times ``torch._int_mm`` (int8 x int8 -> int32, the
    kernel behind torchao's dynamic INT8 on CPU); float dtypes time ``torch.mm``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 16 or n % 8:
        raise ValueError(f"n must be a multiple of 8 and >= 16, got {n!r}")
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        stmt = "torch._int_mm(a, b)"
    elif dtype in (torch.float32, torch.bfloat16, torch.float16):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        stmt = "torch.mm(a, b)"
    else:
        raise ValueError(f"dtype must be torch.float32, torch.bfloat16, torch.float16 or torch.int8, got {dtype}")
    timer = tbench.Timer(stmt=stmt, globals={"a": a, "b": b, "torch": torch}, num_threads=threads)
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    return 2 * n**3 / seconds / 1e9


@dataclass(frozen=True)
class LinearCost:
    """FLOPs and bytes moved by one ``nn.Linear`` call on ``batch`` rows."""

    flops: float
    weight_bytes: float
    activation_bytes: float

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte moved."""
        return self.flops / self.bytes


def linear_cost(in_features: int, out_features: int, batch: int, *, weight_bits: int = 32, activation_bits: int = 32) -> LinearCost:
    """``2 * batch * in * out`` FLOPs; the weight read once, the input read and the output written once.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    for name, v in (("in_features", in_features), ("out_features", out_features), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
        if v not in (4, 8, 16, 32):
            raise ValueError(f"{name} must be 4, 8, 16 or 32, got {v!r}")
    return LinearCost(
        flops=2.0 * batch * in_features * out_features,
        weight_bytes=in_features * out_features * weight_bits / 8,
        activation_bytes=batch * (in_features + out_features) * activation_bits / 8,
    )


def roofline_ms(cost: LinearCost, *, gflops: float, gbps: float) -> float:
    """The roofline's time in ms: the slower of computing the FLOPs at ``gflops`` and moving the bytes at ``gbps``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if gflops <= 0 or gbps <= 0:
        raise ValueError(f"gflops and gbps must be positive, got {gflops!r} and {gbps!r}")
    return 1e3 * max(cost.flops / (gflops * 1e9), cost.bytes / (gbps * 1e9))


# --------------------------------------------------------------------------- outliers and SmoothQuant


@torch.no_grad()
def activation_channel_max(model: nn.Module, batches: Iterable, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """``max |x_j|`` over every token of every batch, for each input channel ``j`` of each module in ``modules``.

    ``modules`` maps a name to a submodule of ``model`` (e.g. a Linear);
    ``batches`` yields inputs or (inputs, labels). Returns {name: (in_features,)}.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not modules:
        raise ValueError("modules is empty; give {name: submodule} for the layers whose inputs to measure")
    found: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_mod: nn.Module, args: tuple) -> None:
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0)
            found[name] = x if name not in found else torch.maximum(found[name], x)

        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        seen = 0
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            seen += 1
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("batches yielded nothing")
    missing = [n for n in modules if n not in found]
    if missing:
        raise ValueError(f"modules {missing} were never called by the model")
    return found


def smoothquant_scales(act_max: torch.Tensor, weight_max: torch.Tensor, *, alpha: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """SmoothQuant's per-channel factors ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (Xiao et al. 2023).

    Dividing the activations' channel j by ``s_j`` and multiplying the weight's
    input column j by ``s_j`` leaves ``X W^T`` unchanged and moves the difficulty
    from the activations to the weights: ``alpha=0`` moves none, ``alpha=1`` all.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    a, w = torch.as_tensor(act_max).float(), torch.as_tensor(weight_max).float()
    if a.shape != w.shape or a.dim() != 1:
        raise ValueError(f"act_max and weight_max must be 1-D of the same length, got {tuple(a.shape)} and {tuple(w.shape)}")
    return a.clamp(min=eps).pow(alpha) / w.clamp(min=eps).pow(1.0 - alpha)


@torch.no_grad()
def smooth_layernorm_linears(norm: nn.LayerNorm, linears: Sequence[nn.Linear], scales: torch.Tensor) -> None:
    """Fold SmoothQuant ``scales`` in place: LayerNorm's weight and bias divided by ``s``, each Linear's input columns multiplied by ``s``.

    The float output of ``linear(norm(x))`` is unchanged (up to rounding); every
    Linear that reads ``norm``'s output must be in ``linears``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(norm, nn.LayerNorm) or norm.weight is None:
        raise TypeError(f"norm must be an nn.LayerNorm with an affine weight, got {type(norm).__name__}")
    s = torch.as_tensor(scales).float()
    if s.shape != norm.weight.shape:
        raise ValueError(f"scales must have shape {tuple(norm.weight.shape)}, got {tuple(s.shape)}")
    if not (s > 0).all():
        raise ValueError("scales must be positive")
    for lin in linears:
        if not isinstance(lin, nn.Linear) or lin.in_features != s.numel():
            raise ValueError(f"each of linears must be an nn.Linear with in_features={s.numel()}, got {lin!r}")
    norm.weight.div_(s)
    if norm.bias is not None:
        norm.bias.div_(s)
    for lin in linears:
        lin.weight.mul_(s)


class _W8A8Linear(nn.Module):
    """An ``nn.Linear`` run through ``w8a8_linear`` (used by ``simulate_w8a8``)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return w8a8_linear(x, self.linear)


def simulate_w8a8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose every ``nn.Linear`` runs as ``w8a8_linear`` (8-bit activations with one scale
    per tensor, chosen per call; 8-bit per-channel weights); ``model`` is left unchanged.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    sim = copy.deepcopy(model)
    targets = [(name, mod) for name, mod in sim.named_modules() if isinstance(mod, nn.Linear)]
    if not targets:
        raise ValueError("model has no nn.Linear to simulate in W8A8")
    for name, mod in targets:
        if name == "":
            return _W8A8Linear(mod)
        parent_name, _, child = name.rpartition(".")
        setattr(sim.get_submodule(parent_name) if parent_name else sim, child, _W8A8Linear(mod))
    return sim.eval()


def w8a8_linear(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``linear(x)`` with 8-bit activations (one symmetric scale for the whole tensor, as static INT8 uses)
    and 8-bit weights (symmetric, per output channel), simulated in float (fake quantization)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    x = _check_float_tensor(x, "x").detach()
    x_qp = qparams_from_tensor(x, 8, True, "symmetric")
    w = linear.weight.detach()
    w_qp = qparams_from_tensor(w, 8, True, "symmetric", axis=0)
    return F.linear(dequantize(quantize(x, x_qp), x_qp), dequantize(quantize(w, w_qp), w_qp), linear.bias)


# --------------------------------------------------------------------------- self-checks


@_blank_safe
def check_int4_byte(byte: Any, low: int, high: int) -> bool:
    """Exercise: the ``uint8`` value that holds int4 code ``low`` in its low nibble and ``high`` in its high nibble.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    got = as_number(byte, "packed byte")
    expected = int(pack_int4(torch.tensor([low, high]))[0])
    if got == expected:
        return report("packed byte", True)
    if got == (high & 0xF) | ((low & 0xF) << 4):
        return report("packed byte", False, "the nibbles are swapped: the first code goes to the low 4 bits")
    if got < 0 or got > 255:
        return report("packed byte", False, f"{got:g} is not a byte: keep only the low 4 bits of each code (& 0xF) before shifting")
    if got == low + 16 * high:
        return report("packed byte", False, "a negative code must be stored as its 4-bit two's complement (code & 0xF)")
    return report("packed byte", False, f"got {got:g}; low nibble = first code & 0xF, high nibble = (second code & 0xF) << 4")


@_blank_safe
def check_group_bytes(answer: Any, out_features: int, in_features: int, *, bits: int, group_size: int, scale_bytes: int = 4) -> bool:
    """Exercise: bytes of a ``bits``-bit per-group weight with one ``scale_bytes`` scale per group.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    got = as_number(answer, "bytes")
    expected = weight_storage_bytes(out_features, in_features, bits=bits, group_size=group_size, scale_bytes=scale_bytes)
    if got == expected:
        return report("bytes", True)
    codes_only = math.ceil(out_features * in_features * bits / 8)
    if got == codes_only:
        return report("bytes", False, "that counts the codes only; every group also stores its scale")
    if got == out_features * in_features + out_features * (in_features // group_size) * scale_bytes:
        return report("bytes", False, f"a {bits}-bit code takes {bits}/8 of a byte once packed, not a whole byte")
    if got == codes_only + out_features * scale_bytes:
        return report("bytes", False, "one scale per group, not one per row: count the groups of each row")
    return report("bytes", False, f"got {got:g}; add the packed codes' bytes and the scales' bytes")


@_blank_safe
def check_roofline_speedup(
    answer: Any, in_features: int, out_features: int, *, batch: int = 1, weight_bits: int = 8, gflops: float, gbps: float
) -> bool:
    """Exercise (predict first): the roofline's predicted speedup of a weight-quantized Linear over float (within 10%).

    The expected value is computed here from the layer's shape, so the check cell shows no solution code.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    got = as_number(answer, "predicted speedup")
    cost_float = linear_cost(in_features, out_features, batch)
    cost_quant = linear_cost(in_features, out_features, batch, weight_bits=weight_bits)
    expected = roofline_ms(cost_float, gflops=gflops, gbps=gbps) / roofline_ms(cost_quant, gflops=gflops, gbps=gbps)
    if abs(got - expected) <= 0.1 * expected:  # a prediction: the reasoning's range, not the exact digits
        return report("predicted speedup", True)
    if abs(got - 1.0) <= 0.05 and expected > 1.3:
        return report("predicted speedup", False, "at this batch the layer is limited by memory, not arithmetic: fewer weight bytes help")
    flops_bound = cost_float.flops / (gflops * 1e9) > cost_float.bytes / (gbps * 1e9)
    if flops_bound and got > 1.3:
        return report("predicted speedup", False, "at this batch the layer is compute-bound: weight-only quantization leaves the FLOPs as they were")
    ratio = cost_float.weight_bytes / cost_quant.weight_bytes
    if abs(got - ratio) <= 0.02 * ratio and abs(ratio - expected) > 0.05 * expected:
        return report("predicted speedup", False, "the weight bytes shrink by that much, but the activations still move in float")
    return report("predicted speedup", False, f"got {got:.3g}; divide the roofline time of the float layer by that of the quantized one")


@_blank_safe
def check_smoothquant_scales(scales: Any, act_max: torch.Tensor, weight_max: torch.Tensor, *, alpha: float) -> bool:
    """Exercise: SmoothQuant's ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not_filled(scales):
        raise NotFilledIn("smoothing scales")
    s = torch.as_tensor(scales).detach().float().reshape(-1)
    expected = smoothquant_scales(act_max, weight_max, alpha=alpha)
    if s.shape != expected.shape:
        return report("smoothing scales", False, f"expected one factor per input channel ({expected.numel()}), got {s.numel()}")
    if torch.allclose(s, expected, rtol=1e-4):
        return report("smoothing scales", True)
    if torch.allclose(s, 1.0 / expected, rtol=1e-4):
        return report("smoothing scales", False, "upside down: large activation channels need a large s (the activation is divided by s)")
    if torch.allclose(s, smoothquant_scales(act_max, weight_max, alpha=1.0 - alpha), rtol=1e-4):
        return report("smoothing scales", False, "alpha is the exponent of the activation range, 1 - alpha that of the weight range")
    return report("smoothing scales", False, "compare your formula with s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)")
