"""Notebook 02's exercises: the right answer passes its self-check, typical wrong answers fail with a hint.

Each check is called with values, as the notebook's check cell calls it; the hint printed for a wrong
answer must name the mistake and must not contain the expected value.
"""

import pytest
import torch
import torchvision
from torchvision.models import quantization as qmodels
from torchvision.models.quantization import MobileNet_V2_QuantizedWeights, ResNet50_QuantizedWeights

import qhelpers as qh

MNV2 = MobileNet_V2_QuantizedWeights.DEFAULT
META = MNV2.meta
TOP1 = META["_metrics"]["ImageNet-1K"]["acc@1"]
FLOAT_TOP1 = META["unquantized"].meta["_metrics"]["ImageNet-1K"]["acc@1"]


def run(check, capsys, *args, **kwargs):
    ok = check(*args, **kwargs)
    return ok, capsys.readouterr().out


# --------------------------------------------------------------------------- Ex1: reading weights.meta


def test_ex1_accepts_right_answer(capsys):
    ok, out = run(qh.check_weights_meta, capsys, META["backend"], TOP1, FLOAT_TOP1 - TOP1, MNV2)
    assert ok and "❌" not in out


def test_ex1_rejects_the_resnets_backend(capsys):
    ok, out = run(qh.check_weights_meta, capsys, ResNet50_QuantizedWeights.DEFAULT.meta["backend"], TOP1, FLOAT_TOP1 - TOP1, MNV2)
    assert not ok and "another model's weights" in out and "qnnpack" not in out


def test_ex1_rejects_the_machines_engine(capsys, monkeypatch):
    monkeypatch.setattr(torch.backends.quantized, "engine", "x86")
    ok, out = run(qh.check_weights_meta, capsys, "x86", TOP1, FLOAT_TOP1 - TOP1, MNV2)
    assert not ok and "engine active on this machine" in out


def test_ex1_rejects_the_float_top1(capsys):
    ok, out = run(qh.check_weights_meta, capsys, META["backend"], FLOAT_TOP1, FLOAT_TOP1 - TOP1, MNV2)
    assert not ok and "float model's top-1" in out and str(TOP1) not in out


def test_ex1_rejects_a_fraction_instead_of_percent(capsys):
    ok, out = run(qh.check_weights_meta, capsys, META["backend"], TOP1 / 100, FLOAT_TOP1 - TOP1, MNV2)
    assert not ok and "percent" in out


def test_ex1_rejects_top5(capsys):
    ok, out = run(qh.check_weights_meta, capsys, META["backend"], META["_metrics"]["ImageNet-1K"]["acc@5"], FLOAT_TOP1 - TOP1, MNV2)
    assert not ok and "top-5" in out


def test_ex1_rejects_the_sign_of_the_drop(capsys):
    ok, out = run(qh.check_weights_meta, capsys, META["backend"], TOP1, TOP1 - FLOAT_TOP1, MNV2)
    assert not ok and "sign" in out


def test_ex1_rejects_a_relative_drop(capsys):
    ok, out = run(qh.check_weights_meta, capsys, META["backend"], TOP1, 100 * (FLOAT_TOP1 - TOP1) / FLOAT_TOP1, MNV2)
    assert not ok and "relative" in out


def test_ex1_blank_is_not_filled_in(capsys):
    ok, out = run(qh.check_weights_meta, capsys, ..., ..., ..., MNV2)
    assert not ok and "not filled in yet" in out


# --------------------------------------------------------------------------- Ex2: INT8 weight bytes


@pytest.fixture(scope="module")
def r50_float():
    return torchvision.models.resnet50(weights=None).eval()


def test_ex2_accepts_right_answer(capsys, r50_float):
    weights = sum(m.weight.numel() for m in r50_float.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    ok, out = run(qh.check_int8_size_prediction, capsys, weights / 1e6, r50_float)
    assert ok and "✅" in out


def test_ex2_rejects_counting_batchnorm_and_biases(capsys, r50_float):
    # meta["num_params"] is every parameter, BatchNorm and biases included: 0.2% too many.
    ok, out = run(qh.check_int8_size_prediction, capsys, ResNet50_QuantizedWeights.DEFAULT.meta["num_params"] / 1e6, r50_float)
    assert not ok and "BatchNorm" in out


def test_ex2_rejects_four_bytes_per_weight(capsys, r50_float):
    ok, out = run(qh.check_int8_size_prediction, capsys, 4 * qh.int8_weight_bytes(r50_float) / 1e6, r50_float)
    assert not ok and "float32 size" in out


def test_ex2_rejects_mebibytes(capsys, r50_float):
    ok, out = run(qh.check_int8_size_prediction, capsys, qh.int8_weight_bytes(r50_float) / 2**20, r50_float)
    assert not ok and "MiB" in out


def test_ex2_rejects_bits(capsys, r50_float):
    ok, out = run(qh.check_int8_size_prediction, capsys, 8 * qh.int8_weight_bytes(r50_float) / 1e6, r50_float)
    assert not ok and "bits" in out


# --------------------------------------------------------------------------- Ex3: an honest speedup


@pytest.fixture(scope="module")
def latencies():
    x = torch.randn(8, 1, 28, 28)
    float_model = qh.load_course_model()
    int8_model = qh.quantize_course_model(float_model, None)
    with qh.engine():
        f = qh.measure_latency(float_model, x, threads=1, min_run_time=0.01, min_runs=3)
        q = qh.measure_latency(int8_model, x, threads=1, min_run_time=0.01, min_runs=3)
        f2 = qh.measure_latency(float_model, x, threads=1, min_run_time=0.01, min_runs=3)
        q_small = qh.measure_latency(int8_model, x[:1], threads=1, min_run_time=0.01, min_runs=3)
        q_two = qh.measure_latency(int8_model, x, threads=2, min_run_time=0.01, min_runs=3)
    return {"float": f, "int8": q, "float again": f2, "int8 batch 1": q_small, "int8 two threads": q_two}


def test_ex3_accepts_right_answer(capsys, latencies):
    f, q = latencies["float"], latencies["int8"]
    ok, out = run(qh.check_speedup, capsys, f, q, f.median_ms / q.median_ms, threads=1)
    assert ok and "❌" not in out


def test_ex3_rejects_the_same_measurement_twice(capsys, latencies):
    lat = latencies["float"]
    ok, out = run(qh.check_speedup, capsys, lat, lat, 1.0, threads=1)  # the case
    assert not ok and "same measurement twice" in out
    lat = latencies["int8"]
    ok, out = run(qh.check_speedup, capsys, lat, lat, 1.0, threads=1)
    assert not ok and "same measurement twice" in out


def test_ex3_rejects_the_float_model_measured_twice(capsys, latencies):
    f, f2 = latencies["float"], latencies["float again"]
    ok, out = run(qh.check_speedup, capsys, f, f2, f.median_ms / f2.median_ms, threads=1)
    assert not ok and "float model twice" in out


def test_ex3_rejects_the_int8_model_measured_twice(capsys, latencies):
    q = latencies["int8"]
    ok, out = run(qh.check_speedup, capsys, qh.Latency(**{**q.as_dict(), "median_ms": q.median_ms * 1.01}), q, 1.01, threads=1)
    assert not ok and "INT8 model twice" in out


def test_ex3_rejects_swapped_measurements(capsys, latencies):
    f, q = latencies["float"], latencies["int8"]
    ok, out = run(qh.check_speedup, capsys, q, f, q.median_ms / f.median_ms, threads=1)
    assert not ok and "swapped" in out


def test_ex3_rejects_an_inverted_speedup(capsys, latencies):
    f, q = latencies["float"], latencies["int8"]
    ok, out = run(qh.check_speedup, capsys, f, q, q.median_ms / f.median_ms, threads=1)
    assert not ok and "inverted" in out


def test_ex3_rejects_a_difference_of_times(capsys, latencies):
    f, q = latencies["float"], latencies["int8"]
    ok, out = run(qh.check_speedup, capsys, f, q, f.median_ms - q.median_ms, threads=1)
    assert not ok and "difference" in out


def test_ex3_rejects_different_inputs(capsys, latencies):
    f, q = latencies["float"], latencies["int8 batch 1"]
    ok, out = run(qh.check_speedup, capsys, f, q, f.median_ms / q.median_ms, threads=1)
    assert not ok and "different inputs" in out


def test_ex3_rejects_the_wrong_thread_count(capsys, latencies):
    f, q = latencies["float"], latencies["int8 two threads"]
    ok, out = run(qh.check_speedup, capsys, f, q, f.median_ms / q.median_ms, threads=1)
    assert not ok and "2 threads" in out


def test_ex3_rejects_a_function_instead_of_the_model(capsys, latencies):
    model = qh.load_course_model()
    lat = qh.measure_latency(lambda x: model(x), torch.randn(8, 1, 28, 28), min_run_time=0.01, min_runs=2)
    ok, out = run(qh.check_speedup, capsys, lat, latencies["int8"], 1.0, threads=1)
    assert not ok and "measure the model itself" in out


def test_ex3_rejects_a_plain_number(capsys, latencies):
    ok, out = run(qh.check_speedup, capsys, 3.0, latencies["int8"], 1.0, threads=1)
    assert not ok and "qh.measure_latency" in out


# --------------------------------------------------------------------------- Ex4: predict the size ratio first


@pytest.fixture(scope="module")
def shufflenet():
    backend = "fbgemm" if "fbgemm" in qh.supported_engines() else "qnnpack"
    saved = torch.backends.quantized.engine
    try:
        int8 = qmodels.shufflenet_v2_x0_5(weights=None, quantize=True, backend=backend).eval()
    finally:
        torch.backends.quantized.engine = saved
    float_model = torchvision.models.shufflenet_v2_x0_5(weights=None).eval()
    return float_model, int8, qh.model_size_bytes(float_model) / qh.model_size_bytes(int8)


def test_ex4_accepts_right_answer(capsys, shufflenet):
    ok, out = run(qh.check_size_ratio_prediction, capsys, (3.0, 4.0), *shufflenet[:2])
    assert ok and "✅" in out


def test_ex4_accepts_any_narrow_range_that_holds_the_measurement(capsys, shufflenet):
    ratio = shufflenet[2]
    ok, _ = run(qh.check_size_ratio_prediction, capsys, [ratio - 0.3, ratio + 0.1], *shufflenet[:2])
    assert ok


def test_ex4_rejects_a_single_number(capsys, shufflenet):
    ok, out = run(qh.check_size_ratio_prediction, capsys, 4.0, *shufflenet[:2])
    assert not ok and "range (low, high)" in out


def test_ex4_rejects_a_range_above_the_4x_ceiling(capsys, shufflenet):
    ok, out = run(qh.check_size_ratio_prediction, capsys, (4.1, 5.0), *shufflenet[:2])
    assert not ok and "caps the ratio" in out


def test_ex4_rejects_a_range_too_wide_to_mean_anything(capsys, shufflenet):
    ok, out = run(qh.check_size_ratio_prediction, capsys, (1.0, 4.0), *shufflenet[:2])
    assert not ok and "predicts little" in out


def test_ex4_rejects_an_inverted_ratio(capsys, shufflenet):
    ok, out = run(qh.check_size_ratio_prediction, capsys, (0.2, 0.3), *shufflenet[:2])
    assert not ok and "INT8 is larger" in out


def test_ex4_rejects_a_range_that_misses(capsys, shufflenet):
    ok, out = run(qh.check_size_ratio_prediction, capsys, (2.0, 2.5), *shufflenet[:2])
    assert not ok and "above your range" in out
    ratio = shufflenet[2]
    ok, out = run(qh.check_size_ratio_prediction, capsys, (ratio + 0.05, min(ratio + 0.5, 4.0)), *shufflenet[:2])
    assert not ok and "below your range" in out


def test_ex4_rejects_low_above_high(capsys, shufflenet):
    ok, out = run(qh.check_size_ratio_prediction, capsys, (4.0, 3.0), *shufflenet[:2])
    assert not ok and "swap them" in out
