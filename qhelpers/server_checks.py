"""The self-checks of notebook 09's exercises: how much smaller the INT8 ONNX file is, the worst 16-bit pair sum,
the integer tensors a QDQ file stores.

Introduced in notebooks/09_server_runtimes.ipynb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from .checks import NotFilledIn, _blank_safe, as_number, not_filled, report

__all__ = [
    "check_onnx_size_ratio",
    "check_worst_pair_sum",
    "check_stored_integer_dq_function",
]

INT16_MAX = 32767  # what a 16-bit pair sum (VPMADDUBSW) can hold


# --------------------------------------------------------------------------- exercise 1: the size of the INT8 file


# notebook 09's clean-up cell deletes its files: a learner back at an exercise after it needs them again
_RERUN = " (notebook 09's clean-up cell removes its files: re-run its sections 3-4, then the exercise)"


def _file_size(path: Any, name: str) -> int:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no file at {p}{_RERUN}")
    return p.stat().st_size


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * abs(b)  # a ratio of two byte counts: float32 answers pass, rounded ones do not


@_blank_safe
def check_onnx_size_ratio(ratio: Any, float_path: Path | str, int8_path: Path | str, *,
                          others: Optional[dict[str, tuple[Path | str, Path | str]]] = None) -> bool:
    """Exercise: how many times smaller the INT8 ONNX file is than the float ONNX file the export wrote (float bytes /
    INT8 bytes, exact to 1e-6 relative).

    The typical wrong answers get a hint: the inverse, a percentage, the pre-processed float file that
    ``quant_pre_process`` wrote (``<name>_pre.onnx`` beside the export), 4 (four bytes to one per weight, not a
    measurement of the files), a number rounded from printed sizes, the ratio of another model's files (``others``:
    name -> (float path, INT8 path)).

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
    f, q = _file_size(float_path, "float_path"), _file_size(int8_path, "int8_path")
    got = as_number(ratio, "size ratio")
    expected = f / q
    if _close(got, expected):
        return report("size ratio", True)
    if _close(got, q / f):
        return report("size ratio", False, "that is INT8 bytes / float bytes; the question asks how many times smaller: float / INT8")
    if _close(got, 100 * q / f) or _close(got, 100 * expected):
        return report("size ratio", False, "give a ratio, not a percentage")
    pre = Path(float_path).with_name(Path(float_path).stem + "_pre.onnx")
    if pre.is_file() and (_close(got, pre.stat().st_size / q) or _close(got, q / pre.stat().st_size)):
        return report("size ratio", False, "that uses the pre-processed file (_pre.onnx, what quant_pre_process wrote); "
                      "compare with the float file the export wrote")
    for name, (other_f, other_q) in (others or {}).items():
        of, oq = _file_size(other_f, f"others[{name!r}]"), _file_size(other_q, f"others[{name!r}]")
        if _close(got, of / oq) or _close(got, oq / of):
            return report("size ratio", False, f"those are the files of {name}; the question asks about the other model's")
    if got == 4:
        return report("size ratio", False, "4 is what one byte instead of four per weight would give; measure the two files "
                      "(Path(...).stat().st_size)")
    if abs(got - expected) <= 0.01 * expected:
        return report("size ratio", False, "close, but compute it from the files' sizes in bytes rather than from rounded numbers")
    return report("size ratio", False, f"got {got:.4g}; divide the float file's size in bytes by the INT8 file's")


# --------------------------------------------------------------------------- exercise 2: the worst pair sum


_REFERENCE_CALLS: list[int] = []  # while a learner's function runs, each call of the reference is recorded here
_WATCHING: list[bool] = [False]


def _worst_pair_sum_reference(codes: torch.Tensor) -> int:
    """The largest magnitude a 16-bit pair sum ``a[2i] * w[2i] + a[2i+1] * w[2i+1]`` can reach, for uint8 activations
    ``a`` (0..255, any values) and the int8 weight ``codes`` (one row per output channel, an even number of columns).

    Both activations are free: the sum is largest with 255 on the positive weights of a pair (and 0 on the negative
    one), or on the negative ones; the answer is the largest of those over every pair of every row.

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
    if _WATCHING[0]:
        _REFERENCE_CALLS.append(1)
    w = codes.to(torch.int64).reshape(codes.shape[0], -1, 2)
    positive = w.clamp(min=0).sum(dim=2)
    negative = (-w).clamp(min=0).sum(dim=2)
    return int(255 * torch.maximum(positive, negative).max())


def _pair_cases() -> list[tuple[str, torch.Tensor]]:
    t = lambda rows: torch.tensor(rows, dtype=torch.int8)  # noqa: E731
    return [
        ("two weights of 127", t([[127, 127]])),
        ("a pair of opposite signs", t([[127, -128]])),
        ("two weights of -128", t([[-128, -128], [1, 2]])),
        ("7-bit weights (reduce-range)", t([[63, 63, -64, -64]])),
        ("the large weights in different pairs", t([[127, 0, 0, 127]])),
        ("the large weights in another row's pair", t([[100, 0], [0, 100], [3, 3]])),
        ("the large weights side by side across two pairs", t([[0, 127, 127, 0]])),
    ]


def _pair_mistake(answers: list[tuple[torch.Tensor, Any]]) -> str:
    """The hint for the typical wrong rule that gives every one of the learner's ``answers`` (case, answer), on all the
    check's cases at once, so that a rule is named only where the cases tell it apart (empty: none recognised)."""

    def number(value: Any) -> Any:
        try:
            return as_number(value, "worst pair sum")
        except Exception:
            return None

    def pairs(codes: torch.Tensor) -> torch.Tensor:
        return codes.to(torch.int64).reshape(codes.shape[0], -1, 2)

    def per_pair(codes: torch.Tensor) -> torch.Tensor:
        return torch.maximum(pairs(codes).clamp(min=0).sum(2), (-pairs(codes)).clamp(min=0).sum(2))

    rules = [
        ("an activation is 0..255, never negative: a pair with weights of opposite signs cannot add both magnitudes",
         lambda c: [int(255 * pairs(c).abs().sum(dim=2).max())]),
        ("the activations are uint8 (0..255), not int8: use 255",
         lambda c: [int(127 * per_pair(c).max()), int(128 * per_pair(c).max())]),
        ("that is one product; the instruction adds two of them (a pair) before it stores 16 bits",
         lambda c: [int(255 * c.to(torch.int64).abs().max())]),
        ("in int8, -(-128) is -128 again: cast the codes to a wider integer type (e.g. .to(torch.int64)) before you negate them",
         lambda c: [int(255 * torch.maximum(pairs(c).clamp(min=0).sum(2),
                                            (-c).to(torch.int64).reshape(c.shape[0], -1, 2).clamp(min=0).sum(2)).max())]),
        ("every pair of a row counts, not only the first: take the largest over all pairs and rows",
         lambda c: [int(255 * per_pair(c)[:, 0].max())]),
        ("the pairs do not overlap: (0, 1), (2, 3), ..., not (0, 1), (1, 2), ...; codes 1 and 2 sit in different pairs",
         lambda c: [int(255 * max(int(w.clamp(min=0).sum(2).max()), int((-w).clamp(min=0).sum(2).max())))
                    for w in [c.to(torch.int64).unfold(1, 2, 1)]]),
        ("the pairs are fixed, neighbours (0, 1), (2, 3), ...: the two largest weights of a row are not always in one pair",
         lambda c: [int(255 * c.to(torch.int64).clamp(min=0).sort(dim=1, descending=True).values[:, :2].sum(1).max())]),
    ]
    got = [(case, number(answer)) for case, answer in answers]
    for hint, rule in rules:
        if all(value is not None and value in rule(case) for case, value in got):
            return hint
    return ""


def _is_integer_answer(value: Any) -> bool:
    """An int, a numpy integer or a one-element integer tensor; not a float (even a whole one), not a bool. What
    torch cannot read as a tensor counts as True here, so that ``as_number`` names its type."""
    try:
        dtype = torch.as_tensor(value).dtype
    except Exception:
        return True
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


@_blank_safe
def check_worst_pair_sum(fn: Any, codes: torch.Tensor) -> bool:
    """Exercise: a function ``worst_pair_sum(codes)`` (int8 weight codes, one row per output channel) that returns the
    largest magnitude a pair sum of uint8 activations times those weights can reach, as an int.

    The check calls it on ``codes`` and on cases of its own (opposite signs, -128, reduce-range codes, the large
    weights in different pairs or rows, or side by side across two pairs); the typical wrong rules (absolute values,
    int8 activations, one product, int8 negation without a cast, the first pair only, overlapping pairs, the two
    largest weights of a row) get their hint. A function that calls the check's own reference is refused, by
    behaviour: every call of the reference while the learner's function runs is recorded, however it was reached.

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.int8 or codes.dim() != 2 or codes.shape[1] % 2:
        raise TypeError(f"codes must be an int8 tensor (out_channels, K) with K even, got {codes!r:.80}")
    if not_filled(fn):
        raise NotFilledIn("worst pair sum")
    if not callable(fn):
        return report("worst pair sum", False, "pass your function itself (worst_pair_sum), not its result")
    cases = [(name, case, _worst_pair_sum_reference(case)) for name, case in [*_pair_cases(), ("the codes of the file", codes)]]
    _REFERENCE_CALLS.clear()
    _WATCHING[0] = True
    try:  # by behaviour: a function that calls the check's reference, however it reaches it, is caught here
        answers = [fn(case.clone()) for _, case, _ in cases]
    finally:
        _WATCHING[0] = False
    if _REFERENCE_CALLS:
        return report("worst pair sum", False, "your function calls the check's own reference; write the rule yourself")
    for (name, case, expected), got in zip(cases, answers):
        if not not_filled(got) and not _is_integer_answer(got):
            return report("worst pair sum", False, f"on {name} you return {got!r:.60} ({type(got).__name__}); a pair sum of "
                          "integer codes is an integer: return an int (e.g. int(...) of your result)")
        got = as_number(got, "worst pair sum")
        if got != expected:
            hint = _pair_mistake([(c, answer) for (_, c, _), answer in zip(cases, answers)])
            return report("worst pair sum", False, f"on {name} {case.tolist() if case.numel() <= 8 else ''} you return {got:g}, the worst case is "
                          f"{expected}" + (f": {hint}" if hint else ""))
    return report("worst pair sum", True)


# --------------------------------------------------------------------------- exercise 3: the integers a QDQ file stores


def _onnx_graph(path: Any) -> Any:
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"onnx_path: no ONNX file at {p}{_RERUN}")
    return onnx.load(str(p)).graph


def _crafted_graph() -> Any:
    """A small QDQ graph unlike the course's files: three Convs without a bias, a Gemm with one, a MatMul whose weight is
    stored and read by two DequantizeLinear nodes (a shared weight), two activation DequantizeLinear nodes that
    follow no QuantizeLinear (int8 graph inputs), and two that read the int8 output of another node (a QLinearConv,
    whose stored weight and bias no DequantizeLinear reads, as in ONNX Runtime's optimized files, and an int8
    Transpose). Every wrong rule the hints name gives its own count here (tests/test_exercises_09.py asserts it)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(np.ones((2, 1, 1, 1), np.int8), "conv_w_q"), numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "conv2_w_q"),
            numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "conv3_w_q"), numpy_helper.from_array(np.ones((4, 2), np.int8), "gemm_w_q"),
            numpy_helper.from_array(np.ones(4, np.int32), "gemm_b_q"), numpy_helper.from_array(np.ones((4, 4), np.int8), "mm_w_q"),
            numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0.2, np.float32), "s2"), numpy_helper.from_array(np.array(0, np.int8), "zp"),
            numpy_helper.from_array(np.array(0, np.int32), "zp32"), numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "qconv_w_q"),
            numpy_helper.from_array(np.ones(2, np.int32), "qconv_b_q")]
    nodes = [
        helper.make_node("DequantizeLinear", ["x_q", "s", "zp"], ["x"]),  # an int8 input: an activation, not stored
        helper.make_node("DequantizeLinear", ["conv_w_q", "s", "zp"], ["conv_w"]),
        helper.make_node("Conv", ["x", "conv_w"], ["c1"]),  # no bias, and neither have the next two
        helper.make_node("DequantizeLinear", ["conv2_w_q", "s", "zp"], ["conv2_w"]),
        helper.make_node("QuantizeLinear", ["c1", "s2", "zp"], ["c1_q"]),
        helper.make_node("DequantizeLinear", ["c1_q", "s2", "zp"], ["c1_dq"]),
        helper.make_node("Conv", ["c1_dq", "conv2_w"], ["c2"]),
        helper.make_node("QLinearConv", ["c1_q", "s2", "zp", "qconv_w_q", "s", "zp", "s2", "zp", "qconv_b_q"], ["qc_q"]),  # int8 in and out
        helper.make_node("DequantizeLinear", ["qc_q", "s2", "zp"], ["qc"]),  # an activation after a QLinearConv, not a QuantizeLinear
        helper.make_node("Transpose", ["qc_q"], ["qc_t_q"], perm=[0, 1, 3, 2]),  # an int8 Transpose, as ONNX Runtime's layout pass writes
        helper.make_node("DequantizeLinear", ["qc_t_q", "s2", "zp"], ["qc_t"]),  # an activation after a Transpose
        helper.make_node("Add", ["c2", "qc"], ["c2_qc"]),
        helper.make_node("Add", ["c2_qc", "qc_t"], ["c2_sum"]),
        helper.make_node("DequantizeLinear", ["conv3_w_q", "s", "zp"], ["conv3_w"]),
        helper.make_node("Conv", ["c2_sum", "conv3_w"], ["c"]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("QuantizeLinear", ["f", "s", "zp"], ["f_q"]),
        helper.make_node("DequantizeLinear", ["f_q", "s", "zp"], ["f_dq"]),
        helper.make_node("DequantizeLinear", ["gemm_w_q", "s", "zp"], ["gemm_w"]),
        helper.make_node("DequantizeLinear", ["gemm_b_q", "s", "zp32"], ["gemm_b"]),
        helper.make_node("Gemm", ["f_dq", "gemm_w", "gemm_b"], ["g"], transB=1),
        helper.make_node("DequantizeLinear", ["mm_w_q", "s", "zp"], ["mm_w"]),
        helper.make_node("DequantizeLinear", ["mm_w_q", "s2", "zp"], ["mm_w2"]),  # the same stored weight, read twice
        helper.make_node("Add", ["mm_w", "mm_w2"], ["mm_sum"]),
        helper.make_node("MatMul", ["g", "mm_sum"], ["m"]),
        helper.make_node("DequantizeLinear", ["x2_q", "s", "zp"], ["x2"]),  # a second int8 input
        helper.make_node("Add", ["m", "x2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "crafted", [helper.make_tensor_value_info("x_q", TensorProto.INT8, [1, 1, 1, 1]),
                                                 helper.make_tensor_value_info("x2_q", TensorProto.INT8, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], init)
    return graph


def _graph_counts(graph: Any) -> dict[str, int]:
    initializers = {i.name for i in graph.initializer}
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    ops = [n.op_type for n in graph.node]
    quantized_or_input = {o for n in graph.node if n.op_type == "QuantizeLinear" for o in n.output} | {i.name for i in graph.input}
    return {
        "stored": sum(n.input[0] in initializers for n in dq),
        "distinct": len({n.input[0] for n in dq if n.input[0] in initializers}),
        "dq": len(dq),
        "q": ops.count("QuantizeLinear"),
        "dq_minus_q": len(dq) - ops.count("QuantizeLinear"),
        "weighted": sum(op in ("Conv", "Gemm", "MatMul") for op in ops),
        "two_per_layer": 2 * sum(op in ("Conv", "Gemm") for op in ops),
        "initializers": len(initializers),
        "not_after_q_or_input": sum(n.input[0] not in quantized_or_input for n in dq),
    }


_GRAPH_HINTS = {
    "distinct": "that counts the stored tensors, not the nodes: one initializer can feed two DequantizeLinear nodes "
                "(a shared weight); count each node",
    "dq": "that counts every DequantizeLinear; keep those whose input is an initializer (the others dequantize an activation)",
    "q": "that counts QuantizeLinear nodes: those quantize activations while the model runs",
    "dq_minus_q": "DequantizeLinear minus QuantizeLinear works only when every activation's DequantizeLinear follows a "
                  "QuantizeLinear (an int8 graph input or a QLinearConv's output does not); test each node's input "
                  "against the initializer names",
    "two_per_layer": "a weight and a bias per Conv/Gemm holds only when every layer has a bias and no MatMul carries a "
                     "weight; look at the DequantizeLinear nodes themselves",
    "weighted": "that counts one weight per layer: biases are stored as int32 with their own DequantizeLinear",
    "initializers": "that counts every initializer, scales and zero points included; count DequantizeLinear nodes",
    "not_after_q_or_input": "an activation's DequantizeLinear can also read the int8 output of another node (a QLinearConv, "
                            "an int8 Transpose or Reshape), not only a QuantizeLinear or a graph input; test each node's "
                            "input against the initializer names",
}


@_blank_safe
def check_stored_integer_dq_function(fn: Any, onnx_path: Path | str) -> bool:
    """Exercise: a function ``stored_integer_dqs(graph)`` (an ``onnx.GraphProto``) returning how many DequantizeLinear
    nodes read a stored integer tensor (an initializer) rather than an activation.

    The check runs it on ``onnx_path``'s graph and on a small graph of its own (a Conv without a bias, a Gemm with
    one, a MatMul weight read by two DequantizeLinear nodes, int8 graph inputs dequantized without a QuantizeLinear,
    activations dequantized after a QLinearConv and an int8 Transpose), so a number read
    off a printed table, or a rule right for one file only, does not pass. Typical wrong rules get a hint.

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
    graph = _onnx_graph(onnx_path)
    if not_filled(fn):
        raise NotFilledIn("stored integer tensors")
    if not callable(fn):
        return report("stored integer tensors", False, "pass your function itself (stored_integer_dqs), not a number")
    for name, g in (("the course model's file", graph), ("a small graph of the check's own (Convs without a bias, "
                                                         "a MatMul weight read twice, int8 graph inputs, a QLinearConv)",
                                                         _crafted_graph())):
        counts = _graph_counts(g)
        got = as_number(fn(g), "stored integer tensors")
        if got != counts["stored"]:
            hint = next((h for key, h in _GRAPH_HINTS.items() if got == counts[key]), "")
            return report("stored integer tensors", False, f"on {name} your function returns {got:g}, the right count is "
                          f"{counts['stored']}" + (f": {hint}" if hint else ": count the DequantizeLinear nodes whose "
                                                   "input[0] names an initializer"))
    return report("stored integer tensors", True)
