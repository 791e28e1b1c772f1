"""Notebook 06's modules (group_quant, roofline, layer_timing, smoothquant) against torchao's quant_primitives, plus int4 packing, the roofline and SmoothQuant."""

import time
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchao.quantization.quant_primitives import (
    MappingType,
    choose_qparams_affine,
    dequantize_affine,
    quantize_affine,
)

import qhelpers as qh
import qhelpers.roofline

EPS = torch.finfo(torch.float32).eps


def torchao_group(w, group_size, bits, mapping=MappingType.SYMMETRIC):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    block = (1, group_size)
    scale, zp = choose_qparams_affine(w, mapping, block, torch.int8, qmin, qmax, eps=EPS, scale_dtype=torch.float32, zero_point_dtype=torch.int32)
    q = quantize_affine(w, block, scale, zp, torch.int8, qmin, qmax)
    return scale, zp, q, dequantize_affine(q, block, scale, zp, torch.int8, qmin, qmax)


@pytest.mark.parametrize("group_size", [16, 32, 64, 128])
@pytest.mark.parametrize("bits", [4, 8])
def test_group_quantization_equals_torchao_symmetric(group_size, bits):
    w = torch.randn(24, 128) * torch.linspace(0.1, 3, 128)
    gqp = qh.group_qparams(w, group_size=group_size, bits=bits)
    scale, zp, q, dq = torchao_group(w, group_size, bits)
    assert gqp.scale.shape == (24, 128 // group_size) and gqp.groups == 24 * 128 // group_size
    torch.testing.assert_close(gqp.scale.reshape(-1), scale.reshape(-1), rtol=0, atol=0)
    assert torch.equal(gqp.zero_point.reshape(-1), zp.reshape(-1).long())
    codes = qh.group_quantize(w, gqp)
    assert codes.dtype == torch.int8 and torch.equal(codes, q)
    torch.testing.assert_close(qh.group_dequantize(codes, gqp), dq, rtol=0, atol=0)


def test_group_quantization_equals_torchao_asymmetric():
    w = torch.rand(8, 64) * 3 - 0.5
    gqp = qh.group_qparams(w, group_size=32, bits=8, scheme="affine")
    scale, zp, q, _ = torchao_group(w, 32, 8, MappingType.ASYMMETRIC)
    torch.testing.assert_close(gqp.scale.reshape(-1), scale.reshape(-1), rtol=1e-6, atol=0)
    assert torch.equal(gqp.zero_point.reshape(-1), zp.reshape(-1).long())
    assert torch.equal(qh.group_quantize(w, gqp), q)


def test_group_size_equal_to_in_features_is_per_channel():
    w = torch.randn(16, 64)
    gqp = qh.group_qparams(w, group_size=64)
    per_channel = qh.qparams_from_tensor(w, 8, True, "symmetric", axis=0)
    torch.testing.assert_close(gqp.scale.reshape(-1), per_channel.scale)
    assert torch.equal(qh.group_quantize(w, gqp), qh.quantize(w, per_channel))


def test_smaller_groups_give_higher_sqnr():
    torch.manual_seed(0)
    w = torch.randn(64, 256) * torch.rand(256) ** 3
    sqnr = [qh.sqnr_db(w, qh.group_fake_quantize(w, group_size=g, bits=4)) for g in (256, 128, 64, 32)]
    assert sqnr == sorted(sqnr)


@pytest.mark.parametrize("bad", [0, 3, 48, 100])
def test_group_size_must_divide_the_input_dimension(bad):
    with pytest.raises(ValueError, match="group_size must divide in_features=64"):
        qh.group_qparams(torch.randn(4, 64), group_size=bad)


def test_group_bad_inputs():
    with pytest.raises(TypeError, match="group_size must be an int"):
        qh.group_qparams(torch.randn(4, 64), group_size=32.0)
    with pytest.raises(ValueError, match="must be 2-D"):
        qh.group_qparams(torch.randn(4, 8, 8), group_size=8)
    gqp = qh.group_qparams(torch.randn(4, 64), group_size=32)
    with pytest.raises(ValueError, match="made for"):
        qh.group_quantize(torch.randn(8, 64), gqp)
    with pytest.raises(TypeError, match="GroupQParams"):
        qh.group_quantize(torch.randn(4, 64), gqp.qparams)


def test_pack_int4_layout_and_round_trip_with_negative_codes():
    codes = torch.tensor([[-8, 7, -1, 0, 3, -5]], dtype=torch.int8)
    packed = qh.pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (1, 3)
    assert packed.tolist() == [[0x78, 0x0F, 0xB3]]  # low nibble first: -8 -> 0x8, 7 -> 0x7; -1 -> 0xF, 0 -> 0x0
    assert torch.equal(qh.unpack_int4(packed), codes)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-8, 7), min_size=1, max_size=40).map(lambda v: v + v[:1] if len(v) % 2 else v))
def test_pack_unpack_round_trip_property(values):
    codes = torch.tensor(values, dtype=torch.int64)
    assert torch.equal(qh.unpack_int4(qh.pack_int4(codes)), codes.to(torch.int8))


def test_pack_int4_bad_inputs():
    with pytest.raises(ValueError, match="must be even"):
        qh.pack_int4(torch.tensor([1, 2, 3], dtype=torch.int8))
    with pytest.raises(ValueError, match=r"-8\.\.7, got values from -9 to 2"):
        qh.pack_int4(torch.tensor([-9, 2], dtype=torch.int8))
    with pytest.raises(ValueError, match="from 0 to 8"):
        qh.pack_int4(torch.tensor([0, 8]))
    with pytest.raises(TypeError, match="plain integer"):
        qh.pack_int4(torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="uint8"):
        qh.unpack_int4(torch.tensor([1, 2], dtype=torch.int8))


def test_weight_only_linear_matches_dequantize_then_matmul_and_torchao():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    x = torch.randn(5, 7, 64)
    gqp = qh.group_qparams(lin.weight, group_size=32, bits=4)
    codes = qh.group_quantize(lin.weight, gqp)
    y8 = qh.weight_only_linear(x, codes, gqp, lin.bias)
    y_packed = qh.weight_only_linear(x, qh.pack_int4(codes), gqp, lin.bias)
    torch.testing.assert_close(y8, y_packed)
    *_, dq = torchao_group(lin.weight.detach(), 32, 4)
    torch.testing.assert_close(y8, torch.nn.functional.linear(x, dq, lin.bias))
    assert qh.sqnr_db(lin(x), y8) > 15
    with pytest.raises(ValueError, match="features"):
        qh.weight_only_linear(torch.randn(2, 32), codes, gqp)


def test_weight_storage_bytes():
    assert qh.weight_storage_bytes(4096, 4096, bits=8) == 4096 * 4096 + 4096 * 4
    assert qh.weight_storage_bytes(4096, 4096, bits=4, group_size=32) == 4096 * 4096 // 2 + 4096 * 128 * 4
    with pytest.raises(ValueError, match="group_size must divide"):
        qh.weight_storage_bytes(8, 49, bits=4, group_size=32)


def test_linear_cost_and_roofline():
    c = qh.linear_cost(4096, 4096, 1)
    assert c.flops == 2 * 4096 * 4096 and c.weight_bytes == 4 * 4096 * 4096
    assert c.intensity < 1  # batch 1: about half a FLOP per byte
    big = qh.linear_cost(4096, 4096, 256)
    assert big.intensity > 50
    # memory bound at batch 1: int8 weights take ~a quarter of the time
    t32 = qh.roofline_ms(c, gflops=100, gbps=10)
    t8 = qh.roofline_ms(qh.linear_cost(4096, 4096, 1, weight_bits=8), gflops=100, gbps=10)
    assert 3.9 < t32 / t8 < 4.0
    # compute bound at batch 256: weight-only changes nothing
    assert qh.roofline_ms(big, gflops=100, gbps=10) == qh.roofline_ms(qh.linear_cost(4096, 4096, 256, weight_bits=8), gflops=100, gbps=10)
    with pytest.raises(ValueError, match="weight_bits"):
        qh.linear_cost(8, 8, 1, weight_bits=3)
    with pytest.raises(ValueError, match="scale_bits"):
        qh.linear_cost(8, 8, 1, weight_bits=4, scale_bits=-1)


def test_linear_cost_counts_the_scales_with_the_weight():
    # int4 codes + a bfloat16 scale and zero point per group of 32 (PrototypeInt4WeightOnlyConfig): 5 bits per weight
    c = qh.linear_cost(4096, 8192, 1, weight_bits=4, scale_bits=2 * 16 / 32)
    assert c.weight_bytes == 4096 * 8192 * 5 / 8
    assert qh.linear_cost(64, 64, 1, weight_bits=4).weight_bytes == 64 * 64 / 2
    with pytest.raises(ValueError, match="positive"):
        qh.roofline_ms(c, gflops=0, gbps=1)


def test_measurements_return_positive_rates():
    assert qh.measure_bandwidth(megabytes=8, min_run_time=0.05) > 0.1
    assert qh.measure_matmul_rate(n=64, min_run_time=0.05) > 0.01
    with pytest.raises(ValueError, match="megabytes"):
        qh.measure_bandwidth(megabytes=1)


def test_smoothquant_keeps_the_float_output_and_helps_w8a8():
    torch.manual_seed(0)
    norm, lin = nn.LayerNorm(32), nn.Linear(32, 16)
    with torch.no_grad():
        norm.weight.copy_(torch.ones(32))
        norm.weight[[3, 17]] = 40.0  # two outlier channels
    x = torch.randn(64, 32)
    ref = lin(norm(x)).detach()
    before = qh.sqnr_db(ref, qh.w8a8_linear(norm(x), lin))
    act_max = qh.activation_channel_max(nn.Sequential(norm, lin), [x], {"lin": lin})["lin"]
    assert act_max.argsort()[-2:].sort().values.tolist() == [3, 17]
    s = qh.smoothquant_scales(act_max, lin.weight.abs().amax(dim=0), alpha=0.5)
    qh.smooth_layernorm_linears(norm, [lin], s)
    torch.testing.assert_close(lin(norm(x)).detach(), ref, rtol=1e-4, atol=1e-4)
    after = qh.sqnr_db(ref, qh.w8a8_linear(norm(x), lin))
    assert after > before + 6


def test_smoothquant_scales_formula_and_bad_inputs():
    a, w = torch.tensor([4.0, 100.0]), torch.tensor([1.0, 0.25])
    torch.testing.assert_close(qh.smoothquant_scales(a, w, alpha=0.5), torch.tensor([2.0, 20.0]))
    torch.testing.assert_close(qh.smoothquant_scales(a, w, alpha=0.0), 1 / w)
    with pytest.raises(ValueError, match="alpha"):
        qh.smoothquant_scales(a, w, alpha=1.5)
    with pytest.raises(ValueError, match="same length"):
        qh.smoothquant_scales(a, w[:1])
    with pytest.raises(ValueError, match="in_features"):
        qh.smooth_layernorm_linears(nn.LayerNorm(2), [nn.Linear(3, 2)], torch.ones(2))
    with pytest.raises(ValueError, match="positive"):
        qh.smooth_layernorm_linears(nn.LayerNorm(2), [nn.Linear(2, 2)], torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="never called"):
        qh.activation_channel_max(nn.Linear(2, 2), [torch.randn(1, 2)], {"other": nn.Linear(2, 2)})


def test_linear_stack_holds_independent_copies_and_stacks_their_outputs():
    layer = nn.Linear(8, 4).eval()
    stack = qh.LinearStack(layer, 3)
    x = torch.randn(2, 8)
    with torch.no_grad():
        out = stack(x)
    assert out.shape == (3, 2, 4) and torch.equal(out[2], layer(x).detach())
    ptrs = {m.weight.data_ptr() for m in stack.layers} | {layer.weight.data_ptr()}
    assert len(ptrs) == 4  # each copy has its own memory: a stack of views would stay in the cache
    with pytest.raises(ValueError, match="copies"):
        qh.LinearStack(layer, 0)


def test_round_robin_calls_the_next_layer_each_time():
    layers = [nn.Linear(2, 1, bias=False) for _ in range(3)]
    for k, m in enumerate(layers):
        nn.init.constant_(m.weight, float(k))
    rr = qh.RoundRobin(layers)
    x = torch.ones(1, 2)
    assert [float(rr(x)) for _ in range(4)] == [0.0, 2.0, 4.0, 0.0]
    with pytest.raises(ValueError):
        qh.RoundRobin([])


def test_copies_beyond_cache():
    assert qh.copies_beyond_cache(128 * 2**20) == 2
    assert qh.copies_beyond_cache(16 * 2**20) == 16
    assert qh.copies_beyond_cache(10 * 2**30) == 1
    with pytest.raises(ValueError):
        qh.copies_beyond_cache(0)


def test_torchao_int8_dynamic_cpu_path_follows_torchao():
    from torchao.utils import _cpu_is_amx_tile_supported, _cpu_is_vnni_supported

    expected = "u8s8" if (_cpu_is_vnni_supported() and not _cpu_is_amx_tile_supported()) else "s8s8"
    assert qh.torchao_int8_dynamic_cpu_path() == expected


def test_interleaved_times_pairs_the_rounds_and_divides_by_layers_per_call(monkeypatch):
    calls = []
    fns = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    t = qh.interleaved_times(fns, torch.zeros(1), rounds=3, warmup=1, sample_ms=1e-6, layers_per_call={"b": 4})
    assert t.rounds == 3 and all(len(v) == 3 for v in t.samples_ms.values())
    assert t.calls_per_sample == {"a": 1, "b": 1}
    # warm-up and sizing call of each, then rounds in rotating order: ab, ba, ab
    assert calls == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"]
    clock = {"now": 0.0}  # a fake clock: each call of "one" takes 2 ms, each call of "stack of 2" 4 ms

    def takes(seconds):
        def fn(x):
            clock["now"] += seconds
        return fn

    timed = qh.interleaved_times({"one": takes(0.002), "stack of 2": takes(0.004)}, torch.zeros(1), rounds=3,
                                 warmup=0, sample_ms=5.0, layers_per_call={"stack of 2": 2}, clock=lambda: clock["now"])
    assert timed.calls_per_sample == {"one": 3, "stack of 2": 2}  # samples of at least 5 ms
    assert {k: [round(v, 9) for v in vs] for k, vs in timed.samples_ms.items()} == {"one": [2.0] * 3, "stack of 2": [2.0] * 3}  # per layer
    assert timed.ratio("one", "stack of 2") == pytest.approx((1.0, 1.0, 1.0)) and timed.speedup("one", "stack of 2") == "within spread"
    for bad in ({}, {"a": 1}):
        with pytest.raises(ValueError, match="fns"):
            qh.interleaved_times(bad, torch.zeros(1))
    with pytest.raises(ValueError, match="rounds"):
        qh.interleaved_times(fns, torch.zeros(1), rounds=1)
    with pytest.raises(ValueError, match="layers_per_call"):
        qh.interleaved_times(fns, torch.zeros(1), layers_per_call={"c": 2})
    with pytest.raises(TypeError, match="clock"):
        qh.interleaved_times(fns, torch.zeros(1), clock=5)
    # the default clock: the thread's CPU time where it is fine-grained, the wall clock where it is not (Windows)
    monkeypatch.setattr(qhelpers.roofline.time, "get_clock_info", lambda name: SimpleNamespace(resolution=0.0156))
    assert qhelpers.roofline._thread_clock() is time.perf_counter
    monkeypatch.setattr(qhelpers.roofline.time, "get_clock_info", lambda name: SimpleNamespace(resolution=1e-9))
    assert qhelpers.roofline._thread_clock() is time.thread_time


def test_interleaved_ratio_is_paired_and_ranks_only_outside_the_spread():
    t = qh.Interleaved(samples_ms={"float": [10.0, 20.0, 10.0, 20.0], "fast": [5.0, 10.0, 5.0, 10.0],
                                   "same": [9.0, 22.0, 11.0, 18.0]}, calls_per_sample={}, rounds=4)
    # unpaired medians would overlap (5-10 vs 10-20 ms); round by round "fast" is always 2x
    assert t.ratio("float", "fast") == (2.0, 2.0, 2.0) and t.speedup("float", "fast") == "2.00x"
    assert t.speedup("float", "same") == "within spread"
    assert t.median_ms("float") == 15.0 and t.iqr_ms("fast") == 5.0
    with pytest.raises(KeyError, match="not timed"):
        t.median_ms("other")


@pytest.mark.slow  # compiles two layers
def test_layer_runners_keep_their_frozen_programs_while_timed_together():
    ok, reason = qh.compile_available()
    if not ok:
        pytest.skip(reason)
    from torch._dynamo.utils import counters

    a, b, x = nn.Linear(64, 32).eval(), nn.Linear(64, 32).eval(), torch.randn(2, 64)
    fa, per_call = qh.layer_runner(a, x, copies=2, compiled=True)
    fb, _ = qh.layer_runner(b, x, compiled=True)
    before = counters["stats"]["unique_graphs"]
    qh.interleaved_times({"a": fa, "b": fb}, x, rounds=2, warmup=1)
    assert counters["stats"]["unique_graphs"] == before and per_call == 2  # nothing rebuilt (compile_frozen would have reset a)
    torch._dynamo.reset()
    eager, one = qh.layer_runner(a, x, copies=3)
    assert isinstance(eager, qh.RoundRobin) and len(eager.layers) == 3 and one == 1
    with pytest.raises(ValueError, match="copies"):
        qh.layer_runner(a, x, copies=0)
