"""Notebook 03's exercises: the right answer passes its self-check, typical wrong answers fail with a hint.

Each case calls the check function with values, the way the notebook's check cell does.
"""


import pytest
import torch
from torch import nn
from torch.ao.quantization import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
    QConfig,
    get_default_qconfig,
    quantize_dynamic,
)

import qhelpers as qh
from verdicts import rejected

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


# --------------------------------------------------------------------------- Exercise 1: fusable groups


@pytest.fixture
def exercise_net():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8),
        nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 11 * 11, 32), nn.ReLU(), nn.Linear(32, 10),
    ).eval()


def test_ex1_accepts_right_answer(exercise_net, capsys):
    assert qh.check_fusable_groups([["0", "1", "2"], ["3", "4"], ["8", "9"]], exercise_net)
    assert "✅" in capsys.readouterr().out


def test_ex1_rejects_relu_after_pooling(exercise_net, capsys):
    ok = qh.check_fusable_groups([["0", "1", "2"], ["3", "4"], ["5", "6"], ["8", "9"]], exercise_net)
    out = rejected(capsys, ok, "MaxPool2d", "pooling")
    assert "['3', '4']" not in out  # the hint does not list the answer


def test_ex1_rejects_missing_conv_bn_pair(exercise_net, capsys):
    ok = qh.check_fusable_groups([["0", "1", "2"], ["8", "9"]], exercise_net)
    out = rejected(capsys, ok, "missing")
    assert "['3', '4']" not in out


def test_ex1_rejects_chain_cut_short(exercise_net, capsys):
    rejected(capsys, qh.check_fusable_groups([["0", "1"], ["3", "4"], ["8", "9"]], exercise_net), "cut short")


def test_ex1_rejects_unknown_names(exercise_net, capsys):
    rejected(capsys, qh.check_fusable_groups([["conv", "bn", "relu"]], exercise_net), "no module named")


def test_ex1_blank_is_not_filled_in(exercise_net, capsys):
    assert not qh.check_fusable_groups(..., exercise_net)
    assert "not filled in yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- Exercise 2: a qconfig

RIGHT_QCONFIG = QConfig(
    activation=MovingAverageMinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True),
    weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
)


def check_ex2(qconfig):
    return qh.check_qconfig(qconfig, activation="moving_average", per_channel=True, reduce_range=True)


def test_ex2_accepts_right_answer(capsys):
    assert check_ex2(RIGHT_QCONFIG)


def test_ex2_rejects_per_channel_affine(capsys):
    qc = QConfig(activation=RIGHT_QCONFIG.activation, weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8))
    rejected(capsys, check_ex2(qc), "per_channel_affine", "symmetric")


def test_ex2_rejects_signed_activations(capsys):
    qc = QConfig(activation=MovingAverageMinMaxObserver.with_args(dtype=torch.qint8, reduce_range=True), weight=RIGHT_QCONFIG.weight)
    rejected(capsys, check_ex2(qc), "quint8")


def test_ex2_rejects_missing_reduce_range(capsys):
    qc = QConfig(activation=MovingAverageMinMaxObserver.with_args(dtype=torch.quint8), weight=RIGHT_QCONFIG.weight)
    rejected(capsys, check_ex2(qc), "reduce_range")


def test_ex2_rejects_plain_minmax_activations(capsys):
    qc = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True), weight=RIGHT_QCONFIG.weight)
    rejected(capsys, check_ex2(qc), "MovingAverageMinMaxObserver")


def test_ex2_rejects_per_tensor_weights(capsys):
    qc = QConfig(activation=RIGHT_QCONFIG.activation, weight=MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric))
    rejected(capsys, check_ex2(qc), "per-channel")


def test_ex2_rejects_unsigned_weights_and_non_qconfig(capsys):
    qc = QConfig(activation=RIGHT_QCONFIG.activation, weight=PerChannelMinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_channel_symmetric))
    rejected(capsys, check_ex2(qc), "qint8")
    rejected(capsys, check_ex2("moving_average"), "QConfig")


# --------------------------------------------------------------------------- Exercise 3: the ARM engine


@pytest.fixture(scope="module")
def course():
    torch.manual_seed(0)
    return {
        "float": qh.load_course_model(),
        "calib": qh.digits_loader("calib", limit=100),
        "test": qh.digits_loader("test", limit=300),
    }


def ptq(course, **options):
    return qh.post_training_quantize(course["float"], course["calib"], **options)


def logit_sqnr(model, course, engine="qnnpack"):
    x = torch.cat([x for x, _ in course["test"]])
    with torch.no_grad(), qh.engine(engine):
        return qh.sqnr_db(course["float"](x), model(x))


def check_ex3(model, sqnr, course):
    return qh.check_engine_ptq(model, sqnr, course["float"], course["calib"], course["test"], engine="qnnpack")


@pytest.fixture(scope="module")
def right_model(course):
    return ptq(course, engine="qnnpack", qconfig=get_default_qconfig("qnnpack"))


def test_ex3_accepts_right_answer(course, right_model, capsys):
    assert check_ex3(right_model, logit_sqnr(right_model, course), course)
    assert capsys.readouterr().out.count("✅") == 2


def test_ex3_rejects_float_accuracy(course, right_model, capsys):
    float_acc = qh.accuracy(course["float"], course["test"])  # the "qnnpack_acc = float_acc"
    rejected(capsys, check_ex3(right_model, float_acc, course), "accuracy in percent")


def test_ex3_rejects_float_model_compared_with_itself(course, right_model, capsys):
    rejected(capsys, check_ex3(right_model, logit_sqnr(course["float"], course), course), "float model with itself")


def test_ex3_rejects_the_default_engines_sqnr(course, right_model, capsys):
    other = ptq(course, engine=qh.default_engine())  # copied from section 5 instead of measured
    assert abs(logit_sqnr(other, course, qh.default_engine()) - logit_sqnr(right_model, course)) > 0.05
    rejected(capsys, check_ex3(right_model, logit_sqnr(other, course, qh.default_engine()), course), "not the sqnr of the model you made")


def test_ex3_rejects_missing_qconfig(course, capsys):
    model = ptq(course, engine="qnnpack")  # post_training_quantize's own default: per-channel weights
    rejected(capsys, check_ex3(model, logit_sqnr(model, course), course), "per channel", "default qconfig")


@pytest.mark.skipif("x86" not in qh.supported_engines(), reason="the x86 engine is not available on this machine")
def test_ex3_rejects_x86_engine_with_qnnpack_qconfig(course, capsys):
    model = ptq(course, engine="x86", qconfig=get_default_qconfig("qnnpack"))
    rejected(capsys, check_ex3(model, logit_sqnr(model, course, "x86"), course), "packed for the 'x86' engine")


def test_ex3_rejects_the_float_model(course, capsys):
    rejected(capsys, check_ex3(course["float"], 30.0, course), "still the float model")


def test_ex3_blank_is_not_filled_in(course, right_model, capsys):
    assert not check_ex3(right_model, None, course)
    assert "not filled in yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- Exercise 4: predict the size ratio


@pytest.fixture(scope="module")
def mlp_ratio():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    int8 = quantize_dynamic(mlp, {nn.Linear}, dtype=torch.qint8)
    return qh.model_size_bytes(mlp) / qh.model_size_bytes(int8)


def check_ex4(low, high, ratio):
    return qh.check_prediction(
        "dynamic INT8 size ratio", low, high, ratio, max_width=0.5,
        too_low="INT8 is 1 byte per weight where float32 is 4: what fraction of the MLP's bytes are weights?",
        too_high="a ratio cannot beat 4x from 4-byte to 1-byte weights: biases and scales stay float",
    )


def test_ex4_accepts_right_answer(mlp_ratio, capsys):
    assert 3.6 < mlp_ratio < 4.0
    assert check_ex4(3.6, 4.0, mlp_ratio)


def test_ex4_rejects_bits_instead_of_bytes(mlp_ratio, capsys):
    rejected(capsys, check_ex4(7.5, 8.0, mlp_ratio), "cannot beat 4x")


def test_ex4_rejects_ignoring_biases_and_scales(mlp_ratio, capsys):
    rejected(capsys, check_ex4(4.0, 4.2, mlp_ratio), "biases and scales")


def test_ex4_rejects_a_range_too_wide(mlp_ratio, capsys):
    rejected(capsys, check_ex4(1.0, 10.0, mlp_ratio), "wide")


def test_ex4_rejects_too_small_and_swapped(mlp_ratio, capsys):
    rejected(capsys, check_ex4(1.5, 2.0, mlp_ratio), "fraction of the mlp's bytes")
    rejected(capsys, check_ex4(4.0, 3.6, mlp_ratio), "swap")


def test_ex4_blank_is_not_filled_in(mlp_ratio, capsys):
    assert not check_ex4(..., ..., mlp_ratio)
    assert "not filled in yet" in capsys.readouterr().out
