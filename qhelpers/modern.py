"""Beyond eager mode: the deprecation map, INT8 inference on plain ``torch.int8`` tensors, and deployment files.

Introduced in notebooks/05_beyond_eager_mode.ipynb.

* ``deprecation_map`` calls every quantization API the course used in
  notebooks 01-04 and records what the installed torch says about it (the
  warnings are caught from the calls, not typed by hand); the replacement
  column is the course's advice.
* ``fixed_point_multiplier`` writes a requantization multiplier as an int32
  and a shift, the form ``qh.requantize(..., fixed_point=True)`` uses.
* ``int8_conv2d`` and ``plain_int8_forward`` run the eager INT8 course model
  with plain integer tensors and explicit scales (int32 accumulation, float
  requantization), the way the dtype deprecation says code should keep them.
* ``count_quant_ops`` counts the quantize/dequantize nodes of a PT2E graph.
* ``save_torchscript`` / ``save_exported`` write deployment files atomically.
* ``silence_pt2e_noise`` hides, by message, three lines that torch and
  torchao print on the PT2E path and that teach nothing (listed in
  ``PT2E_NOISE``).
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .checks import NotFilledIn, _blank_safe, as_number, not_filled, read_range, report
from .data import atomic_write_bytes
from .environment import KNOWN_DEPRECATIONS, _DropByMessage, silence_known_deprecations, warning_text
from .quantmath import QParams, _fixed_point_multiplier, requantize
from .runtime import _native_stderr

__all__ = [
    "PT2E_NOISE",
    "silence_pt2e_noise",
    "ApiProbe",
    "linear_qat_int8",
    "COURSE_APIS",
    "probe_api",
    "deprecation_map",
    "print_table",
    "fixed_point_multiplier",
    "quantized_weight",
    "int8_conv2d",
    "bias_in_float_for",
    "plain_int8_forward",
    "count_quant_ops",
    "graph_accuracy",
    "strip_unused_weights",
    "save_torchscript",
    "save_exported",
    "weight_storage",
    "refresh_bn_statistics",
    "interleaved_latency",
    "MIGRATION_TARGETS",
    "check_requant_multiplier",
    "check_layer_multiplier",
    "check_dequantized_weights",
    "check_migration",
    "weight_only_sqnr",
    "check_bits_prediction",
]


# --------------------------------------------------------------------------- noise on the PT2E path

# What ``silence_pt2e_noise`` hides, each by its message and nothing else:
PT2E_NOISE: dict[str, str] = {
    # Logged (with a timestamp and process id) by torch.utils._pytree when torchao is imported: torchao
    # registers an Enum with an API torch 2.14 deprecates for Enums. A torchao internal; nothing to act on.
    "torchao enum registration log": r"<enum '\w+'> is an Enum subclass and is now natively supported",
    # UserWarning from torch/_inductor/mkldnn_lowerings.py while torch.compile lowers quantized convolutions
    # (torch copies a tensor with torch.tensor(t)). A torch internal; nothing to act on.
    "inductor tensor copy": r"To copy construct from a tensor, it is recommended to use sourceTensor",
    # UserWarning from torch.ao observers built with reduce_range=True (the x86/fbgemm default qconfig).
    # Notebook 03 explains reduce_range; the hint itself asks for an API change the course does not need.
    "observer reduce_range hint": KNOWN_DEPRECATIONS["reduce_range"][0],
}


def silence_pt2e_noise() -> list[str]:
    """Hide exactly the messages in ``PT2E_NOISE``; every other warning and log line still shows.

    Call it before importing torchao (the first import logs the Enum line).
    Returns the names hidden. Calling it twice adds nothing twice.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    logger = logging.getLogger("torch.utils._pytree")
    pattern = PT2E_NOISE["torchao enum registration log"]
    if not any(isinstance(f, _DropByMessage) and f.pattern.pattern == pattern for f in logger.filters):
        logger.addFilter(_DropByMessage(pattern))
    warnings.filterwarnings("ignore", message=PT2E_NOISE["inductor tensor copy"], category=UserWarning)
    silence_known_deprecations("reduce_range")
    return list(PT2E_NOISE)


# --------------------------------------------------------------------------- deprecation map


@dataclass(frozen=True)
class ApiProbe:
    """One API the course used: a call that exercises it and nothing else, where the course met it, and what replaces it.

    ``setup`` (optional) builds what ``call`` needs, with its own warnings ignored (e.g. a converted model
    for the qnnpack probe), so that a warning is attributed only to the API that emits it; ``call``
    receives its result. ``note`` says what the row's status does not (e.g. that an API with no warning of
    its own is only useful together with one that warns).
    """

    name: str
    notebook: str
    call: Callable[..., Any]
    replacement: str
    warns_once: bool = False  # torch's C++ side warns once per process: probe with torch.set_warn_always(True)
    setup: Optional[Callable[[], Any]] = None
    note: str = ""


def _tiny_eager_model() -> nn.Module:
    from torch.ao.quantization import DeQuantStub, QuantStub

    return nn.Sequential(QuantStub(), nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), DeQuantStub()).eval()


def _with_qconfig(engine: str, *, qat: bool = False) -> nn.Module:
    from torch.ao.quantization import get_default_qat_qconfig, get_default_qconfig

    m = _tiny_eager_model()
    if qat:
        m.train()
    m.qconfig = (get_default_qat_qconfig if qat else get_default_qconfig)(engine)
    return m


def _probe_prepare_convert(m: nn.Module) -> None:
    from torch.ao.quantization import convert, prepare

    prepare(m, inplace=True)
    m(torch.randn(1, 1, 5, 5))
    convert(m, inplace=True)


def _probe_fuse() -> None:
    from torch.ao.quantization import fuse_modules

    fuse_modules(_tiny_eager_model(), [["1", "2", "3"]])


def _probe_prepare_qat(m: nn.Module) -> None:
    from torch.ao.quantization import prepare_qat

    prepare_qat(m, inplace=True)


def _probe_quantize_dynamic() -> None:
    from torch.ao.quantization import quantize_dynamic

    quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), {nn.Linear}, dtype=torch.qint8)


def _probe_ns() -> None:
    import torch.ao.ns._numeric_suite as ns

    ns.compare_weights({"w": torch.ones(1)}, {"w": torch.ones(1)})


def _probe_jit_script() -> None:
    torch.jit.script(nn.Linear(2, 2))


def _pt2e_prepared() -> Any:
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    example = (torch.randn(1, 1, 5, 5),)
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    return prepare_pt2e(torch.export.export(m, example).module(), quantizer), example


def _probe_pt2e(_: Any = None) -> None:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    prepared, example = _pt2e_prepared()  # prepare_pt2e inside the recorder: it is half of what this row probes
    prepared(*example)
    converted = convert_pt2e(prepared)
    if not any("quantize_per_tensor" in str(n.target) for n in converted.graph.nodes):
        raise RuntimeError("convert_pt2e produced no quantize ops")


def _probe_quantize_() -> None:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    m = nn.Sequential(nn.Linear(32, 32))
    quantize_(m, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))  # no global Inductor options
    if getattr(m[0].weight, "qdata", m[0].weight).dtype != torch.int8:
        raise RuntimeError("quantize_ left the weight in float")


def _probe_quantize_dynamic_lstm() -> None:
    from torch.ao.quantization import quantize_dynamic

    quantize_dynamic(nn.Sequential(nn.LSTM(4, 4)), {nn.LSTM}, dtype=torch.qint8)


def _probe_fx() -> None:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    example = (torch.randn(1, 1, 5, 5),)
    prepared = prepare_fx(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval(), get_default_qconfig_mapping("x86"), example)
    prepared(*example)
    convert_fx(prepared)


def _probe_torchvision_quantizable() -> None:
    import torchvision

    # building the quantizable model and fusing it is all torchvision does; quantizing it is torch.ao's prepare/convert
    torchvision.models.quantization.mobilenet_v2(weights=None, quantize=False, width_mult=0.25).eval().fuse_model()


def _qnnpack_model() -> nn.Module:
    from torch.ao.quantization import convert, prepare

    if "qnnpack" not in torch.backends.quantized.supported_engines:
        raise ImportError("this torch build has no qnnpack engine")
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack"
    try:
        m = _with_qconfig("qnnpack")
        prepare(m, inplace=True)
        m(torch.randn(1, 1, 5, 5))
        convert(m, inplace=True)
    finally:
        torch.backends.quantized.engine = previous
    return m


def _probe_qnnpack(m: nn.Module) -> None:
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack"  # restored below, whatever QHELPERS_ENGINE says
    try:
        with torch.no_grad():
            m(torch.randn(1, 1, 5, 5))  # the engine's INT8 kernels, on a model converted outside the probe
    finally:
        torch.backends.quantized.engine = previous


def _probe_quant_primitives() -> None:
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, dequantize_affine, quantize_affine

    x = torch.randn(4, 8)
    scale, zero_point = choose_qparams_affine(x, MappingType.ASYMMETRIC, (1, 8), torch.uint8, 0, 255)
    codes = quantize_affine(x, (1, 8), scale, zero_point, torch.uint8, 0, 255)
    back = dequantize_affine(codes, (1, 8), scale, zero_point, torch.uint8, 0, 255)
    if codes.dtype != torch.uint8 or not torch.allclose(back, x, atol=float(scale.max())):
        raise RuntimeError("quant_primitives did not round-trip plain uint8 codes")


def linear_qat_int8(model: nn.Module, train_step: Callable[[nn.Module], Any]) -> nn.Module:
    """QAT for the ``nn.Linear`` layers of ``model`` with torchao 0.18, ending in the course's INT8 config; in place.

    Three steps: ``quantize_(model, QATConfig(activation_config=..., weight_config=..., step="prepare"))``
    with int8 fake quantization (activations per token, asymmetric: symmetric per-token fake quantization
    is not implemented in torchao 0.18; weights per channel, symmetric), then ``train_step(model)`` (your
    training loop), then ``QATConfig(step="convert")``, which removes the fake quantizers and leaves float
    ``nn.Linear`` layers with the trained weights, and finally
    ``quantize_(model, Int8DynamicActivationInt8WeightConfig(act_mapping_type=MappingType.ASYMMETRIC))``,
    which makes them INT8 with the same asymmetric per-token activations the training simulated (the
    config's default is symmetric: measured on a small MLP, the deployed model then differs from the
    fake-quantized one at 40 dB SQNR, against 135 dB with the matching mapping). The course's config is
    not accepted as a QAT base config in torchao 0.18 (``ValueError: Unexpected base config``).
    ``set_inductor_config=False``: no global Inductor options are changed.
    Returns ``model``.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, MappingType, quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(train_step):
        raise TypeError(f"train_step must be a function that trains the model in place, got {type(train_step).__name__}")
    activations = IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
    weights = IntxFakeQuantizeConfig(torch.int8, "per_channel")
    quantize_(model, QATConfig(activation_config=activations, weight_config=weights, step="prepare"))
    train_step(model)
    quantize_(model, QATConfig(step="convert"))
    quantize_(model, Int8DynamicActivationInt8WeightConfig(act_mapping_type=MappingType.ASYMMETRIC, set_inductor_config=False))
    return model


def _probe_qat_linear() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 32))

    def one_step(model: nn.Module) -> None:
        loss = model(torch.randn(8, 32)).pow(2).mean()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 1e-3 * p.grad

    linear_qat_int8(m, one_step)
    if getattr(m[0].weight, "qdata", m[0].weight).dtype != torch.int8:
        raise RuntimeError("the QAT flow left the weight in float")


_TORCH_AO = "no warning of its own, but it is part of torch.ao.quantization, which goes as a whole (pytorch/ao#2259)"

# Where the course used an API: the notebooks (first use first); "-" for an API the course names but does not use.
COURSE_APIS: tuple[ApiProbe, ...] = (
    ApiProbe("torch.quantize_per_tensor / per_channel (qint8, quint8)", "01",
             lambda: torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8),
             "plain int8/uint8 tensors + scales: torchao quant_primitives (quantize_affine ...)", warns_once=True),
    ApiProbe("torch.ao.quantization.fuse_modules", "03", _probe_fuse,
             "none needed: PT2E quantizers match Conv-BN-ReLU patterns", note=_TORCH_AO),
    ApiProbe("torch.ao.quantization prepare / convert", "03", _probe_prepare_convert,
             "CNNs: torchao prepare_pt2e / convert_pt2e; Linear-only models: quantize_",
             setup=lambda: _with_qconfig("x86")),
    ApiProbe("torch.ao.quantization.quantize_fx prepare_fx / convert_fx", "-", _probe_fx,
             "torchao prepare_pt2e / convert_pt2e"),
    ApiProbe("torch.ao.quantization.prepare_qat", "04", _probe_prepare_qat,
             "CNNs: prepare_qat_pt2e; Linear-only models: torchao QAT, then quantize_ (last row)",
             setup=lambda: _with_qconfig("x86", qat=True)),
    ApiProbe("torch.ao.quantization.quantize_dynamic (nn.Linear)", "00, 03", _probe_quantize_dynamic,
             "torchao quantize_(model, Int8DynamicActivationInt8WeightConfig())"),
    ApiProbe("torch.ao.quantization.quantize_dynamic (nn.LSTM / nn.GRU)", "03", _probe_quantize_dynamic_lstm,
             "none in torchao 0.18: quantize_ leaves RNNs float (keep them float)"),
    ApiProbe("torchvision.models.quantization (quantizable models)", "02", _probe_torchvision_quantizable,
             "none: the float torchvision model + PT2E",
             note="no warning of its own; quantizing it takes torch.ao prepare/convert, which warn"),
    ApiProbe("qnnpack engine (eager INT8 on Arm)", "01, 02", _probe_qnnpack,
             "PT2E with XNNPACKQuantizer, run by ExecuTorch (.pte)", warns_once=True, setup=_qnnpack_model,
             note="selecting the engine says nothing; running its kernels makes quantized-dtype tensors, which warn"),
    ApiProbe("torch.ao.ns._numeric_suite.compare_weights", "03", _probe_ns,
             "torchao.quantization.pt2e numeric debugger (compare_results)", note=_TORCH_AO),
    ApiProbe("torch.jit.script (TorchScript deployment)", "03", _probe_jit_script,
             "torch.export.save / load (+ torch.compile or AOTInductor)"),
    ApiProbe("torchao prepare_pt2e / convert_pt2e", "05", _probe_pt2e, "(this is the replacement)"),
    ApiProbe("torchao quantize_", "05", _probe_quantize_, "(this is the replacement)"),
    ApiProbe("torchao QAT for Linear (QATConfig), then quantize_", "05", _probe_qat_linear, "(this is the replacement)",
             note="QATConfig prepare, train, QATConfig convert (float again), quantize_: an Int8Tensor weight (qh.linear_qat_int8)"),
    ApiProbe("torchao quant_primitives (quantize_affine ...)", "05", _probe_quant_primitives, "(this is the replacement)"),
)


# With torch.set_warn_always(True), kernels that make quantized tensors inside C++ also print the dtype deprecation
# straight to stderr ("[W... Quantizer.cpp:111] Warning: ... deprecated ..."); the probe has recorded it already.
_CPP_DEPRECATION_LINE = re.compile(r"^\[W.*\] Warning: .*deprecated")


def _first_line(message: str) -> str:
    text = warning_text(message)
    return text.splitlines()[0].strip() if text else ""


def probe_api(probe: ApiProbe) -> dict:
    """Call ``probe.call`` once (after ``probe.setup``, whose warnings are ignored) and report what the installed torch says.

    Returns a row ``{"api", "notebook", "status", "warning", "note", "replacement"}``:
    status ``"warns"`` (the call itself emitted a ``DeprecationWarning``/``FutureWarning``,
    or a ``UserWarning`` whose text says "deprecated"), ``"no warning"``, ``"removed"``
    (``AttributeError``/``ImportError``) or ``"fails"`` (any other exception: the call no
    longer does what the course relies on; ``warning`` then holds the error). For a probe
    marked ``warns_once`` (torch's C++ side warns about the quantized dtypes only once per
    process), ``torch.set_warn_always(True)`` is on during the call, so that the map does
    not depend on what ran before it.
    """
    if not isinstance(probe, ApiProbe):
        raise TypeError(f"probe must be an ApiProbe, got {type(probe).__name__}")
    was_always = torch.is_warn_always_enabled()
    status, text = "no warning", ""
    caught: list = []
    try:
        prepared = None
        if probe.setup is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prepared = probe.setup()
        torch.set_warn_always(probe.warns_once or was_always)
        with warnings.catch_warnings(record=True) as caught, _native_stderr([], drop=[_CPP_DEPRECATION_LINE]):
            warnings.simplefilter("always")
            probe.call() if probe.setup is None else probe.call(prepared)
    except (AttributeError, ImportError) as exc:
        status, text = "removed", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001  the map reports it; the notebook asserts on the status
        status, text = "fails", f"{type(exc).__name__}: {_first_line(str(exc))}"
    finally:
        torch.set_warn_always(was_always)
    if status == "no warning":
        for w in caught:
            msg = str(w.message)
            deprecation = issubclass(w.category, (DeprecationWarning, FutureWarning)) or "deprecated" in msg.lower()
            if deprecation:
                status, text = "warns", f"{w.category.__name__}: {_first_line(msg)}"
                break
    return {"api": probe.name, "notebook": probe.notebook, "status": status, "warning": text, "note": probe.note,
            "replacement": probe.replacement}


def deprecation_map(probes: Optional[tuple[ApiProbe, ...] | list[ApiProbe]] = None) -> list[dict]:
    """One row per API (default ``COURSE_APIS``), each produced by ``probe_api`` on the installed torch.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    chosen = COURSE_APIS if probes is None else probes
    if not isinstance(chosen, (list, tuple)) or not chosen:
        raise ValueError(f"probes must be a non-empty list of ApiProbe, got {chosen!r}")
    return [probe_api(p) for p in chosen]


def print_table(rows: list[dict], columns: Optional[list[str]] = None, max_width: int = 60) -> None:
    """Print ``rows`` (dicts) as an aligned text table; floats with 4 significant digits, cells longer than ``max_width`` cut with '...'.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not rows:
        raise ValueError("rows is empty; nothing to print")
    columns = columns or list(rows[0])
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"columns {missing} are not in the rows (they have {list(rows[0])})")

    def cell(v: Any) -> str:
        s = f"{v:.4g}" if isinstance(v, float) else str(v)
        return s if len(s) <= max_width else s[: max_width - 3] + "..."

    table = [[cell(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


# --------------------------------------------------------------------------- plain int8 inference


def fixed_point_multiplier(multiplier: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A requantization multiplier as integer kernels store it: ``(M0, n)`` with ``multiplier ~= M0 * 2**-n``.

    ``M0`` is an int32 value in [2**30, 2**31) (the mantissa in Q0.31) and
    ``n`` a right shift, both int64 tensors of the multiplier's shape
    (Jacob et al. 2018, section 2.2; gemmlowp, QNNPACK and TFLite use this
    form). ``qh.requantize(..., fixed_point=True)`` applies it.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float, torch.Tensor)):
        raise TypeError(f"multiplier must be a float or a float tensor, got {type(multiplier).__name__}")
    m = torch.as_tensor(multiplier, dtype=torch.float64)
    m0, shift = _fixed_point_multiplier(m)
    return m0.reshape(m.shape), shift.reshape(m.shape)



def _check_codes(t: object, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.is_quantized or t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be a plain integer tensor of codes, got {getattr(t, 'dtype', type(t).__name__)}")
    return t


def int8_conv2d(
    x_q: torch.Tensor,
    x_qparams: QParams,
    w_q: torch.Tensor,
    w_qparams: QParams,
    bias: Optional[torch.Tensor],
    out_qparams: QParams,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    relu: bool = False,
    *,
    bias_in_float: bool = False,
    fixed_point: bool = False,
) -> torch.Tensor:
    """A 2-D convolution (groups=1) on integer codes, the way an INT8 kernel does it.

    Shapes: ``x_q`` (N, C, H, W) codes with per-tensor ``x_qparams``; ``w_q``
    (O, C, kH, kW) codes, per-tensor or per-channel along axis 0; ``bias``
    float (O,) or None. Steps: subtract zero points; unfold the patches
    (zero padding in real numbers is padding with the zero point in codes,
    i.e. 0 after the subtraction); multiply-accumulate in int32; add the bias;
    requantize to ``out_qparams`` (one float multiply, one rounding half to
    even). ``bias_in_float=False`` rounds the bias to int32 at scale
    ``x_scale * w_scale`` first and adds it to the sum, as PyTorch's QNNPACK
    kernels do; ``True`` adds ``bias / (x_scale * w_scale)`` to the sum in
    float32, unrounded, before the one rounding, as the x86 engine's kernels
    (FBGEMM's requantization, oneDNN) do. ``relu=True`` clamps at the output
    zero point (a fused ConvReLU). ``fixed_point=True`` requantizes the int32
    sums (bias rounded to int32) with an int32 multiplier and a shift instead
    of a float multiply (``qh.requantize(..., fixed_point=True)``: the
    integer-only form of gemmlowp and TFLite's reference kernels). Returns
    (N, O, H', W') codes of ``out_qparams.dtype``.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    x_q, w_q = _check_codes(x_q, "x_q"), _check_codes(w_q, "w_q")
    if x_q.dim() != 4 or w_q.dim() != 4:
        raise ValueError(f"x_q and w_q must be 4-D (N, C, H, W) and (O, C, kH, kW), got {tuple(x_q.shape)} and {tuple(w_q.shape)}")
    if x_q.shape[1] != w_q.shape[1]:
        raise ValueError(f"x_q has {x_q.shape[1]} channels but w_q expects {w_q.shape[1]} (groups other than 1 are not supported)")
    if x_qparams.per_channel or out_qparams.per_channel:
        raise ValueError("x_qparams and out_qparams must be per-tensor (activations use one scale)")
    if w_qparams.per_channel and w_qparams.axis != 0:
        raise ValueError(f"per-channel weight qparams must be along axis 0 (output channels), got axis {w_qparams.axis}")
    n_out, _, kh, kw = w_q.shape
    if w_qparams.scale.numel() not in (1, n_out):
        raise ValueError(f"w_qparams hold {w_qparams.scale.numel()} scales but w_q has {n_out} output channels")

    x_i = x_q.to(torch.int32) - x_qparams.zero_point.to(torch.int32).reshape(())
    w_zp = w_qparams.zero_point.to(torch.int32).reshape(-1, 1, 1, 1) if w_qparams.per_channel else w_qparams.zero_point.to(torch.int32).reshape(())
    w_i = (w_q.to(torch.int32) - w_zp).reshape(n_out, -1)
    # unfold works on floats; small integers are exact in float32, so this is only a reshuffle
    cols = F.unfold(x_i.to(torch.float32), (kh, kw), padding=padding, stride=stride).to(torch.int32)
    acc = w_i @ cols  # (N, O, L) int32
    acc_scale = x_qparams.scale.to(torch.float32).reshape(()) * w_qparams.scale.to(torch.float32).reshape(-1)
    if acc_scale.numel() == 1:
        acc_scale = acc_scale.expand(n_out)
    if not isinstance(bias_in_float, bool) or not isinstance(fixed_point, bool):
        raise TypeError(f"bias_in_float and fixed_point must be True or False, got {bias_in_float!r} and {fixed_point!r}")
    if bias_in_float and fixed_point:
        raise ValueError("fixed_point=True works on int32 sums: it needs the bias rounded to int32 (bias_in_float=False)")
    if bias is not None:
        if bias.shape != (n_out,):
            raise ValueError(f"bias must have shape ({n_out},), got {tuple(bias.shape)}")
        bias_acc = bias.detach().float() / acc_scale  # the bias in units of the int32 sum
        if bias_in_float:
            real = (acc.float() + bias_acc.reshape(1, -1, 1)) * (acc_scale / out_qparams.scale.float().reshape(())).reshape(1, -1, 1)
            codes = torch.round(real) + out_qparams.zero_point.float().reshape(())
            y = torch.clamp(codes, out_qparams.quant_min, out_qparams.quant_max).to(out_qparams.dtype)
        else:
            acc = acc + torch.round(bias_acc).to(torch.int32).reshape(1, -1, 1)
    if bias is None or not bias_in_float:
        y = requantize(acc, acc_scale, out_qparams, fixed_point=fixed_point)
    if relu:
        y = torch.maximum(y, out_qparams.zero_point.to(y.dtype).reshape(()))
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    h_out = (x_q.shape[2] + 2 * p[0] - kh) // s[0] + 1
    w_out = (x_q.shape[3] + 2 * p[1] - kw) // s[1] + 1
    return y.reshape(x_q.shape[0], n_out, h_out, w_out)


def _uint8_qparams(scale: float, zero_point: int) -> QParams:
    """Per-tensor quint8 activation qparams as plain numbers (the kernel clamps to the whole 0..255)."""
    return QParams(torch.tensor([float(scale)]), torch.tensor([int(zero_point)]), 0, 255, 8, False, "affine")


def _weight(module: nn.Module) -> tuple[torch.Tensor, QParams]:
    """The int8 codes and qparams of a quantized Conv/Linear module's weight (per-channel or per-tensor)."""
    w = module.weight()
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        qp = QParams(w.q_per_channel_scales().float(), w.q_per_channel_zero_points().long(), -128, 127, 8, True, "symmetric", 0)
    else:
        qp = QParams(torch.tensor([w.q_scale()]), torch.tensor([w.q_zero_point()]), -128, 127, 8, True, "symmetric")
    return w.int_repr(), qp


def quantized_weight(module: nn.Module) -> tuple[torch.Tensor, QParams]:
    """The int8 weight codes (a plain ``torch.int8`` tensor) and their ``QParams`` of an eager quantized Conv/Linear module.

    Per-channel along axis 0 (the x86 engine's default) or per-tensor (qnnpack's).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not hasattr(module, "weight") or not callable(module.weight):
        raise TypeError(f"module must be a converted eager quantized Conv/Linear (its .weight() returns the int8 weight), got {type(module).__name__}")
    return _weight(module)


def bias_in_float_for(engine: str) -> bool:
    """How ``engine``'s eager INT8 kernels add the bias: True when in float before the one rounding (x86, fbgemm,
    onednn), False when rounded to int32 first (qnnpack). Read from the kernels' source, checked by
    ``qh.int8_conv2d`` reproducing each engine's codes exactly (tests/test_modern.py).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if engine not in ("x86", "fbgemm", "onednn", "qnnpack"):
        raise ValueError(f"engine must be one of 'x86', 'fbgemm', 'onednn', 'qnnpack', got {engine!r}")
    return engine != "qnnpack"


def _conv(module: nn.Module, x_q: torch.Tensor, x_qp: QParams, relu: bool, bias_in_float: bool) -> tuple[torch.Tensor, QParams]:
    w_q, w_qp = _weight(module)
    out_qp = _uint8_qparams(module.scale, module.zero_point)
    y = int8_conv2d(x_q, x_qp, w_q, w_qp, module.bias(), out_qp, module.stride, module.padding, relu, bias_in_float=bias_in_float)
    return y, out_qp


def _linear(module: nn.Module, x_q: torch.Tensor, x_qp: QParams, relu: bool, bias_in_float: bool) -> tuple[torch.Tensor, QParams]:
    # a Linear is a 1x1 convolution over a 1x1 image: the same arithmetic, and the same bias handling
    w_q, w_qp = _weight(module)
    out_qp = _uint8_qparams(module.scale, module.zero_point)
    y = int8_conv2d(x_q[:, :, None, None], x_qp, w_q[:, :, None, None], w_qp, module.bias(), out_qp, relu=relu, bias_in_float=bias_in_float)
    return y[:, :, 0, 0], out_qp


def plain_int8_forward(qmodel: nn.Module, x: torch.Tensor, *, bias_in_float: Optional[bool] = None) -> torch.Tensor:
    """The eager INT8 ``CourseNet``'s forward pass on plain ``torch.uint8``/``int8`` tensors; returns float logits (N, 10).

    ``qmodel`` is a converted eager INT8 course model (from
    ``qh.quantize_course_model``). Only its numbers are read (scales, zero
    points, int8 weight codes, float biases); every activation between the
    quantize at the input and the dequantize at the output is a plain
    ``torch.uint8`` tensor. ``bias_in_float``: how each layer adds its bias
    (see ``int8_conv2d``); ``None`` does what the current engine's kernels do
    (``bias_in_float_for(torch.backends.quantized.engine)``).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    from .quantmath import dequantize, quantize

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"x must be a float tensor (N, 1, 28, 28), got {getattr(x, 'shape', type(x).__name__)}")
    if not hasattr(qmodel, "quant") or not hasattr(qmodel.stem[0], "weight") or not callable(qmodel.stem[0].weight):
        raise TypeError("qmodel must be a converted eager INT8 CourseNet (see qh.quantize_course_model)")
    fb = bias_in_float_for(torch.backends.quantized.engine) if bias_in_float is None else bias_in_float
    qp = _uint8_qparams(float(qmodel.quant.scale), int(qmodel.quant.zero_point))
    h = quantize(x, qp)
    h, qp = _conv(qmodel.stem[0], h, qp, True, fb)
    h, qp = _conv(qmodel.down1[0], h, qp, True, fb)
    skip, skip_qp = h, qp
    h, qp = _conv(qmodel.res.conv1[0], h, qp, True, fb)
    h, qp = _conv(qmodel.res.conv2[0], h, qp, False, fb)
    # quantized add: both inputs rescaled to the output scale, summed, rounded once
    add_qp = _uint8_qparams(qmodel.res.skip_add.scale, qmodel.res.skip_add.zero_point)
    s = add_qp.scale.reshape(())
    total = (h.to(torch.int32) - qp.zero_point) * (qp.scale / s) + (skip.to(torch.int32) - skip_qp.zero_point) * (skip_qp.scale / s)
    h = torch.clamp(torch.round(total) + add_qp.zero_point, 0, 255).to(torch.uint8)
    h = torch.maximum(h, add_qp.zero_point.to(torch.uint8).reshape(()))  # ReLU on codes: clamp at the zero point
    qp = add_qp
    h, qp = _conv(qmodel.down2[0], h, qp, True, fb)
    # global average pool: same scale in and out, so average the codes
    h = torch.round(h.to(torch.float32).mean(dim=(2, 3))).to(torch.uint8)
    h, qp = _linear(qmodel.fc1, h, qp, True, fb)
    h, qp = _linear(qmodel.fc2, h, qp, False, fb)
    return dequantize(h, qp)


def refresh_bn_statistics(model: nn.Module, batches: Any) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance from ``batches`` (tensors); weights untouched; returns ``model`` in eval mode.

    torchvision builds a model with ``weights=None`` with running mean 0 and variance 1 in
    every BatchNorm, which does not match what its random convolutions produce: in
    MobileNetV2 the activations then shrink block after block until the output is almost
    exactly zero, and any INT8 version "matches" it. Forward passes in training mode under
    ``torch.no_grad()``, with ``momentum=None`` (a plain average over the batches; each
    layer's momentum is restored afterwards), give statistics that fit, so that
    comparisons on such a model mean something.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batches = list(batches)
    if not batches or not all(isinstance(b, torch.Tensor) for b in batches):
        raise ValueError("batches must be a non-empty list of input tensors")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("model has no BatchNorm layer")
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for b in batches:
                model(b)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
    return model.eval()


# --------------------------------------------------------------------------- what quantize_ touched, and latency


def weight_storage(model: nn.Module) -> dict[str, str]:
    """``{"<module name> (<module type>)": "<weight tensor class>"}`` for every module that owns a weight.

    A weight that ``quantize_`` converted shows its torchao tensor class
    (e.g. ``Int8Tensor``); one it left alone shows ``Parameter``. For an
    ``nn.LSTM``/``nn.GRU`` the first input-hidden weight (``weight_ih_l0``)
    stands for all of them.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    out: dict[str, str] = {}
    for name, module in model.named_modules():
        weight = module._parameters.get("weight", module._parameters.get("weight_ih_l0"))
        if weight is not None:
            out[f"{name or '(model)'} ({type(module).__name__})"] = type(weight).__name__
    return out


def interleaved_latency(models: dict[str, Callable], example: torch.Tensor, *, rounds: int = 3, min_run_time: float = 0.15, threads: int = 1) -> dict[str, float]:
    """Median latency in ms of each model on ``example``, measured in ``rounds`` interleaved passes; the best pass counts.

    On a shared machine the load changes from second to second; measuring the
    models one after the other in turn, several times, and keeping each one's
    best median keeps a load spike from deciding a ratio. Each pass is
    ``qh.measure_latency`` (warm-up, then ``min_run_time`` seconds of runs).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    from .latency import measure_latency

    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, m in models.items():
            ms = measure_latency(m, example, threads=threads, min_run_time=min_run_time).median_ms
            best[name] = min(best.get(name, float("inf")), ms)
    return best


# --------------------------------------------------------------------------- PT2E graphs and deployment


def count_quant_ops(graph_module: torch.fx.GraphModule) -> Counter:
    """How many quantize / dequantize calls a PT2E graph holds, by op name (e.g. ``'quantize_per_tensor'``).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(graph_module, torch.fx.GraphModule):
        raise TypeError(f"graph_module must be a torch.fx.GraphModule (from convert_pt2e), got {type(graph_module).__name__}")
    counts: Counter = Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if name.startswith(("quantize_per", "dequantize_per")):
            counts[name] += 1
    return counts


def graph_accuracy(graph_module: torch.fx.GraphModule, loader: Any) -> float:
    """Top-1 accuracy in percent of an exported (PT2E) graph over a loader of ``(images, labels)``.

    ``qh.accuracy`` refuses a model whose ``.training`` flag is set; an exported
    graph keeps that flag at True and refuses ``.eval()``, because its train/eval
    behaviour was fixed at export (``move_exported_model_to_eval`` switches it).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from .metrics import predict

    if not isinstance(graph_module, torch.fx.GraphModule):
        raise TypeError(f"graph_module must be a torch.fx.GraphModule (from torch.export / convert_pt2e), got {type(graph_module).__name__}")
    preds, labels = predict(graph_module, loader)
    return 100.0 * int((preds == labels).sum()) / len(labels)


def strip_unused_weights(graph_module: torch.fx.GraphModule) -> int:
    """Delete parameters and buffers that no node of the graph reads; returns the bytes removed.

    ``convert_pt2e`` adds the int8 weights as new constants but leaves the
    original float weights attached to the module, unused; saved as they are,
    the "INT8" file would hold both. Changes ``graph_module`` in place.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(graph_module, torch.fx.GraphModule):
        raise TypeError(f"graph_module must be a torch.fx.GraphModule, got {type(graph_module).__name__}")
    used = {str(n.target) for n in graph_module.graph.nodes if n.op == "get_attr"}
    removed = 0
    named = list(graph_module.named_parameters(remove_duplicate=False)) + list(graph_module.named_buffers(remove_duplicate=False))
    for name, tensor in named:
        if name in used:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
        if hasattr(owner, attr):
            delattr(owner, attr)
            removed += tensor.numel() * tensor.element_size()
    return removed


def save_torchscript(model: nn.Module, path: Path | str) -> int:
    """Script ``model`` with ``torch.jit.script`` and write it as TorchScript to ``path`` atomically; returns the file size in bytes.

    ``torch.jit.script`` and ``torch.jit.save`` are deprecated in torch 2.14
    (they warn) but remain the only single-file format for an eager INT8 model.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    scripted = torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return len(buf.getvalue())


def save_exported(program: torch.export.ExportedProgram, path: Path | str) -> int:
    """Write an ``ExportedProgram`` (``torch.export.export``) to ``path`` atomically; returns the file size in bytes.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(program, torch.export.ExportedProgram):
        raise TypeError(f"program must be a torch.export.ExportedProgram (re-export the converted model), got {type(program).__name__}")
    buf = io.BytesIO()
    torch.export.save(program, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return len(buf.getvalue())


# --------------------------------------------------------------------------- self-checks


@_blank_safe
def check_requant_multiplier(multiplier: Any, x_scale: float, w_scale: float, out_scale: float, *, other_w_scales: Any = None,
                             other_x_scales: Any = None, other_out_scales: Any = None) -> bool:
    """Exercise: the requantization multiplier ``x_scale * w_scale / out_scale`` of one output channel of one layer.

    ``other_w_scales``: the weight scales of the layer's other channels, to recognise an
    answer computed with the wrong channel's scale; ``other_x_scales`` /
    ``other_out_scales``: scales of other tensors a learner might take for this layer's
    input or output (e.g. the image's scale, or the previous layer's input).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    got = as_number(multiplier, "multiplier")
    expected = x_scale * w_scale / out_scale

    def near(value: float) -> bool:
        return abs(got - value) <= 1e-6 * abs(value)

    def scales(values: Any) -> list[float]:
        return [] if values is None else [float(v) for v in torch.as_tensor(values, dtype=torch.float64).reshape(-1)]

    if near(expected):
        return report("multiplier", True)
    if near(x_scale * w_scale):
        return report("multiplier", False, "that is the accumulator's scale; it still has to land on the output scale")
    if near(out_scale / (x_scale * w_scale)):
        return report("multiplier", False, "upside down: the int32 sum is in units of x_scale * w_scale, and the output codes in units of out_scale")
    if near(w_scale / out_scale) or near(x_scale / out_scale):
        return report("multiplier", False, "one scale is missing: each int32 product carries the input's scale and the weight's scale")
    if any(near(x_scale * s / out_scale) for s in scales(other_w_scales)):
        return report("multiplier", False, "that is another output channel's multiplier: per-channel weights have one scale per channel")
    if any(near(s * w_scale / out_scale) for s in scales(other_x_scales)):
        return report("multiplier", False, "wrong input scale: a layer's input is the previous layer's output, with that layer's output scale")
    if any(near(x_scale * w_scale / s) for s in scales(other_out_scales)):
        return report("multiplier", False, "wrong output scale: use the scale of this layer's own output (its .scale)")
    return report("multiplier", False, f"got {got:.6g}; the int32 sum has scale x_scale * w_scale and must land on out_scale")


# The converted eager INT8 CourseNet's integer layers, in order: layer -> (its module, the module whose output it reads).
_COURSE_LAYERS: dict[str, tuple[str, str]] = {
    "stem": ("stem.0", "quant"), "down1": ("down1.0", "stem.0"), "res.conv1": ("res.conv1.0", "down1.0"),
    "res.conv2": ("res.conv2.0", "res.conv1.0"), "down2": ("down2.0", "res.skip_add"), "fc1": ("fc1", "down2.0"),
    "fc2": ("fc2", "fc1"),
}


def _scale_of(qmodel: nn.Module, path: str) -> float:
    return float(qmodel.get_submodule(path).scale)


@_blank_safe
def check_layer_multiplier(multiplier: Any, qmodel: nn.Module, layer: str, channel: int) -> bool:
    """Exercise: the requantization multiplier of output ``channel`` of ``layer`` in a converted eager INT8 CourseNet.

    The expected value is read from ``qmodel`` here (the input scale is the output scale of
    the layer before, the weight scale that of the channel, the output scale the layer's
    own), so the check cell shows none of it; ``check_requant_multiplier`` gives the hints,
    with the other layers' scales as the likely confusions.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if layer not in _COURSE_LAYERS:
        raise ValueError(f"layer must be one of {list(_COURSE_LAYERS)}, got {layer!r}")
    try:
        module = qmodel.get_submodule(_COURSE_LAYERS[layer][0])
        _, w_qp = quantized_weight(module)
    except (AttributeError, TypeError) as exc:
        raise TypeError("qmodel must be a converted eager INT8 CourseNet (see qh.quantize_course_model)") from exc
    w_scales = w_qp.scale.reshape(-1).double()
    if not 0 <= channel < module.weight().shape[0]:
        raise ValueError(f"{layer} has {module.weight().shape[0]} output channels, got channel {channel!r}")
    w_scale = float(w_scales[channel % len(w_scales)])
    x_scale, out_scale = _scale_of(qmodel, _COURSE_LAYERS[layer][1]), float(module.scale)
    other_in = [_scale_of(qmodel, src) for name, (_, src) in _COURSE_LAYERS.items() if name != layer]
    other_out = [_scale_of(qmodel, mod) for name, (mod, _) in _COURSE_LAYERS.items() if name != layer]
    others = [float(s) for i, s in enumerate(w_scales) if i != channel % len(w_scales)]
    return check_requant_multiplier(multiplier, x_scale, w_scale, out_scale, other_w_scales=others or None,
                                    other_x_scales=other_in, other_out_scales=other_out)


@_blank_safe
def check_dequantized_weights(weights: Any, graph_module: torch.fx.GraphModule) -> bool:
    """Exercise: for each ``dequantize_per_channel`` node of the graph, in graph order, the pair (stored weight, its scales).

    Each such node's first three arguments are ``get_attr`` nodes: the stored int8 weight,
    its per-output-channel scales and its zero points (``getattr(graph_module, arg.target)``
    is the tensor each names). The answer is a list of ``(weight, scales)`` pairs; both are
    compared with ``torch.equal``, in order. The pairing is what the graph's nodes say; the
    check compares tensors, not how they were found. On a ``convert_pt2e`` graph the stored
    weights and scales are registered in graph order (``_frozen_param0, ...``,
    ``_scale_0, ...``), so zipping a dtype filter over ``named_buffers()`` (int8 tensors with
    1-D float32 ones) also gives the right pairs and passes: this check cannot tell that from
    a graph walk. A state-dict filter for int8 alone gets the weights without their scales
    and is rejected. The exercise's questions (which float tensors, how many scales) are
    not checked here. Hints: a count; tensors instead of pairs; float tensors (the float
    model's weights); the zero points instead of the scales; scales paired with the wrong
    weight; one short; another order; not a list (the hint names the idea, never the code).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not_filled(weights):
        raise NotFilledIn("dequantized weights")
    name = "dequantized weights"
    nodes = [n for n in graph_module.graph.nodes
             if n.op == "call_function" and getattr(n.target, "__name__", "").startswith("dequantize_per_channel")]
    expected = [tuple(getattr(graph_module, a.target) for a in n.args[:3]) for n in nodes]  # (weight, scales, zero points)

    def same(x: Any, y: torch.Tensor) -> bool:
        return isinstance(x, torch.Tensor) and x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)

    def same_list(a: list, b: list) -> bool:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))

    if isinstance(weights, (int, float)):
        return report(name, False, "that is a count; give a list of (weight, scales) pairs, one per dequantize_per_channel node")
    if not isinstance(weights, (list, tuple)):
        return report(name, False, f"give a list of (weight, scales) pairs, not a {type(weights).__name__}: one pair per dequantize_per_channel node, "
                                   "in graph order, the tensors its first two arguments name")
    if weights and all(isinstance(w, torch.Tensor) for w in weights):
        if same_list(list(weights), [e[0] for e in expected]):
            return report(name, False, "the int8 weights are right; pair each with its scales, the tensor named by the node's second argument")
        if all(w.is_floating_point() for w in weights) and len(weights) == len(expected):
            return report(name, False, "float tensors: those are the float model's weights, not what the graph stores; "
                                       "read the tensors named by each node's arguments (get_attr nodes)")
        return report(name, False, "give pairs (weight, scales), not single tensors: one pair per dequantize_per_channel node")
    if not all(isinstance(w, (list, tuple)) and len(w) == 2 and all(isinstance(t, torch.Tensor) for t in w) for w in weights):
        return report(name, False, "each item must be a pair of tensors (weight, scales)")
    got_w, got_s = [w[0] for w in weights], [w[1] for w in weights]
    exp_w, exp_s, exp_z = [e[0] for e in expected], [e[1] for e in expected], [e[2] for e in expected]
    if same_list(got_w, exp_w) and same_list(got_s, exp_s):
        return report(name, True)
    if same_list(got_w, exp_w):
        if same_list(got_s, exp_z):
            return report(name, False, "those are the zero points (the third argument); the scales are the second")
        return report(name, False, "the weights are right but not their scales: take the tensor named by the same node's second argument")
    if len(weights) == len(expected) - 1:
        return report(name, False, "one short: every convolution and the final Linear has its dequantize_per_channel node")
    if len(weights) == len(expected) and all(w.is_floating_point() for w in got_w):
        return report(name, False, "float weights: those are the float model's, not what the graph stores (int8)")
    key = lambda t: (tuple(t.shape), t.dtype, float(t.float().sum()))  # noqa: E731
    if len(weights) == len(expected) and sorted(map(key, got_w)) == sorted(map(key, exp_w)):
        return report(name, False, "the right weights in another order: walk graph.nodes in order")
    return report(name, False, f"got {len(weights)} pairs for {len(expected)} dequantize_per_channel nodes; "
                               "for each node whose target's __name__ starts with 'dequantize_per_channel', take the tensors its first two arguments name")

# --------------------------------------------------------------------------- exercise 3: use the map

MIGRATION_TARGETS = ("quantize_", "prepare_pt2e", "prepare_qat_pt2e", "XNNPACKQuantizer", "keep float", "quantize_affine")

# The course's answer for each situation of exercise 3 (notebooks/05), with the hint for each typical wrong pick.
_MIGRATION_CASES: dict[str, tuple[str, dict[str, str]]] = {
    "a": ("prepare_pt2e", {
        "quantize_": "torch's warning says quantize_, but quantize_ swaps nn.Linear weights only: every convolution of a CNN would stay float",
        "prepare_qat_pt2e": "that is the training path; the snippet calibrates and converts, no training",
    }),
    "b": ("quantize_", {
        "prepare_pt2e": "a static graph needs calibration data and fixed activation ranges; dynamic quantization of Linear layers maps to quantize_",
        "keep float": "quantize_ covers nn.Linear; nothing forces this model to stay float",
    }),
    "c": ("keep float", {
        "quantize_": "quantize_ leaves nn.LSTM float (measured in section 2): nothing would be quantized",
        "prepare_pt2e": "the map has no PT2E row for RNNs; torchao 0.18 offers no replacement for a dynamically quantized LSTM",
    }),
    "d": ("XNNPACKQuantizer", {
        "prepare_pt2e": "prepare_pt2e needs a quantizer, and X86InductorQuantizer targets x86 servers: which quantizer targets a phone?",
        "quantize_": "the phone path is a .pte file for ExecuTorch, made with a PT2E quantizer",
        "keep float": "the phone path exists: see the qnnpack row of the map",
    }),
}


@_blank_safe
def check_migration(choices: Any) -> bool:
    """Exercise: for each situation "a"-"d", the replacement the deprecation map gives (one of ``MIGRATION_TARGETS``).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not_filled(choices):
        raise NotFilledIn("choices")
    if not isinstance(choices, dict):
        raise TypeError(f"choices must be a dict like {{'a': 'prepare_pt2e', ...}}, got {type(choices).__name__}")
    ok = True
    for key, (right, hints) in _MIGRATION_CASES.items():
        got = choices.get(key, ...)
        if not_filled(got):
            ok = report(f"situation {key}", False, "not filled in yet") and ok
        elif got not in MIGRATION_TARGETS:
            ok = report(f"situation {key}", False, f"{got!r} is not one of {MIGRATION_TARGETS}") and ok
        else:
            ok = report(f"situation {key}", got == right, hints.get(got, "look at the map's replacement column for this API again")) and ok
    return ok


# --------------------------------------------------------------------------- exercise 4: predict, then measure


def weight_only_sqnr(model: nn.Module, inputs: torch.Tensor, *, bits: int = 8) -> float:
    """SQNR (dB) of ``model``'s output when every ``nn.Linear`` weight is fake-quantized to ``bits`` (per channel, symmetric); activations stay float.

    The model itself is not changed (a copy is quantized). At 8 bits this is
    what torchao's ``Int8WeightOnlyConfig`` computes.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    import copy

    from .quantmath import fake_quantize, qparams_from_tensor, sqnr_db

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int from 2 to 16, got {bits!r}")
    quantized = copy.deepcopy(model)
    linears = [m for m in quantized.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer to quantize")
    for layer in linears:
        w = layer.weight.detach()
        layer.weight.data = fake_quantize(w, qparams_from_tensor(w, bits, True, "symmetric", axis=0))
    with torch.no_grad():
        return sqnr_db(model(inputs), quantized(inputs))


@_blank_safe
def check_bits_prediction(low: Any, high: Any, model: nn.Module, inputs: torch.Tensor, *, bits: int = 4, reference_bits: int = 8) -> bool:
    """Exercise (predict first): a range (dB, at most 6 wide) for the weight-only SQNR at ``bits``, given the one at ``reference_bits``.

    Measures both with ``weight_only_sqnr`` after reading the prediction. The measurement is printed
    only when the range holds it (above the verdict); a wrong range gets a hint that names the
    mistake and no number, so that a second try is still a prediction.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    name = f"prediction for {bits}-bit weights"
    lo, hi = read_range(name, (low, high), max_width=6.0, unit="dB")
    measured = weight_only_sqnr(model, inputs, bits=bits)
    reference = weight_only_sqnr(model, inputs, bits=reference_bits)
    if lo <= measured <= hi:
        print(f"measured: {reference_bits}-bit weights {reference:.1f} dB, {bits}-bit weights {measured:.1f} dB")
        return report(name, True)
    proportional = reference * bits / reference_bits
    if lo > measured and lo <= proportional <= hi:
        return report(name, False, f"the SQNR is not proportional to the bits: each bit adds about 6 dB, so {reference_bits - bits} bits fewer "
                                   f"cost about {6 * (reference_bits - bits)} dB whatever the {reference_bits}-bit figure, not a share of it")
    if lo > measured and lo >= reference - 6.0:
        return report(name, False, f"too optimistic: {reference_bits - bits} bits fewer make the step {2 ** (reference_bits - bits)}x coarser, and the noise power grows with the step squared")
    if lo > measured:
        return report(name, False, "too optimistic: each bit removed doubles the rounding error (a factor 4 in noise power)")
    if measured >= reference:
        return report(name, False, "fewer bits cannot raise the SQNR")
    return report(name, False, "too pessimistic: with per-channel scales each bit removed costs about the same, and nothing clips")
