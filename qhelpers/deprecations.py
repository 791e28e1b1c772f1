"""The deprecation map: every quantization API the course used, called, and what the installed torch says about it.

Introduced in notebooks/05_beyond_eager_mode.ipynb.

``deprecation_map`` calls every quantization API the course used in notebooks 01-04 (``COURSE_APIS``, one
``ApiProbe`` each, run by ``probe_api``) and records what the installed torch says about it (the warnings are
caught from the calls, not typed by hand); the replacement column is the course's advice. ``print_table`` prints
it. ``linear_qat_int8`` is the torchao QAT path the map's QAT row runs.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from .environment import warning_text
from .runtime import _native_stderr

__all__ = [
    "ApiProbe",
    "linear_qat_int8",
    "COURSE_APIS",
    "probe_api",
    "deprecation_map",
    "print_table",
]


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
