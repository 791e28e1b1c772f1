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


def test_ex1_rejects_integer_names(exercise_net, capsys):
    rejected(capsys, qh.check_fusable_groups([[0, 1, 2], [3, 4], [8, 9]], exercise_net), "strings", '"0", not 0')


def test_ex1_rejects_a_duplicated_group(exercise_net, capsys):
    groups = [["0", "1", "2"], ["3", "4"], ["8", "9"], ["8", "9"]]
    rejected(capsys, qh.check_fusable_groups(groups, exercise_net), "more than one group")


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


def test_ex2_rejects_an_activation_range_other_than_asked(capsys):
    # the check serves other exercises too: without reduce_range, codes 0..127 and any other range are refused
    full = dict(activation="moving_average", per_channel=True, reduce_range=False)
    rejected(capsys, qh.check_qconfig(RIGHT_QCONFIG, **full), "codes 0..127", "full 0..255")
    qc = QConfig(activation=MovingAverageMinMaxObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=63), weight=RIGHT_QCONFIG.weight)
    rejected(capsys, qh.check_qconfig(qc, **full), "activation codes 0..63", "asks for 0..255")


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


def test_ex2_rejects_per_input_channel_weights(capsys):
    qc = QConfig(activation=RIGHT_QCONFIG.activation,
                 weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=1))
    rejected(capsys, check_ex2(qc), "ch_axis=1", "output channel")


def test_ex2_rejects_4_bit_weight_range(capsys):
    qc = QConfig(activation=RIGHT_QCONFIG.activation,
                 weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-8, quant_max=7))
    rejected(capsys, check_ex2(qc), "-8..7", "-128..127")


def test_ex2_rejects_a_memoryless_moving_average(capsys):
    qc = QConfig(activation=MovingAverageMinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True, averaging_constant=1.0),
                 weight=RIGHT_QCONFIG.weight)
    rejected(capsys, check_ex2(qc), "averaging_constant=1", "input")


def test_ex2_reports_a_factory_torch_refuses(capsys):
    bad = MovingAverageMinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric, reduce_range=True)
    with pytest.raises(Exception):
        bad()  # torch refuses this combination when the observer is built
    rejected(capsys, check_ex2(QConfig(activation=bad, weight=RIGHT_QCONFIG.weight)), "factory fails")


def test_ex2_accepts_quant_max_127_for_reduce_range(capsys):
    qc = QConfig(activation=MovingAverageMinMaxObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=127), weight=RIGHT_QCONFIG.weight)
    assert check_ex2(qc)  # the same 0..127 range as reduce_range=True


def test_ex2_rejects_symmetric_activations(capsys):
    qc = QConfig(activation=MovingAverageMinMaxObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=127, qscheme=torch.per_tensor_symmetric),
                 weight=RIGHT_QCONFIG.weight)
    rejected(capsys, check_ex2(qc), "per_tensor_affine")


# --------------------------------------------------------------------------- Exercise 3: the ARM engine


@pytest.fixture(scope="module")
def course():
    torch.manual_seed(0)
    return {
        "float": qh.load_course_model(),
        "calib": qh.digits_loader("calib", limit=100, batch_size=50),  # two batches
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


def test_ex3_rejects_calibration_on_part_of_calib_loader(course, capsys):
    model = ptq(course, engine="qnnpack", qconfig=get_default_qconfig("qnnpack"), num_batches=1)
    rejected(capsys, check_ex3(model, logit_sqnr(model, course), course), "every batch")


def test_ex3_rejects_swapped_sqnr_arguments(course, right_model, capsys):
    x = torch.cat([x for x, _ in course["test"]])
    with torch.no_grad(), qh.engine("qnnpack"):
        swapped = qh.sqnr_db(right_model(x), course["float"](x))  # reference and test swapped: close, not equal
    assert swapped != logit_sqnr(right_model, course)
    rejected(capsys, check_ex3(right_model, swapped, course), "swapped")


def test_ex3_rejects_the_float_model(course, capsys):
    rejected(capsys, check_ex3(course["float"], 30.0, course), "still the float model")


def test_ex3_blank_is_not_filled_in(course, right_model, capsys):
    assert not check_ex3(right_model, None, course)
    assert "not filled in yet" in capsys.readouterr().out


def test_ex3_measures_the_logits_again_only_when_a_model_changed(course, right_model, capsys):
    """A wrong number tried again reuses the logits (and never runs the helper's PTQ); another float model, or
    the same one with its weights changed in place, is measured again, and judged on its own logits."""
    import copy

    calls = {"float": 0, "int8": 0}
    float_model = copy.deepcopy(course["float"])
    hooks = [float_model.register_forward_hook(lambda *a: calls.__setitem__("float", calls["float"] + 1)),
             right_model.register_forward_hook(lambda *a: calls.__setitem__("int8", calls["int8"] + 1))]
    try:
        def check(sqnr):
            return qh.check_engine_ptq(right_model, sqnr, float_model, course["calib"], course["test"], engine="qnnpack")

        for _ in range(3):
            rejected(capsys, check(12.5), "not the sqnr of the model you made")
        assert calls == {"float": 1, "int8": 1}  # measured once; no calibration of a copy (its hook would count)
        saved = copy.deepcopy(float_model.state_dict())
        with torch.no_grad():
            float_model.fc2.bias += 1.0  # in place: same object, other weights
        rejected(capsys, check(12.5), "not the sqnr of the model you made")
        assert calls == {"float": 2, "int8": 2}
        float_model.load_state_dict(saved)  # in place, back to the course's weights
        right = logit_sqnr(right_model, {**course, "float": float_model})
        assert calls == {"float": 3, "int8": 3}
        assert check(right) and calls["int8"] == 4  # measured again (other weights than the last call's)
        assert calls["float"] > 4  # the right number: the helper's PTQ ran (its calibration forwards count: a copy keeps the hook)
    finally:
        for h in hooks:
            h.remove()


# --------------------------------------------------------------------------- Exercise 4: predict one-digit calibration


@pytest.fixture(scope="module")
def one_digit_sqnr():
    calib, test = qh.digits_loader("calib"), qh.digits_loader("test")
    x = torch.cat([x for x, _ in calib])
    y = torch.cat([y for _, y in calib])
    model, float_model = qh.post_training_quantize(qh.load_course_model(), [x[y == 1]]), qh.load_course_model()
    x_test = torch.cat([x for x, _ in test])
    with torch.no_grad():
        return qh.sqnr_db(float_model(x_test), model(x_test))


def check_ex4(low, high, measured):
    return qh.check_prediction(
        "logit SQNR calibrated on one digit (dB)", low, high, measured, max_width=6.0,
        too_low="fifty images of one digit are still many images: compare with section 5's draws of several images, "
                "not only with the worst single ones",
        too_high="one digit is not a sample of all ten, and some digits alone give far worse logits than "
                 "all the images together; the accuracy hides what that costs, the logits do not",
    )


def test_ex4_accepts_right_answer(one_digit_sqnr, capsys):
    assert 9.0 <= one_digit_sqnr <= 15.0  # the solution's range holds on this machine (x86 12.7 dB, qnnpack 11.7 dB)
    assert check_ex4(9.0, 15.0, one_digit_sqnr)


def test_ex4_rejects_the_full_set_sqnr(one_digit_sqnr, capsys):  # section 5 prints 29.2 dB for all calibration images
    rejected(capsys, check_ex4(25.0, 31.0, one_digit_sqnr), "below your range", "not a sample of all ten")


def test_ex4_rejects_a_collapse(one_digit_sqnr, capsys):
    rejected(capsys, check_ex4(0.0, 5.0, one_digit_sqnr), "above your range", "draws of several images")


def test_ex4_rejects_a_range_too_wide_and_swapped(one_digit_sqnr, capsys):
    rejected(capsys, check_ex4(5.0, 30.0, one_digit_sqnr), "wide")
    rejected(capsys, check_ex4(8.0, 18.0, one_digit_sqnr), "wide")  # the old 10 dB window: too wide to tell predictions apart
    rejected(capsys, check_ex4(15.0, 9.0, one_digit_sqnr), "swap")


def test_ex4_rejects_a_second_range_after_a_miss(one_digit_sqnr, capsys):
    # the check cell prints the measurement after every judged range: a range written afterwards is a copy, not a prediction
    rejected(capsys, check_ex4(25.0, 31.0, one_digit_sqnr), "below your range")
    rejected(capsys, check_ex4(9.0, 15.0, one_digit_sqnr), "first prediction, 25 to 31, missed", "not a prediction", "not a sample of all ten")
    rejected(capsys, check_ex4(10.0, 15.0, one_digit_sqnr), "not a prediction")
    rejected(capsys, check_ex4(25.0, 31.0, one_digit_sqnr), "below your range")  # the same range: the same verdict


def test_ex4_rejects_a_second_range_after_a_range_too_low(one_digit_sqnr, capsys):
    rejected(capsys, check_ex4(0.0, 5.0, one_digit_sqnr), "above your range")
    rejected(capsys, check_ex4(9.0, 15.0, one_digit_sqnr), "first prediction, 0 to 5, missed", "draws of several images")


def test_ex4_a_right_first_range_is_judged_again(one_digit_sqnr, capsys):
    assert check_ex4(9.0, 15.0, one_digit_sqnr)
    assert check_ex4(9.0, 15.0, one_digit_sqnr)  # re-running the cell
    rejected(capsys, check_ex4(25.0, 31.0, one_digit_sqnr), "below your range")  # after a hit, ranges are judged as usual


def test_ex4_blank_is_not_filled_in(one_digit_sqnr, capsys):
    assert not check_ex4(..., ..., one_digit_sqnr)
    assert "not filled in yet" in capsys.readouterr().out


def test_ex4_gate_measures_only_a_well_formed_prediction(capsys):
    name = "logit SQNR calibrated on one digit (dB)"
    assert qh.prediction_ready(name, 8.0, 18.0, max_width=10.0)
    rejected(capsys, qh.prediction_ready(name, 5.0, 30.0, max_width=10.0), "wide")
    rejected(capsys, qh.prediction_ready(name, 18.0, 8.0, max_width=10.0), "swap")
    rejected(capsys, qh.prediction_ready(name, "8", "x", max_width=10.0), "pair")
    assert not qh.prediction_ready(name, ..., ..., max_width=10.0)
    assert "not filled in yet" in capsys.readouterr().out
