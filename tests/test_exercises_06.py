"""Notebook 06's self-checks: the right answer passes, the typical wrong answers fail with a hint."""

import torch

import qhelpers as qh

# Exercise 1 (predict first): the roofline's speedup of int8 weight-only at batch 1 on a 4096 x 8192 layer.
GFLOPS, GBPS = 100.0, 10.0
COST_F = qh.linear_cost(4096, 8192, 1)
COST_Q = qh.linear_cost(4096, 8192, 1, weight_bits=8)
RIGHT_1 = qh.roofline_ms(COST_F, gflops=GFLOPS, gbps=GBPS) / qh.roofline_ms(COST_Q, gflops=GFLOPS, gbps=GBPS)


def check1(answer):
    return qh.check_roofline_speedup(answer, 4096, 8192, gflops=GFLOPS, gbps=GBPS)


def test_ex1_accepts_right_answer(capsys):
    assert check1(RIGHT_1)
    assert check1(RIGHT_1 * 1.08)  # a prediction within the roofline's range
    assert "✅" in capsys.readouterr().out


def test_ex1_rejects_no_speedup(capsys):
    assert not check1(1.0)
    assert "memory" in capsys.readouterr().out


def test_ex1_rejects_the_int4_ratio(capsys):
    assert not check1(8.0)
    assert "❌" in capsys.readouterr().out


def test_ex1_rejects_a_speedup_at_a_compute_bound_batch(capsys):
    assert not qh.check_roofline_speedup(3.9, 4096, 8192, batch=256, gflops=GFLOPS, gbps=GBPS)
    assert "compute-bound" in capsys.readouterr().out


def test_ex1_blank_is_not_filled(capsys):
    assert not check1(...)
    assert "not filled in yet" in capsys.readouterr().out


# Exercise 2: pack int4 codes -3 (low nibble) and 5 (high nibble) into one byte.


def test_ex2_accepts_right_answer(capsys):
    assert qh.check_int4_byte((-3 & 0xF) | (5 << 4), -3, 5)
    assert "✅" in capsys.readouterr().out


def test_ex2_rejects_swapped_nibbles(capsys):
    assert not qh.check_int4_byte((5 & 0xF) | ((-3 & 0xF) << 4), -3, 5)
    assert "swapped" in capsys.readouterr().out


def test_ex2_rejects_no_mask_on_the_negative_code(capsys):
    assert not qh.check_int4_byte(-3 | (5 << 4), -3, 5)  # -3 unmasked gives a negative number
    assert "& 0xF" in capsys.readouterr().out


def test_ex2_rejects_plain_arithmetic(capsys):
    assert not qh.check_int4_byte(-3 + 16 * 5, -3, 5)
    assert "two's complement" in capsys.readouterr().out


# Exercise 3: bytes of a 4096 x 4096 int4 weight, groups of 128, float16 scales.
RIGHT_3 = 4096 * 4096 // 2 + 4096 * 32 * 2


def check3(answer):
    return qh.check_group_bytes(answer, 4096, 4096, bits=4, group_size=128, scale_bytes=2)


def test_ex3_accepts_right_answer(capsys):
    assert check3(RIGHT_3)
    assert "✅" in capsys.readouterr().out


def test_ex3_rejects_codes_without_scales(capsys):
    assert not check3(4096 * 4096 // 2)
    assert "scale" in capsys.readouterr().out


def test_ex3_rejects_a_byte_per_code(capsys):
    assert not check3(4096 * 4096 + 4096 * 32 * 2)
    assert "packed" in capsys.readouterr().out


def test_ex3_rejects_one_scale_per_row(capsys):
    assert not check3(4096 * 4096 // 2 + 4096 * 2)
    assert "per group" in capsys.readouterr().out


# Exercise 4: SmoothQuant factors with alpha = 0.5.
ACT = torch.tensor([1.0, 50.0, 2.0, 0.5])
WMAX = torch.tensor([0.2, 0.1, 0.4, 0.3])


def test_ex4_accepts_right_answer(capsys):
    assert qh.check_smoothquant_scales(ACT.pow(0.5) / WMAX.pow(0.5), ACT, WMAX, alpha=0.5)
    assert "✅" in capsys.readouterr().out


def test_ex4_rejects_the_inverse(capsys):
    assert not qh.check_smoothquant_scales(WMAX.pow(0.5) / ACT.pow(0.5), ACT, WMAX, alpha=0.5)
    assert "upside down" in capsys.readouterr().out


def test_ex4_rejects_swapped_exponents(capsys):
    act, wmax = ACT, WMAX
    wrong = act.pow(0.25) / wmax.pow(0.75)
    assert not qh.check_smoothquant_scales(wrong, act, wmax, alpha=0.75)
    assert "exponent" in capsys.readouterr().out


def test_ex4_rejects_the_plain_ratio(capsys):
    assert not qh.check_smoothquant_scales(ACT / WMAX, ACT, WMAX, alpha=0.5)
    assert "❌" in capsys.readouterr().out


def test_ex4_rejects_one_factor_for_all_channels(capsys):
    assert not qh.check_smoothquant_scales(torch.tensor([2.0]), ACT, WMAX, alpha=0.5)
    assert "one factor per input channel" in capsys.readouterr().out
