"""Exercises of notebooks/05_beyond_eager_mode.ipynb: each self-check accepts the right answer and rejects the typical wrong ones with a hint."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import qhelpers as qh

X_SCALE, W_SCALE, OUT_SCALE = 0.0039, 0.0021, 0.047
OTHER_W_SCALES = torch.tensor([0.0017, 0.0030])


@pytest.fixture(scope="module")
def pt2e_graph():
    """The course model's PT2E Q/DQ graph, as convert_pt2e returns it (calibrated on random images: only its nodes matter)."""
    qh.silence_pt2e_noise()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    torch.manual_seed(0)
    model = qh.load_course_model().eval()
    x = torch.randn(2, 1, 28, 28)
    with warnings.catch_warnings():
        qh.silence_known_deprecations()
        prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))
        prepared(x)
        return convert_pt2e(prepared)


# --------------------------------------------------------------------------- exercise 1: requantization multiplier


def _ex1(answer, capsys):
    ok = qh.check_requant_multiplier(answer, X_SCALE, W_SCALE, OUT_SCALE, other_w_scales=OTHER_W_SCALES)
    return ok, capsys.readouterr().out


def test_ex1_accepts_right_answer(capsys):
    ok, out = _ex1(X_SCALE * W_SCALE / OUT_SCALE, capsys)
    assert ok and "✅" in out


def test_ex1_rejects_accumulator_scale(capsys):
    ok, out = _ex1(X_SCALE * W_SCALE, capsys)
    assert not ok and "accumulator's scale" in out


def test_ex1_rejects_upside_down(capsys):
    ok, out = _ex1(OUT_SCALE / (X_SCALE * W_SCALE), capsys)
    assert not ok and "upside down" in out


def test_ex1_rejects_missing_input_scale(capsys):
    ok, out = _ex1(W_SCALE / OUT_SCALE, capsys)
    assert not ok and "one scale is missing" in out


def test_ex1_rejects_other_channel(capsys):
    ok, out = _ex1(X_SCALE * float(OTHER_W_SCALES[1]) / OUT_SCALE, capsys)
    assert not ok and "another output channel" in out


def test_ex1_blank_is_not_filled_in(capsys):
    ok, out = _ex1(..., capsys)
    assert not ok and "not filled in yet" in out


# --------------------------------------------------------------------------- exercise 2: count quantize nodes


def test_ex2_accepts_right_answer(pt2e_graph, capsys):
    names = [getattr(n.target, "__name__", "") for n in pt2e_graph.graph.nodes if n.op == "call_function"]
    n = sum(name.startswith("quantize_per_tensor") for name in names)
    assert n > 0 and qh.check_op_count(n, pt2e_graph)


def test_ex2_rejects_counting_dequantize_too(pt2e_graph, capsys):
    names = [getattr(n.target, "__name__", "") for n in pt2e_graph.graph.nodes if n.op == "call_function"]
    wrong = sum("quantize" in name for name in names)  # quantize and dequantize nodes alike
    assert not qh.check_op_count(wrong, pt2e_graph)
    assert "dequantize nodes too" in capsys.readouterr().out


def test_ex2_rejects_substring_match(pt2e_graph, capsys):
    names = [getattr(n.target, "__name__", "") for n in pt2e_graph.graph.nodes if n.op == "call_function"]
    wrong = sum("quantize_per_tensor" in name for name in names)  # also matches dequantize_per_tensor
    assert wrong != qh.count_quant_ops(pt2e_graph)["quantize_per_tensor"]
    assert not qh.check_op_count(wrong, pt2e_graph)
    assert "startswith, not 'in'" in capsys.readouterr().out


def test_ex2_rejects_only_dequantize(pt2e_graph, capsys):
    counts = qh.count_quant_ops(pt2e_graph)
    wrong = counts["dequantize_per_tensor"] + counts["dequantize_per_channel"]  # every dequantize node
    assert wrong != counts["quantize_per_tensor"]
    assert not qh.check_op_count(wrong, pt2e_graph)
    assert "dequantize nodes" in capsys.readouterr().out


def test_ex2_rejects_every_call(pt2e_graph, capsys):
    wrong = len([n for n in pt2e_graph.graph.nodes if n.op == "call_function"])
    assert not qh.check_op_count(wrong, pt2e_graph)
    assert "every call_function node" in capsys.readouterr().out


# --------------------------------------------------------------------------- exercise 3: use the map

RIGHT = {"a": "prepare_pt2e", "b": "quantize_", "c": "keep float", "d": "XNNPACKQuantizer"}


def test_ex3_accepts_right_answer(capsys):
    assert qh.check_migration(dict(RIGHT))
    assert "❌" not in capsys.readouterr().out


def test_ex3_rejects_following_the_warning_for_a_cnn(capsys):
    assert not qh.check_migration({**RIGHT, "a": "quantize_"})
    assert "nn.Linear weights only" in capsys.readouterr().out


def test_ex3_rejects_quantize_for_lstm(capsys):
    assert not qh.check_migration({**RIGHT, "c": "quantize_"})
    assert "leaves nn.LSTM float" in capsys.readouterr().out


def test_ex3_rejects_x86_path_for_phone(capsys):
    assert not qh.check_migration({**RIGHT, "d": "prepare_pt2e"})
    assert "targets a phone" in capsys.readouterr().out


def test_ex3_rejects_static_graph_for_dynamic_linear(capsys):
    assert not qh.check_migration({**RIGHT, "b": "prepare_pt2e"})
    assert "dynamic quantization of Linear layers" in capsys.readouterr().out


def test_ex3_rejects_unknown_and_blank(capsys):
    assert not qh.check_migration({**RIGHT, "a": "torch.compile"})
    assert "is not one of" in capsys.readouterr().out
    assert not qh.check_migration(...)
    assert "not filled in yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="dict"):
        qh.check_migration(["prepare_pt2e"])


# --------------------------------------------------------------------------- exercise 4: predict first

@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256)).eval()
    return block, torch.randn(32, 256)


def test_ex4_measurement_is_what_the_notebook_says(mlp):
    block, tokens = mlp
    assert 44 < qh.weight_only_sqnr(block, tokens, bits=8) < 46.5  # equal to torchao's Int8WeightOnlyConfig on this block
    assert 18 < qh.weight_only_sqnr(block, tokens, bits=4) < 24


def test_ex4_accepts_right_answer(mlp, capsys):
    assert qh.check_bits_prediction(18.0, 24.0, *mlp, bits=4)
    assert "measured: 8-bit weights" in capsys.readouterr().out


def test_ex4_rejects_no_change(mlp, capsys):
    assert not qh.check_bits_prediction(40, 46, *mlp, bits=4)
    out = capsys.readouterr().out
    assert "too optimistic" in out and "coarser" in out


def test_ex4_rejects_three_db_per_bit(mlp, capsys):
    assert not qh.check_bits_prediction(30, 36, *mlp, bits=4)  # 3 dB per bit: the power rule applied as if to amplitude
    out = capsys.readouterr().out
    assert "too optimistic" in out


def test_ex4_rejects_too_pessimistic(mlp, capsys):
    assert not qh.check_bits_prediction(2, 8, *mlp, bits=4)
    assert "too pessimistic" in capsys.readouterr().out


def test_ex4_rejects_range_too_wide(mlp, capsys):
    assert not qh.check_bits_prediction(0, 45, *mlp, bits=4)
    assert "predicts little" in capsys.readouterr().out


def test_ex4_rejects_swapped_bounds(mlp, capsys):
    assert not qh.check_bits_prediction(24, 18, *mlp, bits=4)
    assert "swap" in capsys.readouterr().out
    assert not qh.check_bits_prediction(..., 24, *mlp, bits=4)
    assert "not filled in yet" in capsys.readouterr().out


def test_weight_only_sqnr_bad_input(mlp):
    block, tokens = mlp
    with pytest.raises(ValueError, match="bits"):
        qh.weight_only_sqnr(block, tokens, bits=1)
    with pytest.raises(ValueError, match="nn.Linear"):
        qh.weight_only_sqnr(nn.Sequential(nn.ReLU()), tokens, bits=8)
