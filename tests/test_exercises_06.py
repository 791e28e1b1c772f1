"""Notebook 06's self-checks: the right answer passes; each typical wrong answer fails with its hint."""

import torch

import qhelpers as qh

# Exercise 1: pack_byte(low, high) with bit operations.
RIGHT_1 = lambda low, high: (low & 0xF) | ((high & 0xF) << 4)


def test_ex1_accepts_right_answer(capsys):
    assert qh.check_int4_pack(RIGHT_1)
    assert "✅" in capsys.readouterr().out


def test_ex1_rejects_the_number_for_one_pair(capsys):
    assert not qh.check_int4_pack(93)
    assert "write a function" in capsys.readouterr().out


def test_ex1_rejects_swapped_nibbles(capsys):
    assert not qh.check_int4_pack(lambda low, high: (high & 0xF) | ((low & 0xF) << 4))
    assert "swapped" in capsys.readouterr().out


def test_ex1_rejects_an_unmasked_high_nibble(capsys):
    # right for (-3, 5), the pair of the old single-number exercise; wrong for a negative high code
    assert (-3 & 0xF) | (5 << 4) == RIGHT_1(-3, 5)
    assert not qh.check_int4_pack(lambda low, high: (low & 0xF) | (high << 4))
    out = capsys.readouterr().out
    assert "(5, -3)" in out and "& 0xF" in out


def test_ex1_rejects_an_unmasked_low_nibble(capsys):
    assert not qh.check_int4_pack(lambda low, high: low | ((high & 0xF) << 4))
    assert "& 0xF" in capsys.readouterr().out


def test_ex1_rejects_plain_arithmetic(capsys):
    assert not qh.check_int4_pack(lambda low, high: low + 16 * high)
    assert "two's complement" in capsys.readouterr().out


def test_ex1_rejects_the_helper(capsys):
    assert not qh.check_int4_pack(lambda low, high: int(qh.pack_int4(torch.tensor([low, high]))[0]))
    assert "not to call qh.pack_int4" in capsys.readouterr().out


def test_ex1_blank_is_not_filled(capsys):
    assert not qh.check_int4_pack(...)
    assert "not filled in yet" in capsys.readouterr().out


# Exercise 2: int4_bytes(out_features, in_features, group_size, scale_bytes).
RIGHT_2 = lambda o, i, g, sb: o * i // 2 + o * (i // g) * sb


def test_ex2_accepts_right_answer(capsys):
    assert qh.check_int4_weight_bytes(RIGHT_2)
    assert "✅" in capsys.readouterr().out


def test_ex2_rejects_the_number_for_one_shape(capsys):
    assert not qh.check_int4_weight_bytes(4096 * 4096 // 2 + 4096 * 32 * 2)
    assert "write a function" in capsys.readouterr().out


def test_ex2_rejects_codes_without_scales(capsys):
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i // 2)
    assert "codes only" in capsys.readouterr().out


def test_ex2_rejects_a_byte_per_code(capsys):
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i + o * (i // g) * sb)
    assert "half a byte" in capsys.readouterr().out


def test_ex2_rejects_one_scale_per_row(capsys):
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i // 2 + o * sb)
    assert "one per row" in capsys.readouterr().out


def test_ex2_rejects_the_groups_of_one_row_only(capsys):
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i // 2 + (i // g) * sb)
    assert "every row has its own groups" in capsys.readouterr().out


def test_ex2_rejects_groups_along_the_outputs(capsys):
    # equal to the right count wherever group_size divides out_features too; 96 x 4096 at groups of 64 tells them apart
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i // 2 + i * (o // g) * sb)
    out = capsys.readouterr().out
    assert "96 x 4096" in out and "consecutive inputs of one row" in out


def test_ex2_rejects_float32_scales_always(capsys):
    # 4096 x 4096 with groups of 256 and float32 scales gives the same total as groups of 128 and float16:
    # a single number could not tell them apart; the other shapes do
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i // 2 + o * (i // g) * 4)
    assert "scale_bytes" in capsys.readouterr().out


def test_ex2_rejects_the_helper(capsys):
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: qh.weight_storage_bytes(o, i, bits=4, group_size=g, scale_bytes=sb))
    assert "not to call qh.weight_storage_bytes" in capsys.readouterr().out


def test_ex2_reports_a_crash_without_raising(capsys):
    assert not qh.check_int4_weight_bytes(lambda o, i: o * i)
    assert "raised TypeError" in capsys.readouterr().out


# Exercise 3 (predict first): predicted_speedup(batch, in_features, out_features) of int8 weight-only over float32,
# checked on a 4096 x 8192 layer at several batches and on a 16 x 16 layer at batch 1.
GFLOPS, GBPS = 100.0, 17.0


def right_3(batch, in_features=4096, out_features=8192):
    return qh.roofline_ms(qh.linear_cost(in_features, out_features, batch), gflops=GFLOPS, gbps=GBPS) / qh.roofline_ms(
        qh.linear_cost(in_features, out_features, batch, weight_bits=8), gflops=GFLOPS, gbps=GBPS
    )


def check3(answer):
    return qh.check_roofline_speedup(answer, 4096, 8192, weight_bits=8, gflops=GFLOPS, gbps=GBPS)


def test_ex3_accepts_right_answer(capsys):
    assert check3(right_3)
    assert check3(lambda b, i, o: right_3(b, i, o) * 1.08)
    assert "✅" in capsys.readouterr().out


def test_ex3_the_answer_is_not_a_constant():
    from qhelpers.linear_checks import ROOFLINE_BATCHES

    values = dict(zip(ROOFLINE_BATCHES, (right_3(b) for b in ROOFLINE_BATCHES)))
    assert values[1] > 3.5 and abs(values[256] - 1.0) < 0.01 and 1.2 < values[4] < 3.5  # batch 4 is neither


def test_ex3_rejects_a_number(capsys):
    assert not check3(right_3(1))
    assert "write a function" in capsys.readouterr().out


def test_ex3_rejects_the_byte_ratio_at_every_batch(capsys):
    assert not check3(lambda b, i, o: 4.0)
    assert "slower of FLOP time and byte time" in capsys.readouterr().out


def test_ex3_rejects_no_speedup(capsys):
    assert not check3(lambda b, i, o: 1.0)
    assert "limited by memory" in capsys.readouterr().out


def test_ex3_rejects_upside_down(capsys):
    assert not check3(lambda b, i, o: 1 / right_3(b, i, o))
    assert "upside down" in capsys.readouterr().out


def test_ex3_rejects_the_sum_of_the_two_times(capsys):
    def summed(b, i, o):
        f, q = qh.linear_cost(i, o, b), qh.linear_cost(i, o, b, weight_bits=8)
        t = lambda c: c.flops / (GFLOPS * 1e9) + c.bytes / (GBPS * 1e9)
        return t(f) / t(q)

    assert not check3(summed)
    assert "not their sum" in capsys.readouterr().out


def test_ex3_rejects_int8_activations(capsys):
    # W8A8 bytes: right within 10 % on the large layer at every batch, a third off on the small layer
    def w8a8(b, i, o):
        return qh.roofline_ms(qh.linear_cost(i, o, b), gflops=GFLOPS, gbps=GBPS) / qh.roofline_ms(
            qh.linear_cost(i, o, b, weight_bits=8, activation_bits=8), gflops=GFLOPS, gbps=GBPS
        )

    from qhelpers.linear_checks import ROOFLINE_BATCHES

    assert all(abs(w8a8(b, 4096, 8192) / right_3(b) - 1) < 0.1 for b in ROOFLINE_BATCHES)
    assert not check3(w8a8)
    out = capsys.readouterr().out
    assert "16 x 16" in out and "activation_bits=32" in out


def test_ex3_rejects_activations_left_out(capsys):
    # weight bytes and FLOPs only: on the 16 x 16 layer it gives the same 4.0 as 8-bit activations, so one hint names both
    def weights_only(b, i, o):
        t = lambda c: max(c.flops / (GFLOPS * 1e9), c.weight_bytes / (GBPS * 1e9))
        return t(qh.linear_cost(i, o, b)) / t(qh.linear_cost(i, o, b, weight_bits=8))

    assert not check3(weights_only)
    out = capsys.readouterr().out
    assert "16 x 16" in out and "nor left out" in out


def test_ex3_rejects_a_function_of_the_batch_alone(capsys):
    assert not check3(lambda batch: right_3(batch))
    assert "raised TypeError" in capsys.readouterr().out


def test_ex3_blank_is_not_filled(capsys):
    assert not check3(...)
    assert "not filled in yet" in capsys.readouterr().out


# Exercise 4: smooth_scales(act_max, weight_max, alpha), checked at alphas other than 0.5.
ACT = torch.tensor([1.0, 50.0, 2.0, 0.5])
WMAX = torch.tensor([0.2, 0.1, 0.4, 0.3])
RIGHT_4 = lambda a, w, alpha: a.pow(alpha) / w.pow(1 - alpha)


def test_ex4_accepts_right_answer(capsys):
    assert qh.check_smoothquant_scales(RIGHT_4, ACT, WMAX)
    assert "✅" in capsys.readouterr().out


def test_ex4_rejects_the_inverse(capsys):
    assert not qh.check_smoothquant_scales(lambda a, w, alpha: w.pow(1 - alpha) / a.pow(alpha), ACT, WMAX)
    assert "upside down" in capsys.readouterr().out


def test_ex4_rejects_swapped_exponents(capsys):
    assert torch.allclose(RIGHT_4(ACT, WMAX, 0.5), ACT.pow(0.5) / WMAX.pow(0.5))  # at 0.5 the swap is invisible
    assert not qh.check_smoothquant_scales(lambda a, w, alpha: a.pow(1 - alpha) / w.pow(alpha), ACT, WMAX)
    assert "exponent" in capsys.readouterr().out


def test_ex4_rejects_a_fixed_alpha_of_one_half(capsys):
    assert not qh.check_smoothquant_scales(lambda a, w, alpha: a.pow(0.5) / w.pow(0.5), ACT, WMAX)
    assert "use the alpha argument" in capsys.readouterr().out


def test_ex4_rejects_the_plain_ratio(capsys):
    assert not qh.check_smoothquant_scales(lambda a, w, alpha: a / w, ACT, WMAX)
    assert "compare your formula" in capsys.readouterr().out


def test_ex4_rejects_one_factor_for_all_channels(capsys):
    assert not qh.check_smoothquant_scales(lambda a, w, alpha: torch.tensor([2.0]), ACT, WMAX)
    assert "one factor per input channel" in capsys.readouterr().out


def test_ex4_rejects_the_helper(capsys):
    assert not qh.check_smoothquant_scales(lambda a, w, alpha: qh.smoothquant_scales(a, w, alpha=alpha), ACT, WMAX)
    assert "not to call qh.smoothquant_scales" in capsys.readouterr().out


def test_ex4_blank_is_not_filled(capsys):
    assert not qh.check_smoothquant_scales(..., ACT, WMAX)
    assert "not filled in yet" in capsys.readouterr().out


def test_ex4_rejects_the_helper_under_another_name(capsys):
    from qhelpers.smoothquant import smoothquant_scales as renamed

    namespace = {"renamed": renamed}
    aliased = eval("lambda a, w, alpha: renamed(a, w, alpha=alpha)", namespace)
    assert not qh.check_smoothquant_scales(aliased, ACT, WMAX)
    assert "not to call qh.smoothquant_scales" in capsys.readouterr().out
    assert namespace["renamed"] is qh.smoothquant_scales  # put back


def test_ex2_rejects_the_helper_held_in_a_closure(capsys):
    def make(helper):
        return lambda o, i, g, sb: helper(o, i, bits=4, group_size=g, scale_bytes=sb)

    answer = make(qh.weight_storage_bytes)
    assert not qh.check_int4_weight_bytes(answer)
    assert "not to call qh.weight_storage_bytes" in capsys.readouterr().out
    assert answer.__closure__[0].cell_contents is qh.weight_storage_bytes  # put back


def test_a_check_leaves_the_forbidden_helper_in_place():
    qh.check_smoothquant_scales(lambda a, w, alpha: qh.smoothquant_scales(a, w, alpha=alpha), ACT, WMAX)
    assert qh.smoothquant_scales(ACT, WMAX, alpha=1.0).allclose(ACT)
    import qhelpers.linear_checks as checks
    import qhelpers.smoothquant as lin

    assert lin.smoothquant_scales is qh.smoothquant_scales is checks.smoothquant_scales


def test_each_check_has_a_general_hint_for_other_wrong_answers(capsys):
    assert not qh.check_int4_pack(lambda low, high: 0)
    assert "low nibble = first code & 0xF" in capsys.readouterr().out
    assert not qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i)
    assert "add the packed codes' bytes and the scales' bytes" in capsys.readouterr().out
    assert not check3(lambda b, i, o: 2.0)
    assert "divide the roofline time of the float layer by that of the quantized one" in capsys.readouterr().out


def test_a_closure_with_an_empty_cell_is_run_not_crashed(capsys):
    def outer():
        def inner(a, w, alpha):
            return unset(a)  # noqa: F821 (a free variable never assigned: its closure cell is empty)

        return inner
        unset = None  # noqa: F841 (unreachable: leaves the cell empty)

    assert not qh.check_smoothquant_scales(outer(), ACT, WMAX)
    assert "raised NameError" in capsys.readouterr().out


def test_the_helpers_are_caught_however_they_are_reached(capsys):
    import functools

    helpers = {"bytes": qh.weight_storage_bytes}
    smuggled = {
        "default argument": lambda o, i, g, sb, f=qh.weight_storage_bytes: f(o, i, bits=4, group_size=g, scale_bytes=sb),
        "functools.partial": functools.partial(lambda f, o, i, g, sb: f(o, i, bits=4, group_size=g, scale_bytes=sb), qh.weight_storage_bytes),
        "a dict": lambda o, i, g, sb: helpers["bytes"](o, i, bits=4, group_size=g, scale_bytes=sb),
        "another helper with the same arithmetic": lambda o, i, g, sb: qh.linear_cost(i, o, 1, weight_bits=4, scale_bits=8 * sb / g).weight_bytes,
    }
    for how, answer in smuggled.items():
        assert not qh.check_int4_weight_bytes(answer), how
        assert "not to call qh.weight_storage_bytes or qh.linear_cost" in capsys.readouterr().out, how
    assert not qh.check_int4_pack(lambda low, high, f=qh.pack_int4: int(f(torch.tensor([low, high]))[0]))
    assert "not to call qh.pack_int4" in capsys.readouterr().out
    assert not qh.check_smoothquant_scales(lambda a, w, alpha, f=qh.smoothquant_scales: f(a, w, alpha=alpha), ACT, WMAX)
    assert "not to call qh.smoothquant_scales" in capsys.readouterr().out
    # every helper works again afterwards
    assert qh.weight_storage_bytes(16, 32, bits=4, group_size=32, scale_bytes=2) == 16 * 16 + 16 * 2
    assert qh.linear_cost(32, 16, 1, weight_bits=8).weight_bytes == 512
    assert qh.check_int4_weight_bytes(lambda o, i, g, sb: o * i // 2 + o * (i // g) * sb)
