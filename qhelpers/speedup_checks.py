"""The self-check of notebook 02's exercise 3: an INT8 speed-up measured honestly (the same input, threads, warm-up and
runs for both models, the weights and packing the exercise names).

Introduced in notebooks/02_pretrained_quantized_models.ipynb; the notebook's other checks are in ``pretrained_checks``.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn

from .checks import NotFilledIn, _blank_safe, not_filled, report
from .latency import MIN_RUNS, Latency, input_digest, packing_digest, state_dict_digest, weights_digest
from .models import load_course_model
from .pretrained import CourseNet_QuantizedWeights
from .pretrained_checks import _near, _number

__all__ = ["check_speedup"]


def _other_weights(lat: Latency, model: Optional[nn.Module], default: Optional[Any], kind: str, default_name: str, rest: str) -> str:
    """check_speedup's hint when ``lat`` timed other weights than ``model``'s (or, without it, ``default()``'s digest); "" if the same or nothing to compare."""
    if model is None and default is None:
        return ""
    reference = weights_digest(model) if model is not None else default()
    if lat.weights_digest == reference:
        return ""
    return f"it timed {kind} with other weights than the one the task names" + (f" ({default_name})" if model is None else "") + rest


@_blank_safe
def check_speedup(
    float_latency: Any,
    int8_latency: Any,
    speedup: Any,
    threads: int = 1,
    *,
    engine: Optional[str] = None,
    module: Optional[str] = None,
    input_shape: Optional[tuple] = None,
    example: Optional[torch.Tensor] = None,
    min_warmup: int = 1,
    int8_model: Optional[nn.Module] = None,
    float_model: Optional[nn.Module] = None,
) -> bool:
    """Exercise: two ``qh.measure_latency`` results with ``threads`` threads, and the INT8 speedup from their medians.

    Checks what was measured, not only the ratio: two separate
    measurements, the float one of a model without quantized modules, the
    INT8 one of a model with them, both of the class ``module`` (when
    given: the same architecture, not a stand-in such as ``nn.Identity``),
    the INT8 one on ``engine`` (when given: the engine its weights were
    packed for; the check sees the engine active while it ran, not how the
    weights were packed), each warmed up (``warmup >= min_warmup``) and with
    at least ``qh.MIN_RUNS`` timed runs, the same input (of ``input_shape``,
    when given; the very values of ``example``, when given, compared by
    ``Latency.input_digest``, a hash of the input: a batch of the right shape
    with other values, such as ``torch.zeros_like(x)``, is refused) and
    thread count. The INT8 measurement must have timed the
    weights of ``int8_model`` (compared by ``Latency.weights_digest``, a hash
    of the state dict); when ``int8_model`` is not given and ``module`` is
    ``"CourseNet"``, the reference is the course's shipped INT8 model
    (``course_net(weights=CourseNet_QuantizedWeights.DEFAULT, quantize=True)``),
    so that timing another INT8 CourseNet (one calibrated with qnnpack's
    qconfig, or an untrained one) is rejected. When ``int8_model`` is given,
    the INT8 measurement must also have timed that very object
    (``Latency.model_id``): a copy with the same weights loaded while
    another engine was active is packed for that engine, which neither the
    digest nor the active engine shows; and, when ``engine`` is given too,
    with its weights packed as ``engine`` packs them (``Latency.packing``,
    recorded when it was timed, against ``packing_digest`` of a copy of
    ``int8_model`` loaded with ``engine`` active), so that the same object
    re-packed in place (its own state dict loaded back while another engine
    is active) is refused. Likewise the float measurement must
    have timed the weights of ``float_model`` (when given; for
    ``"CourseNet"`` by default the trained ``load_course_model()``), not an
    untrained model.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    for name, lat in (("float_latency", float_latency), ("int8_latency", int8_latency)):
        if not_filled(lat):
            raise NotFilledIn(name)
        if not isinstance(lat, Latency):
            return report(name, False, f"expected the result of qh.measure_latency, got {type(lat).__name__}")
        if lat.threads != threads:
            return report(name, False, f"measured with {lat.threads} threads; the task asks for {threads}")
        if lat.quantized is None:
            return report(name, False, "measure the model itself (pass the model to qh.measure_latency), so that the check can see what was measured")
        if lat.warmup < max(1, min_warmup):
            return report(name, False, f"measured with warmup={lat.warmup}: keep the default warm-up ({max(1, min_warmup)} calls or more) before timing (section 6)")
        if lat.runs < MIN_RUNS:
            return report(name, False, f"{lat.runs} timed runs; a median and an IQR need at least {MIN_RUNS} (keep the default min_runs)")
    if float_latency is int8_latency or float_latency == int8_latency:
        return report("measurements", False, "you passed the same measurement twice: measure the float model and the INT8 model separately")
    if float_latency.quantized and not int8_latency.quantized:
        return report("measurements", False, "swapped: float_latency measured the INT8 model and int8_latency the float one")
    if not int8_latency.quantized:
        return report("int8_latency", False, "you measured the float model twice: int8_latency ran a model without quantized modules")
    if float_latency.quantized:
        return report("float_latency", False, "you measured the INT8 model twice: float_latency ran a model with quantized modules")
    if module is not None:
        for name, lat in (("float_latency", float_latency), ("int8_latency", int8_latency)):
            if lat.module != module:
                return report(name, False, f"it measured a {lat.module}, not the {module} the task names: time the float course model itself")
    if engine is not None and int8_latency.engine != engine:
        return report(
            "int8_latency",
            False,
            f"the INT8 model ran on engine {int8_latency.engine!r}, but its weights were packed for {engine!r}: "
            f"set that engine (qh.set_engine(...)) before timing it",
        )
    course = module == "CourseNet"
    hint = _other_weights(
        int8_latency, int8_model,
        # the shipped INT8 weights, hashed from their file (the same digest as the loaded model's)
        (lambda: state_dict_digest(CourseNet_QuantizedWeights.DEFAULT.get_state_dict())) if course else None,
        "an INT8 model", "course_int8, the shipped INT8 course model",
        ": a model quantized with another qconfig (such as qnnpack's, packed for qnnpack) or an untrained one "
        "runs other kernels; time that model itself",
    )
    if hint:
        return report("int8_latency", False, hint)
    if int8_model is not None and int8_latency.model_id != id(int8_model):
        return report(
            "int8_latency",
            False,
            "it timed a copy of the INT8 model the task names: the same weights, but a copy loaded while another engine "
            "was active is packed for that engine (section 5's repack_for); time the model object itself",
        )
    if int8_model is not None and engine is not None and int8_latency.packing != _packing_for(int8_model, engine):
        return report(
            "int8_latency",
            False,
            f"it timed the INT8 model with its weights packed for another engine than {engine!r}: loading a state dict "
            "while another engine is active re-packs the model in place, so it ran that engine's kernels. Load its "
            f"state dict again with {engine!r} active (with qh.engine(...): model.load_state_dict(model.state_dict())), "
            "or build it again, and time it again",
        )
    hint = _other_weights(
        float_latency, float_model, (lambda: weights_digest(load_course_model())) if course else None,
        "a float model", "qh.load_course_model(), the trained float course model",
        ", such as an untrained one: time that model itself",
    )
    if hint:
        return report("float_latency", False, hint)
    if float_latency.input_shape != int8_latency.input_shape:
        return report("measurements", False, f"the two models ran on different inputs ({float_latency.input_shape} vs {int8_latency.input_shape}): time both on the same batch")
    if float_latency.input_digest and int8_latency.input_digest and float_latency.input_digest != int8_latency.input_digest:
        return report("measurements", False, "the two models were timed on different inputs (the same shape, other values): time both on the same batch, the one the task names")
    if example is not None and input_shape is None:
        input_shape = tuple(example.shape)
    if input_shape is not None and tuple(float_latency.input_shape) != tuple(input_shape):
        return report("measurements", False, f"both ran on an input of shape {tuple(float_latency.input_shape)}; the task names a batch of shape {tuple(input_shape)}")
    if example is not None and float_latency.input_digest != input_digest(example):
        return report("measurements", False, "both ran on a batch of the right shape but with other values than the batch the task names: time both on that batch itself")
    ok = report("measurements", True)
    s = _number(speedup, "speedup")
    f_ms, q_ms = float_latency.median_ms, int8_latency.median_ms
    if _near(s, f_ms / q_ms):
        return report("speedup", True) and ok
    if _near(s, q_ms / f_ms):
        return report("speedup", False, "inverted: the speedup is float time divided by INT8 time (above 1 when INT8 is faster)")
    if _near(s, f_ms - q_ms) or _near(s, q_ms - f_ms):
        return report("speedup", False, "that is a difference of times; a speedup is a ratio")
    if _near(s, float_latency.min_ms / int8_latency.min_ms):
        return report("speedup", False, "that uses the fastest runs; the task asks for the medians (.median_ms)")
    return report("speedup", False, "not the ratio of the two medians (.median_ms)")


def _packing_for(model: nn.Module, engine: str) -> str:
    """``packing_digest`` of a copy of ``model`` with its own state dict loaded while ``engine`` is active."""
    from .environment import engine as active_engine

    with active_engine(engine):
        copied = copy.deepcopy(model)
        copied.load_state_dict(model.state_dict())
    return packing_digest(copied)
