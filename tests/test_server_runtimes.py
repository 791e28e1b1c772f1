"""qhelpers.server_runtimes: ONNX Runtime and OpenVINO, float and INT8, from the course model.

The bounds (measured on the AVX2-only AMD EPYC, 1,000 test digits, float 98.8 %): ONNX Runtime float
agrees with PyTorch float on every prediction; ONNX Runtime INT8 (QDQ, per-channel, reduce-range decided
from this CPU) and OpenVINO INT8 (NNCF, full bias correction) agreed on every prediction; the tests allow
one point of accuracy and 98 % agreement, the PyTorch INT8 paths' bound in tests/test_modern.py.
"""

import sys

import numpy as np
import pytest
import torch

import qhelpers as qh
from qhelpers import server_runtimes as sr


@pytest.fixture(scope="module")
def course():
    model = qh.load_course_model()
    images, labels = qh.digits_dataset("test").tensors
    with torch.no_grad():
        logits = model(images)
    return model, images, labels, logits


def _agreement(model, images, reference):
    with torch.no_grad():
        out = model(images)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    return float((out.argmax(1) == reference.argmax(1)).float().mean()), out


def _accuracy(model, images, labels):
    with torch.no_grad():
        return 100.0 * int((model(images).argmax(1) == labels).sum()) / len(labels)


@pytest.fixture(scope="module")
def onnx_models(course, tmp_path_factory):
    model, images, _, _ = course
    folder = tmp_path_factory.mktemp("onnx")
    calib = qh.digits_loader("calib")
    return sr.onnxruntime_float(model, images[:1], folder), sr.onnxruntime_int8(model, images[:1], calib, folder)


@pytest.mark.slow
def test_onnxruntime_float_is_the_pytorch_model(course, onnx_models):
    model, images, labels, logits = course
    float_model, _ = onnx_models
    agree, out = _agreement(float_model, images, logits)
    assert agree == 1.0 and torch.allclose(out, logits, atol=1e-3)
    assert float_model.precision == "float" and float_model.size_bytes == float_model.path.stat().st_size
    assert isinstance(float_model, torch.nn.Module) and qh.accuracy(float_model, qh.digits_loader("test")) == _accuracy(model, images, labels)


@pytest.mark.slow
def test_onnxruntime_int8_is_qdq_per_channel_and_within_a_point_of_float(course, onnx_models):
    model, images, labels, logits = course
    _, int8 = onnx_models
    import onnx

    graph = onnx.load(str(int8.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= ops.count("QuantizeLinear")
    scales = {i.name: i for i in graph.initializer}
    conv_weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and len(scales.get(n.input[1], onnx.TensorProto()).dims) == 1
                      and scales[n.input[1]].dims[0] > 1]
    assert conv_weight_dq, "per-channel weights: a DequantizeLinear with a vector of scales"
    agree, _ = _agreement(int8, images, logits)
    assert agree >= 0.98
    assert abs(_accuracy(int8, images, labels) - _accuracy(model, images, labels)) <= 1.0
    assert int8.precision == "INT8" and int8.size_bytes < 0.5 * onnx_models[0].size_bytes


def test_onnxruntime_probe_is_exact_or_saturated():
    saturates = sr.onnxruntime_pairs_saturate()
    assert isinstance(saturates, bool) and sr.onnxruntime_pairs_saturate() is saturates  # measured once
    if not qh.is_x86_machine():
        assert saturates is False  # MLAS on Arm: exact 32-bit sums


def test_reduce_range_follows_onnxruntimes_own_saturation():
    # ONNX Runtime's kernels decide, not PyTorch's: the two differ on AVX-VNNI laptops (MLAS uses AVX-VNNI, FBGEMM not)
    if not qh.is_x86_machine():
        assert sr.onnx_reduce_range_default() is False
    else:
        assert sr.onnx_reduce_range_default() is sr.onnxruntime_pairs_saturate()


def test_reduce_range_default_does_not_ask_pytorch(monkeypatch):
    if not qh.is_x86_machine():
        pytest.skip("x86 only: on ARM the default is False without a probe")
    monkeypatch.setattr(sr, "onnxruntime_pairs_saturate", lambda: False)
    import qhelpers.cpu

    monkeypatch.setattr(qhelpers.cpu, "int8_pairs_saturate", lambda engine: True)  # FBGEMM saturating (an AVX-VNNI laptop)
    assert sr.onnx_reduce_range_default() is False
    monkeypatch.setattr(sr, "onnxruntime_pairs_saturate", lambda: True)
    assert sr.onnx_reduce_range_default() is True


@pytest.mark.slow
def test_openvino_float_and_int8_within_a_point_of_float(course):
    model, images, labels, logits = course
    float_model = sr.openvino_model(model, images[:1])
    agree, out = _agreement(float_model, images, logits)
    assert agree == 1.0 and torch.allclose(out, logits, atol=1e-3)
    int8 = sr.openvino_model(model, images[:1], qh.digits_loader("calib"), subset_size=300, fast_bias_correction=False)
    assert int8.precision == "INT8" and int8.size_bytes < 0.6 * float_model.size_bytes
    agree, _ = _agreement(int8, images, logits)
    assert agree >= 0.98
    assert abs(_accuracy(int8, images, labels) - _accuracy(model, images, labels)) <= 1.0
    lat = qh.measure_latency(int8, images[:1], threads=1, min_run_time=0.05, warmup=1)
    assert lat.runs >= qh.MIN_RUNS and lat.median_ms > 0


def test_calibration_batches_take_tensors_and_loaders():
    images = torch.randn(120, 1, 28, 28)
    assert [len(b) for b in sr.calibration_batches(images, batch_size=50)] == [50, 50, 20]
    assert [len(b) for b in sr.calibration_batches(qh.digits_loader("calib", batch_size=200))] == [200, 200, 100]
    assert len(sr.calibration_batches([images[:3], images[3:5]])) == 2
    with pytest.raises(ValueError, match="float images"):
        sr.calibration_batches(torch.zeros(4, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match="calib must"):
        sr.calibration_batches(3)
    with pytest.raises(TypeError, match="float image tensors"):
        sr.calibration_batches([(np.zeros((1, 28, 28)), 0)])
    with pytest.raises(ValueError, match="no images"):
        sr.calibration_batches([])
    with pytest.raises(ValueError, match="batch_size"):
        sr.calibration_batches(images, batch_size=0)


@pytest.mark.slow
def test_bad_arguments_name_themselves(course, tmp_path):
    model, images, _, _ = course
    with pytest.raises(TypeError, match="example must be a float tensor"):
        sr.export_onnx(model, images[:1].long(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="training mode"):
        sr.openvino_model(qh.load_course_model().train(), images[:1])
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        sr.quantize_onnx(tmp_path / "missing.onnx", tmp_path / "q.onnx", images[:10])
    with pytest.raises(TypeError, match="reduce_range"):
        sr.quantize_onnx(tmp_path / "missing.onnx", tmp_path / "q.onnx", images[:10], reduce_range="yes")
    with pytest.raises(TypeError, match="fast_bias_correction"):
        sr.openvino_model(model, images[:1], images[:4], fast_bias_correction=1)


@pytest.mark.parametrize("runtime, module", [("onnxruntime", "onnxruntime"), ("onnxruntime", "onnxscript"), ("openvino", "nncf")])
def test_a_missing_package_names_the_install_command_in_one_line(monkeypatch, course, tmp_path, runtime, module):
    model, images, _, _ = course
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert sr.server_runtimes_available()[runtime] is False
    call = (lambda: sr.onnxruntime_float(model, images[:1], tmp_path)) if runtime == "onnxruntime" else (lambda: sr.openvino_model(model, images[:1]))
    with pytest.raises(ModuleNotFoundError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and module in message and sr.server_install_command() in message
    assert sr.server_install_command().startswith("pip install -r ") and sr.server_install_command().endswith(sr.SERVER_REQUIREMENTS)
