"""Accuracy, size, parameter count and the latency helper (qhelpers.metrics, qhelpers.latency)."""

import time

import pytest
import torch

import qhelpers as qh


def test_accuracy_counts_correct_predictions():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0].long(), 3).float()

    loader = [(torch.tensor([[0.0], [1.0], [2.0], [2.0]]), torch.tensor([0, 1, 2, 0]))]
    assert qh.accuracy(Fixed().eval(), loader) == 75.0


def test_accuracy_refuses_training_mode_and_empty_loader():
    with pytest.raises(ValueError, match="training mode"):
        qh.accuracy(torch.nn.Linear(2, 2).train(), [])
    with pytest.raises(ValueError, match="no batches"):
        qh.accuracy(torch.nn.Linear(2, 2).eval(), [])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        qh.accuracy("model", [])


def test_size_and_parameters_of_a_linear_layer():
    lin = torch.nn.Linear(100, 10)
    assert qh.count_parameters(lin) == 1010
    size = qh.model_size_bytes(lin)
    assert 1010 * 4 <= size <= 1010 * 4 + 2000  # float32 payload plus the zip container


def test_latency_measurement_is_well_formed():
    lat = qh.measure_latency(torch.nn.Linear(8, 8), torch.randn(2, 8), threads=1, min_run_time=0.05)
    assert lat.median_ms > 0 and lat.iqr_ms >= 0 and lat.runs >= qh.MIN_RUNS and lat.threads == 1
    assert lat.min_ms <= lat.median_ms and lat.calls_per_run >= 1
    assert "ms median" in str(lat) and "IQR" in str(lat) and "runs" in str(lat)
    assert {"median_ms", "iqr_ms", "runs", "threads", "label"} <= set(lat.as_dict())
    assert lat.module == "Linear" and lat.quantized is False and lat.input_shape == (2, 8)
    assert lat.engine == torch.backends.quantized.engine


def test_latency_takes_at_least_min_runs_samples_of_a_slow_call():
    # A call longer than min_run_time still gets min_runs samples (the old single-shot pitfall).
    def slow(x):
        time.sleep(0.01)
        return x

    lat = qh.measure_latency(slow, torch.zeros(1), min_run_time=0.001, warmup=0, min_runs=4)
    assert lat.runs == 4 and lat.calls_per_run == 1 and lat.median_ms >= 10
    assert lat.module == "slow" and lat.quantized is None


def test_latency_warms_up_with_the_timed_thread_count_and_restores_it():
    seen = []

    def record(x):
        seen.append(torch.get_num_threads())
        return x

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    qh.measure_latency(record, torch.zeros(1), threads=other, min_run_time=0.001, warmup=2, min_runs=2)
    assert set(seen) == {other}  # warm-up and timing alike
    assert torch.get_num_threads() == before


def test_latency_sees_a_quantized_model():
    q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 4)), dtype=torch.qint8)
    lat = qh.measure_latency(q, torch.randn(1, 4), min_run_time=0.001, min_runs=2)
    assert lat.quantized is True


@pytest.mark.parametrize(
    "kwargs, error",
    [(dict(threads=0), ValueError), (dict(min_run_time=0), ValueError), (dict(min_runs=1), ValueError),
     (dict(warmup=-1), ValueError), (dict(label=3), TypeError)],
)
def test_latency_bad_arguments(kwargs, error):
    with pytest.raises(error):
        qh.measure_latency(torch.nn.Linear(2, 2), torch.randn(1, 2), **kwargs)
    with pytest.raises(TypeError):
        qh.measure_latency(42, torch.randn(1, 2))


def test_paired_test_is_the_exact_mcnemar_of_scipy():
    from scipy.stats import binomtest

    y = torch.arange(1000) % 10
    a, b = y.clone(), y.clone()
    a[:5] = (a[:5] + 1) % 10  # 5 images only B gets right
    b[5:20] = (b[5:20] + 1) % 10  # 15 images only A gets right
    a[20:30] = b[20:30] = (y[20:30] + 1) % 10  # 10 both wrong: no evidence either way
    r = qh.paired_test(a, b, y, names=("a", "b"))
    assert (r.n, r.only_a, r.only_b, r.correct_a, r.correct_b) == (1000, 15, 5, 985, 975)
    assert r.p_value == pytest.approx(binomtest(15, 20, 0.5).pvalue, rel=1e-12)
    assert r.significant and r.verdict == "a better" and r.difference == pytest.approx(1.0)
    swapped = qh.paired_test(b, a, y, names=("b", "a"))
    assert swapped.p_value == pytest.approx(r.p_value) and swapped.verdict == "a better"
    same = qh.paired_test(a, a, y)
    assert same.p_value == 1.0 and same.verdict == "inside the noise"
    lo, hi = r.interval
    assert lo < r.difference < hi


def test_paired_test_refuses_bad_input():
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="same length"):
        qh.paired_test(y, y[:3], y)
    with pytest.raises(TypeError, match="integer class indices"):
        qh.paired_test(y.float(), y, y)
    with pytest.raises(ValueError, match="empty"):
        qh.paired_test(y[:0], y[:0], y[:0])
    with pytest.raises(ValueError, match="alpha"):
        qh.paired_test(y, y, y, alpha=1.5)
