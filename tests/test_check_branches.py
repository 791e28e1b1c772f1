"""Wrong-answer branches of the self-checks that the per-notebook exercise tests do not reach, each with its hint.

The coverage gate (``make test-checks``, tests/checks_coverage.py) runs these with tests/test_exercises_NN.py
and fails on any branch of a self-check that no test runs. The cases live here, not in the per-notebook
files, so that the gate's tests stay apart from the notebooks' own; each asserts the hint with
``verdicts.rejected``.
"""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import qhelpers as qh
from qhelpers.latency import Latency
from verdicts import rejected


def _quiet():
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")


_quiet()


# ----------------------------------------------------------------------------- qhelpers/tensor_checks.py (notebook 01)


def test_as_number_and_as_tensor_name_the_argument_of_the_wrong_kind():
    from qhelpers.checks import as_number
    from qhelpers.tensor_checks import _as_tensor

    with pytest.raises(TypeError, match="size ratio must be a single number, got str"):
        as_number("three", "size ratio")
    with pytest.raises(TypeError, match="codes must be a number or tensor, got object"):
        _as_tensor(object(), "codes")


@pytest.fixture
def x01():
    """Like notebook 01's fc_out: negative minimum, positive maximum (unsigned zero point 135)."""
    return torch.randn(256, 64, generator=torch.Generator().manual_seed(0)) * 2 + 0.3


def _right_scale(x):
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    return (hi - lo) / 255, 0 - round(lo / ((hi - lo) / 255))


def _qparams_fn(scale, zero_point):
    """A learner's qparams function that returns ``scale(t)`` and ``zero_point(t)``."""
    return lambda t: (scale(t), zero_point(t))


def test_qparams_function_rejects_a_scale_of_several_numbers(x01, capsys):
    fn = _qparams_fn(lambda t: [0.1, 0.2], lambda t: 3)
    rejected(capsys, qh.check_qparams_function(fn, x01), "on the tensor you were given", "scale must be one number, got a tensor of shape (2,)")


def test_qparams_function_rejects_a_zero_point_of_several_numbers(x01, capsys):
    fn = _qparams_fn(lambda t: _right_scale(t)[0], lambda t: torch.tensor([_right_scale(t)[1]] * 2))
    rejected(capsys, qh.check_qparams_function(fn, x01), "one integer", "shape (2,)")


def test_qparams_function_whose_scale_is_still_blank_is_not_filled_in(x01, capsys):
    fn = _qparams_fn(lambda t: ..., lambda t: 3)  # the function's body still returns the blank for the scale
    rejected(capsys, qh.check_qparams_function(fn, x01), "not filled in yet")


def test_qparams_function_rejects_a_zero_point_outside_the_codes(x01, capsys):
    fn = _qparams_fn(lambda t: _right_scale(t)[0], lambda t: 300)
    rejected(capsys, qh.check_qparams_function(fn, x01), "300 is not a code in 0..255")


def test_qparams_function_rejects_another_code_as_zero_point(x01, capsys):
    zp = _right_scale(x01)[1]
    fn = _qparams_fn(lambda t: _right_scale(t)[0], lambda t: _right_scale(t)[1] + 17)
    rejected(capsys, qh.check_qparams_function(fn, x01), f"on the tensor you were given: got {zp + 17}", "the code that stands for 0.0")


def test_codes_accept_a_different_rounding_of_an_exact_tie(capsys):
    # 0.25 / 0.5 = 0.5 exactly: torch rounds half to even (0), a learner's round-half-up gives 1; both are right here.
    x = torch.tensor([0.25, 1.0, -0.5])
    half_up = lambda t: torch.clamp(torch.floor(t / 0.5 + 0.5) + 1, 0, 255).to(torch.uint8)  # noqa: E731
    assert torch.equal(half_up(x), torch.tensor([2, 3, 0], dtype=torch.uint8))
    assert qh.check_codes(half_up, x, 0.5, 1)  # torch: [1, 3, 0]
    assert "✅ codes: correct" in capsys.readouterr().out


def test_codes_name_how_many_differ_when_no_known_mistake_explains_them(x01, capsys):
    scale, zp = _right_scale(x01)
    wrong = lambda t: torch.clamp(torch.clamp(torch.round(t / scale) + zp, 0, 255) + 3, 0, 255).to(torch.uint8)  # noqa: E731
    rejected(capsys, qh.check_codes(wrong, x01, scale, zp), "codes of the tensor differ", "divide by the scale, round, add the zero point, clamp to 0..255")


def test_per_channel_scales_reject_m_over_255(capsys):
    """CK7: the half-width range spread over 255 steps (a symmetric range is 2m wide)."""
    w = torch.randn(10, 64, generator=torch.Generator().manual_seed(1)) * 0.2
    rejected(capsys, qh.check_per_channel_scales(w.abs().amax(dim=1) / 255, w), "2m wide")
    rejected(capsys, qh.check_per_channel_scales(w.abs().amax(dim=1) / 256, w), "2m wide")


def test_recommendation_built_by_hand_is_rejected(capsys):
    answers = dict(qh.recommend(True, False).answers)  # the camera story's answers
    made_up = qh.Recommendation(method="made up", engine="x86", notebook="", reason="", answers=answers)
    rejected(capsys, qh.check_recommendation("camera", made_up), "call qh.recommend", "do not build the result yourself")


@pytest.mark.parametrize(
    "prediction, words",
    [((5.0, 10.0), ("outside your range", "more noise than the grid gives")),
     ((25.0, 30.0), ("outside your range", "less noise than the grid gives"))],
    ids=["too-pessimistic", "too-optimistic"],
)
def test_sqnr_prediction_on_either_side_of_the_measurement(capsys, prediction, words):
    ok = qh.check_sqnr_prediction(prediction, 14.4, reference_db=39.0, bits_from=8, bits_to=4)
    rejected(capsys, ok, *words)


# ----------------------------------------------------------------------------- qhelpers/int8_prediction_checks.py (notebook 00)


def test_accuracy_prediction_above_100_percent(capsys):
    """CK5: a range reaching above 100 % that contains the measurement is still not an accuracy."""
    rejected(capsys, qh.check_int8_accuracy_prediction((98.9, 100.5), 98.8, 98.8), "from 0 to 100", "(98.9, 100.5)")


# ----------------------------------------------------------------------------- qhelpers/beyond_eager_checks.py (notebook 05)


def test_requant_multiplier_another_wrong_number(capsys):
    rejected(capsys, qh.check_requant_multiplier(0.5, 0.0039, 0.0021, 0.047), "got 0.5", "must land on out_scale")


def test_migration_with_a_situation_left_out(capsys):
    right = {"b": "quantize_", "c": "keep float", "d": "XNNPACKQuantizer"}
    out = rejected(capsys, qh.check_migration(right), "situation a", "not filled in yet")
    assert out.count("✅") == 3


def test_bits_prediction_that_more_bits_lower_the_sqnr(capsys):
    torch.manual_seed(0)
    block, tokens = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16)).eval(), torch.randn(8, 16)
    # Asked the other way round (8 bits, from a 4-bit reference), a range below the measurement:
    rejected(capsys, qh.check_bits_prediction(0.0, 5.0, block, tokens, bits=8, reference_bits=4), "fewer bits cannot raise the SQNR")


# ----------------------------------------------------------------- qhelpers/pretrained_checks.py and speedup_checks.py (notebook 02)

FAKE_WEIGHTS = SimpleNamespace(meta={
    "backend": "qnnpack",
    "_file_size": 21.554,
    "_metrics": {"ImageNet-1K": {"acc@1": 71.658, "acc@5": 90.150}},
    "unquantized": SimpleNamespace(meta={"_file_size": 21.114, "_metrics": {"ImageNet-1K": {"acc@1": 71.878}}}),
})
DROP = 71.878 - 71.658
RATIO = 21.114 / 21.554


def test_weights_meta_a_file_ratio_of_no_known_mistake(capsys):
    rejected(capsys, qh.check_weights_meta(lambda w: (42, 71.658, DROP), FAKE_WEIGHTS), "not float meta['_file_size'] / INT8 meta['_file_size']")


def test_weights_meta_another_top1(capsys):
    out = rejected(capsys, qh.check_weights_meta(lambda w: (RATIO, 12.3, DROP), FAKE_WEIGHTS), "not the published INT8 top-1")
    assert "✅ file_ratio: correct" in out and "✅ drop: correct" in out


def test_weights_meta_another_drop(capsys):
    rejected(capsys, qh.check_weights_meta(lambda w: (RATIO, 71.658, 5.0), FAKE_WEIGHTS), "not float top-1 minus INT8 top-1")


def test_weights_meta_numbers_of_the_wrong_kind_and_blank(capsys):
    with pytest.raises(TypeError, match="int8_top1 must be a number, got True"):
        qh.check_weights_meta(lambda w: (RATIO, True, DROP), FAKE_WEIGHTS)
    with pytest.raises(TypeError, match="drop must be a number, got str"):
        qh.check_weights_meta(lambda w: (RATIO, 71.658, "0.2 points"), FAKE_WEIGHTS)
    capsys.readouterr()
    rejected(capsys, qh.check_weights_meta(lambda w: (RATIO, ..., DROP), FAKE_WEIGHTS), "int8_top1", "not filled in yet")


def test_int8_size_prediction_another_size(capsys):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    rejected(capsys, qh.check_int8_size_prediction(lambda m: 123.0, model), "not one byte per Conv2d/Linear weight")
    rejected(capsys, qh.check_int8_size_prediction(123.0, model), "function of a float model", "not one byte per Conv2d/Linear weight")


def _latency(median_ms, min_ms, quantized):
    return Latency(median_ms=median_ms, iqr_ms=0.5, runs=10, threads=1, min_ms=min_ms, quantized=quantized, input_shape=(1, 3, 224, 224), warmup=3)


FLOAT_LAT, INT8_LAT = _latency(10.0, 8.0, False), _latency(4.0, 2.0, True)  # medians 2.5x, fastest runs 4x


def test_speedup_of_the_fastest_runs(capsys):
    """CK3: min_ms / min_ms is not the ratio of the medians."""
    assert qh.check_speedup(FLOAT_LAT, INT8_LAT, 2.5)
    capsys.readouterr()
    rejected(capsys, qh.check_speedup(FLOAT_LAT, INT8_LAT, 4.0), "fastest runs", ".median_ms")


def test_speedup_another_number_and_a_blank_measurement(capsys):
    rejected(capsys, qh.check_speedup(FLOAT_LAT, INT8_LAT, 3.3), "not the ratio of the two medians")
    rejected(capsys, qh.check_speedup(..., INT8_LAT, 2.5), "float_latency", "not filled in yet")


def test_scale_bytes_prediction_needs_two_models_in_order():
    float_model = nn.Sequential(nn.Linear(8, 8))
    int8_model = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 8)), dtype=torch.qint8)
    with pytest.raises(TypeError, match="must be torch.nn.Module"):
        qh.check_scale_bytes_prediction(100, "float.pt", int8_model)
    with pytest.raises(ValueError, match="float model first and the INT8 model second"):
        qh.check_scale_bytes_prediction(100, int8_model, float_model)


# ----------------------------------------------------------------------------- qhelpers/ptq_checks.py (notebook 03)

def _exercise_net():
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3), bn=nn.BatchNorm2d(4), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten(), fc=nn.Linear(4, 2))).eval()


def test_fusable_groups_of_the_wrong_kind_and_not_a_chain(capsys):
    net = _exercise_net()
    assert qh.check_fusable_groups([["conv", "bn", "relu"]], net)
    with pytest.raises(TypeError, match="list of lists of module names"):
        qh.check_fusable_groups(["conv", "bn", "relu"], net)
    capsys.readouterr()
    rejected(capsys, qh.check_fusable_groups([["conv", "fc"]], net), "['conv', 'fc'] is not a chain fuse_modules can fuse")


def test_qconfig_unknown_observer_and_blank(capsys):
    with pytest.raises(ValueError, match="activation must be one of"):
        qh.check_qconfig(..., "no such observer", per_channel=True)
    rejected(capsys, qh.check_qconfig(..., "histogram", per_channel=True), "qconfig", "not filled in yet")


class _QuantizedWithoutWeight(nn.Module):
    """Stands for a quantized module whose weight() cannot be read (as the dynamic ones without a packed weight)."""

    def weight(self):
        raise RuntimeError("no packed weight")


_QuantizedWithoutWeight.__module__ = "torch.ao.nn.quantized.modules.stand_in"


def test_quantized_weights_skips_unreadable_and_float_weights():
    from qhelpers.ptq_checks import _quantized_weights

    fp16 = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), dtype=torch.float16)  # weight() is float
    assert _quantized_weights(fp16) == []
    assert _quantized_weights(nn.Sequential(_QuantizedWithoutWeight())) == []
    int8 = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), dtype=torch.qint8)
    assert len(_quantized_weights(int8)) == 1


def test_engine_ptq_blank_not_a_model_and_not_made_by_the_helper(capsys):
    float_model, loader = nn.Sequential(nn.Linear(4, 4)), [torch.randn(8, 4)]
    rejected(capsys, qh.check_engine_ptq(..., 30.0, float_model, loader, loader), "model", "not filled in yet")
    rejected(capsys, qh.check_engine_ptq("model.pt", 30.0, float_model, loader, loader), "expected the quantized model", "got str")
    by_hand = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), dtype=torch.qint8)
    rejected(capsys, qh.check_engine_ptq(by_hand, 30.0, float_model, loader, loader), "qh.post_training_quantize(..., engine=...)")


def test_engine_ptq_sqnr_that_is_not_a_number(capsys):
    torch.manual_seed(0)
    float_model = nn.Sequential(torch.ao.quantization.QuantStub(), nn.Linear(4, 4), torch.ao.quantization.DeQuantStub()).eval()
    loader = [torch.randn(16, 4)]
    from torch.ao.quantization import get_default_qconfig

    model = qh.post_training_quantize(float_model, loader, engine="qnnpack", qconfig=get_default_qconfig("qnnpack"))
    out = rejected(capsys, qh.check_engine_ptq(model, "40 dB", float_model, loader, loader), "expected a number in dB, got str")
    assert "✅ model: correct" in out


# ----------------------------------------------------------------------------- qhelpers/qat_checks.py (notebook 04)

X_EX = torch.tensor([-2.0, -1.1, -0.3, 0.26, 1.9, 2.8, 5.0])
SCALE, ZP = 0.25, 4


def _right_ste():
    codes = torch.round(X_EX / SCALE) + ZP
    return (torch.clamp(codes, 0, 15) - ZP) * SCALE, ((codes >= 0) & (codes <= 15)).float()


def test_ste_other_values_and_other_gradient(capsys):
    y, g = _right_ste()
    rejected(capsys, qh.check_ste(y + 0.1, g, X_EX, SCALE, ZP, 0, 15), "round(x / scale) + zero_point, clamp to [quant_min, quant_max]")
    out = rejected(capsys, qh.check_ste(y, 1 - g, X_EX, SCALE, ZP, 0, 15), "1 where the code passes the clamp unchanged")
    assert "✅ fake-quantized values: correct" in out


def test_ste_answer_of_the_wrong_kind():
    y, g = _right_ste()
    with pytest.raises(TypeError, match="y must be a tensor or a list of numbers, got str"):
        qh.check_ste("y", g, X_EX, SCALE, ZP, 0, 15)


def test_low_bit_qconfig_bad_bits_factory_that_fails_and_not_a_qconfig(capsys):
    from torch.ao.quantization import FakeQuantize, QConfig

    right = qh.low_bit_qconfig(3)
    with pytest.raises(ValueError, match="bits must be an int from 2 to 8, got 1"):
        qh.check_low_bit_qconfig(right, 1)
    broken = QConfig(activation=right.activation, weight=FakeQuantize.with_args(no_such_argument=1))
    rejected(capsys, qh.check_low_bit_qconfig(broken, 3), "the weight factory fails when called", "TypeError")
    rejected(capsys, qh.check_low_bit_qconfig("3-bit", 3), "expected a torch.ao.quantization.QConfig", "got str")


def test_frozen_blank(capsys):
    rejected(capsys, qh.check_frozen(...), "model", "not filled in yet")


# ----------------------------------------------------------------------------- qhelpers/recovery_checks.py (notebook 07)


def _cle(w1, w2):
    return torch.sqrt(w1.flatten(1).abs().amax(1) / w2.transpose(0, 1).flatten(1).abs().amax(1))


# ----------------------------------------------------------------------------- qhelpers/runtime_checks.py (notebook 08)


def test_bytes_per_weight_needs_the_float_model():
    with pytest.raises(TypeError, match="model must be the float nn.Module, got str"):
        qh.check_bytes_per_weight(1.1, 300, "model.pt")
