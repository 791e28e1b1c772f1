"""Notebook 01's exercises: the right answer passes its self-check, typical wrong answers fail naming the mistake.

Exercise 1 predicts an SQNR (a range); exercises 2-4 compute scale/zero point, codes and per-channel scales.
The tensors here are small stand-ins with the property that matters (a negative minimum, as fc1's output
before its ReLU has); the checks take them as arguments.
"""

import pytest
import torch

import qhelpers as qh
from qhelpers import checks, tensor_checks
from verdicts import rejected


@pytest.fixture
def x():
    """Like fc_out: negative minimum, positive maximum, so the zero point is far from 0."""
    return torch.randn(256, 64, generator=torch.Generator().manual_seed(0)) * 2 + 0.3


@pytest.fixture
def weight():
    return torch.randn(10, 64, generator=torch.Generator().manual_seed(1)) * 0.2


def _by_hand(x):
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    scale = (hi - lo) / 255
    return lo, hi, scale, 0 - round(lo / scale)


# ----------------------------------------------------------------------------- exercise 1: predict the 4-bit SQNR

REF_8BIT, MEASURED_4BIT = 39.0, 14.4  # notebook 01's weight


def _predict(prediction):
    return qh.check_sqnr_prediction(prediction, MEASURED_4BIT, reference_db=REF_8BIT, bits_from=8, bits_to=4)


def test_ex1_accepts_right_answer(capsys):
    assert _predict((REF_8BIT - 4 * 6.02 - 3, REF_8BIT - 4 * 6.02 + 3))
    assert _predict((12.0, 17.0))


def test_ex1_rejects_no_change_with_fewer_bits(capsys):
    rejected(capsys, _predict((36.0, 40.0)), "about the same SQNR")


def test_ex1_rejects_sqnr_proportional_to_bits(capsys):
    rejected(capsys, _predict((18.0, 21.0)), "not proportional")


def test_ex1_rejects_a_range_holding_the_measurement_and_the_proportional_mistake(capsys):
    # 6 dB wide and holding 14.4: but also 19.5 (proportional) and 19.0 (5 dB per bit), so it tells nothing apart
    out = rejected(capsys, _predict((14.0, 20.0)), "inside your range", "19.5 dB", "not proportional", "narrow it")
    assert "correct" not in out


def test_ex1_rejects_a_range_holding_the_measurement_and_5_db_per_bit(capsys):
    rejected(capsys, _predict((14.0, 19.1)), "inside your range", "19.0 dB", "5 dB per removed bit", "narrow it")


def test_ex1_rejects_5_db_per_bit_worked_from_the_printed_reference(capsys):
    # the notebook prints 39.0 dB for an unrounded 39.04: 5 dB per bit gives 19.0 from what is printed, 19.04 from
    # the unrounded value; a range reaching that interval (widened by one decimal's rounding) holds the mistake
    for prediction in [(14.0, 19.0), (13.0, 18.9)]:
        rejected(capsys, qh.check_sqnr_prediction(prediction, MEASURED_4BIT, reference_db=39.04, bits_from=8, bits_to=4),
                 "inside your range", "19.0 dB", "5 dB per removed bit", "narrow it")
        qh.checks._FIRST_JUDGED.clear()


def test_ex1_rejects_proportional_worked_from_the_printed_reference(capsys):
    rejected(capsys, qh.check_sqnr_prediction((19.45, 22.0), 20.0, reference_db=39.04, bits_from=8, bits_to=4),
             "19.5 dB", "not proportional")


def test_ex1_accepts_the_right_reasoning_from_either_reference(capsys):
    # 6.02 dB per bit, give or take 3 dB, from the unrounded 39.04 or the printed 39.0: clear of the 5 dB/bit interval
    for reference in (39.04, 39.0):
        assert qh.check_sqnr_prediction((reference - 4 * 6.02 - 3, reference - 4 * 6.02 + 3), MEASURED_4BIT,
                                        reference_db=reference, bits_from=8, bits_to=4)
    assert _predict((12.0, 18.0))
    assert _predict((13.0, 18.8))


def test_ex1_rejects_5_db_per_bit_alone(capsys):
    rejected(capsys, _predict((18.5, 19.2)), "outside your range", "19.0 dB", "5 dB per removed bit", "6.02 dB")


def test_ex1_rejects_a_range_too_wide(capsys):
    rejected(capsys, _predict((0.0, 40.0)), "predicts little")


def test_ex1_rejects_reversed_bounds_and_blank(capsys):
    rejected(capsys, _predict((17.0, 12.0)), "above high", "swap them")
    rejected(capsys, _predict(...), "not filled in yet")


def test_ex1_scores_the_first_prediction_a_second_range_is_refused(capsys):
    # the cell prints the measurement once any range is filled in: a range written after a miss is not a prediction
    rejected(capsys, _predict((18.0, 21.0)), "not proportional")
    out = rejected(capsys, _predict((12.0, 17.0)), "your first prediction, (18, 21), is the one scored", "not proportional",
                   "measurement", "Keep the first one")
    assert "correct" not in out
    rejected(capsys, _predict((18.0, 21.0)), "outside your range", "not proportional")  # the same range: the same verdict


def test_ex1_a_malformed_first_answer_is_not_remembered(capsys):
    # the cell measures only after sqnr_prediction_ready: a malformed answer has seen no measurement, so its fix counts
    rejected(capsys, _predict((17.0, 12.0)), "swap them")
    assert _predict((12.0, 17.0))


def test_ex1_one_number_or_a_too_wide_first_answer_is_not_remembered(capsys):
    rejected(capsys, _predict(14.0), "not one value")
    rejected(capsys, _predict((0.0, 40.0)), "predicts little")
    assert _predict((12.0, 17.0))


def test_ex1_a_first_pair_of_words_is_not_remembered(capsys):
    rejected(capsys, _predict(("twelve", "eighteen")), "pair of numbers")
    assert _predict((12.0, 17.0))


def test_ex1_ready_shows_what_to_change_and_nothing_for_a_well_formed_range(capsys):
    # the check cell measures (and prints the 4-bit SQNR) only when sqnr_prediction_ready is true
    assert qh.sqnr_prediction_ready((12.0, 17.0))
    assert capsys.readouterr().out == ""
    rejected(capsys, qh.sqnr_prediction_ready(14.0), "not one value")
    rejected(capsys, qh.sqnr_prediction_ready((17.0, 12.0)), "swap them")
    rejected(capsys, qh.sqnr_prediction_ready((0.0, 40.0)), "predicts little")
    rejected(capsys, qh.sqnr_prediction_ready(...), "not filled in yet")


def test_ex1_ready_quiet_says_nothing_either_way(capsys):
    # section 9's sweep shows its 4-bit row (exercise 1's answer) only after a well-formed prediction, silently
    assert qh.sqnr_prediction_ready((12.0, 17.0), quiet=True)
    assert not qh.sqnr_prediction_ready(..., quiet=True)
    assert not qh.sqnr_prediction_ready((17.0, 12.0), quiet=True)
    assert capsys.readouterr().out == ""


def test_ex1_a_right_first_prediction_leaves_later_ones_judged_as_usual(capsys):
    assert _predict((12.0, 17.0))
    rejected(capsys, _predict((14.0, 20.0)), "inside your range", "narrow it")
    assert _predict((13.0, 16.0))


def test_ex1_a_blank_is_not_remembered(capsys):
    rejected(capsys, _predict(...), "not filled in yet")
    rejected(capsys, _predict((..., ...)), "not filled in yet")
    assert _predict((12.0, 17.0))


def test_ex1_memory_is_per_measurement(capsys):
    # another bit count (or another reference) is another prediction, scored on its own
    rejected(capsys, _predict((18.0, 21.0)), "not proportional")
    assert qh.check_sqnr_prediction((24.0, 28.5), 27.0, reference_db=REF_8BIT, bits_from=8, bits_to=6)


# ----------------------------------------------------------------------------- exercise 1: the first prediction survives a restart
# Where the learner's progress log is kept (a notebook in Jupyter; here QHELPERS_PROGRESS on a tmp folder) the first
# well-formed prediction is also kept beside it (qhelpers.prediction_memory): a restarted kernel still scores it.


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """A learner's log folder on tmp: the memory file the checks keep there, and nothing said yet in this process."""
    from qhelpers import prediction_memory

    monkeypatch.setenv("QHELPERS_PROGRESS", str(tmp_path / "logs" / "ada.jsonl"))
    monkeypatch.setattr(prediction_memory, "_SAID", set())
    return tmp_path / "logs" / "ada.first-predictions.json"


def _restart():
    """What a kernel restart does to the checks: their in-process memory is gone."""
    from qhelpers import ptq_checks

    checks._FIRST_JUDGED.clear()
    ptq_checks._FIRST_PREDICTIONS.clear()


def test_ex1_first_prediction_is_kept_beside_the_progress_log(capsys, kept):
    first = rejected(capsys, _predict((20.0, 25.0)), "outside your range", "less noise")
    assert kept.exists() and (kept.parent / "ada.jsonl").exists()
    assert list(kept.parent.glob("*.jsonl")) == [kept.parent / "ada.jsonl"]  # the teacher's table reads *.jsonl only
    _restart()
    # the same answer after a restart: judged again, the same verdict, byte for byte (a second "Run All")
    assert rejected(capsys, _predict((20.0, 25.0)), "outside your range") == first
    _restart()
    # a different answer after a restart is a later try, and the verdict says so
    rejected(capsys, _predict((12.0, 17.0)), "your first prediction, (20, 25), is the one scored", "Keep the first one")


def test_ex1_a_right_first_prediction_after_a_restart_leaves_later_ones_judged_as_usual(capsys, kept):
    assert _predict((12.0, 17.0))
    out = capsys.readouterr().out
    _restart()
    assert _predict((12.0, 17.0))
    assert capsys.readouterr().out == out
    _restart()
    rejected(capsys, _predict((18.0, 21.0)), "not proportional")
    assert "first prediction" not in capsys.readouterr().out


def test_ex1_the_memory_is_per_notebook_file(capsys, kept, monkeypatch):
    # the solution notebook and the student copy keep their first predictions apart (JupyterLab names the file)
    monkeypatch.setenv("JPY_SESSION_NAME", "student/01_manual_tensor_quantization.ipynb")
    rejected(capsys, _predict((20.0, 25.0)), "outside your range")
    _restart()
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/01_manual_tensor_quantization.ipynb")
    assert _predict((12.0, 17.0))
    _restart()
    monkeypatch.setenv("JPY_SESSION_NAME", "student/01_manual_tensor_quantization.ipynb")
    rejected(capsys, _predict((12.0, 17.0)), "your first prediction, (20, 25), is the one scored")


def test_ex1_an_unwritable_folder_says_so_in_one_line_and_the_check_still_works(capsys, tmp_path, monkeypatch):
    from qhelpers import prediction_memory

    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the log folder should be")
    monkeypatch.setenv("QHELPERS_PROGRESS", str(blocker / "ada.jsonl"))
    monkeypatch.setattr(prediction_memory, "_SAID", set())
    out = rejected(capsys, _predict((20.0, 25.0)), "outside your range")
    notes = [line for line in out.splitlines() if line.startswith("(note:")]
    assert len(notes) == 1 and "could not keep your first prediction" in notes[0] and "until this kernel restarts" in notes[0], out
    # this kernel still remembers it, and the note is not repeated
    out = rejected(capsys, _predict((12.0, 17.0)), "your first prediction, (20, 25), is the one scored")
    assert "(note:" not in out
    assert qh.check_sqnr_prediction((24.0, 28.5), 27.0, reference_db=REF_8BIT, bits_from=8, bits_to=6)
    assert "(note:" not in capsys.readouterr().out


def test_ex1_an_unreadable_memory_file_says_so_and_the_check_still_works(capsys, kept):
    kept.mkdir(parents=True)  # a folder where the file should be: reading it fails
    out = rejected(capsys, _predict((20.0, 25.0)), "outside your range", "could not read the first predictions")
    assert sum(line.startswith("(note:") for line in out.splitlines()) == 2  # cannot read it, cannot write it
    rejected(capsys, _predict((12.0, 17.0)), "your first prediction, (20, 25), is the one scored")


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"format": "something else", "first": {}}'])
def test_ex1_a_damaged_memory_file_is_said_once_and_written_afresh(capsys, kept, damage):
    kept.parent.mkdir(parents=True)
    kept.write_text(damage)
    out = rejected(capsys, _predict((20.0, 25.0)), "outside your range", "is damaged", "written afresh")
    assert sum(line.startswith("(note:") for line in out.splitlines()) == 1
    _restart()
    out = rejected(capsys, _predict((12.0, 17.0)), "your first prediction, (20, 25), is the one scored")
    assert "(note:" not in out


@pytest.mark.slow
def test_ex1_a_restart_in_a_new_process_still_scores_the_first_prediction(tmp_path):
    # a real restart: two Python processes, one after the other, with the same log folder
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import qhelpers as qh, sys; qh.check_sqnr_prediction((float(sys.argv[1]), float(sys.argv[2])), 14.4, "
            "reference_db=39.0, bits_from=8, bits_to=4)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "JPY_SESSION_NAME")}
    env.update(QHELPERS_PROGRESS=str(tmp_path / "ada.jsonl"), PYTHONPATH=str(Path(__file__).resolve().parents[1]))

    def run(low, high):
        return subprocess.run([sys.executable, "-c", code, str(low), str(high)], env=env, capture_output=True,
                              text=True, timeout=300, check=True).stdout

    first = run(20.0, 25.0)
    assert "outside your range" in first and "(note:" not in first
    assert run(20.0, 25.0) == first
    later = run(12.0, 17.0)
    assert "your first prediction, (20, 25), is the one scored" in later and "correct" not in later


def test_ptq_range_check_keeps_its_first_prediction_across_a_restart(capsys, kept):
    # notebooks 03 and 04's check_prediction uses the same memory
    rejected(capsys, qh.check_prediction("sqnr", 10.0, 12.0, 20.0, max_width=6.0, too_low="too low"), "above your range")
    _restart()
    rejected(capsys, qh.check_prediction("sqnr", 18.0, 22.0, 20.0, max_width=6.0, too_low="too low"),
             "your first prediction, 10 to 12, missed", "too low")
    _restart()
    rejected(capsys, qh.check_prediction("sqnr", 10.0, 12.0, 20.0, max_width=6.0, too_low="too low"), "above your range")


# ----------------------------------------------------------------------------- exercise 2: a function t -> (scale, zero_point)


def right_qparams(t):
    lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
    scale = max((hi - lo) / 255, torch.finfo(torch.float32).eps)  # the floor torch's observers apply
    return scale, 0 - round(lo / scale)


def test_ex2_accepts_right_answer(capsys, x):
    assert qh.check_qparams_function(right_qparams, x)
    def as_tensors(t):  # torch scalars and a tensor min/max are fine too
        lo, hi = torch.clamp(t.min(), max=0), torch.clamp(t.max(), min=0)
        scale = torch.clamp((hi - lo) / 255, min=torch.finfo(torch.float32).eps)
        return scale, int(-torch.round(lo / scale))

    assert qh.check_qparams_function(as_tensors, x)


def test_ex2_rejects_skipping_the_widening_to_zero(capsys, x):
    # identical to the right answer on x (its range holds 0): only the probes whose range excludes 0 tell
    no_widening = lambda t: ((t.max() - t.min()).item() / 255, 0 - round(t.min().item() / ((t.max() - t.min()).item() / 255)))  # noqa: E731
    assert no_widening(x) == right_qparams(x)
    rejected(capsys, qh.check_qparams_function(no_widening, x), "all positive", "include 0")


def test_ex2_rejects_scale_from_zero_to_max_and_no_zero_point(capsys, x):
    rejected(capsys, qh.check_qparams_function(lambda t: (t.max().item() / 255, 0), x), "0..max only", "the zero point is missing")


def test_ex2_rejects_a_missing_zero_point(capsys, x):
    rejected(capsys, qh.check_qparams_function(lambda t: (right_qparams(t)[0], 0), x), "the zero point is missing")


def test_ex2_rejects_dividing_by_the_number_of_codes(capsys, x):
    def by_256(t):
        lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
        return (hi - lo) / 256, right_qparams(t)[1]

    rejected(capsys, qh.check_qparams_function(by_256, x), "number of steps")


def test_ex2_rejects_a_flipped_sign(capsys, x):
    def flipped(t):
        scale, _ = right_qparams(t)
        return scale, round(min(t.min().item(), 0.0) / scale)

    rejected(capsys, qh.check_qparams_function(flipped, x), "sign is flipped")


def test_ex2_rejects_an_unrounded_zero_point(capsys, x):
    def unrounded(t):
        scale, _ = right_qparams(t)
        return scale, -min(t.min().item(), 0.0) / scale

    rejected(capsys, qh.check_qparams_function(unrounded, x), "round it")


def test_ex2_rejects_a_truncated_floored_or_ceiled_zero_point(capsys, x):
    import math

    def with_zero_point(how):
        def fn(t):
            scale = right_qparams(t)[0]
            return scale, how(-min(t.min().item(), 0.0) / scale)
        return fn

    for how, word in ((int, "int() truncates"), (math.floor, "floor/ceil"), (math.ceil, "floor/ceil")):
        rejected(capsys, qh.check_qparams_function(with_zero_point(how), x), "round it to the nearest code", word)


def test_ex2_rejects_numbers_a_function_that_raises_and_a_single_value(capsys, x):
    rejected(capsys, qh.check_qparams_function(right_qparams(x), x), "function")
    rejected(capsys, qh.check_qparams_function(lambda t: t.nope(), x), "raised AttributeError")
    rejected(capsys, qh.check_qparams_function(lambda t: right_qparams(t)[0], x), "return the pair")
    rejected(capsys, qh.check_qparams_function(..., x), "not filled in yet")


# ----------------------------------------------------------------------------- exercise 3: the codes, as a function


def test_ex3_accepts_right_answer(capsys, x):
    _, _, scale, zp = _by_hand(x)
    right = lambda t: torch.clamp(torch.round(t / scale) + zp, 0, 255).to(torch.uint8)  # noqa: E731
    assert qh.check_codes(right, x, scale, zp)
    as_torch = lambda t: torch.clamp(torch.round(t * (1.0 / torch.tensor(scale))) + zp, 0, 255).to(torch.uint8)  # noqa: E731
    assert qh.check_codes(as_torch, x, scale, zp)


def test_ex3_refuses_a_tensor_of_codes_even_a_right_one(capsys, x):
    # x fits the range of its own scale and zero point: codes without a clamp would pass on it alone
    _, _, scale, zp = _by_hand(x)
    no_clamp = (torch.round(x / scale) + zp).to(torch.uint8)
    rejected(capsys, qh.check_codes(no_clamp, x, scale, zp), "asks for a function", "outside the range")
    right = torch.clamp(torch.round(x / scale) + zp, 0, 255).to(torch.uint8)
    rejected(capsys, qh.check_codes(right, x, scale, zp), "asks for a function")


def test_ex3_rejects_no_zero_point_and_no_clamp(capsys, x):
    # the answer that passed before: torch.round(fc_in / scale).to(torch.uint8)
    _, _, scale, zp = _by_hand(x)
    rejected(capsys, qh.check_codes(lambda t: torch.round(t / scale).to(torch.uint8), x, scale, zp), "zero point is missing", "clamp")


def test_ex3_rejects_a_missing_clamp(capsys, x):
    _, _, scale, zp = _by_hand(x)
    rejected(capsys, qh.check_codes(lambda t: (torch.round(t / scale) + zp).to(torch.uint8), x, scale, zp), "values outside the range must clamp")


def test_ex3_rejects_a_missing_clamp_even_when_the_tensor_itself_fits(capsys, x):
    # inside the range no clamp is needed; the probe values outside it catch the mistake
    _, _, scale, zp = _by_hand(x)
    no_clamp = lambda t: (torch.round(t / scale) + zp).to(torch.uint8)  # noqa: E731
    assert torch.equal(no_clamp(x), qh.quantize(x, qh.qparams_from_tensor(x, 8, signed=False)))
    rejected(capsys, qh.check_codes(no_clamp, x, scale, zp), "clamp")


def test_ex3_rejects_truncation_instead_of_rounding(capsys, x):
    _, _, scale, zp = _by_hand(x)
    rejected(capsys, qh.check_codes(lambda t: torch.clamp(t / scale + zp, 0, 255).to(torch.uint8), x, scale, zp), "truncates")


def test_ex3_rejects_float_codes(capsys, x):
    _, _, scale, zp = _by_hand(x)
    rejected(capsys, qh.check_codes(lambda t: torch.clamp(torch.round(t / scale) + zp, 0, 255), x, scale, zp), "integers")


def test_ex3_rejects_another_integer_dtype(capsys, x):
    # right values in int64: the task asks for torch.uint8 codes (one byte each)
    _, _, scale, zp = _by_hand(x)
    rejected(capsys, qh.check_codes(lambda t: torch.clamp(torch.round(t / scale) + zp, 0, 255).long(), x, scale, zp), "torch.uint8")


def test_ex3_rejects_an_unrounded_zero_point(capsys, x):
    # exercise 2 left unrounded: int() and .to(int) would truncate it in step, so the codes alone look right
    lo, _, scale, _ = _by_hand(x)
    zp = -lo / scale
    to_codes = lambda t: torch.clamp(torch.round(t / scale) + zp, 0, 255).to(torch.int32)  # noqa: E731
    rejected(capsys, qh.check_codes(to_codes, x, scale, zp), "not an integer", "round")


def test_ex3_rejects_a_function_that_raises(capsys, x):
    _, _, scale, zp = _by_hand(x)
    rejected(capsys, qh.check_codes(lambda t: t.nope(), x, scale, zp), "raised AttributeError")


# ----------------------------------------------------------------------------- exercise 4: per-channel scales


def test_ex4_accepts_right_answer(capsys, weight):
    assert qh.check_per_channel_scales(weight.abs().amax(dim=1) / ((127 - (-128)) / 2), weight)


def test_ex4_rejects_the_restricted_range(capsys, weight):
    rejected(capsys, qh.check_per_channel_scales(weight.abs().amax(dim=1) / 127, weight), "restricted range")


def test_ex4_rejects_one_scale_for_the_whole_tensor(capsys, weight):
    rejected(capsys, qh.check_per_channel_scales(weight.abs().max() / 127.5, weight), "one scale for the whole tensor")


def test_ex4_rejects_the_wrong_axis(capsys, weight):
    rejected(capsys, qh.check_per_channel_scales(weight.abs().amax(dim=0) / 127.5, weight), "one scale per output row")


def test_ex4_rejects_max_instead_of_largest_absolute_value(capsys, weight):
    rejected(capsys, qh.check_per_channel_scales(weight.amax(dim=1) / 127.5, weight), "largest absolute value")


def test_ex4_rejects_an_affine_scale(capsys, weight):
    rejected(capsys, qh.check_per_channel_scales((weight.amax(dim=1) - weight.amin(dim=1)) / 255, weight), "affine")


def test_ex3_blank_scale_or_codes_say_not_filled_in(capsys, x):
    assert not qh.check_codes(..., x, ..., ...)
    assert not qh.check_codes(lambda t: t, x, ..., ...)
    assert capsys.readouterr().out.count("not filled in yet") == 2


def test_ex2_blank_in_the_student_copy_names_the_function(capsys, x):
    # the solution is a `def`: the student copy's blank must still define the name the check reads
    from qhelpers.notebooks import _blank_solution

    blank = _blank_solution("# BEGIN SOLUTION\ndef affine_qparams(t):\n    return 1.0, 0\n# END SOLUTION")
    assert blank == "affine_qparams = ...  # your code here"
    namespace: dict = {}
    exec(blank, namespace)
    rejected(capsys, qh.check_qparams_function(namespace["affine_qparams"], x), "not filled in yet")


def test_ex2_rejects_a_function_returning_something_else_than_numbers(capsys, x):
    rejected(capsys, qh.check_qparams_function(lambda t: ("0.1", 0), x), "on the tensor you were given", "number")


# ----------------------------------------------------------------------------- round-3 branches


def test_ex1_too_few_db_per_bit_gets_the_fixed_cost_per_bit(capsys):
    # 5 dB per bit: (39 - 20 - 3, 39 - 20 + 3) holds the proportional 19.5 dB; the hint names the 6.02 dB per bit
    rejected(capsys, _predict((16.0, 22.0)), "not proportional", "6.02 dB")


def test_ex1_too_optimistic_range_gets_the_db_per_bit(capsys):
    rejected(capsys, _predict((23.0, 28.0)), "less noise than the grid gives", "6.02 dB")


def test_ex3_unclamped_int64_is_told_to_clamp_not_that_its_values_are_right(capsys, x):
    # values right on the tensor, wrong (negative, above 255) on the out-of-range probe: the clamp comes first
    _, _, scale, zp = _by_hand(x)
    no_clamp_long = lambda t: (torch.round(t / scale) + zp).long()  # noqa: E731
    out = rejected(capsys, qh.check_codes(no_clamp_long, x, scale, zp), "must clamp", "go below or above")
    assert "values are right" not in out


def test_ex3_right_values_wrong_dtype_says_every_input(capsys, x):
    _, _, scale, zp = _by_hand(x)
    rejected(capsys, qh.check_codes(lambda t: torch.clamp(torch.round(t / scale) + zp, 0, 255).long(), x, scale, zp),
             "right on every input", "torch.uint8")


def test_ex2_solution_with_the_eps_floor_passes_and_survives_zeros(capsys, x):
    def with_eps(t):
        lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
        scale = max((hi - lo) / 255, torch.finfo(torch.float32).eps)
        return scale, 0 - round(lo / scale)

    assert qh.check_qparams_function(with_eps, x)
    scale, zero_point = with_eps(torch.zeros(8))  # a dead ReLU channel's output: torch's observer gives eps, 0
    observer = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8)
    observer(torch.zeros(8))
    s, z = observer.calculate_qparams()
    assert scale == s.item() and zero_point == int(z)




def test_ex2_rejects_no_eps_floor_that_divides_by_zero(capsys, x):
    # right on every probe with a range, but max - min = 0 on an all-zero tensor: 0 / 0
    rejected(capsys, qh.check_qparams_function(_no_floor, x), "raised ZeroDivisionError", "all-zero tensor",
             "torch.finfo(torch.float32).eps")


def _no_floor(t):
    lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
    scale = (hi - lo) / 255
    return scale, 0 - round(lo / scale)


def test_ex2_rejects_a_zero_scale_in_tensor_arithmetic(capsys, x):
    # with tensors 0 / 0 does not raise: the scale is 0 and the zero point nan
    def tensor_no_floor(t):
        lo, hi = t.min().clamp(max=0), t.max().clamp(min=0)
        scale = (hi - lo) / 255
        return scale, 0 - torch.round(lo / scale)

    rejected(capsys, qh.check_qparams_function(tensor_no_floor, x), "all-zero tensor", "got a scale of 0", "eps")


def test_ex2_rejects_a_scale_of_one_for_an_empty_range(capsys, x):
    def one_instead(t):
        lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
        scale = (hi - lo) / 255 or 1.0
        return scale, 0 - round(lo / scale)

    rejected(capsys, qh.check_qparams_function(one_instead, x), "all-zero tensor", "got a scale of 1", "eps")


def test_ex2_rejects_a_floor_applied_only_to_an_empty_range(capsys, x):
    # right wherever max > min and on the all-zero tensor, but torch floors every scale below eps (MinMaxObserver on
    # values 0..1e-6 gives eps), not only a scale of 0
    def floor_only_at_zero(t):
        lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
        scale = (hi - lo) / 255 if hi > lo else torch.finfo(torch.float32).eps
        return scale, 0 - round(lo / scale)

    observer = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8)
    observer(torch.linspace(0.0, 1e-6, 64))
    assert observer.calculate_qparams()[0].item() == torch.finfo(torch.float32).eps
    rejected(capsys, qh.check_qparams_function(floor_only_at_zero, x), "from 0 to 1e-6", "not only a scale of 0")


_BELOW_255_EPS = ("below eps", "not from a threshold of your own")
_ABOVE_255_EPS = ("above eps", "got a scale of eps", "not below a threshold of your own")


@pytest.mark.parametrize("threshold, words", [
    # below 255 eps (3.04e-5): right on 0..1e-6 when the threshold is 1e-6 (its float32 max is 9.99999997e-07), wrong
    # on a range between the threshold and 255 eps, where (max - min) / 255 is still below eps and must be floored
    (1e-6, _BELOW_255_EPS), (1e-5, _BELOW_255_EPS), (3e-5, _BELOW_255_EPS),
    # above 255 eps: on a range just above it the scale (max - min) / 255 is above eps, and the floor must leave it
    (3.1e-5, _ABOVE_255_EPS), (4e-5, _ABOVE_255_EPS), (1e-4, _ABOVE_255_EPS),
])
def test_ex2_rejects_a_floor_below_a_threshold_of_ones_own(capsys, x, threshold, words):
    # eps only where max - min is below an invented threshold instead of max((max - min) / 255, eps)
    eps = torch.finfo(torch.float32).eps

    def floor_below(t):
        lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
        scale = (hi - lo) / 255 if hi - lo > threshold else eps
        return scale, 0 - round(lo / scale)

    rejected(capsys, qh.check_qparams_function(floor_below, x), *words)


def test_ex2_floor_probes_straddle_255_eps_and_match_torchs_observer(x):
    # the probes' widths lie on both sides of 255 eps, within 0..4e-5, and torch's observer floors exactly those below
    eps = torch.finfo(torch.float32).eps
    probes = [(what, t) for what, t in tensor_checks._qparams_probes(x) if what.startswith("a tensor from 0 to ") and "eps)" in what]
    widths = [(t.max() - t.min()).item() for _, t in probes]
    assert max(widths) <= 4e-5 and any(w / 255 < eps for w in widths) and any(w / 255 > eps for w in widths)
    assert min(w for w in widths if w / 255 > eps) < 1.02 * 255 * eps and max(w for w in widths if w / 255 < eps) > 0.98 * 255 * eps
    for _, t in probes:
        observer = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8)
        observer(t)
        assert observer.calculate_qparams()[0].item() == pytest.approx(max((t.max() - t.min()).item() / 255, eps), rel=1e-6)


def test_ex2_rejects_a_zero_point_from_the_unfloored_scale(capsys, x):
    # the scale floored, but the zero point computed before the floor: every probe from 0 gives 0 either way, a probe
    # from -1e-6 to 0 does not (torch's MinMaxObserver: (eps, 8); this function: (eps, 255))
    eps = torch.finfo(torch.float32).eps

    def zp_before_floor(t):
        lo, hi = min(t.min().item(), 0.0), max(t.max().item(), 0.0)
        s = (hi - lo) / 255
        return max(s, eps), (0 - round(lo / s) if s > 0 else 0)

    rejected(capsys, qh.check_qparams_function(zp_before_floor, x), "from -1e-6 to 0", "zero point of 255", "floored scale")


def test_ex2_sub_floor_probes_with_negative_values_match_torchs_observer(x):
    eps = torch.finfo(torch.float32).eps
    expected = {"from -1e-6 to 0": 8, "from -5e-7 to 5e-7": 4}
    probes = {key: t for what, t in tensor_checks._qparams_probes(x) for key in expected if key in what}
    assert probes.keys() == expected.keys()
    for key, t in probes.items():
        observer = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8)
        observer(t)
        scale, zero_point = observer.calculate_qparams()
        assert (scale.item(), int(zero_point)) == (eps, expected[key])
