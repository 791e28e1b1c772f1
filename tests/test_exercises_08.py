"""Notebook 08's self-checks: the right answer passes, the typical wrong answers fail with a hint naming the mistake."""

from pathlib import Path

import pytest
import torch
from torch import nn

import qhelpers as qh

# An export like MobileNetV2's INT8 .pte: many nodes in XNNPACK, one left outside.
EXPORT = qh.PteExport(Path("m.pte"), 3_707_040, 1, 365, 1)
MODEL = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 4))  # 224 + 8 + 32 + 4 = 268 parameters
N_PARAMS = sum(p.numel() for p in MODEL.parameters())
FILE_BYTES = 300


# --------------------------------------------------------------------------- exercise 1: delegated fraction


def test_ex1_accepts_right_answer(capsys):
    assert qh.check_delegated_fraction(365 / 366, EXPORT)
    assert qh.check_delegated_fraction(torch.tensor(365 / 366), EXPORT)
    assert "✅" in capsys.readouterr().out


def test_ex1_rejects_the_non_delegated_part(capsys):
    assert not qh.check_delegated_fraction(1 / 366, EXPORT)
    assert "outside XNNPACK" in capsys.readouterr().out


def test_ex1_rejects_a_percentage(capsys):
    assert not qh.check_delegated_fraction(100 * 365 / 366, EXPORT)
    assert "percentage" in capsys.readouterr().out


def test_ex1_rejects_dividing_by_the_non_delegated_count(capsys):
    assert not qh.check_delegated_fraction(365 / 1, EXPORT)
    assert "divide by all nodes" in capsys.readouterr().out


def test_ex1_blank_and_wrong_kind(capsys):
    assert not qh.check_delegated_fraction(..., EXPORT)
    assert "not filled in yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="PteExport"):
        qh.check_delegated_fraction(0.5, {"delegated_nodes": 1})


# --------------------------------------------------------------------------- exercise 2: bytes per weight


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

LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
PTE = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 1])  # 9/10 correct
PY = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 3, 2])  # 8/10 correct; agrees with PTE on 8 images


def test_ex3_accepts_right_answer(capsys):
    assert qh.check_agreement(80.0, PTE, PY)
    assert "✅" in capsys.readouterr().out


def test_ex3_rejects_a_fraction(capsys):
    assert not qh.check_agreement(0.8, PTE, PY)
    assert "fraction" in capsys.readouterr().out


def test_ex3_rejects_a_count(capsys):
    assert not qh.check_agreement(8, PTE, PY)
    assert "count of images" in capsys.readouterr().out


def test_ex3_rejects_accuracy_against_the_labels(capsys):
    accuracy = 100.0 * (PTE == LABELS).float().mean().item()
    assert accuracy != 80.0
    assert not qh.check_agreement(accuracy, PTE, PY)
    assert "not with the labels" in capsys.readouterr().out


def test_ex3_wrong_kind():
    with pytest.raises(TypeError, match="same shape"):
        qh.check_agreement(80.0, PTE, PY[:5])
