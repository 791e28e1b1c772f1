"""The self-checks of notebook 03's exercises: fusable groups, the qconfig, PTQ on an engine, the predictions.

Introduced in notebooks/03_post_training_quantization.ipynb.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import nn
from torch.ao.quantization import QConfig

from .checks import _blank_safe, NotFilledIn, not_filled, read_range, report
from .environment import check_engine
from .environment import engine as use_engine
from .latency import state_dict_digest, weights_digest
from .quantmath import sqnr_db
from .ptq import _inputs, ACTIVATION_OBSERVERS, find_fusable_groups, post_training_quantize

__all__ = [
    "check_fusable_groups",
    "check_qconfig",
    "check_engine_ptq",
    "check_prediction",
    "prediction_ready",
]


# --------------------------------------------------------------------------- exercise checks


_FUSE_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm3d)


@_blank_safe
def check_fusable_groups(groups: Any, model: nn.Module) -> bool:
    """Exercise: the fusable groups of ``model`` (any order of groups; names in execution order within a group).

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    if not_filled(groups):
        raise NotFilledIn("fusable groups")
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, (list, tuple)) for g in groups):
        raise TypeError(f"groups must be a list of lists of module names, got {groups!r}")
    for g in groups:
        odd = [n for n in g if not isinstance(n, str)]
        if odd:
            return report(
                "fusable groups", False,
                f"{list(g)}: module names are strings, as model.named_modules() gives them (\"0\", not 0); fuse_modules calls name.split('.')",
            )
    used = [n for g in groups for n in g]
    repeated = sorted({n for n in used if used.count(n) > 1})
    if repeated:
        return report("fusable groups", False, f"module {repeated[0]!r} appears in more than one group (or twice in one): a module is fused once")
    expected = {tuple(g) for g in find_fusable_groups(model)}
    given = {tuple(g) for g in groups}
    if given == expected:
        return report("fusable groups", True)
    modules = dict(model.named_modules())
    for g in sorted(given - expected):
        unknown = [n for n in g if n not in modules or n == ""]
        if unknown:
            return report("fusable groups", False, f"{list(g)}: no module named {unknown[0]!r} in the model")
        if not isinstance(modules[g[0]], _FUSE_FIRST):
            return report(
                "fusable groups", False,
                f"{list(g)} starts with a {type(modules[g[0]]).__name__}: a group starts with a Conv, a Linear, or a "
                "BatchNorm2d/3d followed by a ReLU (a ReLU after pooling has nothing to fuse into, and torch has no fuser for "
                "BatchNorm1d+ReLU)",
            )
        if any(set(g) <= set(e) and g != e for e in expected):
            return report("fusable groups", False, f"{list(g)} is cut short: fuse the whole chain (is there a ReLU right after it?)")
        return report("fusable groups", False, f"{list(g)} is not a chain fuse_modules can fuse (wrong order, or a module in between)")
    missing = expected - given
    return report(
        "fusable groups", False,
        f"{len(missing)} fusable group(s) missing: a Conv+BatchNorm without a ReLU, and a Linear+ReLU, are groups too",
    )


_WEIGHT_SCHEMES = {
    True: (torch.per_channel_symmetric, "per-channel symmetric"),
    False: (torch.per_tensor_symmetric, "per-tensor symmetric"),
}


def _observer_instance(factory: Any, role: str) -> tuple[Optional[Any], str]:
    try:
        return factory(), ""
    except Exception as exc:  # a factory with arguments the observer refuses raises when called
        return None, f"the {role} factory fails when torch calls it: {type(exc).__name__}: {str(exc).splitlines()[0]}"


@_blank_safe
def check_qconfig(qconfig: Any, activation: str, per_channel: bool, reduce_range: bool = False) -> bool:
    """Exercise: ``qconfig`` has the named activation observer (quint8, affine, ``reduce_range``) and qint8
    symmetric weights over the full -128..127 range, per output channel (``ch_axis=0``) when ``per_channel``.

    Each factory is called the way ``prepare`` calls it; an argument torch refuses is reported, not raised.
    A moving average with ``averaging_constant=1`` is refused: torch treats that observer as memoryless and
    ``prepare`` then observes each module's *input* instead of its output.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    from torch.ao.quantization.qconfig import _activation_is_memoryless

    if activation not in ACTIVATION_OBSERVERS:
        raise ValueError(f"activation must be one of {list(ACTIVATION_OBSERVERS)}, got {activation!r}")
    if not_filled(qconfig):
        raise NotFilledIn("qconfig")
    if not isinstance(qconfig, QConfig):
        return report("qconfig", False, f"expected a torch.ao.quantization.QConfig(activation=..., weight=...), got {type(qconfig).__name__}")
    act, why = _observer_instance(qconfig.activation, "activation")
    w, why_w = _observer_instance(qconfig.weight, "weight") if act is not None else (None, "")
    if act is None or w is None:
        return report("qconfig", False, why or why_w)
    want_act = ACTIVATION_OBSERVERS[activation]
    if type(act) is not want_act:
        return report("qconfig", False, f"the activation observer is {type(act).__name__}, the exercise asks for {want_act.__name__}")
    if act.dtype != torch.quint8:
        return report("qconfig", False, f"activations are {act.dtype}: activations after a ReLU are non-negative, use torch.quint8")
    if act.qscheme != torch.per_tensor_affine:
        return report("qconfig", False, f"activation qscheme {str(act.qscheme).replace('torch.', '')}: activations use the default per_tensor_affine (a zero point)")
    if _activation_is_memoryless(QConfig(activation=qconfig.activation, weight=qconfig.weight)):
        return report(
            "qconfig", False,
            "averaging_constant=1 makes the moving average forget every batch but the last; torch then treats the observer as "
            "memoryless and prepare() puts it on each module's input, not its output: keep the default (0.01)",
        )
    want_range = (0, 127) if reduce_range else (0, 255)
    if (act.quant_min, act.quant_max) != want_range:
        if reduce_range and (act.quant_min, act.quant_max) == (0, 255):
            hint = "activation reduce_range is False, the exercise asks for True (codes 0..127)"
        elif not reduce_range and (act.quant_min, act.quant_max) == (0, 127):
            hint = "activation codes 0..127 (reduce_range or quant_max=127), the exercise asks for the full 0..255"
        else:
            hint = f"activation codes {act.quant_min}..{act.quant_max}, the exercise asks for {want_range[0]}..{want_range[1]}"
        return report("qconfig", False, hint)
    if w.dtype != torch.qint8:
        return report("qconfig", False, f"weights are {w.dtype}: weights are signed, use torch.qint8")
    scheme, words = _WEIGHT_SCHEMES[per_channel]
    if w.qscheme != scheme:
        why = (
            "symmetric or affine? pass qscheme explicitly: the observer's default is affine"
            if w.qscheme in (torch.per_channel_affine, torch.per_tensor_affine)
            else "per tensor or per channel? one scale per output channel needs a per-channel observer"
        )
        return report("qconfig", False, f"the weight qscheme is {str(w.qscheme).replace('torch.', '')}, the exercise asks for {words}: {why}")
    if per_channel and getattr(w, "ch_axis", 0) != 0:
        return report(
            "qconfig", False,
            f"ch_axis={w.ch_axis}: a conv weight is (out_channels, in_channels, kh, kw) and a Linear's (out, in); one scale "
            "per OUTPUT channel is axis 0 (the default)",
        )
    if (w.quant_min, w.quant_max) != (-128, 127):
        return report("qconfig", False, f"weight codes {w.quant_min}..{w.quant_max}: INT8 weights use the full -128..127 (the default)")
    return report("qconfig", True)


def _quantized_weights(model: nn.Module) -> list[torch.Tensor]:
    weights = []
    for m in model.modules():
        fn = getattr(m, "weight", None)
        if callable(fn) and type(m).__module__.startswith("torch.ao.nn") and ".quantized" in type(m).__module__:
            try:
                w = fn()
            except Exception:  # dynamic modules and others without a packed weight
                continue
            if isinstance(w, torch.Tensor) and w.is_quantized:
                weights.append(w)
    return weights


_LAST_LOGITS: dict = {}  # the logits check_engine_ptq measured last, under the key _logits_on gives them


def _logits_on(engine: str, float_model: nn.Module, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of ``float_model`` and ``model`` on ``x`` with ``engine`` active.

    Measured again only when a model, its weights, its mode or ``x`` changed since the last call: a check run
    again with another number (a learner's next try; tests/student_flow.py submits each number printed above
    the exercise) reuses them.
    """
    key = (engine, id(float_model), id(model), float_model.training, model.training,
           weights_digest(float_model), weights_digest(model), state_dict_digest({"x": x}))
    if key not in _LAST_LOGITS:
        with torch.no_grad(), use_engine(engine):
            logits = (float_model(x), model(x))
        _LAST_LOGITS.clear()
        _LAST_LOGITS[key] = logits
    return _LAST_LOGITS[key]


@_blank_safe
def check_engine_ptq(model: Any, sqnr: Any, float_model: nn.Module, calib_loader: Iterable, test_loader: Iterable, *, engine: str = "qnnpack") -> bool:
    """Exercise: ``model`` is PTQ for ``engine`` with that engine's default qconfig; ``sqnr`` its logit SQNR (dB) vs float.

    Checks the model itself (quantized, converted for ``engine``, weights with
    the granularity of ``get_default_qconfig(engine)``), then measures the SQNR
    of its logits on ``test_loader`` against ``float_model``'s (with ``engine``
    active) and the same for the helper's own PTQ; ``sqnr`` must match.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    from torch.ao.quantization import get_default_qconfig

    if not_filled(model):
        raise NotFilledIn("model")
    if not_filled(sqnr):
        raise NotFilledIn("SQNR")
    engine = check_engine(engine)
    if not isinstance(model, nn.Module):
        return report("model", False, f"expected the quantized model (an nn.Module), got {type(model).__name__}")
    weights = _quantized_weights(model)
    if not weights:
        return report("model", False, "this model has no INT8 layers: it is still the float model (quantize a copy with qh.post_training_quantize)")
    converted_for = getattr(model, "quantized_engine", None)
    if converted_for is None:
        return report("model", False, "make the model with qh.post_training_quantize(..., engine=...): it records the engine it packed the weights for")
    if converted_for != engine:
        return report("model", False, f"the weights were packed for the {converted_for!r} engine; the exercise asks for {engine!r} (pass engine=)")
    want = get_default_qconfig(engine).weight().qscheme
    want_per_channel = want in (torch.per_channel_symmetric, torch.per_channel_affine)
    got_per_channel = weights[0].qscheme() in (torch.per_channel_symmetric, torch.per_channel_affine)
    if got_per_channel != want_per_channel:
        return report(
            "model", False,
            f"weights are {'per channel' if got_per_channel else 'per tensor'}, but {engine}'s default qconfig quantizes them "
            f"{'per channel' if want_per_channel else 'per tensor'}: pass qconfig=get_default_qconfig({engine!r})",
        )
    ok_model = report("model", True)
    try:
        given = float(sqnr)
    except (TypeError, ValueError):
        report("SQNR", False, f"expected a number in dB, got {type(sqnr).__name__}")
        return False
    x = torch.cat([_inputs(b) for b in test_loader])
    reference_logits, test_logits = _logits_on(engine, float_model, model, x)
    measured = sqnr_db(reference_logits, test_logits)
    swapped = sqnr_db(test_logits, reference_logits)
    if abs(given - measured) > 1e-3 and abs(given - swapped) <= 1e-3:
        report("SQNR", False, "reference and test are swapped: qh.sqnr_db(reference, test) takes the float model's logits first")
        return False
    if abs(given - measured) > 1e-3:
        if math.isinf(given) or given > 100:
            hint = "an infinite SQNR means no quantization error at all: you compared the float model with itself"
        elif 50 <= given <= 100 and measured < 50:
            hint = "that looks like an accuracy in percent: the exercise asks for the SQNR of the logits, in dB"
        else:
            hint = "that is not the SQNR of the model you made: compare its test logits with the float model's, its engine active"
        report("SQNR", False, hint)
        return False
    with torch.no_grad(), use_engine(engine):  # the helper's PTQ, only for an SQNR that is the learner's model's
        helper = post_training_quantize(float_model, calib_loader, engine=engine, qconfig=get_default_qconfig(engine))
        expected = sqnr_db(reference_logits, helper(x))
    ok_sqnr = report(
        "SQNR", abs(measured - expected) <= 0.02,
        "your model's logits differ from this engine's PTQ on all of calib_loader: calibrate on calib_loader, every "
        "batch of it (a part of it, or other images, gives other ranges)",
    )
    return ok_model and ok_sqnr


@_blank_safe
def prediction_ready(name: str, low: Any, high: Any, *, max_width: float) -> bool:
    """Exercise (predict first), before measuring: True when ``(low, high)`` is a range ``check_prediction`` can judge.

    Otherwise shows why (blank, not two numbers, swapped, wider than ``max_width``) and returns False, so that a
    notebook measures, and prints, the answer only after a prediction is written.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    read_range(name, (low, high), max_width=max_width, unit="")
    return True


@_blank_safe
def check_prediction(name: str, low: Any, high: Any, measured: float, *, max_width: float, too_low: str = "", too_high: str = "") -> bool:
    """Exercise (predict first): the range ``[low, high]`` written before running contains ``measured``.

    A range wider than ``max_width`` is not a prediction and fails. ``too_low``
    and ``too_high`` are hints (naming the likely mistake, not the answer) for
    a range entirely below or above the measurement.

    The first range judged under ``name`` is remembered (``_FIRST_PREDICTIONS`` in this Python process, and beside
    the learner's progress log where one is kept, so that a restarted kernel remembers it too:
    ``qhelpers.prediction_memory``): a prediction that missed shows the measurement, so a *different* range given
    afterwards is not judged again but refused (the same range again gets the same verdict). Where no log is kept
    (nbval, scripts) a fresh process starts with no memory.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    from .prediction_memory import recall, remember

    lo, hi = read_range(name, (low, high), max_width=max_width, unit="")
    first = recall(_FIRST_PREDICTIONS, f"range {name}")
    if first is not None and not first[2] and (lo, hi) != tuple(first[:2]):
        return report(
            name, False,
            f"your first prediction, {first[0]:g} to {first[1]:g}, missed, and the measurement has been shown since: a range "
            "written after seeing it is not a prediction. Keep the first one and work out what it missed. "
            f"{too_high if first[3] else too_low}".strip(),
        )
    below, above = measured < lo, measured > hi
    remember(_FIRST_PREDICTIONS, f"range {name}", [lo, hi, not (below or above), below])
    if below:
        return report(name, False, f"measured {measured:.3g}, below your range. {too_high}".strip())
    if above:
        return report(name, False, f"measured {measured:.3g}, above your range. {too_low}".strip())
    return report(name, True)


# "range <name>" -> [low, high, whether it contained the measurement, whether the measurement was below it] of the
# first prediction check_prediction judged under that name in this process (also kept beside the progress log:
# qhelpers.prediction_memory)
_FIRST_PREDICTIONS: dict[str, list] = {}
