"""qhelpers.recovery: each method against the invariant its paper states, and clear errors for bad inputs."""

import math

import pytest
import torch
from torch import nn

import qhelpers as qh


def _pair_net(groups: int = 1, relu: bool = True) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1)]
    if relu:
        layers.append(nn.ReLU())
    layers += [nn.Conv2d(8, 8, 3, padding=1, groups=groups), nn.ReLU(), nn.Conv2d(8, 4, 1)]
    net = nn.Sequential(*layers).eval()
    with torch.no_grad():  # very different channel ranges, as after folding a BatchNorm
        net[0].weight.mul_(torch.logspace(-2, 1, 8).reshape(8, 1, 1, 1))
    return net


def _calib(n: int = 4):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(16, 3, 10, 10, generator=g) for _ in range(n)]


# --------------------------------------------------------------------------- cross-layer equalization


@pytest.mark.parametrize("groups", [1, 8])
def test_cle_preserves_the_float_function(groups):
    net = _pair_net(groups)
    x = torch.randn(8, 3, 10, 10)
    eq, scales = qh.cross_layer_equalization(net, iterations=5)
    assert set(scales) == {("0", "2"), ("2", "4")}
    torch.testing.assert_close(eq(x), net(x), rtol=1e-4, atol=1e-5)
    before, after = qh.channel_ranges(net)["0"], qh.channel_ranges(eq)["0"]
    assert after.max() / after.min() < before.max() / before.min() / 10
    assert torch.equal(qh.channel_ranges(net)["0"], before)  # the input model is unchanged


def test_equalize_pair_makes_both_ranges_equal():
    net = _pair_net()
    r1 = net[0].weight.detach().flatten(1).abs().amax(1)
    r2 = net[2].weight.detach().transpose(0, 1).flatten(1).abs().amax(1)
    s = qh.equalize_pair(net, "0", "2")
    torch.testing.assert_close(s, torch.sqrt(r1 / r2))
    new_r1 = net[0].weight.detach().flatten(1).abs().amax(1)
    new_r2 = net[2].weight.detach().transpose(0, 1).flatten(1).abs().amax(1)
    torch.testing.assert_close(new_r1, new_r2, rtol=1e-5, atol=1e-7)


def test_cle_on_the_fused_depthwise_model_keeps_its_output():
    model = qh.fuse(qh.load_depthwise_model())
    pairs = qh.find_equalization_pairs(model)
    assert pairs == [("stem.0.0", "dw1.0.0"), ("dw1.0.0", "pw1.0.0"), ("pw1.0.0", "dw2.0.0"), ("dw2.0.0", "pw2.0.0")]
    eq, _ = qh.cross_layer_equalization(model)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(eq(x), model(x), rtol=1e-4, atol=1e-4)


def test_cle_rejects_non_consecutive_layers():
    with pytest.raises(ValueError, match="not consecutive"):
        qh.equalize_pair(_pair_net(), "0", "4")


def test_cle_rejects_a_missing_relu():
    net = _pair_net(relu=False)  # Conv -> Conv, no ReLU between
    with pytest.raises(ValueError, match="missing ReLU"):
        qh.equalize_pair(net, "0", "1")


def test_cle_rejects_a_batchnorm_between():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    with pytest.raises(ValueError, match="BatchNorm"):
        qh.equalize_pair(net, "0", "3")


def test_cle_rejects_grouped_convs():
    net = _pair_net(groups=2)
    with pytest.raises(ValueError, match="groups=2"):
        qh.equalize_pair(net, "0", "2")


def test_cle_rejects_unknown_names_and_non_convs():
    net = _pair_net()
    with pytest.raises(ValueError, match="must name a module"):
        qh.equalize_pair(net, "nope", "2")
    with pytest.raises(ValueError, match="not a Conv"):
        qh.equalize_pair(net, "1", "2")
    with pytest.raises(ValueError, match="iterations"):
        qh.cross_layer_equalization(net, iterations=0)


# --------------------------------------------------------------------------- bias correction


def test_bias_correction_zeroes_the_mean_shift_on_its_calibration_data():
    net = _pair_net()
    calib = _calib()
    wq = qh.quantize_weights(net, bits=4)
    bc = qh.bias_correction(net, wq, calib)
    before = max(float(v.abs().max()) for v in bc.shift_before.values())
    after = max(float(v.abs().max()) for v in bc.shift_after.values())
    assert before > 1e-3 and after < 1e-5 * max(1.0, before)
    again = qh.mean_output_shift(net, bc.model, calib)
    assert max(float(v.abs().max()) for v in again.values()) < 1e-5 * max(1.0, before)
    # the weights are untouched, only the biases moved, by exactly delta
    for name in qh.weight_layers(net):
        assert torch.equal(bc.model.get_submodule(name).weight, wq.get_submodule(name).weight)
    moved = bc.apply_to(net)
    torch.testing.assert_close(moved.get_submodule("0").bias, net[0].bias + bc.delta["0"])


def test_bias_correction_refuses_layers_without_bias():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False)).eval()
    with pytest.raises(ValueError, match="no bias"):
        qh.bias_correction(net, qh.quantize_weights(net), _calib(1))
    with pytest.raises(ValueError, match="layers"):
        qh.mean_output_shift(net, net, _calib(1), layers=["missing"])


# --------------------------------------------------------------------------- range setting


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_mse_clipping_is_never_worse_than_minmax(bits, per_channel):
    g = torch.Generator().manual_seed(bits)
    for w in (torch.randn(16, 8, 3, 3, generator=g), torch.randn(16, 32, generator=g) ** 3, _pair_net()[0].weight.detach()):
        errs = {}
        for method in qh.CLIP_METHODS:
            wq, scale = qh.quantize_weight(w, bits=bits, per_channel=per_channel, method=method)
            assert wq.shape == w.shape and scale.numel() == (w.shape[0] if per_channel else 1)
            errs[method] = qh.mse(w, wq)
        assert errs["mse"] <= errs["minmax"] + 1e-12


def test_weight_clip_values_and_errors():
    w = torch.tensor([[-1.0, 0.5], [0.25, 0.1]])
    assert float(qh.weight_clip(w)) == 1.0
    torch.testing.assert_close(qh.weight_clip(w, per_channel=True), torch.tensor([1.0, 0.25]))
    wq, scale = qh.quantize_weight(w, bits=4)
    assert math.isclose(float(scale), 1.0 / 7, rel_tol=1e-6)
    assert torch.allclose(wq / scale, (wq / scale).round(), atol=1e-5)
    with pytest.raises(ValueError, match="method"):
        qh.weight_clip(w, method="kl")
    with pytest.raises(ValueError, match="bits"):
        qh.weight_clip(w, bits=9)
    with pytest.raises(TypeError, match="weight"):
        qh.weight_clip([1.0, 2.0])
    with pytest.raises(ValueError, match="percentile"):
        qh.weight_clip(w, method="percentile", percentile=0)


# --------------------------------------------------------------------------- AdaRound


def test_adaround_codes_are_floor_or_ceil_and_beat_nearest():
    net = _pair_net()
    result = qh.adaround(net, _calib(), bits=4, iterations=150, num_samples=64)
    for name in qh.weight_layers(net):
        w = net.get_submodule(name).weight.detach()
        scale = result.scales[name]
        t = torch.clamp(w / scale, -7, 7)
        codes = result.codes[name].float()
        assert bool(((codes == torch.floor(t)) | (codes == torch.ceil(t))).all()), name
        torch.testing.assert_close(result.model.get_submodule(name).weight, codes * scale)
        assert result.loss_adaround[name] <= result.loss_nearest[name] * 1.05 + 1e-9
    assert result.seconds > 0


def test_adaround_rejects_bad_arguments():
    with pytest.raises(ValueError, match="iterations"):
        qh.adaround(_pair_net(), _calib(1), iterations=0)
    with pytest.raises(ValueError, match="no data"):
        qh.adaround(_pair_net(), [], iterations=1)


# --------------------------------------------------------------------------- simulation, the patients


def test_simulation_sides_and_per_layer_table():
    calib = _calib(2)
    net = _pair_net()
    x = calib[0]
    w_only = qh.simulate(net, calib, weight_bits=4, act_bits=None)
    a_only = qh.simulate(net, calib, weight_bits=None, act_bits=4)
    for name in qh.weight_layers(net):
        assert not torch.equal(w_only.get_submodule(name).weight, net.get_submodule(name).weight)
    assert not torch.allclose(a_only(x), net(x))
    with pytest.raises(ValueError, match="BatchNorm"):
        qh.quantize_activations(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval(), calib)
    with pytest.raises(ValueError, match="layers"):
        qh.quantize_weights(net, layers=["9"])


def test_dead_channel_model_blows_up_one_depthwise_filter():
    calib = qh.digits_loader("calib", limit=200)
    dw = qh.load_depthwise_model()
    dead = qh.make_dead_channel_model(dw, calib)
    ranges = qh.channel_ranges(qh.fuse(dead))["dw1.0.0"]
    assert ranges.max() / ranges.min() > 100 and int(ranges.argmax()) == 3
    assert not torch.equal(dead.dw1[1].running_var, dw.dw1[1].running_var)
    with pytest.raises(ValueError, match="channel"):
        qh.make_dead_channel_model(dw, calib, channel=99)
    with pytest.raises(ValueError, match="block"):
        qh.make_dead_channel_model(dw, calib, block="fc")


def test_pt2e_quantizer_options():
    q = qh.pt2e_quantizer(per_channel=False, float_modules=["dw1.0"])
    assert q.global_config.weight.qscheme == torch.per_tensor_symmetric
    assert "dw1.0" in q.module_name_qconfig and q.module_name_qconfig["dw1.0"] is None
    with pytest.raises(TypeError, match="per_channel"):
        qh.pt2e_quantizer(per_channel="yes")
