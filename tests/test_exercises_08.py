"""Notebook 08's self-checks: the right answer passes, the typical wrong answers fail with a hint naming the mistake."""

from pathlib import Path

import pytest
import torch
from torch import nn

import qhelpers as qh

# An export like MobileNetV2's INT8 .pte: 365 nodes in XNNPACK (of them 55 quantize and 118 dequantize ops), 1 outside.
BY_OPERATOR = {
    "aten_convolution_default": (52, 0), "aten_hardtanh_default": (35, 0), "aten_add_tensor": (10, 0), "aten_linear_default": (1, 0),
    "aten_mean_dim": (1, 0), "aten_view_copy_default": (1, 0), "aten_clone_default": (1, 0), "getitem": (0, 1),
    "quantized_decomposed_quantize_per_tensor_default": (55, 0),
    "quantized_decomposed_dequantize_per_tensor_default": (65, 0),
    "quantized_decomposed_dequantize_per_channel_default": (53, 0),
}
D = sum(d for d, _ in BY_OPERATOR.values())
EXPORT = qh.PteExport(Path("m.pte"), 3_707_040, 1, D, 1, BY_OPERATOR)
QDQ = 55 + 65 + 53
MODEL = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 4))  # 224 + 8 + 32 + 4 = 268 parameters
N_PARAMS = sum(p.numel() for p in MODEL.parameters())
FILE_BYTES = 300


# --------------------------------------------------------------------------- exercise 1: Q/DQ fraction of the delegated nodes


def test_ex1_accepts_right_answer(capsys):
    assert qh.check_qdq_fraction(QDQ / D, EXPORT)
    assert qh.check_qdq_fraction(torch.tensor(QDQ / D, dtype=torch.float64), EXPORT)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (D / (D + 1), "how much of the graph XNNPACK took"),      # the old question's answer: delegated / all
    (1 - 1 / D, "how much of the graph XNNPACK took"),        # 1 - 1/365, a formula right only by accident
    (QDQ / (D + 1), "delegated nodes only"),                  # divided by every node
    (1 - QDQ / D, "arithmetic part"),                         # the complement
    (100 * QDQ / D, "percentage"),
    (55 / D, "count both kinds"),                             # quantize ops only
    ((65 + 53) / D, "count both kinds"),                      # dequantize ops only
    (round(QDQ / D, 2), "ratio of two counts"),               # a rounded guess
    (0.5, "add up by_operator"),                              # a plain guess
])
def test_ex1_rejects_typical_mistakes(wrong, hint, capsys):
    assert not qh.check_qdq_fraction(wrong, EXPORT)
    assert hint in capsys.readouterr().out


def test_ex1_blank_and_wrong_kind(capsys):
    assert not qh.check_qdq_fraction(..., EXPORT)
    assert "not filled in yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="PteExport"):
        qh.check_qdq_fraction(0.5, {"delegated_nodes": 1})


def test_ex1_refuses_an_export_that_delegated_nothing():
    nothing = qh.PteExport(Path("m.pte"), 1_000, 0, 0, 5, {"aten_linear_default": (0, 5)})
    with pytest.raises(ValueError, match="delegated nothing to XNNPACK"):
        qh.check_qdq_fraction(0.0, nothing)


# --------------------------------------------------------------------------- exercise 2: bytes per weight


def test_ex2_rejects_a_rounded_or_weights_only_answer(capsys):
    """A ratio of two integers: a value rounded to 3 decimals fails; dividing by the conv/Linear weights only has its hint."""
    assert not qh.check_bytes_per_weight(round(FILE_BYTES / N_PARAMS, 3), FILE_BYTES, MODEL)
    assert "rounded" in capsys.readouterr().out
    assert not qh.check_bytes_per_weight(FILE_BYTES / (216 + 32), FILE_BYTES, MODEL)  # weights of the Conv2d and the Linear
    assert "only the convolution and Linear weights" in capsys.readouterr().out


def test_ex2_on_the_notebook_s_numbers(capsys):
    """MobileNetV2: 3,742,880 bytes / 3,504,872 parameters; 1.068 (typed from printed numbers) is rejected."""
    import torchvision
    mv2 = torchvision.models.mobilenet_v2()
    assert sum(p.numel() for p in mv2.parameters()) == 3_504_872
    assert qh.check_bytes_per_weight(3_742_880 / 3_504_872, 3_742_880, mv2)
    assert not qh.check_bytes_per_weight(1.068, 3_742_880, mv2)
    assert "rounded" in capsys.readouterr().out
    assert not qh.check_bytes_per_weight(3_742_880 / 3_469_760, 3_742_880, mv2)
    assert "only the convolution and Linear weights" in capsys.readouterr().out


def test_ex2_accepts_right_answer(capsys):
    assert qh.check_bytes_per_weight(FILE_BYTES / N_PARAMS, FILE_BYTES, MODEL)
    assert "✅" in capsys.readouterr().out


def test_ex2_rejects_upside_down(capsys):
    assert not qh.check_bytes_per_weight(N_PARAMS / FILE_BYTES, FILE_BYTES, MODEL)
    assert "upside down" in capsys.readouterr().out


def test_ex2_rejects_megabytes(capsys):
    assert not qh.check_bytes_per_weight(FILE_BYTES / 1e6 / N_PARAMS, FILE_BYTES, MODEL)
    assert "in bytes, not MB" in capsys.readouterr().out


def test_ex2_rejects_the_float_file(capsys):
    float_bytes = 4 * N_PARAMS + 40
    assert not qh.check_bytes_per_weight(float_bytes / N_PARAMS, FILE_BYTES, MODEL)
    assert "float file" in capsys.readouterr().out


def test_ex2_rejects_counting_tensors_instead_of_parameters(capsys):
    n_tensors = len(list(MODEL.parameters()))
    assert not qh.check_bytes_per_weight(FILE_BYTES / n_tensors, FILE_BYTES, MODEL)
    assert "numel" in capsys.readouterr().out


# --------------------------------------------------------------------------- exercise 3: agreement

# Ten digits; A and B are each right on 8 and agree on 7: flips one way and the other cancel in the accuracies.
LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
A = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 0, 1])
B = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 8, 0])  # right on 8, A right on 8; they differ on digits 7, 8, 9


def right(a, b):
    return 100.0 * (a == b).float().mean().item()


def test_ex3_accepts_right_answer(capsys):
    assert qh.check_agreement(right, 70.0, A, B, LABELS)
    assert "✅" in capsys.readouterr().out
    # a tensor result and an integer formula are fine too
    assert qh.check_agreement(lambda a, b: (a == b).sum() * 100 / a.numel(), torch.tensor(70.0), A, B, LABELS)


@pytest.mark.parametrize("function, hint", [
    (lambda a, b: (a == b).float().mean().item(), "agreement([0, 9, 2, 3, 4], [9, 1, 2, 3, 4]) is a fraction"),
    (lambda a, b: int((a == b).sum()), "is a count of images"),
    (lambda a, b: int((a != b).sum()), "is a count of images"),
    (lambda a, b: 100.0 * (A == B).float().mean().item(), "gave 70; count the images"),  # reads tensors outside its arguments
    (lambda a, b: 100.0 * (a == LABELS).float().mean().item(), "raised RuntimeError: compute from the two arguments only"),
    # right on the first case (60 %) but not on identical predictions: a formula fitted to one input
    (lambda a, b: 60.0, "agreement([1, 1, 1, 1], [1, 1, 1, 1]) gave 60"),
    (lambda a, b: 100.0 - abs((a == a).float().mean().item() - (b == b).float().mean().item()) * 100, "gave 100"),
])
def test_ex3_rejects_a_wrong_function_on_its_own_cases(function, hint, capsys):
    assert not qh.check_agreement(function, 70.0, A, B, LABELS)
    assert hint in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (100.0, "equal accuracies do not mean equal predictions"),  # 100 - |80 - 80|: the misconception the exercise targets
    (80.0, "that is an accuracy"),
    (0.7, "fraction"),
    (7, "count of images"),
    (3, "count of images"),
    (50.0, "apply your agreement function"),
])
def test_ex3_rejects_typical_mistakes_in_the_value(wrong, hint, capsys):
    assert not qh.check_agreement(right, wrong, A, B, LABELS)
    assert hint in capsys.readouterr().out


def test_ex3_names_the_wrong_model_compared_with(capsys):
    """Comparing the .pte, or the float model, with the INT8 graph's predictions: the hint names what was compared."""
    graph = A.clone()
    graph[9] = 9  # the graph differs from A on one digit: 90 % agreement with A, 80 % with B
    assert not qh.check_agreement(right, 90.0, A, B, LABELS, others={"the INT8 graph (pt2e_preds)": graph})
    assert "agreement with the INT8 graph (pt2e_preds)" in capsys.readouterr().out
    assert not qh.check_agreement(right, 90.0, A, B, LABELS, others={"labels": torch.full_like(A, 5), "the INT8 graph (pt2e_preds)": graph})
    assert "agreement with the INT8 graph (pt2e_preds)" in capsys.readouterr().out  # the first of others does not match
    near_float = B.clone()
    near_float[0] = 9  # a graph that differs from float (B) on one digit: the graph against float is 90 %
    assert not qh.check_agreement(right, 90.0, A, B, LABELS, others={"the INT8 graph (pt2e_preds)": near_float})
    assert "agreement with the INT8 graph (pt2e_preds)" in capsys.readouterr().out
    assert qh.check_agreement(right, 70.0, A, B, LABELS, others={"the INT8 graph (pt2e_preds)": graph})
    with pytest.raises(TypeError, match="others"):
        qh.check_agreement(right, 50.0, A, B, LABELS, others={"x": graph[:5]})


def test_ex3_rejects_the_misconception_on_the_notebook_s_shape_of_data(capsys):
    """1,000 digits, the .pte right on 987 and float on 988, 3 disagreements (one flip each way plus one): 99.7 % agree."""
    labels = torch.arange(1000) % 10
    float_preds, pte_preds = labels.clone(), labels.clone()
    float_preds[:12] = (labels[:12] + 1) % 10  # float wrong on 12
    pte_preds[:12] = float_preds[:12]
    pte_preds[12] = (labels[12] + 1) % 10  # the .pte wrong where float is right
    pte_preds[13] = (labels[13] + 2) % 10
    pte_preds[0] = labels[0]  # and right where float is wrong
    assert (pte_preds == labels).sum() == 987 and (float_preds == labels).sum() == 988
    assert qh.check_agreement(right, 99.7, pte_preds, float_preds, labels)
    assert not qh.check_agreement(right, 100 - abs(98.7 - 98.8), pte_preds, float_preds, labels)
    assert "equal accuracies" in capsys.readouterr().out


def test_ex3_blank_and_bad_input(capsys):
    assert not qh.check_agreement(..., ..., A, B, LABELS)
    assert "not filled in yet" in capsys.readouterr().out
    assert not qh.check_agreement(right, ..., A, B, LABELS)
    assert "not filled in yet" in capsys.readouterr().out
    assert not qh.check_agreement(70.0, 70.0, A, B, LABELS)
    assert "agreement must be a function" in capsys.readouterr().out
    with pytest.raises(TypeError, match="same shape"):
        qh.check_agreement(right, 50.0, A, B[:5], LABELS)
