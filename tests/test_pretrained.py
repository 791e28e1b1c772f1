"""qhelpers.pretrained: torchvision's weights offline, the course's INT8 weights enum, is_quantized."""

import shutil
import warnings

import pytest
import torch
from torch import nn
from torchvision.models import quantization as qmodels
from torchvision.models.quantization import ResNet18_QuantizedWeights

import qhelpers as qh
from qhelpers import pretrained as pt

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache; any attempt to download fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


# --------------------------------------------------------------------------- torchvision offline


def test_hub_checkpoint_path_follows_torch_home(torch_home):
    path = qh.hub_checkpoint_path(ResNet18_QuantizedWeights.DEFAULT)
    assert path == torch_home / "hub" / "checkpoints" / "resnet18_fbgemm_16fa66dd.pth"
    assert not qh.weights_cached(ResNet18_QuantizedWeights.DEFAULT)
    with pytest.raises(FileNotFoundError, match="resnet18_fbgemm_16fa66dd.pth"):
        qh.cached_hash_matches(ResNet18_QuantizedWeights.DEFAULT)


def test_real_weights_call_picks_up_the_cached_file(torch_home):
    """A state dict saved under torchvision's file name is what ``resnet18(weights=..., quantize=True)`` loads.

    No hash check has to be switched off: torch checks a sha256 prefix only
    while downloading (``check_hash=True`` is passed on to
    ``download_url_to_file``), a file already in the cache is loaded unchecked,
    and torch's pattern ``-<hex>.`` does not even match torchvision's quantized
    file names (``resnet18_fbgemm_16fa66dd.pth`` has an underscore). Our file's
    sha256 does not start with ``16fa66dd`` and it is still loaded: the test
    shows that, rather than hiding it.
    """
    weights = ResNet18_QuantizedWeights.DEFAULT
    ours = qmodels.resnet18(weights=None, quantize=True, backend="fbgemm")
    with torch.no_grad():  # make the weights recognisable: not what a fresh build would have
        ours.fc.set_weight_bias(torch.quantize_per_channel(torch.randn(1000, 512) * 0.05, torch.full((1000,), 0.002, dtype=torch.double), torch.zeros(1000, dtype=torch.long), 0, torch.qint8), torch.randn(1000))
    path = qh.hub_checkpoint_path(weights)
    path.parent.mkdir(parents=True)
    torch.save(ours.state_dict(), path)
    assert qh.weights_cached(weights)
    assert qh.cached_hash_matches(weights) is None  # no prefix torch recognises
    assert not qh.sha256_file(path).startswith("16fa66dd")

    loaded = qmodels.resnet18(weights=weights, quantize=True)
    assert qh.is_quantized(loaded)
    assert torch.equal(loaded.fc.weight().int_repr(), ours.fc.weight().int_repr())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


def test_cached_hash_matches_when_prefix_is_right(torch_home, monkeypatch):
    class FakeWeights:
        url = "https://example.invalid/models/tiny-00000000.pth"

    path = qh.hub_checkpoint_path(FakeWeights)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"some bytes")
    prefix = qh.sha256_file(path)[:8]
    FakeWeights.url = f"https://example.invalid/models/tiny-{prefix}.pth"
    path.rename(qh.hub_checkpoint_path(FakeWeights))
    assert qh.cached_hash_matches(FakeWeights) is True
    wrong = "0" * 8 if prefix != "0" * 8 else "1" * 8
    qh.hub_checkpoint_path(FakeWeights).rename(path.with_name(f"tiny-{wrong}.pth"))
    FakeWeights.url = f"https://example.invalid/models/tiny-{wrong}.pth"
    assert qh.cached_hash_matches(FakeWeights) is False


def test_hub_checkpoint_path_bad_input():
    with pytest.raises(TypeError, match="weights"):
        qh.hub_checkpoint_path("resnet18")


# --------------------------------------------------------------------------- is_quantized and the x86 trap


def test_torchvision_x86_backend_silently_returns_float():
    float_like = qmodels.shufflenet_v2_x0_5(weights=None, quantize=True, backend="x86")
    real = qmodels.shufflenet_v2_x0_5(weights=None, quantize=True, backend="fbgemm")
    assert not qh.is_quantized(float_like)
    assert qh.is_quantized(real)
    assert "fc" in qh.quantized_modules(real)


def test_torchvision_x86_backend_with_real_weights_raises_before_any_download(torch_home):
    # Only weights=None gives the silent float model: with weights, the backend must match weights.meta.
    with pytest.raises(ValueError, match="expected value fbgemm but got x86"):
        qmodels.resnet18(weights=ResNet18_QuantizedWeights.DEFAULT, quantize=True, backend="x86")


def test_int8_size_breakdown_adds_up():
    import torchvision

    float_model = torchvision.models.shufflenet_v2_x0_5(weights=None).eval()
    weight_bytes = qh.int8_weight_bytes(float_model)
    assert weight_bytes < qh.count_parameters(float_model)  # BatchNorm and biases are not int8
    int8 = qmodels.shufflenet_v2_x0_5(weights=None, quantize=True, backend="fbgemm")
    parts = qh.int8_size_breakdown(int8)
    assert parts["int8 weights"] == weight_bytes
    channels = sum(m.weight.shape[0] for m in float_model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert parts["scales and zero points"] == channels * (8 + 8)  # float64 scale + int64 zero point per channel
    assert parts["total"] == qh.model_size_bytes(int8) == sum(v for k, v in parts.items() if k != "total")
    assert 0 < parts["container"] < 0.1 * parts["total"]
    with pytest.raises(ValueError, match="no quantized modules"):
        qh.int8_size_breakdown(float_model)
    with pytest.raises(ValueError, match="already quantized"):
        qh.int8_weight_bytes(int8)
    with pytest.raises(TypeError, match="model"):
        qh.int8_size_breakdown("resnet")


def test_is_quantized_on_course_models():
    float_model = qh.CourseNet().eval()  # has a FloatFunctional, which does not count
    assert qh.quantized_modules(float_model) == []
    int8 = qh.quantize_course_model(float_model, None, engine="x86")
    names = qh.quantized_modules(int8)
    assert {"quant", "stem.0", "res.skip_add", "fc1", "fc2", "dequant"} <= set(names)
    assert qh.is_quantized(int8)


def test_is_quantized_sees_dynamic_quantization():
    model = nn.Sequential(nn.Linear(4, 4))
    dyn = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    assert qh.quantized_modules(dyn) == ["0"]


def test_is_quantized_bad_input():
    with pytest.raises(TypeError, match="model"):
        qh.is_quantized("resnet18")


# --------------------------------------------------------------------------- the course's weights enum


def test_course_weights_meta_promises():
    w = qh.CourseNet_QuantizedWeights.DEFAULT
    meta = w.meta
    assert meta["categories"] == [str(d) for d in range(10)]
    assert meta["backend"] in torch.backends.quantized.supported_engines
    info = qh.course_int8_metadata()
    path = qh.data_dir() / pt.INT8_CHECKPOINT_NAME
    assert info["file_size_bytes"] == path.stat().st_size
    assert meta["_file_size"] == pytest.approx(path.stat().st_size / 1e6, abs=1e-3)
    assert info["sha256"] == qh.sha256_file(path)
    assert meta["num_params"] == qh.count_parameters(qh.CourseNet())
    assert qh.CourseNet_QuantizedWeights.verify("CourseNet_QuantizedWeights.DEFAULT") is w


def test_course_weights_accuracy_matches_fresh_evaluation():
    w = qh.CourseNet_QuantizedWeights.DEFAULT
    model = qh.course_net(weights=w, quantize=True)
    assert qh.is_quantized(model)
    assert torch.backends.quantized.engine == w.meta["backend"]
    acc = qh.accuracy(model, qh.digits_loader("test"))
    assert round(acc, 2) == w.meta["_metrics"]["digits test split"]["acc@1"]


def test_artifact_is_what_the_rebuild_recipe_makes():
    shipped = qh.course_net(weights=qh.CourseNet_QuantizedWeights.DEFAULT, quantize=True)
    fresh = qh.quantize_course_model(qh.load_course_model(), qh.digits_loader("calib"), engine="x86")
    x, _ = next(iter(qh.digits_loader("test", batch_size=64)))
    with torch.no_grad():
        a, b = shipped(x), fresh(x)
    if torch.backends.cpu.get_cpu_capability() == "AVX512" and not qh.int8_pairs_saturate("x86"):
        assert torch.equal(a, b)  # the kind of CPU the shipped artifact was built on: the recipe rebuilds it exactly
    else:  # elsewhere calibration's float kernels round differently, so scales move in their last digits
        assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.98 and (a - b).abs().max() < 0.05 * (a.max() - a.min())


def test_course_net_on_a_machine_without_the_weights_engine(monkeypatch, capsys):
    # An ARM laptop offers only qnnpack: the x86 artifact is loaded with qnnpack active, with a printed reason.
    monkeypatch.setenv("QHELPERS_ENGINE", "qnnpack")
    saved = torch.backends.quantized.engine
    try:
        model = qh.course_net(weights=qh.CourseNet_QuantizedWeights.DEFAULT, quantize=True)
        assert torch.backends.quantized.engine == "qnnpack"
        assert "does not offer" in capsys.readouterr().out
        x, _ = next(iter(qh.digits_loader("test", batch_size=256)))
        with torch.no_grad():
            preds = model(x).argmax(1)
    finally:
        torch.backends.quantized.engine = saved
    shipped = qh.course_net(weights=qh.CourseNet_QuantizedWeights.DEFAULT, quantize=True)
    with torch.no_grad():
        agree = (shipped(x).argmax(1) == preds).float().mean().item()
    assert agree >= 0.99


def test_course_net_float_and_untrained_paths():
    float_model = qh.course_net(weights=qh.CourseNet_QuantizedWeights.DEFAULT, quantize=False)
    assert not qh.is_quantized(float_model)
    assert torch.equal(float_model.fc2.weight, qh.load_course_model().fc2.weight)
    assert not qh.is_quantized(qh.course_net())
    skeleton = qh.course_net(quantize=True, backend="qnnpack")
    assert qh.is_quantized(skeleton) and torch.backends.quantized.engine == "qnnpack"


def test_course_net_bad_input():
    with pytest.raises(TypeError, match="Invalid Weight class"):
        qh.course_net(weights=ResNet18_QuantizedWeights.DEFAULT)
    with pytest.raises(TypeError, match="quantize"):
        qh.course_net(quantize="yes")
    with pytest.raises(TypeError, match="unexpected keyword"):
        qh.course_net(num_classes=3)
    with pytest.raises(ValueError, match="backend"):
        qh.course_net(weights=qh.CourseNet_QuantizedWeights.DEFAULT, quantize=True, backend="qnnpack")
    with pytest.raises(ValueError, match="engine"):
        qh.quantize_course_model(qh.CourseNet(), None, engine="tpu")
    with pytest.raises(TypeError, match="CourseNet"):
        qh.quantize_course_model(nn.Linear(2, 2))


def test_missing_artifact_gives_clear_error(tmp_path, monkeypatch):
    for name in ("course_model.pt", "course_model.json", pt.INT8_METADATA_NAME):
        shutil.copy(qh.data_dir() / name, tmp_path / name)
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"course_model_int8\.pt is missing; rebuild it with: python -m qhelpers\.rebuild int8"):
        qh.course_net(weights=qh.CourseNet_QuantizedWeights.DEFAULT, quantize=True)
    (tmp_path / pt.INT8_METADATA_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"course_model_int8\.json is missing"):
        qh.CourseNet_QuantizedWeights.DEFAULT.meta


def test_altered_artifact_is_refused(tmp_path, monkeypatch):
    for name in (pt.INT8_CHECKPOINT_NAME, pt.INT8_METADATA_NAME):
        shutil.copy(qh.data_dir() / name, tmp_path / name)
    with open(tmp_path / pt.INT8_CHECKPOINT_NAME, "ab") as f:
        f.write(b"\0")
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="corrupt or was changed"):
        qh.course_net(weights=qh.CourseNet_QuantizedWeights.DEFAULT, quantize=True)


# --------------------------------------------------------------------------- transforms and the photo


def test_digits_transform_matches_the_dataset():
    images, _ = qh.load_digits()["test"]
    batch = torch.from_numpy(images[:8]).unsqueeze(1)
    expected = qh.digits_dataset("test", limit=8).tensors[0]
    got = qh.CourseNet_QuantizedWeights.DEFAULT.transforms()(batch)
    torch.testing.assert_close(got, expected)
    assert qh.CourseNet_QuantizedWeights.DEFAULT.transforms()(torch.zeros(56, 56, dtype=torch.uint8)).shape == (1, 28, 28)


def test_digits_transform_bad_input():
    t = qh.DigitsClassification()
    with pytest.raises(TypeError, match="uint8"):
        t(torch.zeros(28, 28))
    with pytest.raises(ValueError, match="shape"):
        t(torch.zeros(3, 28, 28, dtype=torch.uint8))


def test_photo_goes_through_torchvision_transforms():
    from PIL import Image

    img = Image.open(qh.photo_path())
    x = ResNet18_QuantizedWeights.DEFAULT.transforms()(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
