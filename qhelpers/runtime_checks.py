"""The self-checks of notebook 08's exercises: the quantize/dequantize fraction, bytes per weight, agreement.

Introduced in notebooks/08_deploy_with_executorch.ipynb.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checks import NotFilledIn, _blank_safe, as_number, not_filled, report
from .runtime import PteExport

__all__ = [
    "check_qdq_fraction",
    "check_bytes_per_weight",
    "check_agreement",
]


# --------------------------------------------------------------------------- self-checks


def _close(a: float, b: float, rel: float = 1e-3) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-12)


def _is_qdq(op_name: str) -> bool:
    return "quantize_per" in op_name  # quantize_per_tensor, dequantize_per_tensor, dequantize_per_channel


@_blank_safe
def check_qdq_fraction(fraction: Any, export: PteExport) -> bool:
    """Exercise: the fraction (0..1) of the nodes delegated to XNNPACK that are quantize/dequantize ops.

    Exact up to float32 rounding (1e-6 relative): the answer is a ratio of two counts, so a
    rounded guess does not pass. Typical mistakes get a hint: every delegated node, the
    non-delegated ones counted in, only the quantize (or only the dequantize) ops, a
    percentage, the complement.

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    if not isinstance(export, PteExport):
        raise TypeError(f"export must be the PteExport returned by qh.export_pte, got {type(export).__name__}")
    got = as_number(fraction, "Q/DQ fraction")
    d, n = export.delegated_nodes, export.non_delegated_nodes
    qdq = sum(dd for name, (dd, _) in export.by_operator.items() if _is_qdq(name))
    q_only = sum(dd for name, (dd, _) in export.by_operator.items() if _is_qdq(name) and not name.split("quantize_per")[0].endswith("de"))
    dq_only = qdq - q_only

    def close(value: float) -> bool:
        return abs(got - value) <= 1e-6 * max(abs(value), 1e-12)  # float32 precision: a learner may hold the answer in a tensor

    if not d:
        raise ValueError("the export delegated nothing to XNNPACK; there is no fraction to compute")
    if close(qdq / d):
        return report("Q/DQ fraction", True)
    if close(100 * qdq / d):
        return report("Q/DQ fraction", False, "that is a percentage; give the fraction between 0 and 1")
    if close(qdq / (d + n)):
        return report("Q/DQ fraction", False, "divide by the delegated nodes only, not by every node of the graph")
    if close(1 - qdq / d):
        return report("Q/DQ fraction", False, "that is the arithmetic part; the question asks for the quantize/dequantize part")
    if close(d / (d + n)) or close(1 - 1 / d) or close(1 - 1 / (d + n)):
        return report("Q/DQ fraction", False, "that is how much of the graph XNNPACK took; count only the quantize/dequantize ops among them (by_operator)")
    if close(q_only / d) or close(dq_only / d):
        return report("Q/DQ fraction", False, "count both kinds: the quantize ops and the dequantize ops (per tensor and per channel)")
    if abs(got - qdq / d) <= 0.01:
        return report("Q/DQ fraction", False, "close, but this is a ratio of two counts: compute it from by_operator rather than typing a rounded number")
    return report("Q/DQ fraction", False, f"got {got:.4g}; add up by_operator's delegated counts of the ops whose name contains 'quantize_per'")


@_blank_safe
def check_bytes_per_weight(value: Any, file_bytes: int, model: nn.Module) -> bool:
    """Exercise: bytes of the INT8 ``.pte`` file per parameter of the float model.

    A ratio of two integers, so it is compared to 1e-6 relative: a rounded or typed-in
    number is rejected. Counting only the convolution/Linear weights (not BatchNorm
    parameters and biases) gets its own hint.

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be the float nn.Module, got {type(model).__name__}")
    got = as_number(value, "bytes per parameter")
    params = sum(p.numel() for p in model.parameters())
    expected = file_bytes / params
    if _close(got, expected, rel=1e-6):
        return report("bytes per parameter", True)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    if _close(got, file_bytes / weights, rel=1e-6):
        return report("bytes per parameter", False, "you counted only the convolution and Linear weights; "
                                                   "the question divides by every parameter of the float model (model.parameters())")
    if _close(got, expected, rel=1e-2):
        return report("bytes per parameter", False, "close, but rounded: compute it from the two integers, not from printed numbers")
    if _close(got, 1 / expected):
        return report("bytes per parameter", False, "upside down: divide the file's bytes by the number of parameters")
    if _close(got, file_bytes / 1e6 / params) or _close(got, file_bytes / 2**20 / params):
        return report("bytes per parameter", False, "the file size must be in bytes, not MB")
    if 3.0 < got < 4.5:
        return report("bytes per parameter", False, "about 4 bytes per parameter is the float file; use the INT8 .pte's size")
    return report("bytes per parameter", False, f"got {got:.4g}; count parameters with p.numel() over model.parameters()")


# Small cases the learner's agreement(a, b) must get right: flips one way and the other that cancel in the
# accuracies (both 80 % right on labels 0..4, yet they agree on 60 %), identical predictions, and no agreement.
_AGREEMENT_CASES = (
    (torch.tensor([0, 9, 2, 3, 4]), torch.tensor([9, 1, 2, 3, 4])),
    (torch.tensor([1, 1, 1, 1]), torch.tensor([1, 1, 1, 1])),
    (torch.tensor([0, 1, 2, 3]), torch.tensor([3, 2, 1, 0])),
)


@_blank_safe
def check_agreement(agreement: Any, percent: Any, preds_a: torch.Tensor, preds_b: torch.Tensor, labels: torch.Tensor, *,
                    others: dict[str, torch.Tensor] | None = None) -> bool:
    """Exercise: ``agreement(a, b)``, in percent, on how many images two models predict the same class (not
    accuracy), and ``percent``, that function applied to ``preds_a`` and ``preds_b``.

    The function is tried first on small cases whose right answers differ from every mistake: flips in both
    directions that cancel in the accuracies but not in the agreement, identical predictions, no agreement;
    a fraction, a count, or a function that raises (e.g. one that reads the notebook's tensors instead of its
    arguments) gets a hint naming the case. Then ``percent``: a fraction, a count, either model's accuracy,
    ``100 - |accuracy_a - accuracy_b|`` (the belief that equal accuracies mean equal predictions), and the
    agreement of ``preds_a`` or ``preds_b`` with one of ``others`` (predictions a learner may compare with by
    mistake, e.g. ``{"the INT8 graph (pt2e_preds)": pt2e_preds}``) are each rejected with a hint, whenever that
    value differs from the truth. When a mistake gives the true value on these tensors (the INT8 graph and the
    ``.pte`` predicting the same class on every image, say) no check on the value can tell them apart: the
    function's cases are what test the method.

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    tensors = (preds_a, preds_b, labels)
    if not all(isinstance(t, torch.Tensor) for t in tensors) or not preds_a.shape == preds_b.shape == labels.shape:
        raise TypeError("preds_a, preds_b and labels must be tensors of class indices with the same shape")
    if not_filled(agreement):
        raise NotFilledIn("agreement")
    if not callable(agreement):
        return report("agreement", False, "agreement must be a function of two prediction tensors: def agreement(a, b): ...")

    def close(got: float, value: float) -> bool:
        return abs(got - value) <= 1e-6 + 1e-6 * abs(value)

    for a, b in _AGREEMENT_CASES:
        shown = f"agreement({a.tolist()}, {b.tolist()})"
        same, n = int((a == b).sum()), a.numel()
        try:
            result = agreement(a.clone(), b.clone())
        except Exception as exc:
            return report("agreement", False, f"{shown} raised {type(exc).__name__}: compute from the two arguments only")
        got = as_number(result, shown)
        if close(got, 100.0 * same / n):
            continue
        if close(got, same / n):
            return report("agreement", False, f"{shown} is a fraction; the question asks for percent")
        if close(got, same) or close(got, n - same):
            return report("agreement", False, f"{shown} is a count of images; divide by how many there are, times 100")
        return report("agreement", False, f"{shown} gave {got:.4g}; count the images where a and b predict the same class, in percent")

    got = as_number(percent, "agreement")
    n = preds_a.numel()
    same = int((preds_a == preds_b).sum())
    expected = 100.0 * same / n
    acc_a = 100.0 * int((preds_a == labels).sum()) / n
    acc_b = 100.0 * int((preds_b == labels).sum()) / n
    if close(got, expected):
        return report("agreement", True)
    for name, preds in (others or {}).items():
        if not isinstance(preds, torch.Tensor) or preds.shape != preds_a.shape:
            raise TypeError(f"others[{name!r}] must be a tensor of class indices shaped like preds_a")
        if close(got, 100.0 * int((preds_a == preds).sum()) / n) or close(got, 100.0 * int((preds_b == preds).sum()) / n):
            return report("agreement", False, f"that is an agreement with {name}; the question compares the two models it names")
    if close(got, expected / 100):
        return report("agreement", False, "that is a fraction; the question asks for percent")
    if close(got, same) or close(got, n - same):
        return report("agreement", False, "that is a count of images; divide by how many there are, times 100")
    if close(got, 100.0 - abs(acc_a - acc_b)):
        return report("agreement", False, "equal accuracies do not mean equal predictions: images flipped one way and the other cancel "
                                          "in the accuracies; compare the two models' predictions image by image")
    if close(got, acc_a) or close(got, acc_b):
        return report("agreement", False, "that is an accuracy (predictions against the labels); compare the two models' predictions with each other")
    return report("agreement", False, f"got {got:.4g}; apply your agreement function to the two models' predictions")
