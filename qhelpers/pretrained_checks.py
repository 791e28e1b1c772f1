"""The self-checks of notebook 02's exercises: the weights' metadata, the INT8 size, the scale bytes (the speed-up's
check is in ``speedup_checks``).

Introduced in notebooks/02_pretrained_quantized_models.ipynb.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, Optional

from torch import nn

from .checks import NotFilledIn, WrongAnswer, _blank_safe, not_filled, report
from .metrics import count_parameters, model_size_bytes
from .pretrained import is_quantized
from .int8_size import _counting_only, _Measured, _measured_hint, int8_size_breakdown, int8_weight_bytes

__all__ = [
    "check_weights_meta",
    "check_int8_size_prediction",
    "check_scale_bytes_prediction",
]


# --------------------------------------------------------------------------- exercise self-checks


def _number(value: Any, name: str) -> float:
    if not_filled(value):
        raise NotFilledIn(name)
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from exc


def _near(a: float, b: float, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    return abs(a - b) <= atol + rtol * abs(b)


def _right_to_3(a: float, b: float) -> bool:
    """``a`` is ``b``, or ``b`` rounded to three decimals (0.980 for 21.114 / 21.554): exercise 1 never asks for an
    unrounded value, and no wrong quantity it names lies that close to the right one."""
    return _near(a, b) or abs(a - b) <= 5.001e-4


def _rounded_too_far(a: float, b: float) -> bool:
    """``a`` is ``b`` rounded to one or two decimals: the right quantity, rounded too far to judge (a number typed
    in, right on other weights, is not taken for one)."""
    return any(_near(a, round(b, k)) for k in (1, 2))


_ROUNDED_HINT = "close, but rounded too far to tell: give at least three decimals (or do not round)"


class _WeightsStandIn:
    """Weights-like stand-in: a ``meta`` shaped like a torchvision quantized weights' (``meta["unquantized"].meta``,
    ``_metrics``, ``_file_size``), its numbers made up afresh for each check, so that they are in no table."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __repr__(self) -> str:
        return "<quantized weights you have not read>"


def _unseen_weights(weights: Any, *, int8_above: bool = False) -> Any:
    """A stand-in for quantized weights the learner has not read: ``weights``' meta with new, plausible numbers
    (file sizes, top-1 and top-5 of the float and INT8 weights), drawn afresh on every call from the system's entropy
    (not the seeded ``random`` of ``qh.setup``), so that no table holds them. INT8 top-1 is below float by 0.05 to 2.5
    points, or with ``int8_above`` above it by 0.02 to 0.3 (real weights have that: torchvision's GoogLeNet, INT8
    69.826 against float 69.778), so that the drop, float minus INT8, is negative."""
    import random

    rng = random.Random()  # seeded from os.urandom: a new draw on every call, whatever qh.setup seeded
    float_mib = round(rng.uniform(5.0, 120.0), 3)
    float_top1 = round(rng.uniform(60.0, 82.0), 3)
    int8_top1 = round(float_top1 + rng.uniform(0.02, 0.3) if int8_above else float_top1 - rng.uniform(0.05, 2.5), 3)
    float_meta = dict(weights.meta["unquantized"].meta)
    float_meta.update(_file_size=float_mib,
                      _metrics={"ImageNet-1K": {"acc@1": float_top1, "acc@5": round(rng.uniform(88.0, 96.0), 3)}})
    meta = dict(weights.meta)
    meta.update(_file_size=round(float_mib / rng.uniform(3.3, 3.95), 3), unquantized=_WeightsStandIn(float_meta),
                _metrics={"ImageNet-1K": {"acc@1": int8_top1, "acc@5": round(rng.uniform(87.0, 95.0), 3)}})
    return _WeightsStandIn(meta)


_UNSEEN_WEIGHTS = "weights you have not read (their numbers are made up for each check and are in no table)"


def _meta_answer(weights: Any) -> tuple[float, float, float]:
    meta, unquantized = weights.meta, weights.meta["unquantized"].meta
    top1 = meta["_metrics"]["ImageNet-1K"]["acc@1"]
    return unquantized["_file_size"] / meta["_file_size"], top1, unquantized["_metrics"]["ImageNet-1K"]["acc@1"] - top1


def _read_meta_on(read_meta: Any, weights: Any, which: str) -> tuple[Any, Any, Any]:
    """``read_meta(weights)`` as three values, or ``WrongAnswer`` saying why not (it raised, or returned another shape)."""
    try:
        got = read_meta(weights)
    except Exception as exc:  # the learner's function failed: say how, do not crash the notebook
        raise WrongAnswer("read_meta", f"your function raised {type(exc).__name__} on {which}" + (f": {exc}" if str(exc) else "")
                          + ("; read every number from the weights passed in (weights.meta)" if which == _UNSEEN_WEIGHTS else "")) from exc
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise WrongAnswer("read_meta", f"on {which} it returned {type(got).__name__}, not three values (file_ratio, int8_top1, drop)")
    return tuple(got)


@_blank_safe
def check_weights_meta(read_meta: Any, weights: Any) -> bool:
    """Exercise: ``read_meta(weights)`` -> (file-size ratio, published INT8 top-1, drop from the float weights).

    ``file_ratio`` is the float weights' ``meta["_file_size"]`` divided by the INT8 weights'
    (``meta["unquantized"]`` is the float weights). The check runs the function on ``weights`` (each of the three
    values judged, with the known mistakes named) and then on weights the learner has not read: a stand-in with the
    same ``meta`` fields whose numbers are made up afresh on every call, so that numbers copied or looked up in a
    table (by the weights' name or type, say) pass on the first only; plain numbers are refused. A value right to
    three decimals passes (the task does not ask for unrounded values); one rounded further is refused with that
    said, not with a hint that the quantity is wrong. There are two
    stand-ins, INT8 top-1 above float on the first and below on the second, so that a drop which loses its sign
    (``abs()`` of the difference) is refused, with that mistake named, whatever the sign on ``weights``.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    if not_filled(read_meta):
        raise NotFilledIn("read_meta")
    if not callable(read_meta):
        raise WrongAnswer("read_meta", (
            "write read_meta as a function weights -> (file_ratio, int8_top1, drop) that reads weights.meta (the check "
            "runs it on these weights and on weights you have not read): numbers could be copied from a table, not read"))
    ok = _judge_meta(*_read_meta_on(read_meta, weights, "the weights you were given"), weights)
    if not ok:
        return False
    # two stand-ins, INT8 above float on one and below on the other, so that a drop whose sign is lost
    # (abs() of the difference, max minus min) is wrong on one of them whatever the given weights' sign
    for unseen in (_unseen_weights(weights, int8_above=True), _unseen_weights(weights)):
        got = _read_meta_on(read_meta, unseen, _UNSEEN_WEIGHTS)
        expected = _meta_answer(unseen)
        wrong = [name for name, g, e in zip(("file_ratio", "int8_top1", "drop"), got, expected)
                 if not_filled(g) or isinstance(g, bool) or not isinstance(g, numbers.Real) or not _right_to_3(float(g), e)]
        d = got[2]
        if (wrong == ["drop"] and expected[2] < 0 and isinstance(d, numbers.Real) and not isinstance(d, bool)
                and (_right_to_3(float(d), -expected[2]) or d == 0)):
            return report("drop", False, (
                f"right on these weights, but not on {_UNSEEN_WEIGHTS}, where INT8 top-1 is above float: the drop is "
                "float top-1 minus INT8 top-1 and can be negative (real weights have that); abs() of the difference, "
                "the larger minus the smaller, or a drop clipped at 0 loses the sign"))
        if wrong and all(isinstance(g, numbers.Real) and not isinstance(g, bool) and _rounded_too_far(float(g), e)
                         for name, g, e in zip(("file_ratio", "int8_top1", "drop"), got, expected) if name in wrong):
            return report(", ".join(wrong), False, f"right on these weights, but not on {_UNSEEN_WEIGHTS}: {_ROUNDED_HINT}")
        if wrong:
            return report("read_meta", False, (
                f"right on these weights, but {', '.join(wrong)} not on {_UNSEEN_WEIGHTS}: "
                "read every number from the weights passed in (weights.meta), not from a table or these weights"))
    return True


def _judge_meta(file_ratio: Any, int8_top1: Any, drop: Any, weights: Any) -> bool:
    """The three values judged against ``weights.meta``, one verdict line each, the known mistakes named."""
    if not_filled(file_ratio):
        raise NotFilledIn("file_ratio")
    meta = weights.meta
    f_size, q_size = meta["unquantized"].meta["_file_size"], meta["_file_size"]
    r = _number(file_ratio, "file_ratio")
    if _right_to_3(r, f_size / q_size):
        ok_ratio = report("file_ratio", True)
    elif _right_to_3(r, q_size / f_size):
        ok_ratio = report("file_ratio", False, "upside down: the task asks float size / INT8 size")
    elif _rounded_too_far(r, f_size / q_size):
        ok_ratio = report("file_ratio", False, _ROUNDED_HINT)
    elif 3.0 <= r <= 4.0:
        ok_ratio = report("file_ratio", False, "that is what INT8 usually gives; read the two files' sizes in meta['_file_size']")
    else:
        ok_ratio = report("file_ratio", False, "not float meta['_file_size'] / INT8 meta['_file_size'] of these weights")
    metrics, float_metrics = meta["_metrics"]["ImageNet-1K"], meta["unquantized"].meta["_metrics"]["ImageNet-1K"]
    top1, float_top1 = metrics["acc@1"], float_metrics["acc@1"]
    q = _number(int8_top1, "int8_top1")
    if _right_to_3(q, top1):
        ok_top1 = report("int8_top1", True)
    elif _near(q, float_top1):
        ok_top1 = report("int8_top1", False, "that is the float model's top-1 (meta['unquantized']); the INT8 one is in these weights' own meta")
    elif _near(q, top1 / 100):
        ok_top1 = report("int8_top1", False, "meta gives accuracies in percent; keep them in percent")
    elif _near(q, metrics.get("acc@5", float("nan"))):
        ok_top1 = report("int8_top1", False, "that is top-5 (acc@5); the task asks for top-1")
    elif _rounded_too_far(q, top1):
        ok_top1 = report("int8_top1", False, _ROUNDED_HINT)
    else:
        ok_top1 = report("int8_top1", False, "not the published INT8 top-1; look in meta['_metrics']")
    d, expected = _number(drop, "drop"), float_top1 - top1
    if _right_to_3(d, expected):
        ok_drop = report("drop", True)
    elif _right_to_3(d, -expected):
        ok_drop = report("drop", False, "sign: the drop is float top-1 minus INT8 top-1 (positive when INT8 is worse)")
    elif _near(d, 100 * expected / float_top1) or _near(d, expected / float_top1):
        ok_drop = report("drop", False, "that is a relative drop; the task asks for the difference in percentage points")
    elif _rounded_too_far(d, expected):
        ok_drop = report("drop", False, _ROUNDED_HINT)
    else:
        ok_drop = report("drop", False, "not float top-1 minus INT8 top-1 of these weights (float top-1 is in meta['unquantized'])")
    return ok_ratio and ok_top1 and ok_drop


@_blank_safe
def check_int8_size_prediction(predicted_int8_mb: Any, float_model: nn.Module, int8_model: Optional[nn.Module] = None) -> bool:
    """Exercise: ``predicted_int8_mb(model)``, a float model's INT8 weight bytes in MB (1e6 bytes), one byte per Conv2d/Linear weight.

    The answer is a function of a float model, counted from that model: the check runs it on ``float_model`` and
    then on a float model the learner never built (``_random_float_model``: a stack of Conv2d and Linear layers of
    random number and widths, made afresh on every call, so no count of it can be looked up), so a number measured
    on an INT8 model (``qh.int8_size_breakdown`` of the quantized MobileNetV2, say) is right on the first only; the
    function runs with the measuring routes refused (``int8_size_breakdown``, ``int8_weight_bytes``, torch's eager
    and FX convert, which torchvision's ``quantize=True`` calls), so one that quantizes its model is refused too. A
    plain number is refused (it could have been measured rather than counted), with the mistake it holds named
    where it is a known one. With ``int8_model`` (``float_model``'s architecture quantized), the size of its whole
    state dict, a number printed in notebook 02's size table, is named as the mistake it is.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    name = "predicted_int8_mb"
    if not_filled(predicted_int8_mb):
        raise NotFilledIn(name)
    if not callable(predicted_int8_mb):
        mistake = _int8_size_mistake(_number(predicted_int8_mb, name), float_model, int8_model)
        return report(name, False, (
            "write predicted_int8_mb as a function of a float model, model -> MB, that counts that model's weights (the "
            "check runs it on mnv2_float and on a model you have not built): a number could be measured, not counted"
            + (f"; and this number is wrong: {mistake}" if mistake else "")
        ))
    second = _random_float_model()
    for model, which in ((float_model, "the float model you were given"), (second, _UNSEEN)):
        given, taken = copy.deepcopy(model), []
        try:
            with _counting_only() as taken:
                p = predicted_int8_mb(given)
        except _Measured:
            pass
        except Exception as exc:  # the learner's function failed: say how, do not crash the notebook
            if not taken:
                return report(name, False, f"your function raised {type(exc).__name__} on {which}: {exc}")
        if taken:
            return report(name, False, _measured_hint(taken, which, "one byte per Conv2d/Linear weight"))
        try:
            p = _number(p, name)
        except TypeError as exc:
            return report(name, False, f"on {which}: {exc}")
        if model is float_model:
            mistake = _int8_size_mistake(p, float_model, int8_model)
            if mistake:
                return report(name, False, mistake)
        elif not _near(p, int8_weight_bytes(model) / 1e6, rtol=2e-4):
            # the expected value of the model the learner has not built is not shown: it would be an answer to copy
            return report(name, False, (
                f"right on the float model you were given, but on {which} it gives {p:.6g} MB, "
                f"{'more' if p > int8_weight_bytes(model) / 1e6 else 'less'} than that model's INT8 weights: count the "
                "weights of the model passed in (a number measured on an INT8 model fits that model only)"
            ))
    return report(name, True)


_UNSEEN = "a float model you have not built (random layers and widths, made afresh for each check)"


def _random_float_model() -> nn.Module:
    """A float model nobody has counted: the second model the counting checks of notebook 02 run the learner's function on.

    An ``nn.Sequential`` of 3 to 6 Conv2d layers (1x1, 3x3 or depthwise 3x3, widths 4 to 96), at least one of them
    followed by a BatchNorm2d and at least one not (a convolution without one has a bias instead), then global
    pooling and one or two Linear layers (up to 1,000 outputs); every choice is drawn afresh on every call from the
    system's entropy (not the seeded ``random`` of ``qh.setup``), so that no table or type test gives its count.
    """
    import random

    rng = random.Random()  # seeded from os.urandom: a new model on every call, whatever qh.setup seeded
    n = rng.randint(3, 6)
    with_bn = [rng.random() < 0.5 for _ in range(n)]
    first, second = rng.sample(range(n), 2)
    with_bn[first], with_bn[second] = True, False  # BatchNorm channels are never the output channels
    layers: list[nn.Module] = []
    channels = 3
    for bn in with_bn:
        if channels > 3 and rng.random() < 0.3:
            conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=not bn)  # depthwise
        else:
            k = rng.choice((1, 3))
            conv = nn.Conv2d(channels, rng.randint(4, 96), k, padding=k // 2, bias=not bn)
        channels = conv.out_channels
        layers += [conv, nn.BatchNorm2d(channels)] if bn else [conv]
        layers.append(nn.ReLU())
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if rng.random() < 0.5:
        hidden = rng.randint(16, 256)
        layers += [nn.Linear(channels, hidden), nn.ReLU()]
        channels = hidden
    layers.append(nn.Linear(channels, rng.randint(5, 1000)))
    return nn.Sequential(*layers).eval()


def _int8_size_mistake(p: float, float_model: nn.Module, int8_model: Optional[nn.Module]) -> str:
    """What is wrong with ``p`` MB as ``float_model``'s INT8 weight bytes ("" when it is right)."""
    expected = int8_weight_bytes(float_model) / 1e6
    if _near(p, expected, rtol=2e-4):
        return ""
    if int8_model is not None and _near(p, model_size_bytes(int8_model) / 1e6, rtol=2e-3):
        return "that is the whole INT8 state dict (scales, zero points, float biases and the container too); count only the INT8 weights"
    if _near(p, count_parameters(float_model) / 1e6, rtol=2e-4):
        return "you counted every parameter: BatchNorm's are folded into the convolutions and biases stay float32; count only the Conv2d and Linear weights"
    if _near(p, 4 * expected, rtol=2e-3) or _near(p, 4 * count_parameters(float_model) / 1e6, rtol=2e-3):
        return "that is the float32 size (4 bytes per weight); INT8 stores one byte per weight"
    if _near(p, expected * 1e6 / 2**20, rtol=2e-3) or _near(p, count_parameters(float_model) / 2**20, rtol=2e-3):
        return "1 MB here is 1e6 bytes, not 2**20 (that is a MiB)"
    if _near(p, 8 * expected, rtol=2e-3):
        return "that counts bits; a size in bytes counts one per INT8 weight"
    return "not one byte per Conv2d/Linear weight of the float model, in units of 1e6 bytes"


def _conv_linear(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@_blank_safe
def check_scale_bytes_prediction(predicted_bytes: Any, float_model: nn.Module, int8_model: nn.Module) -> bool:
    """Exercise: ``predicted_bytes(model, backend)``, the bytes an INT8 state dict will spend on per-channel weight scales and zero points, counted from a float model, for ``"fbgemm"``, ``"x86"`` or ``"qnnpack"``.

    ``backend`` names the eager-mode qconfig, ``torch.ao.quantization.get_default_qconfig(backend)``, and the
    engine the weights are packed for; not torchvision's ``backend=`` argument, which refuses ``"x86"`` (it returns
    a float model with ``weights=None``; notebook 02, section 4).

    The function is called with the three backends on both models: for
    ``int8_model``'s own backend (``"fbgemm"`` when its weights are
    per-channel, else ``"qnnpack"``) the expected value is measured, for the
    others it is the rule below (``"x86"``'s qconfig has per-channel weights,
    as ``"fbgemm"``'s has).

    The expected value for ``float_model`` is ``int8_size_breakdown(int8_model)["scales and zero
    points"]``: per-channel weights store a float64 scale and an int64 zero
    point per output channel of every Conv2d and Linear (16 bytes each);
    per-tensor weights (``qnnpack``) store no per-channel tensors, only a
    couple of numbers per layer, kept inside each quantized weight tensor
    (``q_scale()``, ``q_zero_point()``), so the row is 0. The count is exact:
    accepts a number less than one channel's 16 bytes from it (per-channel),
    and only 0 on a per-tensor backend. The answer is a function of a float
    model: the check then runs it on a float model the learner never built
    (``_random_float_model``: random layers and widths, made afresh on every
    call, with convolutions both with and without a BatchNorm after them, so
    that counting BatchNorm channels instead of output channels fails there,
    and so that no table or test of the model's type gives its count), whose
    expected count is that rule (16 bytes per output channel for
    ``"fbgemm"`` and ``"x86"``, 0 for ``"qnnpack"``), so a number measured
    on an INT8 model fits the first model only; a plain number is refused
    (with its mistake named where it is a known one), and so is a function
    that measures (it runs with ``int8_size_breakdown``,
    ``int8_weight_bytes`` and torch's convert refused). Names the typical
    mistakes: megabytes or kilobytes instead of bytes; 8 bytes per channel
    (float32 and int32); the input axis counted (the Linear layer's
    ``in_features``, or every layer's input channels) instead of the output
    channels; per-channel counting, or a couple of numbers per layer, on a
    per-tensor backend; 0 for ``"x86"``; the Linear layer left out; the INT8
    weights or the whole file counted instead.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    name = "predicted_bytes"
    if not_filled(predicted_bytes):
        raise NotFilledIn(name)
    if not isinstance(float_model, nn.Module) or not isinstance(int8_model, nn.Module):
        raise TypeError("float_model and int8_model must be torch.nn.Module")
    if is_quantized(float_model) or not is_quantized(int8_model):
        raise ValueError("pass the float model first and the INT8 model second")
    parts = int8_size_breakdown(int8_model)
    measured = parts["scales and zero points"]
    if not callable(predicted_bytes):
        if isinstance(predicted_bytes, bool) or not isinstance(predicted_bytes, (int, float)):
            return report(name, False, f"expected a function (model, backend) -> bytes, got {type(predicted_bytes).__name__}")
        mistake = _scale_bytes_mistake(float(predicted_bytes), float_model, parts)
        return report(name, False, (
            "write predicted_bytes as a function of a float model and a backend, (model, backend) -> bytes, that counts "
            "that model's layers (the check runs it on shuffle_float and on a model you have not built, with "
            "'fbgemm', 'x86' and 'qnnpack'): a number could be measured, "
            "not counted" + (f"; and this number is wrong: {mistake}" if mistake else "")
        ))
    own = "fbgemm" if measured > 0 else "qnnpack"  # the backend int8_model was built with: per-channel or not
    other = "qnnpack" if own == "fbgemm" else "fbgemm"
    channels_of = lambda m: sum(layer.weight.shape[0] for layer in _conv_linear(m))  # noqa: E731
    # the other backend's row by the rule (16 bytes per output channel for fbgemm, 0 for qnnpack); no file to compare
    other_parts = {"int8 weights": int8_weight_bytes(float_model), "total": float("nan"),
                   "scales and zero points": 16 * channels_of(float_model) if other == "fbgemm" else 0}
    per_channel_parts = parts if own == "fbgemm" else other_parts  # x86's qconfig has per-channel weights too
    unseen = _random_float_model()
    cases = [(float_model, "the float model you were given", own, parts),
             (float_model, "the float model you were given", other, other_parts),
             (float_model, "the float model you were given", "x86", per_channel_parts),
             (unseen, _UNSEEN, "fbgemm", None), (unseen, _UNSEEN, "x86", None), (unseen, _UNSEEN, "qnnpack", None)]
    for model, which, backend, expected_parts in cases:
        where = f"with backend={backend!r}, on {which}"
        given, taken = copy.deepcopy(model), []
        try:
            with _counting_only() as taken:
                p = predicted_bytes(given, backend)
        except _Measured:
            pass
        except Exception as exc:  # the learner's function failed: say how, do not crash the notebook
            if not taken:
                return report(name, False, f"your function raised {type(exc).__name__} {where}: {exc}"
                              + (" (it takes two arguments: predicted_bytes(model, backend))" if isinstance(exc, TypeError) else ""))
        if taken:
            return report(name, False, _measured_hint(taken, where, "the output channels"))
        if isinstance(p, bool) or not isinstance(p, numbers.Real):  # int, float, numpy's scalars
            return report(name, False, f"{where} your function returned {type(p).__name__}; return one number of bytes")
        if expected_parts is not None:
            mistake = _scale_bytes_mistake(float(p), float_model, expected_parts)
            if mistake and backend == "x86" and p == 0:
                return report(name, False, (
                    "right with backend='fbgemm' and 'qnnpack', but with backend='x86' it gives 0 bytes: the x86 qconfig, "
                    "get_default_qconfig('x86') in eager mode (torch's default engine on x86 CPUs, and the course "
                    "model's), has per-channel weights, as fbgemm's has; the question is about that qconfig, not "
                    "torchvision's builder, which returns a float model for backend='x86' (section 4)"))
            if mistake:
                return report(name, False, mistake if expected_parts is parts else (
                    f"right with backend={own!r}, but with backend={backend!r} it gives {p:,.0f} bytes: {mistake} "
                    "(the answer depends on the backend: use the argument)"))
            continue
        expected = 16 * channels_of(model) if backend != "qnnpack" else 0
        if not (abs(p - expected) < 16 if expected else p == 0):
            # the expected value of the model the learner has not built is not shown: it would be an answer to copy
            if _counts_batchnorm(p, model):
                return report(name, False, (
                    f"right on the float model you were given, but {where} it gives {p:,.0f} bytes: that counts "
                    "BatchNorm channels, which match the output channels only where every convolution is followed by a "
                    "BatchNorm; a per-channel scale belongs to the weight of every Conv2d and Linear, one per output "
                    "channel (axis 0 of the weight), with or without a BatchNorm after it"
                ))
            return report(name, False, (
                f"right on the float model you were given, but {where} it gives {p:,.0f} bytes, "
                f"{'more' if p > expected else 'less'} than that model's: count the layers of the model passed in (a "
                "number measured on an INT8 model fits that model only)"
            ))
    layers = _conv_linear(float_model)
    channels = sum(m.weight.shape[0] for m in layers)
    ok = report(name, True)
    print(f"   measured: {measured:,} bytes of scales and zero points ({channels:,} output channels in {len(layers)} "
          f"Conv2d/Linear layers); the whole INT8 file: {parts['total']:,} bytes")
    return ok


def _counts_batchnorm(p: float, model: nn.Module) -> bool:
    """Whether ``p`` is 16 bytes per BatchNorm channel of ``model`` (with or without its Linear layers' outputs)."""
    bn = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    outs = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return any(abs(p - 16 * c) < 16 for c in (bn, bn + sum(outs), bn + sum(outs[-1:])))  # alone, every Linear, the last


def _scale_bytes_mistake(p: float, float_model: nn.Module, parts: dict) -> str:
    """What is wrong with ``p`` as ``float_model``'s bytes of weight scales and zero points ("" when it is right)."""
    measured = parts["scales and zero points"]
    layers = _conv_linear(float_model)
    channels = sum(m.weight.shape[0] for m in layers)
    conv_channels = sum(m.weight.shape[0] for m in layers if isinstance(m, nn.Conv2d))
    exact = lambda value, target: abs(value - target) < 16  # noqa: E731  (less than one channel's bytes)
    near = lambda value, target: abs(value - target) <= max(0.1 * abs(target), 2000)  # noqa: E731  (for naming a mistake)
    if exact(p, measured) if measured > 0 else p == 0:
        return ""
    per_channel = measured > 0
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    conv_and_linear_inputs = conv_channels + sum(m.in_features for m in linears)
    input_channels = sum(m.in_channels if isinstance(m, nn.Conv2d) else m.in_features for m in layers)
    if measured > 2000 and (near(p * 1e6, measured) or near(p * 1e3, measured)):
        return "give the answer in bytes, not megabytes or kilobytes"
    if per_channel and near(p, channels * 8):
        return "the state dict stores each channel's scale as float64 and its zero point as int64: 16 bytes per channel, not 8"
    if per_channel and exact(p, channels * 12):  # a float32 scale beside an int64 zero point
        return "the state dict stores each channel's scale as float64 (8 bytes), not float32, and its zero point as int64: 16 bytes per channel"
    if per_channel and (exact(p, 16 * conv_and_linear_inputs) or exact(p, 16 * input_channels)):
        return ("wrong axis: a per-channel scale belongs to an OUTPUT channel (axis 0 of the weight); "
                "for a Linear layer that is out_features, not in_features")
    if not per_channel and near(p, channels * 16):
        return "this backend's weights are per-tensor: there are no per-channel scale tensors, only a couple of numbers per layer"
    if not per_channel:
        return ("per-tensor weights keep their one scale and zero point inside the quantized weight tensor itself "
                "(q_scale(), q_zero_point()), not as separate tensors; this row counts only separate per-channel tensors")
    if conv_channels != channels and near(p, conv_channels * 16):
        return "the Linear layer at the end has per-channel scales too: count its output channels"
    if near(p, int8_weight_bytes(float_model)):
        return "that is the INT8 weights themselves, one byte each; the question is the scales and zero points beside them"
    if near(p, parts["total"]):
        return "that is the whole INT8 file; the question is only its scales and zero points"
    if p > measured:
        return "too many: count the output channels of every Conv2d and Linear (16 bytes each with per-channel weights)"
    return "too few: count the output channels of every Conv2d and Linear (16 bytes each with per-channel weights)"
