"""When INT8 loses accuracy: find the cause, recover it without training.

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

The debugging flow and the post-training fixes of Nagel et al., "A White Paper
on Neural Network Quantization" (2021), written from scratch on the course's
models (no AIMET):

* a **simulation** (``qhelpers.wa_simulation``) in which weights and activations are quantized separately
  (``quantize_weights``: W-bits weights written into a float copy, on the grid,
  or on the grid a ``QConfig``'s weight observer gives; ``quantize_activations``:
  ``torch.ao`` fake quant on the activations only), so that W8A32 and W32A8
  answer "weights or activations?", for the whole model and per layer, one layer
  quantized at a time (``per_layer_sensitivity``) or one layer kept in float at a
  time (``leave_one_out_sensitivity``);
* **range setting** (``qhelpers.range_setting``): min/max, percentile or MSE-optimal clipping for weights
  (``weight_clip``), per tensor or per channel; MSE-optimal ranges for
  activations (``mse_activation_ranges``, ``quantize_activations(method="mse")``);
* **cross-layer equalization** (``qhelpers.equalization``; Nagel et al. 2019, "Data-Free Quantization"):
  ``equalize_pair`` / ``cross_layer_equalization`` rescale consecutive
  Conv-ReLU-Conv channels, leaving the float function unchanged;
* **empirical bias correction** (``bias_correction``, ``qhelpers.empirical_bias_correction``): the quantized weights'
  mean output shift, measured on calibration data, subtracted from the bias;
* **AdaRound** (Nagel et al. 2020, ``qhelpers.adaptive_rounding``): per-weight up/down rounding learned layer by
  layer (``adaround``);
* the **PT2E numeric debugger** (``qhelpers.pt2e_debug``) of torchao (``pt2e_node_sqnr``) and selective
  float in PT2E (``pt2e_quantizer(..., float_modules=...)``).

Every function takes a *folded* float model (BatchNorm folded into the convs,
``qh.fuse(model)``) and returns a new model; the input model is never changed.

Each of these is a module of its own; this module gathers them (``from qhelpers.recovery import *``), and the
exercises' self-checks are in ``qhelpers.recovery_checks``.
"""

from __future__ import annotations

from .range_setting import *  # noqa: F401,F403
from .wa_simulation import *  # noqa: F401,F403
from .equalization import *  # noqa: F401,F403
from .empirical_bias_correction import *  # noqa: F401,F403
from .adaptive_rounding import *  # noqa: F401,F403
from .pt2e_debug import *  # noqa: F401,F403
from .recovery_checks import *  # noqa: F401,F403

from . import range_setting as _range_setting
from . import wa_simulation as _wa_simulation
from . import equalization as _equalization
from . import empirical_bias_correction as _empirical_bias_correction
from . import adaptive_rounding as _adaptive_rounding
from . import pt2e_debug as _pt2e_debug
from . import recovery_checks as _recovery_checks

__all__ = [*_range_setting.__all__, *_wa_simulation.__all__, *_equalization.__all__, *_empirical_bias_correction.__all__, *_adaptive_rounding.__all__, *_pt2e_debug.__all__, *_recovery_checks.__all__]
