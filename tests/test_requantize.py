"""Tests for the fixed-point form of qhelpers.int8_arithmetic.requantize (int32 multiplier M0 and a rounding right shift)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qhelpers as qh
from qhelpers.int8_arithmetic import requantize


def _out_qp(scale: float, zero_point: int) -> qh.QParams:
    return qh.QParams(torch.tensor([scale]), torch.tensor([zero_point]), 0, 255, 8, False, "affine")


@settings(max_examples=60, deadline=None)
@given(
    st.floats(min_value=1e-7, max_value=1e-2),
    st.floats(min_value=1e-3, max_value=1.0),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=2**16),
)
def test_fixed_point_within_one_code_of_float(acc_scale, out_scale, zero_point, seed):
    g = torch.Generator().manual_seed(seed)
    acc = torch.randint(-(2**20), 2**20, (64, 8), generator=g, dtype=torch.int32)
    qp = _out_qp(out_scale, zero_point)
    a = requantize(acc, torch.tensor([acc_scale]), qp)
    b = requantize(acc, torch.tensor([acc_scale]), qp, fixed_point=True)
    assert a.dtype == b.dtype == torch.uint8
    assert (a.int() - b.int()).abs().max().item() <= 1


def test_fixed_point_per_channel_and_4d():
    g = torch.Generator().manual_seed(1)
    acc = torch.randint(-(2**18), 2**18, (4, 6, 5, 5), generator=g, dtype=torch.int32)
    acc_scale = torch.rand(6, generator=g) * 1e-4 + 1e-6
    qp = _out_qp(0.05, 7)
    a, b = requantize(acc, acc_scale, qp), requantize(acc, acc_scale, qp, fixed_point=True)
    assert a.shape == b.shape == acc.shape
    assert (a.int() - b.int()).abs().max().item() <= 1
    assert (a == b).float().mean().item() > 0.99  # they differ only at exact halves and float32 rounding


def test_fixed_point_multiplier_form():
    m = torch.tensor([0.75, 1e-3, 3.0, 2.0**-40])
    m0, n = qh.fixed_point_multiplier(m)
    assert m0.dtype == n.dtype == torch.int64
    assert bool(((m0 >= 2**30) & (m0 < 2**31)).all()) or bool((n == 62).any())
    assert torch.allclose(m0.double() * torch.pow(2.0, -n.double()), m.double(), rtol=2**-30)
    m0, n = qh.fixed_point_multiplier(0.5)
    assert int(m0) == 2**30 and int(n) == 31


def test_fixed_point_rounds_half_away_from_zero():
    qp = qh.QParams(torch.tensor([1.0]), torch.tensor([0]), -128, 127, 8, True, "symmetric")
    acc = torch.tensor([[3, -3, 5, -5]], dtype=torch.int32)
    out = requantize(acc, torch.tensor([0.5]), qp, fixed_point=True)  # 1.5, -1.5, 2.5, -2.5
    assert out.tolist() == [[2, -2, 3, -3]]
    assert requantize(acc, torch.tensor([0.5]), qp).tolist() == [[2, -2, 2, -2]]  # float form: half to even


@pytest.mark.skipif("qnnpack" not in torch.backends.quantized.supported_engines, reason="this torch has no qnnpack engine")
def test_fixed_point_matches_qnnpack_linear():
    """The qnnpack engine's quantized Linear against int32 sums requantized in fixed point: within 1 code."""
    import warnings

    from torch.ao.nn.quantized import Linear as QLinear

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 48, generator=g) * 4 - 1
    w = torch.randn(16, 48, generator=g) * 0.2
    b = torch.randn(16, generator=g) * 0.1
    x_qp = qh.qparams_from_tensor(x, 8, False, "affine")
    w_qp = qh.qparams_from_tensor(w, 8, True, "symmetric")
    out_qp = _out_qp(0.04, 100)
    with warnings.catch_warnings():
        qh.silence_known_deprecations()
        with qh.engine("qnnpack"):
            layer = QLinear(48, 16, dtype=torch.qint8)
            qw = torch.quantize_per_tensor(w, float(w_qp.scale), int(w_qp.zero_point), torch.qint8)
            layer.set_weight_bias(qw, b)
            layer.scale, layer.zero_point = float(out_qp.scale), int(out_qp.zero_point)
            qx = torch.quantize_per_tensor(x, float(x_qp.scale), int(x_qp.zero_point), torch.quint8)
            theirs = layer(qx).int_repr()
    x_codes, w_codes = qh.quantize(x, x_qp), qh.quantize(w, w_qp)
    acc_scale = x_qp.scale * w_qp.scale
    acc = (x_codes.to(torch.int32) - x_qp.zero_point.to(torch.int32)) @ (w_codes.to(torch.int32) - w_qp.zero_point.to(torch.int32)).T
    acc = acc + torch.round(b / acc_scale).to(torch.int32)
    ours = requantize(acc, acc_scale, out_qp, fixed_point=True)
    assert (ours.int() - theirs.int()).abs().max().item() <= 1
    assert (ours == theirs).float().mean().item() > 0.95


def test_bad_inputs():
    qp = _out_qp(0.1, 0)
    acc = torch.zeros(2, 2, dtype=torch.int32)
    with pytest.raises(TypeError, match="fixed_point"):
        requantize(acc, torch.tensor([0.01]), qp, fixed_point="yes")
    with pytest.raises(TypeError, match="acc must be an integer"):
        requantize(acc.float(), torch.tensor([0.01]), qp, fixed_point=True)
    with pytest.raises(ValueError, match="multiplier"):
        requantize(acc, torch.tensor([-0.01]), qp, fixed_point=True)
    with pytest.raises(TypeError, match="multiplier"):
        qh.fixed_point_multiplier("0.5")
