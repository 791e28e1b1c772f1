"""Tests for qhelpers.qat: fake-quant qconfigs, the straight-through estimator, the QAT loop, convert."""

import copy

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.ao.quantization import DeQuantStub, FakeQuantize, MovingAverageMinMaxObserver, QConfig, QuantStub

import qhelpers as qh
from qhelpers import fake_quant, fake_quant_repair

# Shown and explained in notebooks 01 and 03; hidden here by message only.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max to specify the range:UserWarning"),
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"),
]


def tiny_net() -> nn.Module:
    """A small quantizable CNN (conv-bn-relu, linear) with a fuse_model method, in training mode."""

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = QuantStub()
            self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(16, 3)
            self.dequant = DeQuantStub()

        def forward(self, x):
            x = self.pool(self.relu(self.bn(self.conv(self.quant(x)))))
            return self.dequant(self.fc(torch.flatten(x, 1)))

        def fuse_model(self, is_qat=False):
            fuse = torch.ao.quantization.fuse_modules_qat if is_qat else torch.ao.quantization.fuse_modules
            fuse(self, [["conv", "bn", "relu"]], inplace=True)

    torch.manual_seed(0)
    return Tiny().train()


# --------------------------------------------------------------------------- qconfigs


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_low_bit_qconfig_ranges(bits, per_channel):
    qc = qh.low_bit_qconfig(bits, per_channel=per_channel)
    w, a = qc.weight(), qc.activation()
    limit = 2 ** (bits - 1) - 1
    assert (w.quant_min, w.quant_max) == (-limit, limit)
    assert (a.quant_min, a.quant_max) == (0, 2**bits - 1)
    assert w.qscheme == (torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric)


def test_low_bit_qconfig_separate_activation_bits():
    a = qh.low_bit_qconfig(4, activation_bits=8).activation()
    assert (a.quant_min, a.quant_max) == (0, 255)


def test_qat_qconfig_at_8_bits_is_torchs_default():
    qc = qh.qat_qconfig(engine="x86", bits=8)
    ref = torch.ao.quantization.get_default_qat_qconfig("x86")
    assert type(qc.weight()) is type(ref.weight()) and qc.activation().quant_max == ref.activation().quant_max
    assert qc.weight().qscheme == ref.weight().qscheme == torch.per_channel_symmetric


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_qat_qconfig_honours_per_channel_at_every_width(engine, per_channel):
    if engine not in qh.supported_engines():
        pytest.skip(f"{engine} is not available here")
    want = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    for bits in (8, 4):
        weight = qh.qat_qconfig(engine=engine, bits=bits, per_channel=per_channel).weight()
        assert weight.qscheme == want, (engine, bits, per_channel)


def test_per_channel_defaults_agree_between_ptq_and_qat():
    import inspect

    assert qh.low_bit_qconfig(4).weight().qscheme == torch.per_channel_symmetric
    assert qh.qat_qconfig(bits=4).weight().qscheme == torch.per_channel_symmetric
    assert inspect.signature(qh.qat_qconfig).parameters["per_channel"].default is True
    assert inspect.signature(qh.make_qconfig).parameters["per_channel"].default is True
    # None means "the default, True" in both recipes, so that an explicit value next to a qconfig can be refused
    assert inspect.signature(qh.post_training_quantize).parameters["per_channel"].default is None
    assert inspect.signature(qh.quantization_aware_training).parameters["per_channel"].default is None


def test_quantization_aware_training_refuses_arguments_a_qconfig_would_override():
    loader = [(torch.randn(4, 1, 6, 6), torch.randint(0, 3, (4,)))]
    for extra in (dict(bits=4), dict(per_channel=False), dict(engine=qh.default_engine())):
        with pytest.raises(ValueError, match="not both"):
            qh.quantization_aware_training(tiny_net(), loader, 1, qconfig=qh.low_bit_qconfig(4), progress=False, **extra)


def test_quantization_aware_training_defaults_to_per_channel_8_bit():
    loader = [(torch.randn(4, 1, 6, 6), torch.randint(0, 3, (4,)))]
    result = qh.quantization_aware_training(tiny_net(), loader, 1, progress=False)
    assert result.model.conv.weight_fake_quant.qscheme == torch.per_channel_symmetric


# --------------------------------------------------------------------------- the fused fake quant's scale


def _fused(qmin, qmax, per_channel=False):
    from torch.ao.quantization import FusedMovingAvgObsFakeQuantize, MovingAveragePerChannelMinMaxObserver

    if per_channel:
        return FusedMovingAvgObsFakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, quant_min=qmin, quant_max=qmax,
                                             dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
    return FusedMovingAvgObsFakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=qmin, quant_max=qmax,
                                         dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)


@pytest.mark.parametrize(
    "qmin, qmax, values, ratio",
    [
        (-7, 7, [-0.8, 0.3, 1.0], 15 / 14),           # |max| dominates: the 15/14 of notebook 04
        (-3, 3, [-0.5, 0.1, 0.4, 1.2], 7 / 6),        # exercise 4 of notebook 04
        (-128, 127, [-0.8, 0.3, 1.0], 127.5 / 127),   # torch's 8-bit default
        (-128, 127, [-1.0, 0.3, 0.5], 127.5 / 128),   # |min| dominates
    ],
)
def test_fused_scale_mismatch_follows_the_kernels_formula(qmin, qmax, values, ratio):
    fq = _fused(qmin, qmax)
    fq(torch.tensor(values))
    assert float(qh.fused_scale_mismatch(fq)) == pytest.approx(ratio, abs=1e-5)
    plain = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=qmin, quant_max=qmax, dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    plain(torch.tensor(values))
    assert float(qh.fused_scale_mismatch(plain)) == 1.0


def test_fused_scale_mismatch_per_channel_and_bad_input():
    fq = _fused(-128, 127, per_channel=True)
    fq(torch.tensor([[-0.8, 1.0], [-1.0, 0.5]]))
    assert qh.fused_scale_mismatch(fq).tolist() == pytest.approx([127.5 / 127, 127.5 / 128], abs=1e-5)
    with pytest.raises(TypeError, match="fake_quant must be"):
        qh.fused_scale_mismatch(torch.nn.ReLU())


@pytest.mark.parametrize("bad", [1, 9, 4.0, True, "4"])
def test_low_bit_qconfig_rejects_bad_bits(bad):
    with pytest.raises(ValueError, match="bits must be an int from 2 to 8"):
        qh.low_bit_qconfig(bad)


def test_qat_qconfig_rejects_unknown_engine():
    with pytest.raises(ValueError, match="is unknown or not available on this machine"):
        qh.qat_qconfig(engine="tpu")


def test_low_bit_weights_take_2_to_the_bits_minus_1_levels():
    torch.manual_seed(0)
    w = torch.randn(64, 8)
    fq = qh.low_bit_qconfig(4, per_channel=False).weight()
    codes = torch.unique(fq(w) / fq.calculate_qparams()[0])
    assert len(codes) <= 15 and codes.min() >= -7 and codes.max() <= 7


# --------------------------------------------------------------------------- the straight-through estimator


def fixed_fake_quant(low=-1.0, high=1.0, qmin=0, qmax=15):
    fq = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=qmin, quant_max=qmax)
    fq(torch.tensor([low, high]))  # the observer sees the range once
    fq.disable_observer()
    return fq


def test_ste_forward_matches_torch_and_snaps_to_grid():
    fq = fixed_fake_quant()
    x = torch.linspace(-1.5, 1.5, 31)
    demo = qh.ste_demo(x, fq)
    ref = torch.fake_quantize_per_tensor_affine(x, demo.scale, demo.zero_point, 0, 15)
    assert torch.equal(demo.y, ref)
    codes = demo.y / demo.scale + demo.zero_point
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert len(torch.unique(demo.y)) <= 16


def test_ste_gradient_is_one_inside_and_zero_outside():
    fq = fixed_fake_quant()
    demo = qh.ste_demo(torch.tensor([-3.0, -0.5, 0.0, 0.3, 0.9, 3.0]), fq)
    inside = (demo.x >= demo.low) & (demo.x <= demo.high)
    assert inside.tolist() == [False, True, True, True, True, False]
    assert torch.equal(demo.grad, inside.float())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=1, max_size=30))
def test_ste_gradient_property(values):
    fq = fixed_fake_quant(-1.0, 2.0)
    demo = qh.ste_demo(torch.tensor(values, dtype=torch.float32), fq)
    s, z = demo.scale, demo.zero_point
    codes = torch.round(demo.x / s) + z
    inside = (codes >= 0) & (codes <= 15)
    assert torch.equal(demo.grad, inside.float())
    assert float(torch.cat([(demo.y - demo.x)[inside].abs(), torch.zeros(1)]).max()) <= s / 2 + 1e-5


def test_ste_demo_rejects_bad_inputs():
    with pytest.raises(TypeError, match="x must be a 1-D float tensor"):
        qh.ste_demo(torch.arange(3), fixed_fake_quant())
    with pytest.raises(TypeError, match="fake_quant must be"):
        qh.ste_demo(torch.zeros(3), nn.ReLU())


def test_check_ste_accepts_right_and_rejects_wrong(capsys):
    x = torch.tensor([-2.0, 0.26, 5.0])
    y = torch.fake_quantize_per_tensor_affine(x, 0.25, 4, 0, 15)
    assert qh.check_ste(y, [0.0, 1.0, 0.0], x, 0.25, 4, 0, 15)
    assert not qh.check_ste(y, [1.0, 1.0, 1.0], x, 0.25, 4, 0, 15)
    assert not qh.check_ste(..., ..., x, 0.25, 4, 0, 15)
    assert "not filled in yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- prepare, freeze, convert


def test_prepare_qat_model_on_eval_model_raises_clearly():
    with pytest.raises(ValueError, match=r"eval mode.*model\.train\(\)"):
        qh.prepare_qat_model(tiny_net().eval(), qh.qat_qconfig(engine="x86"))


def test_prepare_qat_model_rejects_bad_types_and_double_prepare():
    with pytest.raises(TypeError, match="qconfig must be"):
        qh.prepare_qat_model(tiny_net(), "x86")
    prepared = qh.prepare_qat_model(tiny_net(), qh.qat_qconfig(engine="x86"))
    with pytest.raises(ValueError, match="already has FakeQuantize"):
        qh.prepare_qat_model(prepared, qh.qat_qconfig(engine="x86"))


def test_prepare_qat_model_fuses_and_leaves_the_original_alone():
    net = tiny_net()
    prepared = qh.prepare_qat_model(net, qh.low_bit_qconfig(4))
    assert isinstance(prepared.conv, torch.ao.nn.intrinsic.qat.ConvBnReLU2d)
    assert isinstance(net.conv, nn.Conv2d) and not qh.fake_quant_modules(net)
    assert prepared.training


def test_eval_mode_does_not_stop_observers_but_disable_observer_does():
    prepared = qh.prepare_qat_model(tiny_net(), qh.low_bit_qconfig(4)).eval()
    fq = prepared.quant.activation_post_process
    prepared(torch.randn(8, 1, 6, 6))
    s1 = float(fq.scale)
    prepared(10 * torch.randn(8, 1, 6, 6))
    assert float(fq.scale) != s1  # eval() froze BatchNorm, not the observers
    prepared.apply(torch.ao.quantization.disable_observer)
    s2 = float(fq.scale)
    prepared(100 * torch.randn(8, 1, 6, 6))
    assert float(fq.scale) == s2 and qh.observers_frozen(prepared)


def test_convert_without_training_raises():
    prepared = qh.prepare_qat_model(tiny_net(), qh.qat_qconfig(engine="x86"))
    with pytest.raises(ValueError, match="never saw data"):
        qh.convert_qat_model(prepared)


def test_convert_a_float_model_raises():
    with pytest.raises(ValueError, match="no FakeQuantize modules"):
        qh.convert_qat_model(tiny_net())


def test_convert_low_bit_model_raises():
    prepared = qh.prepare_qat_model(tiny_net(), qh.low_bit_qconfig(4))
    qh.calibrate_fake_quant(prepared, [torch.randn(8, 1, 6, 6)])
    with pytest.raises(ValueError, match="narrower range"):
        qh.convert_qat_model(prepared)


def test_convert_8bit_matches_fake_quant_model():
    prepared = qh.prepare_qat_model(tiny_net(), qh.qat_qconfig(engine="x86"))
    x = torch.randn(32, 1, 6, 6)
    qh.calibrate_fake_quant(prepared, [x])
    int8 = qh.convert_qat_model(prepared, engine="x86")
    assert isinstance(int8.conv, torch.ao.nn.intrinsic.quantized.ConvReLU2d)
    with torch.no_grad():
        fake, real = prepared(x), int8(x)
    scale = float(int8.fc.scale)
    assert (fake - real).abs().max() <= 3 * scale  # a few output steps at most


def test_check_frozen(capsys):
    prepared = qh.prepare_qat_model(tiny_net(), qh.low_bit_qconfig(4))
    assert not qh.check_frozen(prepared)
    prepared.apply(torch.ao.quantization.disable_observer)
    prepared.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    assert not qh.check_frozen(prepared)  # frozen before any data: the default scale 1.0
    assert "never saw data" in capsys.readouterr().out
    prepared = qh.prepare_qat_model(tiny_net(), qh.low_bit_qconfig(4))
    qh.calibrate_fake_quant(prepared, [torch.randn(8, 1, 6, 6)])
    prepared.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
    assert qh.check_frozen(prepared)
    assert not qh.check_frozen(...)
    assert "not filled in yet" in capsys.readouterr().out


def test_check_low_bit_qconfig():
    helper = qh.low_bit_qconfig(3)
    assert not qh.check_low_bit_qconfig(helper, 3)  # right modules, but the exercise asks the learner to build them
    assert qh.check_low_bit_qconfig(QConfig(activation=FakeQuantize.with_args(**helper.activation.p.keywords),
                                            weight=FakeQuantize.with_args(**helper.weight.p.keywords)), 3)
    assert not qh.check_low_bit_qconfig(qh.low_bit_qconfig(4), 3)
    assert not qh.check_low_bit_qconfig("qconfig", 3)


# --------------------------------------------------------------------------- the QAT loop


def test_quantization_aware_training_rejects_bad_arguments():
    loader = [(torch.randn(4, 1, 6, 6), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        qh.quantization_aware_training(tiny_net(), loader, 0)
    with pytest.raises(ValueError, match="lr must be a positive float"):
        qh.quantization_aware_training(tiny_net(), loader, 1, lr=-1.0)
    with pytest.raises(ValueError, match="freeze_observers_after"):
        qh.quantization_aware_training(tiny_net(), loader, 1, freeze_observers_after=-1)
    with pytest.raises(ValueError, match="eval mode"):
        qh.quantization_aware_training(tiny_net().eval(), loader, 1)


def test_freezing_happens_at_the_requested_step():
    torch.manual_seed(0)
    loader = [(torch.randn(4, 1, 6, 6), torch.randint(0, 3, (4,))) for _ in range(4)]
    result = qh.quantization_aware_training(
        tiny_net(), loader, 2, bits=4, freeze_observers_after=1.5, freeze_bn_after=1, progress=False
    )
    assert [h["observers_frozen"] for h in result.history] == [False, True]
    assert [h["bn_frozen"] for h in result.history] == [True, True]
    assert qh.observers_frozen(result.model) and not result.model.training


@pytest.fixture(scope="module")
def course_setup():
    qh.setup(seed=0, threads=2)
    model = qh.load_course_model()
    calib = qh.digits_loader("calib", limit=250)
    test = qh.digits_loader("test", limit=300)
    train = qh.digits_loader("train", batch_size=64, shuffle=True, limit=384)
    return model, calib, test, train


def test_low_bit_qat_beats_low_bit_ptq_on_the_course_model(course_setup):
    model, calib, test, train = course_setup
    qconfig = qh.low_bit_qconfig(4, per_channel=False)  # per-tensor 4-bit PTQ loses a lot; QAT wins it back
    torch.manual_seed(0)
    ptq = qh.accuracy(qh.fake_quant_ptq(model, calib, qconfig), test)
    torch.manual_seed(0)
    result = qh.quantization_aware_training(
        copy.deepcopy(model).train(), train, 1, lr=1e-3, qconfig=qconfig, calib_loader=calib, eval_loader=test,
        freeze_observers_after=0.5, freeze_bn_after=0.5, progress=False,
    )
    assert result.history[0]["accuracy"] == pytest.approx(ptq)  # epoch 0 is the calibrated, untrained model
    assert result.history[-1]["accuracy"] >= ptq + 10, (ptq, result.accuracies())  # measured: about 74 -> 94


def _notebook_recipe():
    """The ``qat_finetune`` defined by the recipe cell of notebook 04, executed on its own."""
    import json

    nb = json.loads((qh.course_root() / "notebooks" / "04_quantization_aware_training.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "recipe" in c["metadata"].get("tags", []))
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)
    return namespace["qat_finetune"]


def test_helper_gives_the_same_int8_model_as_the_notebook_recipe():
    recipe = _notebook_recipe()
    torch.manual_seed(1)
    x = torch.randn(128, 1, 6, 6)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    loader = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)]
    kwargs = dict(epochs=2, lr=1e-2, freeze_observers_after=1, freeze_bn_after=1, fuse_groups=[["conv", "bn", "relu"]])
    from_notebook = recipe(tiny_net(), loader, **kwargs)
    from_helper = qh.qat_finetune(tiny_net(), loader, **kwargs)
    assert isinstance(from_helper.conv, torch.ao.nn.intrinsic.quantized.ConvReLU2d)
    with torch.no_grad():
        assert torch.equal(from_notebook(x), from_helper(x))
    # one epoch, observers never frozen by the loop: both must still switch them off before convert
    kwargs = dict(epochs=1, lr=1e-2, freeze_observers_after=1, freeze_bn_after=0, fuse_groups=[["conv", "bn", "relu"]])
    from_notebook, from_helper = recipe(tiny_net(), loader, **kwargs), qh.qat_finetune(tiny_net(), loader, **kwargs)
    with torch.no_grad():
        assert torch.equal(from_notebook(x), from_helper(x))


# --------------------------------------------------------------------------- the best low-bit PTQ: ranges, bias correction, pool


def _calibrated_tiny(bits=3, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(64, 1, 6, 6)
    x[0, 0, 0, 0] = 12.0  # one outlier: min/max wastes the grid on it, MSE clips it
    prepared = qh.fake_quant_ptq(tiny_net(), [x[:32], x[32:]], qh.low_bit_qconfig(bits))
    return prepared, [x[:32], x[32:]]


def _mse_on_grid(values, low, high, qmin, qmax):
    fq = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=qmin, quant_max=qmax)
    fq(torch.tensor([low, high]))
    return float(((fq(values) - values) ** 2).mean())


@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(-5, 20, allow_nan=False, width=32), min_size=20, max_size=200), st.sampled_from([(0, 7), (0, 15), (0, 255)]))
@example([0.0] * 20 + [5.4659318923950195, 8.390621185302734, 11.386059761047363, 15.952363014221191, 20.0, -5.0], (0, 255))
def test_mse_range_is_never_worse_than_min_max(values, qrange):
    v = torch.tensor(values)
    low, high = fake_quant_repair.mse_range(v, *qrange)
    lo, hi = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
    assert lo - 1e-6 <= low <= 0.0 <= high <= hi + 1e-6
    if hi > lo:  # the histogram search is exact up to half a bin; allow that much
        assert _mse_on_grid(v, low, high, *qrange) <= _mse_on_grid(v, lo, hi, *qrange) * 1.02 + 1e-6


def test_mse_range_clips_a_lone_outlier_and_keeps_a_uniform_range():
    torch.manual_seed(0)
    uniform = torch.rand(10000) * 4
    low, high = fake_quant_repair.mse_range(uniform, 0, 7)
    assert low == 0.0 and high > 3.5  # no outlier: about the full range (3-bit rounding makes clipping the top few % pay)
    with_outlier = torch.cat([uniform, torch.tensor([100.0])])
    assert fake_quant_repair.mse_range(with_outlier, 0, 7)[1] < 10  # the outlier alone is not worth the grid
    with pytest.raises(TypeError):
        fake_quant_repair.mse_range(torch.tensor([], dtype=torch.float32), 0, 7)
    with pytest.raises(ValueError):
        fake_quant_repair.mse_range(uniform, 7, 0)


def test_mse_activation_ranges_lower_each_error_and_agree_with_convert():
    prepared, batches = _calibrated_tiny()
    choices = qh.set_mse_activation_ranges(prepared, batches)
    assert list(choices) == list(fake_quant.activation_fake_quants(prepared, batches[0]))  # forward order
    assert choices["quant.activation_post_process"].clipped > 0.3  # the input outlier is clipped
    for name, fq in fake_quant.activation_fake_quants(prepared, batches[0]).items():
        assert float(qh.fused_scale_mismatch(fq)) == pytest.approx(1.0)  # calculate_qparams gives the same grid
        assert int(fq.observer_enabled[0]) == 0
    fresh, _ = _calibrated_tiny()
    x = torch.cat(batches)
    with torch.no_grad():
        err_mse = float(((prepared.quant(x) - x) ** 2).mean())
        err_minmax = float(((fresh.quant(x) - x) ** 2).mean())
    assert err_mse < err_minmax


def test_mse_activation_ranges_need_frozen_observers():
    prepared = qh.prepare_qat_model(tiny_net(), qh.low_bit_qconfig(3))
    with pytest.raises(ValueError, match="calibrate it first"):
        qh.set_mse_activation_ranges(prepared, [torch.randn(4, 1, 6, 6)])


def test_fake_quant_bias_correction_removes_the_mean_shift():
    prepared, batches = _calibrated_tiny()
    qh.set_mse_activation_ranges(prepared, batches)
    reference = copy.deepcopy(prepared)
    reference.apply(torch.ao.quantization.disable_fake_quant)  # the float model, measured before any correction
    shifts = qh.fake_quant_bias_correction(prepared, batches)
    assert set(shifts) == {"conv", "fc"} and any(float(s.abs().max()) > 1e-4 for s in shifts.values())
    with torch.no_grad():
        before, after = fake_quant_repair._mean_pre_activations(reference, ["conv", "fc"], batches), fake_quant_repair._mean_pre_activations(prepared, ["conv", "fc"], batches)
    for name in ("conv", "fc"):  # measured again against the float model: nothing left to remove
        assert torch.allclose(after[name], before[name], atol=1e-4), name


def test_requantize_pool_matches_the_integer_kernel():
    prepared, batches = _calibrated_tiny(bits=8)
    x = torch.cat(batches)
    qh.requantize_pool(prepared, "pool", input_from="conv")
    assert isinstance(prepared.pool, nn.Sequential)
    source = prepared.conv.activation_post_process
    captured = {}
    prepared.pool.register_forward_hook(lambda m, i, o: captured.update(inp=i[0], out=o))
    with torch.no_grad():
        prepared(x)
    scale, zero_point = float(source.scale), int(source.zero_point)
    q_in = torch.quantize_per_tensor(captured["inp"], scale, zero_point, torch.quint8)
    integer = torch.nn.functional.adaptive_avg_pool2d(q_in, 2)
    assert integer.q_scale() == pytest.approx(scale)  # the integer pool keeps its input's grid
    assert torch.allclose(captured["out"], integer.dequantize(), atol=1e-6)
    with pytest.raises(ValueError, match="not an average pool"):
        qh.requantize_pool(prepared, "fc", input_from="conv")
    with pytest.raises(ValueError, match="no activation fake quant"):
        qh.requantize_pool(prepared, "pool", input_from="dequant")


def test_train_fake_quant_keeps_frozen_ranges_and_batchnorm():
    prepared, batches = _calibrated_tiny()
    qh.set_mse_activation_ranges(prepared, batches)
    scales = {n: fq.scale.clone() for n, fq in fake_quant.activation_fake_quants(prepared, batches[0]).items()}
    running = prepared.conv.bn.running_mean.clone()
    loader = [(x, torch.randint(0, 3, (len(x),))) for x in batches]
    weight_scale = prepared.conv.weight_fake_quant.scale.clone()
    result = qh.train_fake_quant(copy.deepcopy(prepared), loader, 2, lr=1e-3, freeze_observers_after=0, freeze_bn_after=0,
                                 eval_loader=loader, progress=False)
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    for n, fq in fake_quant.activation_fake_quants(result.model, batches[0]).items():
        assert torch.equal(fq.scale, scales[n])
    assert torch.equal(result.model.conv.bn.running_mean, running)
    # weights observed for one epoch, activation ranges kept as they were set
    kept = qh.train_fake_quant(prepared, loader, 2, lr=1e-2, freeze_observers_after=1, freeze_bn_after=2,
                               keep_activation_ranges=True, progress=False)
    for n, fq in fake_quant.activation_fake_quants(kept.model, batches[0]).items():
        assert torch.equal(fq.scale, scales[n])
    assert not torch.equal(kept.model.conv.weight_fake_quant.scale, weight_scale)
    assert qh.observers_frozen(kept.model)


def test_fake_quant_breakdown_removes_only_the_rounding_and_restores_the_model():
    prepared, batches = _calibrated_tiny()
    loader = [(x, torch.randint(0, 3, (len(x),))) for x in batches]
    x = torch.cat(batches)
    with torch.no_grad():
        before = prepared(x)
    parts = qh.fake_quant_breakdown(prepared, loader)
    assert list(parts) == ["as quantized", "weights not rounded", "activations not rounded", "no rounding (ranges still clip)"]
    paired = qh.fake_quant_breakdown(prepared, loader, predictions=True)
    assert list(paired) == list(parts)
    for row, (pred, labels) in paired.items():  # the same passes, as predictions for paired_test
        assert 100.0 * float((pred == labels).float().mean()) == pytest.approx(parts[row], abs=1e-4)
    with torch.no_grad():
        assert torch.equal(prepared(x), before)  # hooks removed
        fq = prepared.quant.activation_post_process
        hook = fq.register_forward_hook(fake_quant_repair._unrounded)
        clipped = fq(x)
        hook.remove()
    low, high = qh.fake_quant_range(fq)
    assert torch.allclose(clipped, x.clamp(low, high), atol=1e-6) and not torch.equal(clipped, fq(x))


def test_rounding_removed_clamps_trains_and_stops_the_pool_rerounding():
    prepared, batches = _calibrated_tiny()
    qh.requantize_pool(prepared, "pool", input_from="conv")
    x = torch.cat(batches)
    fqs = qh.fake_quant_modules(prepared)
    with torch.no_grad():
        before = prepared(x)
    with qh.rounding_removed(prepared) as same:
        assert same is prepared
        with torch.no_grad():
            out = prepared(x)
        pooled = prepared.pool(prepared.conv(prepared.quant(x)))  # no longer on the conv's grid
        conv_fq = prepared.conv.activation_post_process
        codes = pooled / conv_fq.scale + conv_fq.zero_point
        assert not torch.allclose(codes, codes.round(), atol=1e-4)
        # training works inside: gradient 1 inside the range, 0 where clamped (the clipped STE)
        fq_in = fqs["quant.activation_post_process"]
        low, high = qh.fake_quant_range(fq_in)
        probe = torch.tensor([low - 1.0, (low + high) / 3, high + 1.0], requires_grad=True)
        fq_in(probe).sum().backward()
        assert probe.grad.tolist() == [0.0, 1.0, 0.0]
    assert not torch.equal(out, before)
    with torch.no_grad():
        assert torch.equal(prepared(x), before)  # hooks and the pool's rounding restored
    assert not any(getattr(fq, "_rounding_removed", False) for fq in fqs.values())
    with pytest.raises(ValueError, match="not fake quants"):
        with qh.rounding_removed(prepared, ["conv"]):
            pass
