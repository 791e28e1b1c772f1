"""qhelpers.quantmath against torch's own observers, quantize functions and quantized Linear."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

import qhelpers as qh

# This file compares against the deprecated quantized dtypes on purpose; the warning is tested in test_environment.
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel")

TORCH_DTYPE = {True: torch.qint8, False: torch.quint8}


def random_tensor(seed: int, shape=(6, 5)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    spread = float(torch.rand(1, generator=g)) * 10 + 1e-3
    offset = float(torch.randn(1, generator=g))
    return torch.randn(shape, generator=g) * spread + offset


# ----------------------------------------------------------------------------- qparams vs observers


# unsigned symmetric with reduce_range is refused by torch's observer; it is tested as an error below
SETTINGS = [(s, sch, rr) for s in (True, False) for sch in ("affine", "symmetric") for rr in (False, True) if not (sch == "symmetric" and not s and rr)]


@pytest.mark.parametrize("signed, scheme, reduce_range", SETTINGS)
@pytest.mark.parametrize("seed", range(5))
def test_per_tensor_qparams_equal_minmax_observer(signed, scheme, reduce_range, seed):
    x = random_tensor(seed)
    qscheme = torch.per_tensor_affine if scheme == "affine" else torch.per_tensor_symmetric
    obs = MinMaxObserver(dtype=TORCH_DTYPE[signed], qscheme=qscheme, reduce_range=reduce_range)
    obs(x)
    scale, zp = obs.calculate_qparams()
    qp = qh.qparams_from_tensor(x, 8, signed, scheme, reduce_range)
    assert torch.equal(qp.scale, scale)
    assert torch.equal(qp.zero_point, zp)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_per_channel_qparams_equal_per_channel_observer(signed, scheme, axis):
    x = random_tensor(axis, shape=(4, 3, 5))
    qscheme = torch.per_channel_affine if scheme == "affine" else torch.per_channel_symmetric
    obs = PerChannelMinMaxObserver(ch_axis=axis, dtype=TORCH_DTYPE[signed], qscheme=qscheme)
    obs(x)
    scale, zp = obs.calculate_qparams()
    qp = qh.qparams_from_tensor(x, 8, signed, scheme, axis=axis)
    assert torch.equal(qp.scale, scale)
    assert torch.equal(qp.zero_point, zp)
    assert qp.per_channel and qp.axis == axis


@pytest.mark.parametrize("bits", [2, 4, 6, 12, 16])
def test_other_bit_widths_equal_observer_with_custom_range(bits):
    x = random_tensor(bits)
    qmin, qmax = qh.quant_range(bits, signed=True)
    obs = MinMaxObserver(dtype=torch.qint32, quant_min=qmin, quant_max=qmax)
    obs(x)
    scale, zp = obs.calculate_qparams()
    qp = qh.qparams_from_tensor(x, bits, signed=True)
    assert torch.equal(qp.scale, scale) and torch.equal(qp.zero_point, zp)


def test_quant_range_values():
    assert qh.quant_range(8, True) == (-128, 127)
    assert qh.quant_range(8, False) == (0, 255)
    assert qh.quant_range(8, False, reduce_range=True) == (0, 127)
    assert qh.quant_range(8, True, reduce_range=True) == (-64, 63)
    assert qh.quant_range(4, True) == (-8, 7)
    assert qh.quant_range(16, False) == (0, 65535)
    assert qh.storage_dtype(8, True) == torch.int8
    assert qh.storage_dtype(8, False) == torch.uint8
    assert qh.storage_dtype(12, True) == torch.int16
    assert qh.storage_dtype(16, False) == torch.int32


def test_zero_is_exactly_representable_even_for_all_positive_data():
    x = torch.linspace(2.0, 5.0, 50)
    qp = qh.qparams_from_tensor(x, 8, signed=False)
    assert int(qp.zero_point) == 0  # range widened to [0, 5]
    zero = qh.quantize(torch.zeros(1), qp)
    assert qh.dequantize(zero, qp).item() == 0.0


# ----------------------------------------------------------------------------- quantize vs torch


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("seed", range(10))
def test_quantize_bit_exact_with_quantize_per_tensor(signed, scheme, seed):
    x = random_tensor(seed, shape=(7, 9))
    qp = qh.qparams_from_tensor(x, 8, signed, scheme)
    ref = torch.quantize_per_tensor(x, float(qp.scale), int(qp.zero_point), TORCH_DTYPE[signed])
    codes = qh.quantize(x, qp)
    assert codes.dtype == (torch.int8 if signed else torch.uint8)
    assert torch.equal(codes, ref.int_repr())
    torch.testing.assert_close(qh.dequantize(codes, qp), ref.dequantize(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("axis", [0, 1])
def test_quantize_bit_exact_with_quantize_per_channel(signed, axis):
    x = random_tensor(axis + 10, shape=(8, 6))
    qp = qh.qparams_from_tensor(x, 8, signed, "affine", axis=axis)
    ref = torch.quantize_per_channel(x, qp.scale.double(), qp.zero_point, axis, TORCH_DTYPE[signed])
    assert torch.equal(qh.quantize(x, qp), ref.int_repr())
    torch.testing.assert_close(qh.dequantize(qh.quantize(x, qp), qp), ref.dequantize(), rtol=1e-6, atol=1e-7)


def test_rounding_of_halves_is_half_to_even_like_torch():
    qp = qh.qparams_from_minmax(-1.0, 1.0, 8, signed=True, scheme="symmetric")
    s = float(qp.scale)
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5]) * s
    ref = torch.quantize_per_tensor(x, s, 0, torch.qint8).int_repr()
    codes = qh.quantize(x, qp)
    assert torch.equal(codes, ref)
    assert codes.tolist() == [0, 2, 2, 0, -2, -2]


def test_clamping_outside_the_range():
    qp = qh.qparams_from_minmax(-1.0, 1.0, 8, signed=True)
    codes = qh.quantize(torch.tensor([-100.0, 100.0]), qp)
    assert codes.tolist() == [qp.quant_min, qp.quant_max]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    bits=st.integers(2, 16),
    signed=st.booleans(),
    scheme=st.sampled_from(["affine", "symmetric"]),
    per_channel=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(shape, bits, signed, scheme, per_channel, seed):
    x = random_tensor(seed, shape=tuple(shape))
    axis = (seed % len(shape)) if per_channel else None
    qp = qh.qparams_from_tensor(x, bits, signed, scheme, axis=axis)
    codes = qh.quantize(x, qp)
    assert codes.dtype == qh.storage_dtype(bits, signed)
    assert int(codes.min()) >= qp.quant_min and int(codes.max()) <= qp.quant_max
    x_hat = qh.dequantize(codes, qp)
    scale = qp.scale.reshape([-1 if (axis is not None and d == axis) else 1 for d in range(x.dim())]) if axis is not None else qp.scale
    lo = qh.dequantize(torch.full_like(codes, qp.quant_min), qp)
    hi = qh.dequantize(torch.full_like(codes, qp.quant_max), qp)
    inside = (x >= lo) & (x <= hi)
    err = (x - x_hat).abs()
    bound = (scale / 2) * (1 + 1e-5) + 1e-6
    assert bool((err <= bound)[inside].all())


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 16), signed=st.booleans(), scheme=st.sampled_from(["affine", "symmetric"]), seed=st.integers(0, 10_000))
def test_fake_quantize_equals_torch_fake_quantize(bits, signed, scheme, seed):
    x = random_tensor(seed)
    qp = qh.qparams_from_tensor(x, bits, signed, scheme)
    ref = torch.fake_quantize_per_tensor_affine(x, float(qp.scale), int(qp.zero_point), qp.quant_min, qp.quant_max)
    torch.testing.assert_close(qh.fake_quantize(x, qp), ref, rtol=1e-6, atol=1e-6 * float(qp.scale))


# ----------------------------------------------------------------------------- errors


def test_error_measures():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x_hat = torch.tensor([1.0, 2.0, 3.0, 3.0])
    assert qh.max_abs_error(x, x_hat) == 1.0
    assert qh.mse(x, x_hat) == 0.25
    assert qh.sqnr_db(x, x_hat) == pytest.approx(10 * math.log10(30.0 / 1.0))
    assert qh.sqnr_db(x, x) == math.inf


def test_each_bit_adds_about_six_db():
    x = torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    sq = [qh.sqnr_db(x, qh.fake_quantize(x, qh.qparams_from_tensor(x, b))) for b in (6, 7, 8)]
    assert sq[1] - sq[0] == pytest.approx(6.02, abs=0.5)
    assert sq[2] - sq[1] == pytest.approx(6.02, abs=0.5)


# ----------------------------------------------------------------------------- int8 linear


_BIAS_MODE_OF_ENGINE = {"x86": "float", "fbgemm": "float", "qnnpack": "int32"}


def _quantized_linear_and_mine(engine, per_channel, seed, reduce_range, bias_mode):
    from torch.ao.nn.quantized import Linear as QLinear

    torch.manual_seed(seed)
    lin = torch.nn.Linear(64, 24)
    x = torch.randn(200, 64) * 2 + 0.5
    x_qp = qh.qparams_from_tensor(x, 8, signed=False, reduce_range=reduce_range)
    w_qp = qh.qparams_from_tensor(lin.weight, 8, True, "symmetric", axis=0 if per_channel else None)
    out_qp = qh.qparams_from_tensor(lin(x).detach(), 8, signed=False)
    with qh.engine(engine):
        qlin = QLinear(64, 24, dtype=torch.qint8)
        if per_channel:
            w = torch.quantize_per_channel(lin.weight.detach(), w_qp.scale.double(), w_qp.zero_point, 0, torch.qint8)
        else:
            w = torch.quantize_per_tensor(lin.weight.detach(), float(w_qp.scale), 0, torch.qint8)
        qlin.set_weight_bias(w, lin.bias.detach())
        qlin.scale, qlin.zero_point = float(out_qp.scale), int(out_qp.zero_point)
        ref = qlin(torch.quantize_per_tensor(x, float(x_qp.scale), int(x_qp.zero_point), torch.quint8)).int_repr()
    mine = qh.int8_linear(qh.quantize(x, x_qp), x_qp, qh.quantize(lin.weight, w_qp), w_qp, lin.bias, out_qp, bias_mode=bias_mode)
    assert mine.dtype == torch.uint8
    return (ref.int() - mine.int()).abs()


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_int8_linear_bias_mode_matches_its_engine_with_zero_differing_codes(engine, per_channel, seed):
    if engine not in qh.supported_engines():
        pytest.skip(f"engine {engine!r} is not available here ({qh.supported_engines()})")
    # full-range activations saturate the 16-bit pair sums of x86/fbgemm on CPUs without VNNI: use the
    # engines' default reduced range (0..127) there, as torch's default qconfig does
    reduce_range = engine in ("x86", "fbgemm") and not qh.cpu_has_vnni()
    diff = _quantized_linear_and_mine(engine, per_channel, seed, reduce_range, _BIAS_MODE_OF_ENGINE[engine])
    assert int((diff != 0).sum()) == 0


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_the_other_bias_mode_is_off_by_at_most_one_code(engine):
    if engine not in qh.supported_engines():
        pytest.skip(f"engine {engine!r} is not available here")
    other = {"float": "int32", "int32": "float"}[_BIAS_MODE_OF_ENGINE[engine]]
    diff = _quantized_linear_and_mine(engine, False, 0, engine == "x86", other)
    assert int(diff.max()) <= 1 and int((diff != 0).sum()) > 0  # the bias's rounding to int32 tips a few values


def test_full_range_activations_saturate_without_vnni_and_not_with_reduce_range():
    """K=64, all activation codes 255, all weight codes 127: 64.0 exactly, unless the AVX2 kernels saturate."""
    from torch.ao.nn.quantized import Linear as QLinear

    engine = "x86" if "x86" in qh.supported_engines() else None
    if engine is None:
        pytest.skip("no x86 engine here")
    results = {}
    with qh.engine(engine):
        for act_max_code in (255, 127):
            ql = QLinear(64, 1, dtype=torch.qint8)
            ql.set_weight_bias(torch.quantize_per_tensor(torch.ones(1, 64), 1 / 127, 0, torch.qint8), None)
            ql.scale, ql.zero_point = 0.5, 0
            x = torch.quantize_per_tensor(torch.ones(1, 64), 1 / act_max_code, 0, torch.quint8)
            results[act_max_code] = ql(x).dequantize().item()
    assert results[127] == 64.0
    if qh.cpu_has_vnni():
        assert results[255] == 64.0
    elif qh.cpu_has_vnni() is False:
        assert results[255] < 40.0  # 32 pair sums saturate at 32767 instead of 64770


def test_int8_linear_refuses_an_unknown_bias_mode():
    x_qp = qh.qparams_from_minmax(0.0, 1.0, signed=False)
    w_qp = qh.qparams_from_minmax(-1.0, 1.0, scheme="symmetric")
    with pytest.raises(ValueError, match="bias_mode must be 'float'"):
        qh.int8_linear(torch.zeros(2, 3, dtype=torch.uint8), x_qp, torch.zeros(4, 3, dtype=torch.int8), w_qp, None, x_qp, bias_mode="fbgemm")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: qh.qparams_from_minmax(1.0, -1.0), ValueError, "min_val must be <= max_val"),
        (lambda: qh.qparams_from_minmax(float("nan"), 1.0), ValueError, "finite"),
        (lambda: qh.qparams_from_minmax(0.0, float("inf")), ValueError, "finite"),
        (lambda: qh.qparams_from_tensor(torch.tensor([1.0, float("nan")])), ValueError, "NaN"),
        (lambda: qh.qparams_from_tensor(torch.tensor([1.0, float("inf")])), ValueError, "inf"),
        (lambda: qh.qparams_from_tensor(torch.empty(0)), ValueError, "empty"),
        (lambda: qh.qparams_from_tensor(torch.ones(3), bits=1), ValueError, "bits must be from 2 to 16"),
        (lambda: qh.qparams_from_tensor(torch.ones(3), bits=17), ValueError, "bits must be from 2 to 16"),
        (lambda: qh.qparams_from_tensor(torch.ones(3), bits=8.0), TypeError, "bits must be an int"),
        (lambda: qh.qparams_from_tensor(torch.ones(3, 2), axis=2), ValueError, "axis 2 is out of range"),
        (lambda: qh.qparams_from_tensor(torch.ones(3, dtype=torch.int32)), TypeError, "floating-point"),
        (lambda: qh.qparams_from_tensor([1.0, 2.0]), TypeError, "torch.Tensor"),
        (lambda: qh.qparams_from_tensor(torch.ones(3), scheme="log"), ValueError, "scheme must be"),
        (lambda: qh.qparams_from_tensor(torch.ones(3), signed=False, scheme="symmetric", reduce_range=True), ValueError, "reduce_range"),
        (lambda: qh.quantize(torch.ones(3, dtype=torch.float64).int(), qh.qparams_from_minmax(0.0, 1.0)), TypeError, "floating-point"),
        (lambda: qh.quantize(torch.ones(4, 3), qh.qparams_from_tensor(torch.ones(5, 3), axis=0)), ValueError, "5 channels"),
        (lambda: qh.dequantize(torch.ones(3), qh.qparams_from_minmax(0.0, 1.0)), TypeError, "integer codes"),
        (lambda: qh.mse(torch.ones(3), torch.ones(4)), ValueError, "same shape"),
    ],
)
def test_bad_input_raises_clear_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_quantized_tensor_input_is_refused_with_advice():
    q = torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8)
    with pytest.raises(TypeError, match="dequantize"):
        qh.qparams_from_tensor(q)
    with pytest.raises(TypeError, match="int_repr"):
        qh.dequantize(q, qh.qparams_from_minmax(0.0, 1.0))


def test_saturating_int16_pairs_reproduce_the_avx2_kernel_or_the_exact_sum():
    """Without VNNI, x86's kernel equals the 16-bit pair emulation; with VNNI (or with reduce_range) it equals the exact sum."""
    from torch.ao.nn.quantized import Linear as QLinear

    if "x86" not in qh.supported_engines() or qh.cpu_has_vnni() is None:
        pytest.skip("needs the x86 engine on an x86 CPU whose flags can be read")
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 24)
    x = torch.randn(100, 64) * 2 + 0.5
    x_qp = qh.qparams_from_tensor(x, 8, signed=False)  # full range 0..255
    w_qp = qh.qparams_from_tensor(lin.weight, 8, True, "symmetric")
    out_qp = qh.qparams_from_tensor(lin(x).detach(), 8, signed=False)
    with qh.engine("x86"):
        qlin = QLinear(64, 24, dtype=torch.qint8)
        qlin.set_weight_bias(torch.quantize_per_tensor(lin.weight.detach(), float(w_qp.scale), 0, torch.qint8), lin.bias.detach())
        qlin.scale, qlin.zero_point = float(out_qp.scale), int(out_qp.zero_point)
        ref = qlin(torch.quantize_per_tensor(x, float(x_qp.scale), int(x_qp.zero_point), torch.quint8)).int_repr()
    args = (qh.quantize(x, x_qp), x_qp, qh.quantize(lin.weight, w_qp), w_qp, lin.bias, out_qp)
    exact = qh.int8_linear(*args, bias_mode="float")
    saturated = qh.int8_linear(*args, bias_mode="float", saturate_int16_pairs=True)
    assert int((exact != saturated).sum()) > 100  # full-range codes overflow 16-bit pair sums often
    assert torch.equal(ref, saturated if not qh.cpu_has_vnni() else exact)


def test_saturating_pairs_change_nothing_with_a_reduced_range():
    torch.manual_seed(1)
    x, w = torch.rand(20, 33) * 3, torch.randn(5, 33)
    x_qp = qh.qparams_from_tensor(x, 8, signed=False, reduce_range=True)
    w_qp = qh.qparams_from_tensor(w, 8, True, "symmetric", axis=0)
    out_qp = qh.qparams_from_tensor(x @ w.T, 8, signed=False)
    args = (qh.quantize(x, x_qp), x_qp, qh.quantize(w, w_qp), w_qp, None, out_qp)
    assert torch.equal(qh.int8_linear(*args), qh.int8_linear(*args, saturate_int16_pairs=True))  # odd K padded too
