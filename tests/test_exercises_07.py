"""Self-checks of notebook 07's exercises: the right answer passes, typical wrong answers fail with a hint."""

import pytest
import torch

import qhelpers as qh


@pytest.fixture(scope="module")
def patient():
    calib = qh.digits_loader("calib", limit=250)
    dead = qh.make_dead_channel_model(qh.load_depthwise_model(), calib)
    return qh.fuse(dead), qh.digits_loader("test", limit=250)


@pytest.fixture(scope="module")
def pair():
    folded = qh.fuse(qh.load_course_model())
    return folded.res.conv1[0][0].weight.detach(), folded.res.conv2[0].weight.detach(), folded.fc2.weight.detach()


# Exercise 1 (predict first): the culprit layer of patient 1


def test_ex1_accepts_right_answer(patient, capsys):
    folded, loader = patient
    assert qh.check_culprit("dw1.0", folded, loader)
    assert qh.check_culprit("dw1", folded, loader)
    assert "✅" in capsys.readouterr().out


def test_ex1_rejects_the_pointwise_layer_after_it(patient, capsys):
    folded, loader = patient
    assert not qh.check_culprit("pw1.0", folded, loader)
    assert "costs little" in capsys.readouterr().out


def test_ex1_rejects_a_name_that_is_not_a_layer(patient, capsys):
    folded, loader = patient
    assert not qh.check_culprit("conv3", folded, loader)
    assert "not a quantized layer" in capsys.readouterr().out


def test_ex1_blank_is_reported_not_raised(patient, capsys):
    folded, loader = patient
    assert not qh.check_culprit(..., folded, loader)
    assert "not filled in yet" in capsys.readouterr().out


# Exercise 2: DFQ scales by hand


def _right_scales(w1, w2):
    r1 = w1.flatten(1).abs().amax(1)
    r2 = w2.transpose(0, 1).flatten(1).abs().amax(1)
    return torch.sqrt(r1 / r2)


def test_ex2_accepts_right_answer(pair, capsys):
    w1, w2, _ = pair
    assert qh.check_cle_scales(_right_scales(w1, w2), w1, w2)
    assert qh.check_cle_scales(_right_scales(w1, w2).tolist(), w1, w2)


def test_ex2_rejects_upside_down_scales(pair, capsys):
    w1, w2, _ = pair
    assert not qh.check_cle_scales(1 / _right_scales(w1, w2), w1, w2)
    assert "upside down" in capsys.readouterr().out


def test_ex2_rejects_missing_square_root(pair, capsys):
    w1, w2, _ = pair
    assert not qh.check_cle_scales(_right_scales(w1, w2) ** 2, w1, w2)
    assert "square root" in capsys.readouterr().out


def test_ex2_rejects_output_channel_ranges_of_the_second_layer(pair, capsys):
    w1, w2, _ = pair
    wrong = torch.sqrt(w1.flatten(1).abs().amax(1) / w2.flatten(1).abs().amax(1))
    assert not qh.check_cle_scales(wrong, w1, w2)
    assert "input" in capsys.readouterr().out


# Exercise 3: MSE clipping by hand


def _right_clip(w):
    candidates = w.abs().max() * torch.arange(1, 101) / 100
    errors = torch.stack([((torch.clamp(torch.round(w / (c / 7)), -7, 7) * (c / 7) - w) ** 2).mean() for c in candidates])
    return candidates[errors.argmin()]


def test_ex3_accepts_right_answer(pair, capsys):
    w = pair[2]
    assert qh.check_mse_clip(_right_clip(w), w, bits=4)
    assert float(_right_clip(w)) < float(w.abs().max())  # the exercise is not trivial: min/max is not the answer


def test_ex3_rejects_minmax(pair, capsys):
    w = pair[2]
    assert not qh.check_mse_clip(w.abs().max(), w, bits=4)
    assert "min/max" in capsys.readouterr().out


def test_ex3_rejects_the_scale_instead_of_the_clip(pair, capsys):
    w = pair[2]
    assert not qh.check_mse_clip(_right_clip(w) / 7, w, bits=4)
    assert "scale" in capsys.readouterr().out


def test_ex3_rejects_a_clip_chosen_for_8_bits(pair, capsys):
    w = pair[2]
    assert not qh.check_mse_clip(qh.weight_clip(w, bits=8, method="mse"), w, bits=4)
