"""Notebook 04's exercises: the right answer passes its self-check, typical wrong answers fail with a hint.

Each case calls the check function with values, the way the notebook's check cell does.
"""


import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic.qat import freeze_bn_stats
from torch.ao.quantization import (
    DeQuantStub,
    FakeQuantize,
    FusedMovingAvgObsFakeQuantize,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
    QuantStub,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
)

import qhelpers as qh
from verdicts import rejected

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


# --------------------------------------------------------------------------- Exercise 1: fake quantization and the STE

X_EX = torch.tensor([-2.0, -1.1, -0.3, 0.26, 1.9, 2.8, 5.0])  # -1.1 and 2.8 lie within half a step outside [-1, 2.75]
SCALE, ZP = 0.25, 4


def right_answer():
    codes = torch.round(X_EX / SCALE) + ZP
    y = (torch.clamp(codes, 0, 15) - ZP) * SCALE
    return y, ((codes >= 0) & (codes <= 15)).float()


def check_ex1(y, grad):
    return qh.check_ste(y, grad, X_EX, SCALE, ZP, 0, 15)


def test_ex1_accepts_right_answer(capsys):
    assert check_ex1(*right_answer())
    assert capsys.readouterr().out.count("✅") == 2


def test_ex1_rejects_range_based_gradient(capsys):
    y, _ = right_answer()
    low, high = (0 - ZP) * SCALE, (15 - ZP) * SCALE
    out = rejected(capsys, check_ex1(y, ((X_EX >= low) & (X_EX <= high)).float()), "rounded code", "half a step")
    assert "✅ fake-quantized values" in out


def test_ex1_rejects_hand_written_ste(capsys):
    y, _ = right_answer()
    rejected(capsys, check_ex1(y, torch.ones_like(X_EX)), "hand-written ste")


def test_ex1_rejects_missing_clamp(capsys):
    _, grad = right_answer()
    rejected(capsys, check_ex1((torch.round(X_EX / SCALE) + ZP - ZP) * SCALE, grad), "must clamp")


def test_ex1_rejects_missing_zero_point(capsys):
    _, grad = right_answer()
    rejected(capsys, check_ex1(torch.clamp(torch.round(X_EX / SCALE), 0, 15) * SCALE, grad), "zero point is missing")


def test_ex1_rejects_codes_instead_of_values(capsys):
    _, grad = right_answer()
    rejected(capsys, check_ex1(torch.clamp(torch.round(X_EX / SCALE) + ZP, 0, 15), grad), "integer codes")


def test_ex1_rejects_autograd_through_round(capsys):
    y, _ = right_answer()
    x = X_EX.clone().requires_grad_(True)
    ((torch.clamp(torch.round(x / SCALE) + ZP, 0, 15) - ZP) * SCALE).sum().backward()  # round: zero gradient
    rejected(capsys, check_ex1(y, x.grad), "zero gradient", "that is why the ste exists")


def test_ex1_rejects_strict_comparisons_on_clamped_codes(capsys):
    y, _ = right_answer()
    codes = torch.clamp(torch.round(X_EX / SCALE) + ZP, 0, 15)  # on x_ex this mask equals the one decided on x
    rejected(capsys, check_ex1(y, ((codes > 0) & (codes < 15)).float()), "before the clamp", "<= and >=")
    x = torch.tensor([-1.0, 0.0, 2.75, 1.0])  # codes exactly on the edges: only the strict mistake differs here
    codes = torch.clamp(torch.round(x / SCALE) + ZP, 0, 15)
    ok = qh.check_ste((codes - ZP) * SCALE, ((codes > 0) & (codes < 15)).float(), x, SCALE, ZP, 0, 15)
    rejected(capsys, ok, "before clamping", "strict")


def test_ex1_rejects_torchs_fake_quant_op_with_autograd(capsys):
    x = X_EX.clone().requires_grad_(True)  # the shortcut the exercise forbids: torch's op, gradient by backward()
    y = torch.fake_quantize_per_tensor_affine(x, SCALE, ZP, 0, 15)
    y.sum().backward()
    out = rejected(capsys, qh.check_ste(y, x.grad, x, SCALE, ZP, 0, 15), "FakeQuantize", "torch.round", "x has a .grad", "backward()")
    assert "✅" not in out
    x = X_EX.clone().requires_grad_(True)  # the module form of the same op leaves its own autograd history
    fq = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=15, dtype=torch.quint8)
    fq.scale.fill_(SCALE), fq.zero_point.fill_(ZP), fq.disable_observer()
    y = fq(x)
    rejected(capsys, qh.check_ste(y, right_answer()[1], x, SCALE, ZP, 0, 15), "FakeQuantize", "torch's fake-quant op")


def test_ex1_rejects_a_gradient_that_autograd_computed(capsys):
    y_hand, mask = right_answer()  # a straight-through trick on x_ex itself: backward() hands out the mask
    x = X_EX.clone().requires_grad_(True)
    y = x * mask + (y_hand - x * mask).detach()
    y.sum().backward()
    assert torch.equal(x.grad, mask) and torch.equal(y.detach(), y_hand)
    out = rejected(capsys, qh.check_ste(y, x.grad, x, SCALE, ZP, 0, 15), "x has a .grad", "comparisons")
    assert "✅ fake-quantized values" in out


def test_ex1_blank_is_not_filled_in(capsys):
    assert not check_ex1(..., ...)
    assert "not filled in yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- Exercise 2: a 3-bit qconfig

RIGHT_ACTIVATION = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=7, dtype=torch.quint8)
RIGHT_WEIGHT = FakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver, quant_min=-3, quant_max=3, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0
)


def test_ex2_accepts_right_answer(capsys):
    assert qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=RIGHT_WEIGHT), 3)
    helper = qh.low_bit_qconfig(3)  # the helper builds the modules the exercise describes
    for mine, its in ((RIGHT_ACTIVATION(), helper.activation()), (RIGHT_WEIGHT(), helper.weight())):
        assert (type(mine), type(mine.activation_post_process), mine.quant_min, mine.quant_max, mine.dtype, mine.qscheme, mine.ch_axis) == (
            type(its), type(its.activation_post_process), its.quant_min, its.quant_max, its.dtype, its.qscheme, its.ch_axis)


def test_ex2_rejects_the_helpers_qconfig(capsys):
    out = rejected(capsys, qh.check_low_bit_qconfig(qh.low_bit_qconfig(3), 3), "qh.low_bit_qconfig", "yourself", "FakeQuantize.with_args")
    assert out.count("✅") == 3  # its modules are right: the hint says where they came from
    helper = qh.low_bit_qconfig(3)  # the helper's weight factory next to a hand-built activation one
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=helper.weight), 3), "qh.low_bit_qconfig")
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=helper.activation, weight=RIGHT_WEIGHT), 3), "qh.low_bit_qconfig")


def test_ex2_rejects_plain_observers(capsys):
    qc = QConfig(
        activation=MovingAverageMinMaxObserver.with_args(quant_min=0, quant_max=7, dtype=torch.quint8),
        weight=MinMaxObserver.with_args(quant_min=-3, quant_max=3, dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
    )
    rejected(capsys, qh.check_low_bit_qconfig(qc, 3), "observer", "fakequantize")


def test_ex2_rejects_per_tensor_affine_weights(capsys):
    weight = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-3, quant_max=3, dtype=torch.qint8)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=weight), 3), "per_tensor_affine", "per-channel")


def test_ex2_rejects_per_channel_affine_weights(capsys):
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-3, quant_max=3, dtype=torch.qint8, ch_axis=0)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=weight), 3), "per_channel_affine", "explicitly")


def test_ex2_rejects_unsigned_weights(capsys):
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=0, quant_max=7, dtype=torch.quint8,
                                    qscheme=torch.per_channel_symmetric, ch_axis=0)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=weight), 3), "weights are signed")


def test_ex2_rejects_signed_activations_and_4_bit_ranges(capsys):
    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-4, quant_max=3, dtype=torch.qint8)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=act, weight=RIGHT_WEIGHT), 3), "unsigned")
    rejected(capsys, qh.check_low_bit_qconfig(qh.low_bit_qconfig(4), 3), "count the levels")


def test_ex2_rejects_weights_without_negative_codes_and_symmetric_activations(capsys):
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=0, quant_max=7, dtype=torch.qint8,
                                    qscheme=torch.per_channel_symmetric, ch_axis=0)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=weight), 3), "[0, 7] has no negative codes")
    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=7, dtype=torch.quint8,
                                 qscheme=torch.per_tensor_symmetric)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=act, weight=RIGHT_WEIGHT), 3), "per_tensor_symmetric", "per_tensor_affine")


def test_ex2_rejects_twos_complement_weights(capsys):
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-4, quant_max=3, dtype=torch.qint8,
                                    qscheme=torch.per_channel_symmetric, ch_axis=0)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=weight), 3), "two's-complement", "-3..3")


def test_ex2_rejects_the_wrong_channel_axis(capsys):
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-3, quant_max=3, dtype=torch.qint8,
                                    qscheme=torch.per_channel_symmetric, ch_axis=1)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=weight), 3), "ch_axis=1", "output channel")


def test_ex2_rejects_plain_min_max_observers_inside_fake_quantize(capsys):
    from torch.ao.quantization import PerChannelMinMaxObserver

    act = FakeQuantize.with_args(observer=MinMaxObserver, quant_min=0, quant_max=7, dtype=torch.quint8)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=act, weight=RIGHT_WEIGHT), 3), "MinMaxObserver", "MovingAverageMinMaxObserver")
    weight = FakeQuantize.with_args(observer=PerChannelMinMaxObserver, quant_min=-3, quant_max=3, dtype=torch.qint8,
                                    qscheme=torch.per_channel_symmetric, ch_axis=0)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=RIGHT_ACTIVATION, weight=weight), 3), "PerChannelMinMaxObserver")


def test_ex2_rejects_the_fused_fake_quant(capsys):
    act = FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=7, dtype=torch.quint8)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=act, weight=RIGHT_WEIGHT), 3), "FusedMovingAvgObsFakeQuantize", "plain FakeQuantize")


def test_ex2_rejects_signed_dtype_for_unsigned_activation_codes(capsys):
    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=7, dtype=torch.qint8)
    rejected(capsys, qh.check_low_bit_qconfig(QConfig(activation=act, weight=RIGHT_WEIGHT), 3), "quint8")


def test_ex2_accuracy_check_compares_with_the_notebooks_measurement(capsys):
    assert qh.check_ptq_accuracy("3-bit PTQ", 25.2, 25.2)
    assert qh.check_ptq_accuracy("3-bit PTQ", 100.0 * float(torch.tensor(0.252)), 25.2)  # a float32 mean of the same predictions
    rejected(capsys, qh.check_ptq_accuracy("3-bit PTQ", 25.3, 25.2), "25.3", "differs")  # one image of 1,000
    rejected(capsys, qh.check_ptq_accuracy("3-bit PTQ", 54.6, 25.2), "54.6", "differs")


def test_ex2_blank_is_not_filled_in(capsys):
    assert not qh.check_low_bit_qconfig(..., 3)
    assert "not filled in yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- Exercise 3: freeze for the last epochs


def prepared_net():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = QuantStub(), DeQuantStub()
            self.conv, self.bn, self.relu = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()

        def forward(self, x):
            return self.dequant(self.relu(self.bn(self.conv(self.quant(x)))))

    return qh.prepare_qat_model(Net().train(), qh.low_bit_qconfig(4), fuse_groups=[["conv", "bn", "relu"]])


def observed_net():
    """Prepared, ranges from data, observers running again: a model in the middle of QAT."""
    model = prepared_net()
    torch.manual_seed(0)
    qh.calibrate_fake_quant(model, [torch.randn(8, 1, 6, 6)])
    return model.train().apply(enable_observer)


def broken_net():
    """As the exercise cell builds it: calibrated, then put in eval mode and with fake quantization switched off."""
    model = observed_net()
    model.eval()
    return model.apply(disable_fake_quant)


def test_ex3_accepts_right_answer(capsys):
    assert qh.check_frozen(broken_net().apply(enable_fake_quant).apply(disable_observer).apply(freeze_bn_stats))
    assert qh.check_frozen(observed_net().apply(disable_observer).apply(freeze_bn_stats))  # in any order
    model = broken_net().apply(enable_fake_quant).apply(disable_observer).apply(freeze_bn_stats)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, 6, 6))  # the ready model runs


def test_ex3_rejects_freezing_observers_that_never_saw_data(capsys):
    fresh = prepared_net().apply(disable_observer).apply(freeze_bn_stats)
    rejected(capsys, qh.check_frozen(fresh), "never saw data", "scale 1.0", "calibrate_fake_quant")


def test_ex3_rejects_the_broken_model_as_it_is(capsys):
    rejected(capsys, qh.check_frozen(broken_net()), "disable_fake_quant is not a freeze", "enable_fake_quant")


def test_ex3_rejects_freezing_without_switching_fake_quant_back_on(capsys):
    rejected(capsys, qh.check_frozen(broken_net().apply(disable_observer).apply(freeze_bn_stats)), "enable_fake_quant")


def test_ex3_rejects_eval_mode_instead_of_disable_observer(capsys):
    model = broken_net().apply(enable_fake_quant).apply(freeze_bn_stats).eval()
    rejected(capsys, qh.check_frozen(model), "model.eval() does not stop observers")


def test_ex3_rejects_observers_only(capsys):
    rejected(capsys, qh.check_frozen(broken_net().apply(enable_fake_quant).apply(disable_observer)), "does not freeze batchnorm")


def test_ex3_rejects_setting_the_freeze_bn_flag_by_hand(capsys):
    model = observed_net().apply(disable_observer)
    for m in model.modules():
        if hasattr(m, "freeze_bn"):
            m.freeze_bn = True  # the flag alone: BatchNorm stays in training mode and keeps updating
    rejected(capsys, qh.check_frozen(model), "still in training mode", "freeze_bn_stats")


def test_ex3_rejects_ranges_that_data_moved_before_freezing(capsys):
    model = broken_net().apply(enable_fake_quant)
    with torch.no_grad():
        model(5.0 * torch.randn(2, 1, 6, 6))  # "check it still works": eval mode, observers still on
    model.apply(disable_observer).apply(freeze_bn_stats)
    rejected(capsys, qh.check_frozen(model), "no longer the ones calibration left", "model.eval() does not stop them", "re-run the cell")


def test_ex3_rejects_calibrating_again_before_freezing(capsys):
    model = broken_net().apply(enable_fake_quant)
    torch.manual_seed(1)
    qh.calibrate_fake_quant(model, [torch.randn(8, 1, 6, 6)])  # moves the moving averages the first calibration left
    model.apply(freeze_bn_stats)
    rejected(capsys, qh.check_frozen(model), "calibrating again moves them too")


def test_ex3_rejects_batchnorm_statistics_that_data_moved(capsys):
    model = broken_net().apply(enable_fake_quant).apply(disable_observer).train()
    with torch.no_grad():
        model(torch.randn(2, 1, 6, 6))  # training mode, observers off: only BatchNorm's running statistics move
    model.apply(freeze_bn_stats)
    out = rejected(capsys, qh.check_frozen(model), "running statistics", "training mode before freeze_bn_stats")
    assert "✅ observers frozen" in out


def test_ex3_accepts_running_data_after_freezing(capsys):
    model = broken_net().apply(enable_fake_quant).apply(disable_observer).apply(freeze_bn_stats)
    with torch.no_grad():
        model(5.0 * torch.randn(2, 1, 6, 6))  # frozen first: nothing moves
    assert qh.check_frozen(model)


def test_ex3_rejects_a_float_model_and_a_blank(capsys):
    rejected(capsys, qh.check_frozen(nn.Linear(2, 2)), "qat-prepared model")
    assert not qh.check_frozen(...)
    assert "not filled in yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- Exercise 4: predict the fused scale ratio

W_EX = torch.tensor([-0.5, 0.1, 0.4, 1.2])


@pytest.fixture(scope="module")
def measured():
    fused3 = FusedMovingAvgObsFakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-3, quant_max=3, dtype=torch.qint8,
                                           qscheme=torch.per_tensor_symmetric)
    fused3(W_EX)
    return float(qh.fused_scale_mismatch(fused3))


def check_ex4(low, high, ratio):
    return qh.check_prediction(
        "fused / observer scale at -3..3", low, high, ratio, max_width=0.02,
        too_low="not 8/7 (that is (levels + 1) / levels for 7 levels): the fused kernel assumes one more negative code than positive ones; "
                "redo its formula with n = 3",
        too_high="which of |min| / (n + 1) and |max| / n is larger here?",
    )


def test_ex4_accepts_right_answer(measured, capsys):
    assert measured == pytest.approx(7 / 6, abs=1e-5)
    assert check_ex4(1.16, 1.175, measured)


def test_ex4_rejects_no_mismatch(measured, capsys):
    rejected(capsys, check_ex4(0.99, 1.01, measured), "one more negative code")


def test_ex4_rejects_the_8_bit_ratio(measured, capsys):
    rejected(capsys, check_ex4(1.003, 1.005, measured), "redo its formula")


def test_ex4_rejects_the_4_bit_ratio(measured, capsys):
    rejected(capsys, check_ex4(1.06, 1.08, measured), "n = 3")


def test_ex4_rejects_min_dominating_and_too_wide(measured, capsys):
    rejected(capsys, check_ex4(1.31, 1.33, measured), "|min| / (n + 1)")  # 0.5 / 4 * 7/6 over 0.4: the wrong extreme
    rejected(capsys, check_ex4(1.0, 1.5, measured), "wide")
    rejected(capsys, check_ex4(1.142, 1.19, measured), "wide")  # a hedge over 8/7 and 7/6


def test_ex4_rejects_levels_over_levels_minus_one(measured, capsys):
    rejected(capsys, check_ex4(1.135, 1.15, measured), "8/7", "n = 3")  # 7 levels: 8/7 = 1.1429


def test_ex4_blank_is_not_filled_in(measured, capsys):
    assert not check_ex4(..., ..., measured)
    assert "not filled in yet" in capsys.readouterr().out
