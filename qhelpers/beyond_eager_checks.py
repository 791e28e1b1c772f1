"""The self-checks of notebook 05's exercises: requantization multipliers, dequantized weights, migration, bits.

Introduced in notebooks/05_beyond_eager_mode.ipynb.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checks import NotFilledIn, _blank_safe, as_number, not_filled, read_range, report
from .plain_int8 import quantized_weight
from .torchao_inspect import weight_only_sqnr

__all__ = [
    "MIGRATION_TARGETS",
    "check_requant_multiplier",
    "check_layer_multiplier",
    "check_dequantized_weights",
    "check_migration",
    "check_bits_prediction",
]


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
