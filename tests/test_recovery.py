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


def _notebook_adaround_checks(result, model, qmax):
    """The assertions notebook 07 makes about an AdaRound result (section 7)."""
    on_grid = all(
        bool(((codes.float() == torch.floor(t)) | (codes.float() == torch.ceil(t))).all())
        for name, codes in result.codes.items()
        for t in [torch.clamp(model.get_submodule(name).weight.detach() / result.scales[name], -qmax, qmax)]
    )
    converged = min(result.converged.values()) > 0.99
    lower = all(result.loss_adaround[n] < 0.8 * result.loss_nearest[n] for n in result.codes)
    return {"on_grid": on_grid, "converged": converged, "lower_held_out_loss": lower}


@pytest.fixture(scope="module")
def stem_and_down1():
    """The course model's first two layers (144 and 4,608 weights) and 256 digits: AdaRound on them takes seconds."""
    folded = qh.fuse(qh.load_course_model())
    return nn.Sequential(folded.stem, folded.down1).eval(), qh.digits_loader("calib", limit=256, batch_size=64)


def test_adaround_converges_and_beats_nearest_on_held_out_images(stem_and_down1):
    model, calib = stem_and_down1
    result = qh.adaround(model, calib, bits=3, method="mse", num_samples=128)
    checks = _notebook_adaround_checks(result, model, 3)
    assert all(checks.values()), checks
    assert result.heldout_images == 128
    for name in result.codes:
        torch.testing.assert_close(result.model.get_submodule(name).weight, result.codes[name].float() * result.scales[name])
        assert 0 < result.flipped[name] < 0.5
    assert result.seconds > 0


def test_the_notebooks_adaround_assertions_fail_with_round_to_nearest(stem_and_down1):
    """lr = 0 leaves every V at its start, h = the fractional part, so the codes are round-to-nearest: the checks must fail."""
    model, calib = stem_and_down1
    nearest = qh.adaround(model, calib, bits=3, method="mse", num_samples=128, iterations=50, lr=0.0)
    assert all(f == 0.0 for f in nearest.flipped.values())
    assert all(math.isclose(nearest.loss_adaround[n], nearest.loss_nearest[n], rel_tol=1e-6) for n in nearest.codes)
    checks = _notebook_adaround_checks(nearest, model, 3)
    assert checks["on_grid"] and not checks["converged"] and not checks["lower_held_out_loss"], checks


def test_a_short_adaround_does_not_pass_as_converged(stem_and_down1):
    """80 steps (the budget of a simplified AdaRound) leave most h between 0 and 1: the convergence check catches it."""
    model, calib = stem_and_down1
    short = qh.adaround(model, calib, bits=3, method="mse", num_samples=128, iterations=80)
    assert not _notebook_adaround_checks(short, model, 3)["converged"]


def test_adaround_with_quantized_activations_in_its_inputs(stem_and_down1):
    model, calib = stem_and_down1
    with pytest.raises(ValueError, match="stubs|BatchNorm|activation"):
        qh.adaround(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval(), calib, act_bits=4, iterations=1)
    folded = qh.fuse(qh.load_course_model())
    result = qh.adaround(folded, calib, bits=4, method="mse", act_bits=4, num_samples=64, iterations=100, max_rows=1024)
    assert set(result.codes) == set(qh.weight_layers(folded))
    assert all(result.loss_adaround[n] <= result.loss_nearest[n] * 1.05 for n in result.codes)


def test_adaround_handles_grouped_convolutions():
    net = _pair_net(groups=8)
    result = qh.adaround(net, _calib(), bits=4, iterations=200, num_samples=32)
    for name in qh.weight_layers(net):
        t = torch.clamp(net.get_submodule(name).weight.detach() / result.scales[name], -7, 7)
        codes = result.codes[name].float()
        assert bool(((codes == torch.floor(t)) | (codes == torch.ceil(t))).all()), name
        assert result.loss_adaround[name] <= result.loss_nearest[name] * 1.05 + 1e-9


@pytest.mark.parametrize("groups,relu", [(1, True), (1, False), (4, True)])
def test_adaround_steps_match_autograd_and_torch_adam(groups, relu):
    """The hand-written gradient and Adam of adaptive_rounding._optimise_rounding equal autograd + torch.optim.Adam, step by step."""
    from qhelpers import adaptive_rounding

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=groups)
    layer = adaptive_rounding._RowLayer(conv)
    x = adaptive_rounding._rows(conv, torch.randn(6, 8, 7, 7))
    w = conv.weight.detach()
    target = layer.pre(x, w)
    target = torch.relu(target) if relu else target
    s = w.abs().max() / 7
    w_floor = torch.floor(w / s)
    v0 = torch.randn(w.shape) * 2
    kw = dict(lr=0.05, reg_weight=0.1, beta=(20.0, 2.0), warm=2, batch_size=64)
    by_hand = v0.clone()
    adaptive_rounding._optimise_rounding(by_hand, layer, relu, x, target, w_floor, s, 7, iterations=12, generator=torch.Generator().manual_seed(3), **kw)
    v = v0.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=kw["lr"])
    gen = torch.Generator().manual_seed(3)
    for it in range(12):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        h = adaptive_rounding._rect_sigmoid(v)
        pre = layer.pre(x[idx], torch.clamp(w_floor + h, -7, 7) * s)
        loss = adaptive_rounding._reconstruction(torch.relu(pre) if relu else pre, target[idx])
        if it >= kw["warm"]:
            rel = (it - kw["warm"]) / (12 - kw["warm"])
            b = 2 + 0.5 * 18 * (1 + math.cos(rel * math.pi))
            loss = loss + kw["reg_weight"] * (1 - (2 * h - 1).abs().pow(b)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(by_hand, v.detach(), rtol=1e-4, atol=1e-5)


def test_adaround_rejects_bad_arguments():
    with pytest.raises(ValueError, match="iterations"):
        qh.adaround(_pair_net(), _calib(1), iterations=0)
    with pytest.raises(ValueError, match="no data"):
        qh.adaround(_pair_net(), [], iterations=1)
    with pytest.raises(ValueError, match="lr"):
        qh.adaround(_pair_net(), _calib(1), lr=-1.0)
    with pytest.raises(ValueError, match="beta"):
        qh.adaround(_pair_net(), _calib(1), beta=(20, 0))
    with pytest.raises(ValueError, match="warm_up"):
        qh.adaround(_pair_net(), _calib(1), warm_up=1.0)
    with pytest.raises(ValueError, match="bits"):
        qh.adaround(_pair_net(), _calib(1), act_bits=1)


# --------------------------------------------------------------------------- the deployed grid, activation ranges, the scans


def test_quantize_weights_on_a_qconfig_grid_matches_the_converted_int8_model():
    calib = qh.digits_loader("calib", limit=100)
    model = qh.load_course_model()
    folded = qh.fuse(model)
    for per_channel in (False, True):
        qconfig = qh.make_qconfig("minmax", per_channel=per_channel)
        int8 = qh.post_training_quantize(model, calib, qconfig=qconfig)
        on_grid = qh.quantize_weights(folded, qconfig=qconfig)
        modules = dict(int8.named_modules())
        for name in qh.weight_layers(folded):
            # a fused ConvReLU is converted into one module at its parent's name; a plain conv keeps its name
            module = modules[name] if callable(getattr(modules.get(name), "weight", None)) else modules[name[:-2]]
            converted = module.weight().dequantize()
            torch.testing.assert_close(on_grid.get_submodule(name).weight, converted, rtol=0, atol=1e-7)
    w = folded.fc2.weight.detach()
    per_tensor = qh.quantize_weights(folded, qconfig=qh.make_qconfig("minmax", per_channel=False), layers=["fc2"]).fc2.weight
    scale = float(w.abs().max()) / 127.5                      # torch.ao's symmetric qint8 grid: codes -128 .. 127
    codes = per_tensor / scale
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-4)
    assert codes.max() <= 127 and codes.min() >= -128
    with pytest.raises(ValueError, match="qconfig"):
        qh.quantize_weights(folded, bits=4, qconfig=qh.make_qconfig("minmax"))
    with pytest.raises(TypeError, match="qconfig"):
        qh.quantize_weights(folded, qconfig="minmax")


def test_mse_activation_ranges_never_worse_than_minmax_on_what_they_see():
    calib = qh.digits_loader("calib", limit=200)
    model = qh.load_course_model()
    prepared = qh.fake_quant_ptq(model, calib, qh.low_bit_qconfig(4))          # notebook 04's PTQ model: the other caller
    before = {n: (float(fq.scale), int(fq.zero_point)) for n, fq in qh.fake_quant_modules(prepared).items() if n.endswith("activation_post_process")}
    tuned = qh.mse_activation_ranges(prepared, calib)
    after_prepared = {n: (float(fq.scale), int(fq.zero_point)) for n, fq in qh.fake_quant_modules(prepared).items() if n.endswith("activation_post_process")}
    assert after_prepared == before                                            # the input model is not changed
    fqs = {n: fq for n, fq in qh.fake_quant_modules(tuned).items() if n.endswith("activation_post_process")}
    assert fqs and all(int(fq.observer_enabled[0]) == 0 for fq in fqs.values())
    # the input quantizer sees the raw images in both models: its MSE can only go down (min/max is a candidate)
    x = torch.cat([b[0] for b in calib])
    first = next(n for n in fqs if n.startswith("quant."))
    old, new = qh.fake_quant_modules(prepared)[first], fqs[first]
    err = lambda fq: float(((torch.fake_quantize_per_tensor_affine(x, float(fq.scale), int(fq.zero_point), fq.quant_min, fq.quant_max) - x) ** 2).mean())
    assert err(new) <= err(old) + 1e-9
    assert any(before[n] != (float(fq.scale), int(fq.zero_point)) for n, fq in fqs.items())
    sim = qh.quantize_activations(qh.fuse(model), calib, bits=4, method="mse")
    assert all(int(fq.observer_enabled[0]) == 0 for n, fq in qh.fake_quant_modules(sim).items() if n.endswith("activation_post_process"))
    with pytest.raises(ValueError, match="method"):
        qh.quantize_activations(qh.fuse(model), calib, bits=4, method="kl")
    with pytest.raises(ValueError, match="grid"):
        qh.mse_activation_ranges(prepared, calib, grid=0)
    with pytest.raises(ValueError, match="FakeQuantize"):
        qh.mse_activation_ranges(model, calib)
    with pytest.raises(ValueError, match="act_method"):
        qh.simulate(qh.fuse(model), calib, act_bits=None, act_method="mse")


def test_leave_one_out_keeps_one_layer_in_float():
    calib = qh.digits_loader("calib", limit=100)
    probe = qh.digits_loader("test", limit=100)
    folded = qh.fuse(qh.load_course_model())
    rows = qh.leave_one_out_sensitivity(folded, calib, probe, bits=4)
    assert [r["layer"] for r in rows] == [r["layer"] for r in qh.per_layer_sensitivity(folded, calib, probe, bits=4)]
    stem = next(r for r in rows if r["layer"] == "stem.0")
    others = [n for n in qh.weight_layers(folded) if n != "stem.0.0"]
    by_hand = qh.accuracy(qh.quantize_activations(qh.quantize_weights(folded, bits=4, layers=others), calib, bits=4), probe)
    assert stem["weights_float"] == by_hand
    assert math.isnan(next(r for r in rows if r["layer"] == "quant")["weights_float"])


@pytest.mark.slow
def test_leave_one_out_reuses_the_last_scan_only_for_the_same_model_and_loaders(monkeypatch):
    calib = qh.digits_loader("calib", limit=50)
    probe = qh.digits_loader("test", limit=50)
    folded = qh.fuse(qh.load_course_model())
    runs = []
    real = qh.wa_simulation._leave_one_out
    monkeypatch.setattr(qh.wa_simulation, "_leave_one_out", lambda *a, **k: runs.append(1) or real(*a, **k))
    qh.wa_simulation._LOO_CACHE.clear()
    first = qh.leave_one_out_sensitivity(folded, calib, probe, bits=4)
    first[0]["weights_float"] = -1.0                               # the caller's copy: the kept scan is not touched
    again = qh.leave_one_out_sensitivity(folded, calib, probe, bits=4)
    assert len(runs) == 1 and again[0]["weights_float"] != -1.0
    assert qh.check_leave_one_out({r["layer"] + (".0" if r["layer"] + ".0" in qh.weight_layers(folded) else ""): r["weights_float"]
                                   for r in again if not math.isnan(r["weights_float"])}, folded, calib, probe, bits=4)
    assert len(runs) == 1                                          # the exercise check reuses the scan
    copy_ = qh.fuse(qh.load_course_model())
    qh.leave_one_out_sensitivity(copy_, calib, probe, bits=4)     # an equal model (same bytes): reused
    assert len(runs) == 1
    with torch.no_grad():
        folded.fc2.weight[0, 0] += 1e-3                            # any change of the model runs the scan again
    qh.leave_one_out_sensitivity(folded, calib, probe, bits=4)
    assert len(runs) == 2
    qh.leave_one_out_sensitivity(folded, calib, probe, bits=3)     # other bits
    qh.leave_one_out_sensitivity(folded, qh.digits_loader("calib", limit=50), probe, bits=3)   # another loader object
    assert len(runs) == 4
    qh.wa_simulation._LOO_CACHE.clear()


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
