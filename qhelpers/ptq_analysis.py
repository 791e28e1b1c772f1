"""After PTQ: how much calibration data is enough, and which layer loses accuracy (notebook 03).

Introduced in notebooks/03_post_training_quantization.ipynb.

* ``calibration_draws`` measures how much calibration data is enough, over random draws
  (``CalibrationDraws``, ``plot_calibration_draws``).
* ``sensitivity_table`` compares a float and a quantized model layer by layer
  with ``torch.ao.ns`` (``quantmath.sqnr_db`` of weights and of each layer's output; used in notebook 07 too).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.ao.nn.intrinsic as nni
import torch.ao.nn.intrinsic.quantized as nniq
from torch import nn

from .environment import check_engine
from .environment import engine as use_engine
from .quantmath import sqnr_db
from .ptq import _inputs, fuse, post_training_quantize

__all__ = [
    "CalibrationDraws",
    "calibration_draws",
    "plot_calibration_draws",
    "sensitivity_table",
]


# --------------------------------------------------------------------------- how much calibration data


@dataclass
class CalibrationDraws:
    """What ``calibration_draws`` measured: for each size ``n``, one ``(accuracy %, logit SQNR dB)`` per random draw;
    ``full`` is the same pair for all calibration images; ``margin_db`` the "close to the full set" margin."""

    sizes: tuple
    draws: dict
    full: tuple
    n_full: int
    margin_db: float

    def sqnr(self, n: int) -> list[float]:
        """The SQNRs of the draws of size ``n``, sorted from worst to best."""
        return sorted(s for _, s in self.draws[n])

    def accuracies(self, n: int) -> list[float]:
        return sorted(a for a, _ in self.draws[n])

    def close(self, n: int) -> int:
        """How many draws of size ``n`` are within ``margin_db`` of the full set's SQNR (or above it)."""
        return sum(s >= self.full[1] - self.margin_db for s in self.sqnr(n))

    def __str__(self) -> str:
        k = len(self.draws[self.sizes[0]])
        lines = [f"{'images':>6}  {'logit SQNR worst / median / best':>33}  {f'within {self.margin_db:g} dB':>13}  {'accuracy':>13}"]
        for n in self.sizes:
            s, a = self.sqnr(n), self.accuracies(n)
            lines.append(f"{n:>6}  {s[0]:>14.1f} / {s[k // 2]:5.1f} / {s[-1]:5.1f} dB  {self.close(n):>5} of {k:<5}  {a[0]:5.1f}..{a[-1]:.1f}%")
        lines.append(f"{self.n_full:>6}  {self.full[1]:>22.1f} dB {'':>15}  {self.full[0]:>11.1f}%   (all calibration images)")
        return "\n".join(lines)


@torch.no_grad()
def calibration_draws(
    model: nn.Module,
    calib_loader: Iterable,
    test_loader: Iterable,
    *,
    sizes: Sequence[int] = (1, 3, 10, 30, 100),
    draws: int = 8,
    seed: int = 0,
    engine: Optional[str] = None,
    margin_db: float = 3.0,
) -> CalibrationDraws:
    """PTQ (``post_training_quantize``'s default qconfig) calibrated on ``draws`` random subsets of ``n`` calibration
    images for each ``n`` in ``sizes``, and on all of them; each scored by test accuracy and by the SQNR of its test
    logits against ``model``'s (``qh.sqnr_db``). Subsets are drawn without replacement within a draw, independently
    across draws, from a generator seeded with ``seed``.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    images = torch.cat([_inputs(b) for b in calib_loader])
    x = torch.cat([_inputs(b) for b in test_loader])
    y = torch.cat([b[1] for b in test_loader])
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    bad = [n for n in sizes if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(images)]
    if bad or not sizes:
        raise ValueError(f"sizes must be ints from 1 to the {len(images)} calibration images, got {list(sizes)!r}")
    engine = check_engine(engine)
    with use_engine(engine):
        reference = model(x)

        def score(q: nn.Module) -> tuple[float, float]:
            logits = q(x)
            return 100.0 * int((logits.argmax(1) == y).sum()) / len(y), sqnr_db(reference, logits)

        full = score(post_training_quantize(model, calib_loader, engine=engine))
        generator = torch.Generator().manual_seed(seed)
        results = {}
        for n in sizes:
            results[n] = [
                score(post_training_quantize(model, [images[torch.randperm(len(images), generator=generator)[:n]]], engine=engine))
                for _ in range(draws)
            ]
    return CalibrationDraws(tuple(sizes), results, full, len(images), float(margin_db))


def plot_calibration_draws(result: CalibrationDraws, float_acc: Optional[float] = None) -> Any:
    """Accuracy and logit SQNR against the number of calibration images: the band of the draws (worst..best),
    their median, and the full set. Returns the two axes.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    k = len(result.draws[result.sizes[0]])
    for ax, values, full, label in ((axes[0], result.accuracies, result.full[0], "test accuracy (%)"),
                                    (axes[1], result.sqnr, result.full[1], "logit SQNR vs float (dB)")):
        rows = [values(n) for n in result.sizes]
        ax.fill_between(result.sizes, [r[0] for r in rows], [r[-1] for r in rows], alpha=0.3, label=f"worst..best of {k} draws")
        ax.semilogx(result.sizes, [r[k // 2] for r in rows], marker="o", label="median")
        ax.axhline(full, color="0.4", ls="--", label=f"all {result.n_full} images")
        ax.set_xlabel("calibration images (random draws)")
        ax.set_ylabel(label)
    if float_acc is not None:
        axes[0].axhline(float_acc, color="tab:green", ls=":", label="float")
        axes[0].set_ylim(float_acc - 3, float_acc + 1)
    axes[1].axhspan(result.full[1] - result.margin_db, result.full[1], color="tab:green", alpha=0.1, label=f"within {result.margin_db:g} dB")
    for ax in axes:
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return axes


# --------------------------------------------------------------------------- sensitivity


def _layer_name(key: str) -> str:
    for suffix in (".stats", "._packed_params._packed_params", ".weight"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def sensitivity_table(float_model: nn.Module, quantized_model: nn.Module, example: torch.Tensor) -> list[dict]:
    """Per-layer comparison with ``torch.ao.ns._numeric_suite``: rows ``{"layer", "weight_sqnr_db", "output_sqnr_db", "output_drop_db"}``.

    ``weight_sqnr_db``: float weights (after fusion, BN folded) vs their INT8
    version (``compare_weights``); nan for layers without weights.
    ``output_sqnr_db``: each layer's output in the float model vs the
    quantized model on ``example`` (``compare_model_outputs``); the error
    accumulates along the network, so a sudden drop marks a sensitive layer.
    ``output_drop_db``: how much the output SQNR fell at this layer (from the
    previous row with an output SQNR; nan without one). A layer whose
    weights have a few huge channels can keep a good *weight* SQNR (the big
    channels dominate the norm) while its output collapses: rank by the drop.
    Rows in the order the layers are registered. ``float_model`` must be the
    model ``quantized_model`` was made from. Neither model is changed.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    import torch.ao.ns._numeric_suite as ns
    from torch.ao.quantization.quantization_mappings import get_default_compare_output_module_list

    for name, value in (("float_model", float_model), ("quantized_model", quantized_model)):
        if not isinstance(value, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a torch.Tensor batch, got {type(example).__name__}")
    fused = fuse(float_model)
    weights = ns.compare_weights(fused.state_dict(), quantized_model.state_dict())
    allow = get_default_compare_output_module_list() | {nni.LinearReLU, nniq.LinearReLU}
    outputs = ns.compare_model_outputs(copy.deepcopy(fused), copy.deepcopy(quantized_model), example, allow_list=allow)
    rows: dict[str, dict] = {}
    for key, pair in weights.items():
        rows.setdefault(_layer_name(key), {})["weight_sqnr_db"] = sqnr_db(pair["float"], pair["quantized"])
    for key, pair in outputs.items():
        rows.setdefault(_layer_name(key), {})["output_sqnr_db"] = sqnr_db(pair["float"][0], pair["quantized"][0])
    order = [n for n, _ in quantized_model.named_modules()]
    result = []
    previous = math.nan
    for layer in sorted(rows, key=lambda n: order.index(n) if n in order else len(order)):
        out = rows[layer].get("output_sqnr_db", math.nan)
        result.append(
            {
                "layer": layer,
                "weight_sqnr_db": rows[layer].get("weight_sqnr_db", math.nan),
                "output_sqnr_db": out,
                "output_drop_db": previous - out,
            }
        )
        if not math.isnan(out):
            previous = out
    return result
