"""Interactive widgets (ipywidgets): the quantization explorer and the decision-tree chooser.

Introduced in notebooks/00_start_here.ipynb (chooser) and
notebooks/01_manual_tensor_quantization.ipynb (explorer). Each widget's logic
is a plain function (``explore`` and ``decision.recommend``) so that it is
tested without a browser and still readable where widgets do not render.
"""

from __future__ import annotations


import matplotlib.pyplot as plt
import torch

from .decision import recommend
from .plotting import plot_histogram_with_grid
from .quantmath import fake_quantize, qparams_from_minmax, sqnr_db

__all__ = ["explore", "clip_sweep", "quantization_explorer", "decision_chooser"]


def explore(x: torch.Tensor, bits: int = 8, scheme: str = "affine", clip_percentile: float = 100.0) -> dict:
    """Quantize ``x`` with its range clipped at percentiles; returns the qparams, SQNR and clipped share.

    The range runs from the ``(100 - clip_percentile)``-th to the
    ``clip_percentile``-th percentile of the signed values of ``x`` (both
    tails are clipped, each by ``100 - clip_percentile`` percent);
    ``clip_percentile=100`` uses the full min/max range. Lower values clip
    outliers to give the bulk of the values a finer grid.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not 50.0 <= clip_percentile <= 100.0:
        raise ValueError(f"clip_percentile must be from 50 to 100, got {clip_percentile}")
    flat = x.detach().flatten().float()
    lo = torch.quantile(flat, (100.0 - clip_percentile) / 100.0) if clip_percentile < 100 else flat.min()
    hi = torch.quantile(flat, clip_percentile / 100.0) if clip_percentile < 100 else flat.max()
    qp = qparams_from_minmax(lo, hi, bits, signed=True, scheme=scheme)
    x_hat = fake_quantize(x, qp)
    clipped = float(((flat < lo) | (flat > hi)).float().mean()) * 100.0
    return {"qparams": qp, "sqnr_db": sqnr_db(x, x_hat), "clipped_percent": clipped, "levels": qp.quant_max - qp.quant_min + 1}


def clip_sweep(x: torch.Tensor, bits: int, *, scheme: str = "symmetric", percentiles: tuple = (100.0, 99.999, 99.99, 99.95, 99.9, 99.8, 99.5, 99.0, 98.0)) -> dict:
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


def quantization_explorer(x: torch.Tensor, title: str = "values"):
    """Sliders for bit width, scheme and clipping percentile -> histogram with the grid and the SQNR, live.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    import ipywidgets as W
    from IPython.display import display

    bits = W.IntSlider(value=8, min=2, max=16, description="bits")
    scheme = W.Dropdown(options=["affine", "symmetric"], value="affine", description="scheme")
    clip = W.FloatSlider(value=100.0, min=90.0, max=100.0, step=0.1, description="clip pctl")
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
    """Five questions -> the recommended workflow and engine (see ``qhelpers.decision``).

    Introduced in notebooks/00_start_here.ipynb.
    """
    import ipywidgets as W
    from IPython.display import display

    style = {"description_width": "initial"}
    calib = W.ToggleButtons(options=[("yes", True), ("no", False)], value=True, description="Representative calibration data?", style=style)
    train = W.ToggleButtons(options=[("yes", True), ("no", False)], value=False, description="Time and data to train?", style=style)
    drop = W.ToggleButtons(
        options=[("not tried yet", None), ("acceptable", True), ("too large", False)], value=None, description="PTQ accuracy drop?", style=style
    )
    arm = W.ToggleButtons(options=[("x86", False), ("ARM", True)], value=False, description="Deploy on", style=style)
    kind = W.ToggleButtons(options=[("CNN", "conv"), ("Linear/LSTM", "linear")], value="conv", description="Model made of", style=style)
    answer = W.HTML()

    def update(*_):
        r = recommend(calib.value, train.value, drop.value, arm.value, model_kind=kind.value)
        answer.value = f"<b>{r.method}</b> with engine <code>{r.engine}</code> &rarr; {r.notebook}<br>{r.reason}<br><i>{r.deploy}</i>"

    for w in (kind, calib, train, drop, arm):
        w.observe(update, names="value")
    update()
    box = W.VBox([kind, calib, train, drop, arm, answer])
    display(box)
    return box
