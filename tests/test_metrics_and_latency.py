"""Accuracy, size, parameter count and the latency helper (qhelpers.metrics, qhelpers.latency)."""

import time

import pytest
import torch

import qhelpers as qh
from qhelpers.latency import latency_statistics, weights_digest


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
    model = torch.nn.Linear(8, 8)
    lat = qh.measure_latency(model, torch.randn(2, 8), threads=1, min_run_time=0.05)
    assert lat.median_ms > 0 and lat.iqr_ms >= 0 and lat.runs >= qh.MIN_RUNS and lat.threads == 1
    assert lat.min_ms <= lat.median_ms and lat.calls_per_run >= 1
    assert "ms median" in str(lat) and "IQR" in str(lat) and "runs" in str(lat)
    assert {"median_ms", "iqr_ms", "runs", "threads", "label"} <= set(lat.as_dict())
    assert lat.module == "Linear" and lat.quantized is False and lat.input_shape == (2, 8)
    assert lat.engine == torch.backends.quantized.engine
    # which weights and which object were timed, for a float model too (the exercise of notebook 02 checks both)
    assert lat.weights_digest == weights_digest(model) and lat.model_id == id(model)
    assert qh.Latency(**{**lat.as_dict(), "model_id": 0}) == lat  # the object is not part of equality


class FakeClock:
    """A clock that only moves when the timed function says so: each call of ``fn`` advances it by the next duration."""

    def __init__(self, durations_ms, *, cold_ms=None, cold_calls=0):
        self.now, self.calls, self.reads = 0.0, 0, 0
        self.durations, self.cold_ms, self.cold_calls = list(durations_ms), cold_ms, cold_calls
        self.reads_before_call = []  # clock readings made before each call of fn

    def __call__(self):
        self.reads += 1
        return self.now

    def fn(self, x):
        self.reads_before_call.append(self.reads)
        if self.calls < self.cold_calls:
            self.now += self.cold_ms / 1e3
        else:
            self.now += self.durations[(self.calls - self.cold_calls) % len(self.durations)] / 1e3
        self.calls += 1
        return x


def test_latency_statistics_of_a_fixed_measurement():
    """The statistics are a pure function of the Measurement: per-call times, their median, IQR and minimum."""
    import numpy as np
    from torch.utils.benchmark import Measurement, TaskSpec

    per_call_ms = [0.4, 0.1, 0.3, 0.2, 10.0, 0.25]
    m = Measurement(number_per_run=10, raw_times=[t * 10 / 1e3 for t in per_call_ms], task_spec=TaskSpec("fn(example)", "pass"))
    s = latency_statistics(m)
    assert s["median_ms"] == pytest.approx(np.median(per_call_ms)) == pytest.approx(0.275)
    q1, q3 = np.percentile(per_call_ms, [25, 75])
    assert s["iqr_ms"] == pytest.approx(q3 - q1) == pytest.approx(0.1625)
    assert s["min_ms"] == pytest.approx(0.1) and s["runs"] == 6 and s["calls_per_run"] == 10
    with pytest.raises(ValueError, match="no timed samples"):
        latency_statistics(Measurement(number_per_run=1, raw_times=[], task_spec=TaskSpec("fn(example)", "pass")))


def test_latency_reports_the_median_and_iqr_of_the_timed_calls():
    """Through the real Timer with a fake clock: calls of 1, 2, 6 ms in turn give a median of 2, an IQR of 5, a minimum of 1."""
    clock = FakeClock([1, 2, 6])
    lat = qh.measure_latency(clock.fn, torch.zeros(1), min_run_time=0.1, warmup=0, timer=clock)
    assert lat.calls_per_run == 1 and 30 <= lat.runs <= 40
    assert lat.median_ms == pytest.approx(2.0)
    assert lat.iqr_ms == pytest.approx(5.0)
    assert lat.min_ms == pytest.approx(1.0)


def test_latency_warms_up_before_it_reads_the_clock():
    """The first ``warmup`` calls run before any clock reading; the slow cold calls are in no sample."""
    clock = FakeClock([1.0], cold_ms=1000.0, cold_calls=3)
    lat = qh.measure_latency(clock.fn, torch.zeros(1), min_run_time=0.02, warmup=3, timer=clock)
    assert clock.reads_before_call[:4] == [0, 0, 0, 1], clock.reads_before_call[:6]  # 3 warm-up calls, then the sizing call
    assert lat.warmup == 3 and lat.median_ms == pytest.approx(1.0) and lat.iqr_ms == pytest.approx(0.0, abs=1e-9)
    assert 20 <= lat.runs <= 22, lat.runs  # 0.02 s of 1 ms calls: the sizing call was warm (1 ms), not cold (1 s)


def test_latency_takes_at_least_min_runs_samples_of_a_slow_call():
    """A call longer than min_run_time still gets min_runs samples (the old single-shot pitfall)."""
    clock = FakeClock([100.0])
    lat = qh.measure_latency(clock.fn, torch.zeros(1), min_run_time=0.001, warmup=1, timer=clock)
    assert lat.runs == qh.MIN_RUNS and lat.calls_per_run == 1 and lat.median_ms == pytest.approx(100.0)
    assert lat.module == "fn" and lat.quantized is None and lat.weights_digest == "" and lat.model_id == 0
    # The sizing call was fast and the timed calls slow: the Timer stops early and the missing samples are added.
    clock = FakeClock([100.0], cold_ms=10.0, cold_calls=2)
    lat = qh.measure_latency(clock.fn, torch.zeros(1), min_run_time=0.001, warmup=1, min_runs=4, timer=clock)
    assert lat.runs == 4 and lat.median_ms == pytest.approx(100.0) and lat.iqr_ms == pytest.approx(0.0, abs=1e-9)


def test_latency_of_a_real_sleep():
    def slow(x):
        time.sleep(0.01)
        return x

    lat = qh.measure_latency(slow, torch.zeros(1), min_run_time=0.001, warmup=0, min_runs=4)
    assert lat.runs >= 4 and lat.calls_per_run == 1 and lat.median_ms >= 10
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
     (dict(warmup=-1), ValueError), (dict(label=3), TypeError), (dict(timer=3), TypeError)],
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


def _predictions(n, only_a, only_b, both_wrong=0):
    """Labels and two models' predictions on n images: only_a images only A gets right, only_b only B, both_wrong neither."""
    y = torch.arange(n) % 10
    a, b = y.clone(), y.clone()
    b[:only_a] = (y[:only_a] + 1) % 10
    a[only_a:only_a + only_b] = (y[only_a:only_a + only_b] + 1) % 10
    k = only_a + only_b
    a[k:k + both_wrong] = b[k:k + both_wrong] = (y[k:k + both_wrong] + 1) % 10
    return a, b, y


def _bonett_price(only_a, only_b, n, alpha):
    """Bonett and Price's adjusted Wald interval of the paired difference, written out here from their paper."""
    from scipy.stats import norm

    z = norm.ppf(1 - alpha / 2)
    pa, pb = (only_a + 1) / (n + 2), (only_b + 1) / (n + 2)
    se = ((pa + pb - (pa - pb) ** 2) / (n + 2)) ** 0.5
    return max(-100.0, 100 * (pa - pb - z * se)), min(100.0, 100 * (pa - pb + z * se))


@pytest.mark.parametrize(
    "n, only_a, only_b, both_wrong, alpha",
    [(1000, 15, 5, 10, 0.05), (1000, 5, 15, 0, 0.05), (1000, 0, 0, 30, 0.05), (1000, 5, 0, 0, 0.05), (1000, 6, 0, 0, 0.05),
     (1000, 0, 40, 0, 0.05), (200, 1, 1, 3, 0.05), (10_000, 160, 100, 50, 0.05), (10_000, 160, 100, 50, 0.01), (20, 20, 0, 0, 0.05)],
    ids=["15-5", "5-15", "no-disagreement", "5-0", "6-0", "0-40", "1-1", "160-100", "160-100-alpha0.01", "all-20-only-a"],
)
def test_paired_test_against_scipy_on_several_tables(n, only_a, only_b, both_wrong, alpha):
    from scipy.stats import binomtest

    a, b, y = _predictions(n, only_a, only_b, both_wrong)
    r = qh.paired_test(a, b, y, names=("a", "b"), alpha=alpha)
    assert (r.n, r.only_a, r.only_b) == (n, only_a, only_b)
    assert (r.correct_a, r.correct_b) == (n - only_b - both_wrong, n - only_a - both_wrong)
    assert r.difference == pytest.approx(100.0 * (only_a - only_b) / n)
    assert r.interval == pytest.approx(_bonett_price(only_a, only_b, n, alpha), rel=1e-9, abs=1e-9)
    assert r.interval[0] <= r.difference <= r.interval[1]
    m = only_a + only_b
    if m == 0:
        assert r.p_value == 1.0 and not r.significant and r.verdict == "inside the noise"
        assert r.interval[0] < 0 < r.interval[1]  # 0 disagreements of n rule out only large differences
        return
    p = binomtest(only_a, m, 0.5).pvalue
    assert r.p_value == pytest.approx(p, rel=1e-12) and r.significant == (p < alpha)
    assert r.verdict == ("inside the noise" if p >= alpha else "a better" if only_a > only_b else "b better")
    assert f"{100 * (1 - alpha):g} % interval" in str(r) and f"p = {r.p_value:.3g}" in str(r)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_paired_test_interval_and_verdict_disagree_only_near_alpha_and_say_so(alpha):
    """For every split of up to 40 disagreements among 500 images: where the interval's side of 0 and the exact
    verdict differ, p lies between 0.7 and 1.5 alpha (measured: 1.00-1.28 at 0.05, 0.78-1.13 at 0.01) and str() says "borderline"; elsewhere it does not."""
    seen = 0
    for m in range(1, 41):
        for only_a in range(m + 1):
            r = qh.paired_test(*_predictions(500, only_a, m - only_a), alpha=alpha)
            lo, hi = r.interval
            if (lo > 0 or hi < 0) != r.significant:
                seen += 1
                assert r.borderline and "borderline" in str(r) and 0.7 * alpha <= r.p_value < 1.5 * alpha, (only_a, m, r.p_value)
            else:
                assert not r.borderline and "borderline" not in str(r)
    assert seen > 0  # the case exists (e.g. 3 vs 11 of 1000 images), so the message is reachable


@pytest.mark.parametrize("p_a, p_b", [(0.02, 0.01), (0.03, 0.005), (0.19, 0.004), (0.05, 0.05)])
def test_paired_test_interval_covers_the_accuracy_difference(p_a, p_b):
    """Exact coverage of 100 * (p_a_only - p_b_only) over new draws of 1000 images (disagreement counts vary too),
    summed over the multinomial with scipy: at least 0.94 in each case, including many one-sided disagreements."""
    import numpy as np
    from scipy.stats import binom

    n, true = 1000, 100 * (p_a - p_b)
    total = 0.0
    hi_d = int(binom.ppf(1 - 1e-10, n, p_a + p_b)) + 1
    for d in range(0, hi_d + 1):
        w = binom.pmf(d, n, p_a + p_b)
        k = np.arange(d + 1)
        pk = binom.pmf(k, d, p_a / (p_a + p_b))
        ok = [(lambda lo, hi: lo <= true <= hi)(*_bonett_price(int(x), d - int(x), n, 0.05)) for x in k]
        total += w * float(np.sum(pk * np.array(ok)))
    assert total >= 0.94, total


def test_paired_test_swapped_models_mirror_each_other():
    a, b, y = _predictions(1000, 15, 5, 10)
    r, s = qh.paired_test(a, b, y, names=("a", "b")), qh.paired_test(b, a, y, names=("b", "a"))
    assert s.p_value == r.p_value and s.verdict == "a better" and s.difference == pytest.approx(-r.difference)
    assert s.interval == pytest.approx((-r.interval[1], -r.interval[0]))


def test_paired_test_accepts_lists_and_reports_as_a_dict():
    r = qh.paired_test([1, 2, 3, 0], [1, 2, 0, 0], [1, 2, 3, 3], names=("x", "y"))
    assert (r.only_a, r.only_b, r.correct_a, r.correct_b) == (1, 0, 3, 2)
    d = r.as_dict()
    assert d["accuracy_a"] == 75.0 and d["accuracy_b"] == 50.0 and d["verdict"] == "inside the noise" and d["significant"] is False


def test_compare_models_is_the_paired_test_of_their_predictions():
    class Fixed(torch.nn.Module):
        def __init__(self, wrong):
            super().__init__()
            self.wrong = wrong

        def forward(self, x):
            classes = x[:, 0].long()
            classes[self.wrong[: len(classes)]] = (classes[self.wrong[: len(classes)]] + 1) % 3
            return torch.nn.functional.one_hot(classes, 3).float()

    y = torch.arange(30) % 3
    loader = [(y[i:i + 10].float().unsqueeze(1), y[i:i + 10]) for i in range(0, 30, 10)]
    good, bad = Fixed(torch.tensor([], dtype=torch.long)).eval(), Fixed(torch.tensor([0, 1])).eval()
    r = qh.compare_models(good, bad, loader, names=("good", "bad"))
    pa, ya = qh.predict(good, loader)
    pb, _ = qh.predict(bad, loader)
    assert r == qh.paired_test(pa, pb, ya, names=("good", "bad"))
    assert (r.only_a, r.only_b) == (6, 0) and r.significant and r.verdict == "good better"
    with pytest.raises(ValueError, match="training mode"):
        qh.compare_models(good, Fixed(torch.tensor([0])).train(), loader)
    shuffled = iter([loader, loader[::-1]])

    class Reshuffling:  # a loader that gives another order on each pass: read once, so both models see the same order
        def __iter__(self):
            return iter(next(shuffled))

    assert qh.compare_models(good, bad, Reshuffling(), names=("good", "bad")) == r


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


def test_weights_digest_reads_torchao_tensor_subclasses():
    """torchao's quantized weights are tensor subclasses that refuse .numpy(): the digest hashes their inner tensors
    (notebook 05 times torchao models with qh.measure_latency)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    torch.manual_seed(0)
    a, b = torch.nn.Sequential(torch.nn.Linear(16, 8)), torch.nn.Sequential(torch.nn.Linear(16, 8))
    b[0].weight.data[0, 0] += 1.0  # one weight differs
    for m in (a, b):
        quantize_(m, Int8WeightOnlyConfig())
    assert type(a[0].weight) is not torch.Tensor  # the case this guards: a subclass
    assert weights_digest(a) == weights_digest(a) and weights_digest(a) != weights_digest(b)
    assert qh.measure_latency(a, torch.randn(2, 16), threads=1, min_run_time=0.01).weights_digest == weights_digest(a)


def test_weights_digest_reads_every_dtype_and_keeps_float32_digests():
    """measure_latency hashes every module it times (notebook 06 times bfloat16 layers): bfloat16 and float16
    weights, which numpy cannot hold, are hashed by their bytes; a float32 digest is the bytes numpy gives."""
    import hashlib

    from qhelpers.latency import state_dict_digest

    torch.manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        a = torch.nn.Linear(4, 4).to(dtype)
        b = torch.nn.Linear(4, 4).to(dtype)
        assert weights_digest(a) == weights_digest(a) and weights_digest(a) != weights_digest(b)
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    h = hashlib.blake2b(digest_size=8)
    h.update(b"w")
    h.update(str(((2, 3), torch.float32)).encode())
    h.update(t.numpy().tobytes())
    assert state_dict_digest({"w": t}) == h.hexdigest()
