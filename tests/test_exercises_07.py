"""Self-checks of notebook 07's exercises: the right answer passes, typical wrong answers fail with a hint."""

import pytest
import torch

import qhelpers as qh


@pytest.fixture(scope="module")
def course_scan():
    """Patient 2 (the folded course model) with small loaders, and the right scan done by hand as the exercise asks."""
    folded = qh.fuse(qh.load_course_model())
    calib, probe = qh.digits_loader("calib", limit=100), qh.digits_loader("test", limit=100)
    layers = qh.weight_layers(folded)
    right = {}
    for keep in layers:
        others = [name for name in layers if name != keep]
        right[keep] = qh.accuracy(qh.quantize_activations(qh.quantize_weights(folded, bits=4, layers=others), calib, bits=4), probe)
    return folded, calib, probe, right


@pytest.fixture(autouse=True)
def no_clip_handed_out_yet():
    """Each test starts as a fresh kernel would: no MSE clipping value handed out by qh.weight_clip yet (Exercise 3's check)."""
    qh.range_setting._MSE_CLIPS_HANDED_OUT.clear()
    yield
    qh.range_setting._MSE_CLIPS_HANDED_OUT.clear()


@pytest.fixture(scope="module")
def pair():
    folded = qh.fuse(qh.load_course_model())
    return folded.res.conv1[0][0].weight.detach(), folded.res.conv2[0].weight.detach(), folded.fc2.weight.detach()


# Exercise 1: the leave-one-out scan of patient 2's weights


def test_ex1_accepts_right_answer(course_scan, capsys):
    folded, calib, probe, right = course_scan
    assert qh.check_leave_one_out(right, folded, calib, probe, bits=4)
    assert qh.check_leave_one_out({k: torch.tensor(v) for k, v in right.items()}, folded, calib, probe, bits=4)  # tensors are fine
    assert "✅" in capsys.readouterr().out


def test_ex1_rejects_the_one_at_a_time_scan(course_scan, capsys):
    folded, calib, probe, right = course_scan
    one_at_a_time = {n: qh.accuracy(qh.quantize_activations(qh.quantize_weights(folded, bits=4, layers=[n]), calib, bits=4), probe) for n in right}
    assert one_at_a_time != right
    assert not qh.check_leave_one_out(one_at_a_time, folded, calib, probe, bits=4)
    assert "every *other* layer" in capsys.readouterr().out


def test_ex1_rejects_activations_left_in_float(course_scan, capsys):
    folded, calib, probe, right = course_scan
    weights_only = {n: qh.accuracy(qh.quantize_weights(folded, bits=4, layers=[m for m in right if m != n]), probe) for n in right}
    assert not qh.check_leave_one_out(weights_only, folded, calib, probe, bits=4)
    assert "activations are still float" in capsys.readouterr().out


def test_ex1_rejects_fractions_wrong_names_and_other_numbers(course_scan, capsys):
    folded, calib, probe, right = course_scan
    assert not qh.check_leave_one_out({k: v / 100 for k, v in right.items()}, folded, calib, probe, bits=4)
    assert "fractions" in capsys.readouterr().out
    short = {k[:-2] if k.endswith(".0") else k: v for k, v in right.items()}  # "stem.0" instead of "stem.0.0"
    assert not qh.check_leave_one_out(short, folded, calib, probe, bits=4)
    assert "qh.weight_layers" in capsys.readouterr().out
    assert not qh.check_leave_one_out({k: right[k] for k in list(right)[:-1]}, folded, calib, probe, bits=4)  # a layer missing
    assert "missing" in capsys.readouterr().out
    shifted = {k: v + 1.0 for k, v in right.items()}
    assert not qh.check_leave_one_out(shifted, folded, calib, probe, bits=4)
    assert "every other layer's weights" in capsys.readouterr().out


def test_ex1_blank_and_wrong_types_are_reported_not_raised(course_scan, capsys):
    folded, calib, probe, _ = course_scan
    assert not qh.check_leave_one_out(..., folded, calib, probe, bits=4)
    assert "not filled in yet" in capsys.readouterr().out
    assert not qh.check_leave_one_out("stem.0", folded, calib, probe, bits=4)
    assert "must be a dict" in capsys.readouterr().out
    assert not qh.check_leave_one_out({n: "high" for n in qh.weight_layers(folded)}, folded, calib, probe, bits=4)
    assert "a number" in capsys.readouterr().out


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


def test_ex2_rejects_the_wrong_number_of_scales_and_other_formulas(pair, capsys):
    w1, w2, _ = pair
    assert not qh.check_cle_scales(_right_scales(w1, w2)[:16], w1, w2)
    assert "one scale per channel" in capsys.readouterr().out
    r1, r2 = w1.flatten(1).abs().amax(1), w2.transpose(0, 1).flatten(1).abs().amax(1)
    assert not qh.check_cle_scales(torch.sqrt(r1 * r2), w1, w2)  # the equalized range, not the scale
    assert "s_i = sqrt(r1_i / r2_i)" in capsys.readouterr().out


def test_ex2_blank_and_wrong_types_are_reported(pair, capsys):
    w1, w2, _ = pair
    assert not qh.check_cle_scales(..., w1, w2)
    assert "not filled in yet" in capsys.readouterr().out
    assert not qh.check_cle_scales("sqrt", w1, w2)
    assert "list of numbers" in capsys.readouterr().out


# Exercise 3: MSE clipping by hand


def _right_clip(w, grid=100):
    candidates = w.abs().max() * torch.arange(1, grid + 1) / grid
    errors = torch.stack([((torch.clamp(torch.round(w / (c / 7)), -7, 7) * (c / 7) - w) ** 2).mean() for c in candidates])
    return candidates[errors.argmin()]


def test_ex3_accepts_right_answer(pair, capsys):
    w = pair[2]
    assert qh.check_mse_clip(_right_clip(w), w, bits=4)
    assert qh.check_mse_clip(float(_right_clip(w)), w, bits=4)
    assert float(_right_clip(w)) < float(w.abs().max())  # the exercise is not trivial: min/max is not the answer


def test_ex3_rejects_minmax(pair, capsys):
    w = pair[2]
    assert not qh.check_mse_clip(w.abs().max(), w, bits=4)
    assert "min/max" in capsys.readouterr().out


def test_ex3_rejects_the_scale_instead_of_the_clip(pair, capsys):
    w = pair[2]
    assert not qh.check_mse_clip(_right_clip(w) / 7, w, bits=4)
    assert "scale" in capsys.readouterr().out


def test_ex3_rejects_another_candidate(pair, capsys):
    """The right grid but the wrong candidate (e.g. the error measured without the clamp to -7..7)."""
    w = pair[2]
    candidates = w.abs().max() * torch.arange(1, 101) / 100
    no_clamp = candidates[torch.stack([((torch.round(w / (c / 7)) * (c / 7) - w) ** 2).mean() for c in candidates]).argmin()]
    eight = candidates[torch.stack([((torch.clamp(torch.round(w / (c / 8)), -8, 7) * (c / 8) - w) ** 2).mean() for c in candidates]).argmin()]
    wrong = next(c for c in (no_clamp, eight, candidates[49]) if not torch.isclose(c, _right_clip(w)))
    assert not qh.check_mse_clip(wrong, w, bits=4)
    assert "one of the candidates" in capsys.readouterr().out


def test_ex3_rejects_a_clip_chosen_for_8_bits_and_a_value_off_the_candidates(pair, capsys):
    w = pair[2]
    assert not qh.check_mse_clip(qh.weight_clip(w, bits=8, method="mse"), w, bits=4)
    capsys.readouterr()
    assert not qh.check_mse_clip(float(_right_clip(w)) * 1.013, w, bits=4)
    assert "max|w| * k / 100" in capsys.readouterr().out


def test_ex3_blank_and_wrong_shape(pair, capsys):
    w = pair[2]
    assert not qh.check_mse_clip(..., w, bits=4)
    assert "not filled in yet" in capsys.readouterr().out
    assert not qh.check_mse_clip(torch.ones(3), w, bits=4)
    assert "one number" in capsys.readouterr().out


# The notebook's versions: Exercise 2 on the pair the helper refuses, Exercise 3 on 64 candidates


@pytest.mark.slow
def test_ex2_notebook_pair_is_one_the_helper_does_not_equalize(capsys):
    folded = qh.fuse(qh.load_course_model())
    w1, w2 = folded.down1[0][0].weight.detach(), folded.res.conv1[0][0].weight.detach()
    _, scales = qh.cross_layer_equalization(folded)
    assert not any(first.startswith("down1") for first, _ in scales)          # no helper output to copy
    with pytest.raises(ValueError, match="not consecutive"):
        qh.equalize_pair(folded, "down1.0.0", "res.conv1.0.0")
    assert qh.check_cle_scales(_right_scales(w1, w2), w1, w2)
    assert not qh.check_cle_scales(1 / _right_scales(w1, w2), w1, w2)
    assert "upside down" in capsys.readouterr().out


def _right_clip_64(w):
    return _right_clip(w, grid=64)


def test_ex3_64_candidates_right_and_the_helpers_default_rejected(pair, capsys):
    w = pair[2]
    assert qh.check_mse_clip(_right_clip_64(w), w, bits=4, grid=64)
    assert not torch.isclose(_right_clip_64(w), _right_clip(w))              # the two grids give different answers here
    assert not qh.check_mse_clip(qh.weight_clip(w, bits=4, method="mse"), w, bits=4, grid=64)
    out = capsys.readouterr().out
    assert "100 candidates" in out or "one of the candidates" in out
    assert not qh.check_mse_clip(_right_clip(w), w, bits=4, grid=64)
    capsys.readouterr()
    other = w.abs().max() * 40 / 64
    assert not qh.check_mse_clip(other, w, bits=4, grid=64)
    assert "k = 40" in capsys.readouterr().out
    assert not qh.check_mse_clip(float(_right_clip_64(w)) * 1.013, w, bits=4, grid=64)
    assert "max|w| * k / 64" in capsys.readouterr().out
    with pytest.raises(ValueError, match="grid"):
        qh.check_mse_clip(_right_clip_64(w), w, bits=4, grid=0)


def test_ex3_rejects_the_helper_the_exercise_asks_not_to_use(pair, capsys):
    """The one-line route: qh.weight_clip with the exercise's own arguments, as a tensor, a float, or per channel on one row."""
    w = pair[2]
    helper = qh.weight_clip(w, bits=4, method="mse", grid=64)
    assert torch.isclose(helper, _right_clip_64(w))                           # the same value as the search by hand
    for answer in (helper, float(helper), qh.weight_clip(w.reshape(1, -1), bits=4, per_channel=True, method="mse", grid=64)):
        assert not qh.check_mse_clip(answer, w, bits=4, grid=64)
        assert "came from qh.weight_clip" in capsys.readouterr().out
    assert not qh.check_mse_clip(_right_clip_64(w), w, bits=4, grid=64)      # the value is judged, not how it was typed
    assert "restart the kernel" in capsys.readouterr().out


def test_ex3_accepts_the_search_by_hand_after_the_notebooks_own_helper_calls(pair, capsys):
    """What notebook 07 runs before the exercise (MSE weight grids at 100 candidates, an 8-bit clip, the check itself)
    hands out no 4-bit 64-candidate value, so the search by hand still passes; a 100-candidate helper value does not
    collide with the 64-candidate exercise either."""
    w = pair[2]
    folded = qh.fuse(qh.load_course_model())
    qh.quantize_weights(folded, bits=4, method="mse")
    qh.quantize_weights(folded, bits=4, method="mse", per_channel=True)
    qh.quantize_weight(w, bits=4, method="mse")
    qh.weight_clip(w, bits=8, method="mse")
    qh.weight_clip(w, bits=4, method="mse")                                    # the default grid: another value
    assert qh.check_mse_clip(_right_clip_64(w), w, bits=4, grid=64)
    assert qh.check_mse_clip(_right_clip_64(w), w, bits=4, grid=64)            # the check's own search is not recorded
    assert "✅" in capsys.readouterr().out
    assert not qh.check_mse_clip(qh.weight_clip(w, bits=4, method="mse"), w, bits=4)   # ... but it is the 100-candidate answer
    assert "came from qh.weight_clip" in capsys.readouterr().out
