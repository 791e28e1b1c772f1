"""The self-checks of notebook 09's exercises: how much smaller the INT8 ONNX file is, the worst 16-bit pair sum,
the integer tensors a QDQ file stores.

Introduced in notebooks/09_server_runtimes.ipynb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .checks import NotFilledIn, _blank_safe, as_number, not_filled, report

__all__ = [
    "check_onnx_size_ratio",
    "worst_pair_sum_reference",
    "check_worst_pair_sum",
    "stored_integer_dq_count",
    "check_stored_integer_dq_count",
]

INT16_MAX = 32767  # what a 16-bit pair sum (VPMADDUBSW) can hold


# --------------------------------------------------------------------------- exercise 1: the size of the INT8 file


def _file_size(path: Any, name: str) -> int:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no file at {p}")
    return p.stat().st_size


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * abs(b)  # a ratio of two byte counts: float32 answers pass, rounded ones do not


@_blank_safe
def check_onnx_size_ratio(ratio: Any, float_path: Path | str, int8_path: Path | str, *,
                          others: Optional[dict[str, tuple[Path | str, Path | str]]] = None) -> bool:
    """Exercise: how many times smaller the INT8 ONNX file is than the float ONNX file the export wrote (float bytes /
    INT8 bytes, exact to 1e-6 relative).

    The typical wrong answers get a hint: the inverse, a percentage, the BatchNorm-folded float file that
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
        return report("size ratio", False, "that uses the pre-processed file (_pre.onnx, BatchNorm folded); "
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


def worst_pair_sum_reference(codes: torch.Tensor) -> int:
    """The largest magnitude a 16-bit pair sum ``a[2i] * w[2i] + a[2i+1] * w[2i+1]`` can reach, for uint8 activations
    ``a`` (0..255, any values) and the int8 weight ``codes`` (one row per output channel, an even number of columns).

    Both activations are free: the sum is largest with 255 on the positive weights of a pair (and 0 on the negative
    one), or on the negative ones; the answer is the largest of those over every pair of every row.

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
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
    ]


def _pair_mistake(fn: Callable[[torch.Tensor], Any], codes: torch.Tensor) -> str:
    """The hint for the typical wrong rule that gives ``fn``'s answer on ``codes`` (empty: none recognised)."""
    w = codes.to(torch.int64).reshape(codes.shape[0], -1, 2)
    flat = codes.to(torch.int64).reshape(codes.shape[0], -1)
    got = fn(codes)
    if got == int(255 * w.abs().sum(dim=2).max()):
        return "an activation is 0..255, never negative: a pair with weights of opposite signs cannot add both magnitudes"
    if got == int(127 * torch.maximum(w.clamp(min=0).sum(2), (-w).clamp(min=0).sum(2)).max()) or got == int(128 * torch.maximum(w.clamp(min=0).sum(2), (-w).clamp(min=0).sum(2)).max()):
        return "the activations are uint8 (0..255), not int8: use 255"
    if got == int(255 * flat.abs().max()):
        return "that is one product; the instruction adds two of them (a pair) before it stores 16 bits"
    top2 = flat.clamp(min=0).sort(dim=1, descending=True).values[:, :2].sum(1).max()
    if got == int(255 * top2):
        return "the pairs are fixed, neighbours (0, 1), (2, 3), ...: the two largest weights of a row are not always in one pair"
    return ""


@_blank_safe
def check_worst_pair_sum(fn: Any, codes: torch.Tensor) -> bool:
    """Exercise: a function ``worst_pair_sum(codes)`` (int8 weight codes, one row per output channel) that returns the
    largest magnitude a pair sum of uint8 activations times those weights can reach, as an int.

    The check calls it on ``codes`` and on cases of its own (opposite signs, -128, reduce-range codes, the large
    weights in different pairs or rows); the typical wrong rules (absolute values, int8 activations, one product,
    the two largest weights of a row) get their hint.

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.int8 or codes.dim() != 2 or codes.shape[1] % 2:
        raise TypeError(f"codes must be an int8 tensor (out_channels, K) with K even, got {codes!r:.80}")
    if not_filled(fn):
        raise NotFilledIn("worst pair sum")
    if not callable(fn):
        return report("worst pair sum", False, "pass your function itself (worst_pair_sum), not its result")
    for name, case in [*_pair_cases(), ("the codes of the file", codes)]:
        expected = worst_pair_sum_reference(case)
        got = fn(case.clone())
        got = as_number(got, "worst pair sum")
        if got != expected:
            hint = _pair_mistake(lambda c: as_number(fn(c.clone()), "worst pair sum"), case)
            return report("worst pair sum", False, f"on {name} {case.tolist() if case.numel() <= 8 else ''} you return {got:g}, the worst case is "
                          f"{expected}" + (f": {hint}" if hint else ""))
    return report("worst pair sum", True)


# --------------------------------------------------------------------------- exercise 3: the integers a QDQ file stores


def _onnx_graph(path: Any) -> Any:
    import onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"onnx_path: no ONNX file at {p}")
    return onnx.load(str(p)).graph


def stored_integer_dq_count(onnx_path: Path | str) -> dict[str, int]:
    """Counts in a QDQ ONNX file: ``stored`` (DequantizeLinear nodes whose input is an initializer: a weight or a bias
    stored as integers), ``dq`` (every DequantizeLinear), ``q`` (QuantizeLinear), ``weighted`` (Conv, Gemm and MatMul
    nodes: one stored weight each), ``initializers``.

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
    graph = _onnx_graph(onnx_path)
    initializers = {i.name for i in graph.initializer}
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    return {
        "stored": sum(n.input[0] in initializers for n in dq),
        "dq": len(dq),
        "q": sum(n.op_type == "QuantizeLinear" for n in graph.node),
        "weighted": sum(n.op_type in ("Conv", "Gemm", "MatMul") for n in graph.node),
        "initializers": len(initializers),
    }


@_blank_safe
def check_stored_integer_dq_count(count: Any, onnx_path: Path | str) -> bool:
    """Exercise: how many DequantizeLinear nodes of a QDQ file read a stored integer tensor (an initializer).

    Typical wrong counts get a hint: every DequantizeLinear, the QuantizeLinear nodes, the weights only (one per
    Conv/Gemm: the biases are stored as int32 too), every initializer (scales and zero points are initializers too).

    Introduced in notebooks/09_server_runtimes.ipynb.
    """
    c = stored_integer_dq_count(onnx_path)
    got = as_number(count, "stored integer tensors")
    if got == c["stored"]:
        return report("stored integer tensors", True)
    if got == c["dq"]:
        return report("stored integer tensors", False, "that is every DequantizeLinear; keep those whose input is an initializer "
                      "(the others dequantize an activation right after its QuantizeLinear)")
    if got == c["q"]:
        return report("stored integer tensors", False, "that counts QuantizeLinear nodes: those quantize activations while the model runs")
    if got == c["weighted"]:
        return report("stored integer tensors", False, "that is one per Conv/Gemm: the weights; the biases are stored as int32 with their own DequantizeLinear")
    if got == c["initializers"]:
        return report("stored integer tensors", False, "that counts every initializer, scales and zero points included; count DequantizeLinear nodes")
    return report("stored integer tensors", False, f"got {got:g}; count the DequantizeLinear nodes (graph.node) whose input[0] is the name of an initializer")
