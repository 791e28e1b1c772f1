"""What an INT8 file is made of, counted from the model: weight bytes and the size breakdown (notebook 02).

Introduced in notebooks/02_pretrained_quantized_models.ipynb.

* ``int8_weight_bytes`` (one byte per Conv2d/Linear weight of a float model) and ``int8_size_breakdown`` (an INT8
  model's serialized state dict, by what its bytes hold).
* ``_counting_only`` runs a learner's "count it, do not measure it" function with the measuring routes refused
  (these two helpers and every conversion to INT8); notebook 02's self-checks use it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch
from torch import nn

from .metrics import model_size_bytes
from .pretrained import is_quantized

__all__ = [
    "int8_weight_bytes",
    "int8_size_breakdown",
]


# --------------------------------------------------------------------------- "count it, do not measure it"

# While a learner's counting function runs, the names of the measuring routes it took (see _counting_only).
_MEASURED: Optional[list[str]] = None


class _Measured(BaseException):
    """Raised inside a learner's counting function that took a measuring route (a BaseException: a bare
    ``except Exception`` in the learner's code does not swallow it; the route is recorded anyway)."""


def _measuring(route: str) -> None:
    """Refuse ``route`` while a counting function runs (records it and raises _Measured); else do nothing."""
    if _MEASURED is not None:
        _MEASURED.append(route)
        raise _Measured(route)


@contextlib.contextmanager
def _counting_only() -> Any:
    """Run a learner's "count it from the float model" function with the measuring routes refused.

    Yields the list of routes it took: ``qh.int8_size_breakdown`` and ``qh.int8_weight_bytes`` (by any name they
    were imported under), and every conversion to INT8: ``torch.ao.quantization.convert`` (which
    ``quantize``, ``quantize_dynamic`` and torchvision's ``quantize=True`` builders call) and FX's ``convert_fx``
    (stand-ins replace torch's internal ``_convert`` and ``_convert_fx``, which those look up when called, and
    are restored afterwards)."""
    global _MEASURED
    import importlib

    # the modules (torch.ao.quantization.quantize is also the name of a function there)
    eager = importlib.import_module("torch.ao.quantization.quantize")
    fx = importlib.import_module("torch.ao.quantization.quantize_fx")

    def stand_in(route: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            _measuring(route)

        return refused

    saved = (eager._convert, fx._convert_fx)
    taken: list[str] = []
    _MEASURED = taken
    eager._convert = stand_in("torch.ao.quantization.convert")
    fx._convert_fx = stand_in("convert_fx")
    try:
        yield taken
    finally:
        _MEASURED = None
        eager._convert, fx._convert_fx = saved


def _measured_hint(taken: list[str], which: str, what: str) -> str:
    return (f"on {which} your function called {taken[0]}: that measures an INT8 model (or reads the helper that "
            f"counts for you); count {what} of the float model passed in, without quantizing it")


# --------------------------------------------------------------------------- what an INT8 file is made of


def int8_weight_bytes(float_model: nn.Module) -> int:
    """Bytes of a float model's weights once stored as INT8: one byte per ``Conv2d``/``Linear`` weight.

    BatchNorm parameters are not counted (eager quantization folds them into
    the convolutions) and neither are biases (they stay float32). Introduced
    in notebooks/02_pretrained_quantized_models.ipynb.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    _measuring("qh.int8_weight_bytes")
    if not isinstance(float_model, nn.Module):
        raise TypeError(f"float_model must be a torch.nn.Module, got {type(float_model).__name__}")
    if is_quantized(float_model):
        raise ValueError("float_model is already quantized; pass the float model (its Conv2d/Linear weights are counted)")
    return sum(m.weight.numel() for m in float_model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)


def int8_size_breakdown(model: nn.Module) -> dict[str, int]:
    """Bytes of an INT8 model's serialized state dict, by what they hold.

    ``int8 weights`` (one byte per weight), ``scales and zero points`` (per
    output channel, float64 + int64 each, for per-channel weights),
    ``float tensors`` (biases in float32, each layer's output scale and zero
    point), ``container`` (the rest: names and the zip/pickle format) and
    ``total`` (``qh.model_size_bytes``). Introduced in
    notebooks/02_pretrained_quantized_models.ipynb.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    _measuring("qh.int8_size_breakdown")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not is_quantized(model):
        raise ValueError("model has no quantized modules; pass a converted INT8 model")
    parts = {"int8 weights": 0, "scales and zero points": 0, "float tensors": 0}

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_quantized:
                parts["int8 weights"] += value.numel() * value.element_size()
                if value.qscheme() in _PER_CHANNEL:
                    for t in (value.q_per_channel_scales(), value.q_per_channel_zero_points()):
                        parts["scales and zero points"] += t.numel() * t.element_size()
            else:
                parts["float tensors"] += value.numel() * value.element_size()
        elif isinstance(value, (tuple, list)):
            for item in value:
                visit(item)

    for value in model.state_dict().values():
        visit(value)
    total = model_size_bytes(model)
    return {**parts, "container": total - sum(parts.values()), "total": total}
