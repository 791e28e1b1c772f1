"""The self-checks of notebook 06's exercises: int4 packing, int4 weight bytes, the roofline speed-up, SmoothQuant.

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

A learner's function is called with the course's helper it should not use replaced by a trap
(``_forbid_helper``), so that an answer that calls the helper is told so.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch

from .checks import NotFilledIn, WrongAnswer, _blank_safe, as_number, not_filled, report
from .group_quant import pack_int4, weight_storage_bytes
from .helper_trap import _trap, _UsedHelper
from .roofline import linear_cost
from .smoothquant import smoothquant_scales

__all__ = [
    "check_int4_pack",
    "check_int4_weight_bytes",
    "check_roofline_speedup",
    "check_smoothquant_scales",
]


# --------------------------------------------------------------------------- self-checks


# The helpers an exercise asks the learner not to call, and the ones that do the same arithmetic.
_SAME_ARITHMETIC = {"weight_storage_bytes": ("weight_storage_bytes", "linear_cost")}


@contextlib.contextmanager
def _forbid_helper(name: str, fn: Any = None):
    """While active, the helper ``qh.<name>`` (and those that do its arithmetic, ``_SAME_ARITHMETIC``) raises
    ``_UsedHelper`` however the learner's function reaches it: the function object's code itself is swapped, so a
    global alias, a closure cell, a default argument, ``functools.partial`` or a container all hit the stand-in.
    ``fn`` (the learner's function) is not needed and kept for the callers' signature.
    """
    helpers = [globals()[n] for n in _SAME_ARITHMETIC.get(name, (name,))]
    saved = [(h, h.__code__) for h in helpers]
    for h in helpers:
        h.__code__ = _trap.__code__
    try:
        yield
    finally:
        for h, code in saved:
            h.__code__ = code


def _learner_function(fn: Any, check_name: str, signature: str) -> Any:
    """``fn`` if it is a function; ``NotFilledIn`` for a blank; ``WrongAnswer`` (a hint) for anything else."""
    if not_filled(fn):
        raise NotFilledIn(check_name)
    if not callable(fn) or isinstance(fn, torch.Tensor):
        raise WrongAnswer(
            check_name,
            f"write a function, e.g. `lambda {signature}: ...`, not a {type(fn).__name__}: "
            "the check runs it on several inputs, not only the one in the task",
        )
    return fn


def _call_learner(fn: Any, check_name: str, forbidden: Optional[str], *args: Any) -> Any:
    """Run the learner's ``fn(*args)`` (with ``qh.<forbidden>`` disabled, if given); failures become ``WrongAnswer`` hints."""
    try:
        with _forbid_helper(forbidden, fn) if forbidden else contextlib.nullcontext():
            return fn(*args)
    except _UsedHelper:
        helpers = " or ".join(f"qh.{n}" for n in _SAME_ARITHMETIC.get(forbidden, (forbidden,)))
        raise WrongAnswer(check_name, f"the task asks you to write the formula yourself, not to call {helpers}") from None
    except Exception as exc:  # noqa: BLE001 (the learner's function failed: say how, never crash the notebook)
        shown = ", ".join(repr(a) if not isinstance(a, torch.Tensor) else f"a tensor of shape {tuple(a.shape)}" for a in args)
        raise WrongAnswer(check_name, f"your function raised {type(exc).__name__} on ({shown}): {exc}") from None


INT4_PAIRS = ((-3, 5), (5, -3), (-8, -1), (7, 7), (0, -8), (-1, 0), (6, -7))


@_blank_safe
def check_int4_pack(pack_byte: Any) -> bool:
    """Exercise: ``pack_byte(low, high)``, the ``uint8`` value (0..255) holding int4 code ``low`` in its low nibble
    and ``high`` in its high nibble, written with bit operations; checked on the pairs in ``INT4_PAIRS``
    (negative low and high codes, both ends of -8..7).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "pack_byte"
    fn = _learner_function(pack_byte, name, "low, high")
    for low, high in INT4_PAIRS:
        expected = int(pack_int4(torch.tensor([low, high]))[0])
        got = as_number(_call_learner(fn, name, "pack_int4", low, high), name)
        if got == expected:
            continue
        where = f"for codes ({low}, {high}) you return {got:g}, the byte is {expected}"
        if got == (high & 0xF) | ((low & 0xF) << 4):
            return report(name, False, f"{where}: the nibbles are swapped (the first code goes to the low 4 bits)")
        if got < 0 or got > 255 or got != int(got):
            return report(name, False, f"{where}, and {got:g} is not a byte: keep only the low 4 bits of each code (& 0xF) before shifting")
        if got == low + 16 * high:
            return report(name, False, f"{where}: a negative code is stored as its 4-bit two's complement (code & 0xF)")
        return report(name, False, f"{where}: low nibble = first code & 0xF, high nibble = (second code & 0xF) << 4")
    return report(name, True)


# 96 x 4096 at groups of 64: the group size does not divide out_features, so groups counted along the outputs
# give another number (where it divides both, out * (in / g) == in * (out / g))
INT4_BYTES_CASES = ((4096, 4096, 128, 2), (4096, 11008, 64, 2), (1024, 4096, 32, 4), (96, 4096, 64, 2), (256, 1024, 1024, 4))


@_blank_safe
def check_int4_weight_bytes(int4_bytes: Any) -> bool:
    """Exercise: ``int4_bytes(out_features, in_features, group_size, scale_bytes)``, the bytes of a weight stored as
    packed int4 codes (two per byte) plus one ``scale_bytes`` scale per group; checked on ``INT4_BYTES_CASES``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "int4_bytes"
    fn = _learner_function(int4_bytes, name, "out_features, in_features, group_size, scale_bytes")
    for out_f, in_f, g, sb in INT4_BYTES_CASES:
        expected = weight_storage_bytes(out_f, in_f, bits=4, group_size=g, scale_bytes=sb)
        got = as_number(_call_learner(fn, name, "weight_storage_bytes", out_f, in_f, g, sb), name)
        if got == expected:
            continue
        codes, groups = out_f * in_f // 2, out_f * (in_f // g)
        where = f"for {out_f} x {in_f}, groups of {g}, {sb}-byte scales you return {got:g}, the weight takes {expected}"
        hints = [
            (codes, "that counts the codes only; every group also stores its scale"),
            (out_f * in_f + groups * sb, "a 4-bit code takes half a byte once packed, not a whole byte"),
            (codes + out_f * sb, "one scale per group, not one per row: count the groups of each row"),
            (codes + (in_f // g) * sb, "every row has its own groups: out_features * (in_features / group_size) scales"),
            (codes + in_f * (out_f // g) * sb, "a group is group_size consecutive inputs of one row, so each row has "
                                               "in_features / group_size groups: out_features * (in_features / group_size) scales"),
            (codes + groups * (4 if sb != 4 else 2), "each scale takes scale_bytes bytes (2 for float16, 4 for float32)"),
        ]
        for value, hint in hints:
            if got == value:
                return report(name, False, f"{where}: {hint}")
        return report(name, False, f"{where}: add the packed codes' bytes and the scales' bytes")
    return report(name, True)


ROOFLINE_BATCHES = (1, 4, 16, 64, 256)


ROOFLINE_SMALL_LAYER = (1, 16, 16)  # batch, in, out: a layer so small that the activations' bytes count


@_blank_safe
def check_roofline_speedup(
    predicted_speedup: Any, in_features: int, out_features: int, *, weight_bits: int = 8, gflops: float, gbps: float
) -> bool:
    """Exercise (predict first): ``predicted_speedup(batch, in_features, out_features)``, the roofline's speedup of a
    Linear whose weight is stored in ``weight_bits`` (activations float32, a kernel that reads the narrow weight
    directly) over the float32 Linear, within 10 % at each batch of ``ROOFLINE_BATCHES`` on the
    ``in_features`` x ``out_features`` layer (memory-bound, near the ridge, compute-bound) and on the small layer
    of ``ROOFLINE_SMALL_LAYER``, where counting the activations in ``weight_bits`` instead of float32 changes the
    prediction by a third.

    The expected values are computed here from the layer's shape, so the check cell shows no solution code.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "predicted speedup"
    fn = _learner_function(predicted_speedup, name, "batch, in_features, out_features")
    cases = [(b, in_features, out_features) for b in ROOFLINE_BATCHES] + [ROOFLINE_SMALL_LAYER]

    def roof(case: tuple, bits: int, combine: Any = max, act_bits: int = 32) -> float:
        c = linear_cost(case[1], case[2], case[0], weight_bits=bits, activation_bits=act_bits)
        return combine(c.flops / (gflops * 1e9), c.bytes / (gbps * 1e9))

    expected = {k: roof(k, 32) / roof(k, weight_bits) for k in cases}
    got = {k: as_number(_call_learner(fn, name, None, *k), name) for k in cases}
    wrong = [k for k in cases if abs(got[k] - expected[k]) > 0.1 * expected[k]]
    if not wrong:
        return report(name, True)
    k = wrong[0]
    where = f"at batch {k[0]} on a {k[1]} x {k[2]} layer you predict {got[k]:.3g}, the roofline gives {expected[k]:.3g}"
    byte_ratio = 32 / weight_bits
    if all(abs(got[c] * expected[c] - 1) < 0.1 for c in cases):
        return report(name, False, f"{where}: upside down; speedup = float time / quantized time")
    if all(abs(got[c] - byte_ratio) < 0.1 * byte_ratio for c in cases):
        return report(name, False, f"{where}: the weight bytes shrink {byte_ratio:g}x at every batch, but at large batches "
                                   "the FLOPs decide: the roofline takes the slower of FLOP time and byte time")
    narrow_acts = {c: roof(c, 32) / roof(c, weight_bits, act_bits=weight_bits) for c in cases}
    if all(abs(got[c] - narrow_acts[c]) < 0.02 * narrow_acts[c] for c in cases):
        return report(name, False, f"{where}: the activations' bytes are off: they are float32 here (activation_bits=32), "
                                   f"to be counted, neither in {weight_bits} bits (only the weight is quantized) nor left out")
    first = (1, in_features, out_features)
    if abs(got[first] - 1.0) < 0.05 and expected[first] > 1.3:
        return report(name, False, f"{where}: at batch 1 the layer is limited by memory, not arithmetic: fewer weight bytes help")
    summed = {c: roof(c, 32, lambda a, b: a + b) / roof(c, weight_bits, lambda a, b: a + b) for c in cases}
    if all(abs(got[c] - summed[c]) < 0.02 * summed[c] for c in cases):
        return report(name, False, f"{where}: the roofline's time is the slower of the two (max), not their sum")
    return report(name, False, f"{where}: divide the roofline time of the float layer by that of the quantized one, at each batch")


SMOOTHQUANT_ALPHAS = (0.75, 0.25, 0.6)


@_blank_safe
def check_smoothquant_scales(smooth_scales: Any, act_max: torch.Tensor, weight_max: torch.Tensor) -> bool:
    """Exercise: ``smooth_scales(act_max, weight_max, alpha)``, SmoothQuant's ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``,
    checked at each alpha of ``SMOOTHQUANT_ALPHAS`` (never 0.5, where swapped exponents give the same numbers) on
    ``act_max``/``weight_max`` and on a second, hidden pair.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "smooth_scales"
    fn = _learner_function(smooth_scales, name, "act_max, weight_max, alpha")
    a0, w0 = torch.as_tensor(act_max).detach().float(), torch.as_tensor(weight_max).detach().float()
    hidden = (torch.tensor([1.0, 50.0, 2.0, 0.5, 8.0]), torch.tensor([0.2, 0.1, 0.4, 0.3, 0.05]))
    for a, w in ((a0, w0), hidden):
        for alpha in SMOOTHQUANT_ALPHAS:
            expected = smoothquant_scales(a, w, alpha=alpha)
            out = _call_learner(fn, name, "smoothquant_scales", a.clone(), w.clone(), alpha)
            s = torch.as_tensor(out).detach().float().reshape(-1)
            if s.shape != expected.shape:
                return report(name, False, f"expected one factor per input channel ({expected.numel()}), got {s.numel()}")
            if torch.allclose(s, expected, rtol=1e-4):
                continue
            where = f"at alpha = {alpha}"
            if torch.allclose(s, 1.0 / expected, rtol=1e-4):
                return report(name, False, f"{where}: upside down; large activation channels need a large s (the activation is divided by s)")
            if torch.allclose(s, smoothquant_scales(a, w, alpha=1.0 - alpha), rtol=1e-4):
                return report(name, False, f"{where}: alpha is the exponent of the activation range, 1 - alpha that of the weight range")
            if torch.allclose(s, smoothquant_scales(a, w, alpha=0.5), rtol=1e-4):
                return report(name, False, f"{where}: your factors do not change with alpha; use the alpha argument")
            return report(name, False, f"{where}: compare your formula with s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)")
    return report(name, True)
