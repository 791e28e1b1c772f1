"""Range setting for notebook 07: min/max, percentile or MSE-optimal clipping of weights, MSE-optimal activation ranges.

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

``weight_clip`` (per tensor or per channel) and ``quantize_weight`` for weights; ``mse_activation_ranges`` for
activations (``quantize_activations(method="mse")`` in ``qhelpers.wa_simulation`` uses it). Part of the recovery
flow of ``qhelpers.recovery``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterable, Optional

import torch
from torch import nn

__all__ = [
    "weight_clip",
    "quantize_weight",
    "mse_activation_ranges",
    "ACT_METHODS",
    "CLIP_METHODS",
]


CLIP_METHODS = ("minmax", "percentile", "mse")


def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int from 2 to 8, got {bits!r}")
    return bits


def _fq(w: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


# The MSE clipping values ``weight_clip`` has returned to a caller in this process, as (bits, grid, value): notebook 07's
# exercise "MSE clipping by hand" asks for the search without ``weight_clip``, and ``check_mse_clip`` tells a value
# handed out here from the same value found by hand. The library's own calls (``quantize_weight``, ``adaround``, the
# check itself) run inside ``_not_handed_out()`` and are not recorded.
_MSE_CLIPS_HANDED_OUT: set[tuple[int, int, float]] = set()


_QUIET = [0]


@contextlib.contextmanager
def _not_handed_out():
    _QUIET[0] += 1
    try:
        yield
    finally:
        _QUIET[0] -= 1


def weight_clip(
    weight: torch.Tensor, *, bits: int = 8, per_channel: bool = False, method: str = "minmax", percentile: float = 99.9, grid: int = 100
) -> torch.Tensor:
    """The clipping value ``c`` (one per tensor, or one per output channel) of a symmetric ``bits``-bit weight grid.

    The grid is ``scale * [-(2^(bits-1) - 1) ... 2^(bits-1) - 1]`` with ``scale = c / (2^(bits-1) - 1)``
    (the weight range of ``qh.low_bit_qconfig``). ``method``:
    ``"minmax"`` c = max|w|; ``"percentile"`` c = that percentile of |w|;
    ``"mse"`` the c among ``grid`` candidates ``max|w| * k / grid`` (k = 1..grid) that minimises
    the quantization MSE of the weights (min/max is one candidate, so MSE clipping is never worse).
    The MSE values it returns are remembered (bits, grid, value), so that ``check_mse_clip`` can
    reject them in an exercise that asks for the search by hand.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a float tensor, got {type(weight).__name__}")
    bits = _check_bits(bits)
    if method not in CLIP_METHODS:
        raise ValueError(f"method must be one of {CLIP_METHODS}, got {method!r}")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    w = weight.detach().float()
    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    amax = flat.abs().amax(dim=1).clamp_min(1e-12)
    if method == "minmax":
        clip = amax
    elif method == "percentile":
        clip = torch.quantile(flat.abs(), percentile / 100.0, dim=1).clamp_min(1e-12)
    else:
        qmax = 2 ** (bits - 1) - 1
        fractions = torch.arange(1, grid + 1, dtype=torch.float32) / grid  # (G,)
        cands = amax[:, None] * fractions[None, :]  # (C, G)
        scales = (cands / qmax)[:, :, None]  # (C, G, 1)
        err = ((_fq(flat[:, None, :], scales, qmax) - flat[:, None, :]) ** 2).sum(dim=2)  # (C, G)
        clip = cands.gather(1, err.argmin(dim=1, keepdim=True)).squeeze(1)
        if not _QUIET[0]:
            _MSE_CLIPS_HANDED_OUT.update((bits, grid, v) for v in clip.tolist())
    return clip if per_channel else clip.reshape(())


def quantize_weight(
    weight: torch.Tensor, *, bits: int = 8, per_channel: bool = False, method: str = "minmax", percentile: float = 99.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest quantization of a weight on the symmetric grid of ``weight_clip``: returns ``(dequantized weight, scale)``.

    ``scale`` is a 0-d tensor (per tensor) or one entry per output channel; the
    dequantized weight has the weight's shape and lies on the grid (clipped at ``c``).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    with _not_handed_out():
        clip = weight_clip(weight, bits=bits, per_channel=per_channel, method=method, percentile=percentile)
    qmax = 2 ** (bits - 1) - 1
    scale = clip / qmax
    s = scale.reshape(-1, *([1] * (weight.dim() - 1))) if per_channel else scale
    return _fq(weight.detach().float(), s, qmax), scale


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


ACT_METHODS = ("minmax", "mse")


def _mse_range(x: torch.Tensor, qmin: int, qmax: int, grid: int) -> tuple[float, int]:
    """(scale, zero_point) of the affine grid whose clipping range ``[lo, hi] * k / grid`` (k = 1..grid) has the smallest MSE on ``x``."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    if hi - lo <= 0:
        return 1.0, qmin
    best = None
    for k in range(1, grid + 1):
        c_lo, c_hi = lo * k / grid, hi * k / grid
        scale = max((c_hi - c_lo) / (qmax - qmin), 1e-12)
        zero_point = int(min(max(round(qmin - c_lo / scale), qmin), qmax))
        err = float(((torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax) - x) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, scale, zero_point)
    return best[1], best[2]


def mse_activation_ranges(
    prepared: nn.Module, calib_loader: Iterable, *, grid: int = 100, num_batches: Optional[int] = None, max_values: int = 2**16, seed: int = 0
) -> nn.Module:
    """Activation range setting by MSE: a copy of a fake-quant model whose activation ranges minimise each activation's quantization error.

    ``prepared`` is any ``torch.ao`` QAT-prepared model (e.g. ``qh.fake_quant_ptq``'s
    or ``quantize_activations``'s result). Every ``activation_post_process``
    ``FakeQuantize`` (per tensor) gets the clipping range ``[min, max] * k / grid``
    (k = 1..grid; min and max of what it sees, 0 included) whose grid
    ``[quant_min .. quant_max]`` gives the smallest mean squared error on the
    calibration images (min/max is the candidate k = grid). Layer by layer in
    one forward pass over the calibration images stacked into one batch: each
    activation is measured with the activations before it already on their new
    grid, as the deployed model computes them (``max_values`` of its values,
    drawn with ``seed``, enter the search; a fake quant that is switched off
    gets its range but passes its input through). The weights are not touched.
    Returns the copy in eval mode with its activation observers off.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from .fake_quant import fake_quant_modules

    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    q = copy.deepcopy(prepared).eval()
    acts = {n: fq for n, fq in fake_quant_modules(q).items() if n.endswith("activation_post_process")}
    if not acts:
        raise ValueError("prepared has no activation FakeQuantize modules; prepare it first (qh.fake_quant_ptq or qh.quantize_activations)")
    xs = []
    for i, batch in enumerate(calib_loader):
        if num_batches is not None and i >= num_batches:
            break
        xs.append(_inputs(batch))
    if not xs:
        raise ValueError("calib_loader yielded no data")
    gen = torch.Generator().manual_seed(seed)

    def pre_hook(fq, args):
        x = args[0].detach().float().reshape(-1)
        if x.numel() > max_values:
            x = x[torch.randperm(x.numel(), generator=gen)[:max_values]]
        scale, zero_point = _mse_range(x, int(fq.quant_min), int(fq.quant_max), grid)
        fq.scale.copy_(torch.full_like(fq.scale, scale))
        fq.zero_point.copy_(torch.full_like(fq.zero_point, zero_point))
        fq.disable_observer()

    for fq in acts.values():
        if fq.scale.numel() != 1:
            raise ValueError("mse_activation_ranges handles per-tensor activation fake quants only")
    handles = [fq.register_forward_pre_hook(pre_hook) for fq in acts.values()]
    try:
        with torch.no_grad():
            q(torch.cat(xs))
    finally:
        for h in handles:
            h.remove()
    return q
