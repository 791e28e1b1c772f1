"""Interactive widgets (ipywidgets): the quantization explorer and the decision-tree chooser.

Introduced in notebooks/00_start_here.ipynb (chooser) and
notebooks/01_manual_tensor_quantization.ipynb (explorer). Each widget's logic
is a plain function (``explore`` and ``decision.recommend``) so that it is
tested without a browser and still readable where widgets do not render.
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch

from .decision import recommend
from .plotting import plot_histogram_with_grid
from .quantmath import fake_quantize, qparams_from_minmax, sqnr_db

__all__ = ["explore", "clip_sweep", "quantization_explorer", "decision_chooser", "CLIP_PERCENTILES"]


CLIP_PERCENTILES = (100.0, 99.999, 99.99, 99.95, 99.9, 99.8, 99.5, 99.0, 98.0, 95.0, 90.0)  # the explorer's slider stops


def explore(x: torch.Tensor, bits: int = 8, scheme: str = "affine", clip_percentile: float = 100.0) -> dict:
    """Quantize ``x`` with its range clipped at percentiles; returns the qparams, SQNR and clipped share.

    The range runs from the ``(100 - clip_percentile)``-th to the
    ``clip_percentile``-th percentile of the signed values of ``x`` (both
    tails are clipped, each by ``100 - clip_percentile`` percent);
    ``clip_percentile=100`` uses the full min/max range. Lower values clip
    outliers to give the bulk of the values a finer grid. A symmetric scheme
    then widens the range to ``[-m, m]`` with ``m`` the larger of the two
    clipped ends, so fewer values clamp than the percentile says.
    ``clipped_percent`` is the share of values whose code was clamped to an
    end code (their rounded code fell outside the code range): the values
    that lose more than half a step.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not 50.0 <= clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be from 50 to 100, got {clip_percentile}")
    flat = x.detach().flatten().float()
    lo = torch.quantile(flat, (100.0 - clip_percentile) / 100.0) if clip_percentile < 100 else flat.min()
    hi = torch.quantile(flat, clip_percentile / 100.0) if clip_percentile < 100 else flat.max()
    qp = qparams_from_minmax(lo, hi, bits, signed=True, scheme=scheme)
    x_hat = fake_quantize(x, qp)
    raw_codes = torch.round(flat / qp.scale) + qp.zero_point  # before the clamp; as fake_quantize rounds
    clipped = float(((raw_codes < qp.quant_min) | (raw_codes > qp.quant_max)).float().mean()) * 100.0
    return {"qparams": qp, "sqnr_db": sqnr_db(x, x_hat), "clipped_percent": clipped, "levels": qp.quant_max - qp.quant_min + 1}


def clip_sweep(x: torch.Tensor, bits: int, *, scheme: str = "symmetric", percentiles: tuple = CLIP_PERCENTILES[:9]) -> dict:
    """SQNR of ``x`` at ``bits`` for each clipping percentile (see ``explore``), and the best one.

    Returns ``{"sqnr_db": {percentile: dB}, "best_percentile", "best_db", "full_db", "gain_db"}``
    where ``gain_db`` is what the best clip gains over the full min/max range.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not percentiles or 100.0 not in percentiles:
        raise ValueError(f"percentiles must include 100.0 (the full range) to compare against, got {percentiles!r}")
    sqnr = {float(p): explore(x, bits, scheme, float(p))["sqnr_db"] for p in percentiles}
    best = max(sqnr, key=sqnr.get)
    return {"sqnr_db": sqnr, "best_percentile": best, "best_db": sqnr[best], "full_db": sqnr[100.0], "gain_db": sqnr[best] - sqnr[100.0]}


def quantization_explorer(x: torch.Tensor, title: str = "values", *, scheme: str = "affine"):
    """Sliders for bit width, scheme and clipping percentile -> histogram with the grid and the SQNR, live.

    ``scheme`` is the scheme the dropdown starts on (``"affine"`` or ``"symmetric"``).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    import ipywidgets as W
    from IPython.display import display

    if scheme not in ("affine", "symmetric"):
        raise ValueError(f"scheme must be 'affine' or 'symmetric', got {scheme!r}")
    bits = W.IntSlider(value=8, min=2, max=16, description="bits")
    scheme = W.Dropdown(options=["affine", "symmetric"], value=scheme, description="scheme")
    # the sweep's percentiles (and two coarser ones), so the widget reaches the sweep's best clips
    clip = W.SelectionSlider(options=list(CLIP_PERCENTILES), value=100.0, description="clip pctl")
    readout = W.HTML()
    out = W.Output()

    def update(*_):
        r = explore(x, bits.value, scheme.value, clip.value)
        readout.value = (
            f"<b>SQNR {r['sqnr_db']:.1f} dB</b> &middot; {r['levels']} levels &middot; scale {r['qparams'].scale.item():.4g}"
            f" &middot; zero point {int(r['qparams'].zero_point)} &middot; clipped {r['clipped_percent']:.2f}% of values"
        )
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7, 2.8))
            plot_histogram_with_grid(x, r["qparams"], ax=ax, title=f"{title}: {bits.value}-bit {scheme.value}")
            plt.show()
            plt.close(fig)

    for w in (bits, scheme, clip):
        w.observe(update, names="value")
    update()
    box = W.VBox([W.HBox([bits, scheme, clip]), readout, out])
    display(box)
    return box


def decision_chooser():
    """The decision tree's questions -> the recommended workflow, engine and notebook (see ``qhelpers.decision``).

    Introduced in notebooks/00_start_here.ipynb.
    """
    import ipywidgets as W
    from IPython.display import display

    style = {"description_width": "initial"}
    yes_no = [("yes", True), ("no", False)]
    pre = W.ToggleButtons(options=yes_no, value=False, description="1. A pre-quantized model exists?", style=style)
    kind = W.ToggleButtons(options=[("CNN", "conv"), ("Linear/LSTM", "linear")], value="conv", description="2. Model made of", style=style)
    calib = W.ToggleButtons(options=yes_no, value=True, description="3. Representative inputs?", style=style)
    drop = W.ToggleButtons(
        options=[("not tried yet", None), ("acceptable", True), ("too large", False)], value=None, description="4. Accuracy drop after quantizing?", style=style
    )
    train = W.ToggleButtons(options=yes_no, value=False, description="   Time and data to train?", style=style)
    arm = W.ToggleButtons(options=[("x86", False), ("ARM", True)], value=False, description="5. Runs on", style=style)
    answer = W.HTML()

    def update(*_):
        r = recommend(calib.value, train.value, drop.value, arm.value, model_kind=kind.value, pre_quantized=pre.value)
        head, _, reason = str(r).partition(": ")  # the same words as print(recommend(...)): no eager engine for PT2E
        answer.value = f"<b>{html.escape(head)}</b><br>{html.escape(reason)}<br><i>{html.escape(r.deploy)}</i>"

    questions = (pre, kind, calib, drop, train, arm)
    for w in questions:
        w.observe(update, names="value")
    update()
    box = W.VBox([*questions, answer])
    display(box)
    return box
