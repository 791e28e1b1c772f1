"""Tests for qhelpers.ptq: fusion finder, PTQ recipe, sensitivity helper, qconfigs, bad inputs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules

import qhelpers as qh
from qhelpers import ptq, ptq_analysis, ptq_checks

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
    pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning"),
]


def _types(model: nn.Module) -> list[tuple[str, str]]:
    return [(n, type(m).__name__) for n, m in model.named_modules()]


@pytest.fixture(scope="module")
def course_model():
    return qh.load_course_model()


@pytest.fixture(scope="module")
def calib():
    return qh.digits_loader("calib", batch_size=250)


@pytest.fixture(scope="module")
def quantized(course_model, calib):
    return ptq.post_training_quantize(course_model, calib, engine="x86")


# ---------------------------------------------------------------- fusion finder


def test_fusable_groups_course_model(course_model):
    groups = ptq.find_fusable_groups(course_model)
    assert groups == [
        ["stem.0", "stem.1", "stem.2"],
        ["down1.0", "down1.1", "down1.2"],
        ["res.conv1.0", "res.conv1.1", "res.conv1.2"],
        ["res.conv2.0", "res.conv2.1"],
        ["down2.0", "down2.1", "down2.2"],
        ["fc1", "relu_fc"],
    ]
    by_hand = copy.deepcopy(course_model)
    by_hand.fuse_model()
    found = fuse_modules(copy.deepcopy(course_model), groups)
    assert _types(found) == _types(by_hand)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_fusable_groups_match_torchvision_fuse_model(name):
    import torchvision.models.quantization as tvq

    model = getattr(tvq, name)(weights=None, quantize=False).eval()
    groups = ptq.find_fusable_groups(model)
    assert len(groups) == {"resnet18": 20, "mobilenet_v2": 52}[name]
    theirs = copy.deepcopy(model)
    theirs.fuse_model(is_qat=False)
    ours = fuse_modules(copy.deepcopy(model), groups)
    assert _types(ours) == _types(theirs)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), model(x), rtol=1e-4, atol=1e-4)


class _SharedRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3, 4)
        self.bn_branch = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)))  # relu used twice: must not be fused away
        z = self.bn_branch(x)
        return self.relu(y + z), self.fc(y.mean((2, 3)))


def test_fusable_groups_respects_shared_modules_and_branches():
    groups = ptq.find_fusable_groups(_SharedRelu().eval())
    assert groups == [["conv", "bn"]]


def test_fusable_groups_linear_patterns():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.ReLU())
    # BatchNorm1d+ReLU is not a group: torch's fuser table has BatchNorm+ReLU for BatchNorm2d/3d only
    assert ptq.find_fusable_groups(model.eval()) == [["0", "1"], ["3", "4"]]


_EVERY_PATTERN = {  # each model holds the patterns find_fusable_groups knows, and a near miss or two
    "conv1d": (nn.Sequential(nn.Conv1d(4, 4, 1), nn.BatchNorm1d(4), nn.ReLU(), nn.Conv1d(4, 4, 1), nn.BatchNorm1d(4),
                             nn.Conv1d(4, 4, 1), nn.ReLU(), nn.BatchNorm1d(4), nn.ReLU()),
               [["0", "1", "2"], ["3", "4"], ["5", "6"]]),
    "conv2d": (nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4),
                             nn.Conv2d(4, 4, 1), nn.ReLU(), nn.BatchNorm2d(4), nn.ReLU()),
               [["0", "1", "2"], ["3", "4"], ["5", "6"], ["7", "8"]]),
    "conv3d": (nn.Sequential(nn.Conv3d(4, 4, 1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 4, 1), nn.BatchNorm3d(4),
                             nn.Conv3d(4, 4, 1), nn.ReLU(), nn.BatchNorm3d(4), nn.ReLU()),
               [["0", "1", "2"], ["3", "4"], ["5", "6"], ["7", "8"]]),
    "linear": (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4),
                             nn.ReLU(), nn.Linear(4, 4), nn.BatchNorm1d(4)),
               [["0", "1"], ["3", "4"], ["7", "8"]]),
}


@pytest.mark.parametrize("name", sorted(_EVERY_PATTERN))
def test_every_group_found_is_accepted_by_fuse_modules(name):
    model, want = _EVERY_PATTERN[name]
    model.eval()
    groups = ptq.find_fusable_groups(model)
    assert groups == want
    for group in groups:  # each group alone, then all at once: fuse_modules must accept every one
        fuse_modules(copy.deepcopy(model), [group])
    fused = fuse_modules(copy.deepcopy(model), groups)
    assert ptq.is_fused(fused)


def test_fusable_groups_bad_input():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ptq.find_fusable_groups("resnet")

    class Untraceable(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ValueError, match="could not be traced"):
        ptq.find_fusable_groups(Untraceable())


def test_fuse_needs_eval_mode(course_model):
    with pytest.raises(ValueError, match="training mode"):
        ptq.fuse(copy.deepcopy(course_model).train())
    fused = ptq.fuse(course_model)
    assert ptq.is_fused(fused) and not ptq.is_fused(course_model)
    assert ptq.fuse(fused) is not fused  # a copy, returned unchanged


# ---------------------------------------------------------------- the recipe


def test_ptq_keeps_course_model_accuracy(course_model, quantized):
    test = qh.digits_loader("test")
    float_acc = qh.accuracy(course_model, test)
    int8_acc = qh.accuracy(quantized, test)
    assert abs(int8_acc - float_acc) <= 1.0, (float_acc, int8_acc)
    assert isinstance(quantized.stem[0], torch.ao.nn.intrinsic.quantized.ConvReLU2d)
    assert qh.model_size_bytes(quantized) < 0.45 * qh.model_size_bytes(course_model)
    assert not ptq.is_fused(course_model)  # the input model is untouched


def test_ptq_per_tensor_and_float_modules(course_model, calib):
    q = ptq.post_training_quantize(course_model, calib, engine="x86", per_channel=False, float_modules=["fc2"], num_batches=1)
    assert q.stem[0].weight().qscheme() == torch.per_tensor_affine or q.stem[0].weight().qscheme() == torch.per_tensor_symmetric
    assert isinstance(q.fc2[1], nn.Linear)  # stayed float, wrapped in DeQuant/Quant
    assert qh.accuracy(q, qh.digits_loader("test", limit=250)) > 90


def test_ptq_qnnpack_engine(course_model, calib):
    before = torch.backends.quantized.engine
    q = ptq.post_training_quantize(course_model, calib, engine="qnnpack", num_batches=1)
    assert torch.backends.quantized.engine == before, "post_training_quantize must restore the engine"
    with qh.engine("qnnpack"):
        assert qh.accuracy(q, qh.digits_loader("test", limit=250)) > 90


def test_ptq_engine_none_is_the_default_not_the_active_engine(course_model, calib):
    """``engine=None`` means ``qh.default_engine()``, also inside ``with qh.engine(...)``; the docstring says so and
    that ``engine=`` is how to quantize for another engine."""
    other = next((e for e in qh.supported_engines() if e in ("qnnpack", "x86") and e != qh.default_engine()), None)
    if other is None:
        pytest.skip("one engine only")
    with qh.engine(other):
        q = ptq.post_training_quantize(course_model, calib, num_batches=1)
        assert torch.backends.quantized.engine == other  # the active engine is restored
    assert q.quantized_engine == qh.default_engine()
    doc = " ".join(ptq.post_training_quantize.__doc__.split())
    assert "pass ``engine=``" in doc and "even inside ``with qh.engine(...)``" in doc


def test_ptq_bad_inputs(course_model, calib):
    with pytest.raises(ValueError, match="training mode"):
        ptq.post_training_quantize(copy.deepcopy(course_model).train(), calib)
    with pytest.raises(ValueError, match="no data"):
        ptq.post_training_quantize(course_model, [])
    with pytest.raises(ValueError, match="engine 'tpu' is unknown or not available"):
        ptq.post_training_quantize(course_model, calib, engine="tpu")
    with pytest.raises(TypeError, match="engine must be a string"):
        ptq.post_training_quantize(course_model, calib, engine=3)
    with pytest.raises(TypeError, match="positional"):
        ptq.post_training_quantize(course_model, calib, "x86")
    with pytest.raises(TypeError, match="model must be"):
        ptq.post_training_quantize("model", calib)
    with pytest.raises(TypeError, match="qconfig must be"):
        ptq.post_training_quantize(course_model, calib, qconfig="x86")
    with pytest.raises(ValueError, match="no module named 'nope'"):
        ptq.post_training_quantize(course_model, calib, float_modules=["nope"])
    with pytest.raises(ValueError, match="num_batches"):
        ptq.post_training_quantize(course_model, calib, num_batches=0)
    with pytest.raises(ValueError, match="not both"):  # per_channel would be silently ignored next to a qconfig
        ptq.post_training_quantize(course_model, calib, per_channel=False, qconfig=ptq.make_qconfig("minmax"))
    with pytest.raises(TypeError, match="per_channel must be"):
        ptq.post_training_quantize(course_model, calib, per_channel="yes")


def test_ptq_records_its_engine_and_defaults_to_per_channel(course_model, calib):
    q = ptq.post_training_quantize(course_model, calib, engine="qnnpack", num_batches=1)
    assert q.quantized_engine == "qnnpack"
    assert q.stem[0].weight().qscheme() == torch.per_channel_affine  # per_channel=None means True, as in QAT


def test_calibrate_counts_and_accepts_plain_tensors():
    model = nn.Sequential(QuantStub(), nn.Linear(3, 2), DeQuantStub()).eval()
    model.qconfig = ptq.make_qconfig("minmax")
    prepared = torch.ao.quantization.prepare(model)
    assert ptq.calibrate(prepared, [torch.randn(5, 3), torch.randn(4, 3)]) == 9
    assert ptq.calibrate(prepared, [torch.randn(5, 3)] * 3, num_batches=2) == 10


# ---------------------------------------------------------------- qconfigs


def test_make_qconfig_matches_torch_default():
    from torch.ao.quantization import get_default_qconfig

    ours = ptq.make_qconfig("histogram", per_channel=True, reduce_range=True)
    theirs = get_default_qconfig("x86")
    for a, b in ((ours.activation(), theirs.activation()), (ours.weight(), theirs.weight())):
        assert type(a) is type(b)
        assert (a.dtype, a.qscheme, a.reduce_range) == (b.dtype, b.qscheme, b.reduce_range)


def test_qconfig_variants_change_one_thing():
    variants = ptq.qconfig_variants(engine="x86")
    base = ptq.describe_qconfig(variants["baseline: minmax, per-tensor"])
    assert base == "act MinMaxObserver / weight MinMaxObserver per_tensor_symmetric"
    for name, qc in list(variants.items())[1:-1]:
        desc = ptq.describe_qconfig(qc)
        assert desc != base
        assert (desc.split(" / ")[0] == base.split(" / ")[0]) or (desc.split(" / ")[1] == base.split(" / ")[1]), name
    with pytest.raises(ValueError, match="activation must be one of"):
        ptq.make_qconfig("percentile")
    with pytest.raises(TypeError, match="per_channel must be True or False"):
        ptq.make_qconfig("minmax", per_channel=1)


# ---------------------------------------------------------------- sensitivity


def test_sqnr_used_by_sensitivity_matches_torch_ao_ns():
    from torch.ao.ns.fx.utils import compute_sqnr

    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    noise = 0.01 * torch.randn(1000, generator=torch.Generator().manual_seed(1))
    assert qh.sqnr_db(x, x + noise) == pytest.approx(float(compute_sqnr(x, x + noise)), rel=1e-4)
    xq = torch.quantize_per_tensor(x, 0.05, 0, torch.qint8)
    assert qh.sqnr_db(x, xq) == pytest.approx(float(compute_sqnr(x, xq.dequantize())), rel=1e-4)


def test_sensitivity_table(course_model, quantized):
    x = next(iter(qh.digits_loader("test", batch_size=64)))[0]
    rows = ptq_analysis.sensitivity_table(course_model, quantized, x)
    layers = [r["layer"] for r in rows]
    assert layers[:3] == ["quant", "stem.0", "down1.0"] and "fc2" in layers
    weighted = [r for r in rows if not math.isnan(r["weight_sqnr_db"])]
    assert len(weighted) == 7
    assert all(30 < r["weight_sqnr_db"] < 60 for r in weighted)  # 8-bit weights: roughly 6 dB per bit
    # the output error accumulates: the logits are noisier than the quantized input
    out = {r["layer"]: r["output_sqnr_db"] for r in rows}
    assert out["fc2"] < out["quant"]
    # a broken quantized layer shows up: zero one conv's weights
    broken = copy.deepcopy(quantized)
    w = broken.down1[0].weight()
    broken.down1[0].set_weight_bias(torch.quantize_per_channel(torch.zeros_like(w.dequantize()), w.q_per_channel_scales(), w.q_per_channel_zero_points(), 0, torch.qint8), broken.down1[0].bias())
    bad = {r["layer"]: r for r in ptq_analysis.sensitivity_table(course_model, broken, x)}
    assert bad["down1.0"]["weight_sqnr_db"] == pytest.approx(0.0, abs=1e-6)
    assert bad["down1.0"]["output_sqnr_db"] < 5
    assert max(bad.values(), key=lambda r: -math.inf if math.isnan(r["output_drop_db"]) else r["output_drop_db"])["layer"] == "down1.0"
    assert math.isnan(rows[0]["output_drop_db"])
    assert rows[2]["output_drop_db"] == pytest.approx(rows[1]["output_sqnr_db"] - rows[2]["output_sqnr_db"])
    with pytest.raises(TypeError, match="example must be"):
        ptq_analysis.sensitivity_table(course_model, quantized, [x])


# ---------------------------------------------------------------- exercise checks


def test_checks(capsys):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2), nn.ReLU()).eval()
    assert ptq_checks.check_fusable_groups([["0", "1", "2"], ["4", "5"]], model)
    assert not ptq_checks.check_fusable_groups([["0", "1"]], model)
    assert not ptq_checks.check_fusable_groups(..., model)
    assert "not filled in yet" in capsys.readouterr().out
    # a BatchNorm1d+ReLU chain is not a group (fuse_modules has no fuser for it): the right answer leaves it out ...
    bn1d = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.ReLU()).eval()
    assert ptq_checks.check_fusable_groups([["0", "1"]], bn1d)
    fuse_modules(copy.deepcopy(bn1d), [["0", "1"]])
    # ... and an answer that lists it is refused with a hint naming BatchNorm1d
    capsys.readouterr()
    assert not ptq_checks.check_fusable_groups([["0", "1"], ["2", "3"]], bn1d)
    assert "no fuser for BatchNorm1d+ReLU" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="did not find fuser method"):
        fuse_modules(copy.deepcopy(bn1d), [["2", "3"]])
    assert ptq_checks.check_qconfig(ptq.make_qconfig("moving_average", True), "moving_average", True)
    assert not ptq_checks.check_qconfig(ptq.make_qconfig("minmax", True), "moving_average", True)
    assert not ptq_checks.check_qconfig(ptq.make_qconfig("moving_average", False), "moving_average", True)


# ---------------------------------------------------------------- the depthwise model


def test_depthwise_model_fusion_and_checkpoint():
    net = qh.DepthwiseNet().eval()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert net.dw1[0].groups == 16 and net.dw2[0].groups == 32
    by_hand = copy.deepcopy(net)
    by_hand.fuse_model()
    found = fuse_modules(copy.deepcopy(net), ptq.find_fusable_groups(net))
    assert _types(found) == _types(by_hand)
    loaded = qh.load_depthwise_model()
    meta = qh.depthwise_model_metadata()
    assert meta["training_command"] == "python -m qhelpers.rebuild depthwise" and not loaded.training
    assert qh.accuracy(loaded, qh.digits_loader("test")) == pytest.approx(meta["test_accuracy"], abs=0.05)


def test_depthwise_checkpoint_corruption_is_reported(tmp_path):
    import shutil

    for name in ("depthwise_model.pt", "depthwise_model.json"):
        shutil.copy(qh.data_dir() / name, tmp_path / name)
    (tmp_path / "depthwise_model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="python -m qhelpers.rebuild depthwise"):
        qh.load_depthwise_model(tmp_path)
