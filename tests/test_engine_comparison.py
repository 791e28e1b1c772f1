"""Notebook 02's engine comparison (qhelpers.deployment_benchmark: paired_latency, paired_ratio, compare_engines,
engines_markdown, plot_engines): ratios from one interleaved run, warm-up first, sizes without timing."""

import time

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import qhelpers as qh
from qhelpers import deployment_benchmark as db


class Sleeper(torch.nn.Module):
    """Takes ``ms`` per call, and ``first_ms`` on its first call (a cold start)."""

    def __init__(self, ms: float, first_ms: float = 0.0):
        super().__init__()
        self.ms, self.first_ms, self.calls = ms, first_ms, 0

    def forward(self, x):
        self.calls += 1
        time.sleep((self.first_ms if self.calls == 1 and self.first_ms else self.ms) / 1e3)
        return x


def test_paired_latency_warms_up_interleaves_and_restores_the_engine():
    saved = torch.backends.quantized.engine
    cold = Sleeper(2.0, first_ms=60.0)
    out = db.paired_latency({"slow": (Sleeper(4.0), None), "fast": (cold, qh.default_engine())}, torch.zeros(1), rounds=10, warmup=1)
    assert torch.backends.quantized.engine == saved
    assert out["slow"]["runs"] == out["fast"]["runs"] == 10 and len(out["fast"]["samples_ms"]) == 10
    assert max(out["fast"]["samples_ms"]) < 30  # the cold first call was a warm-up call, never a sample
    ratio = db.paired_ratio(out["slow"], out["fast"])
    assert 1.3 < ratio["ratio"] < 3.0 and ratio["q1"] <= ratio["ratio"] <= ratio["q3"] and ratio["rounds"] == 10


def test_paired_latency_refuses_too_few_rounds_and_bad_configs():
    with pytest.raises(ValueError, match="rounds"):
        db.paired_latency({"a": (Sleeper(0.1), None)}, torch.zeros(1), rounds=3)
    with pytest.raises(ValueError, match="warmup"):
        db.paired_latency({"a": (Sleeper(0.1), None)}, torch.zeros(1), warmup=0)
    with pytest.raises(ValueError, match="configs"):
        db.paired_latency({"a": Sleeper(0.1)}, torch.zeros(1))
    with pytest.raises(ValueError, match="same rounds"):
        db.paired_ratio({"samples_ms": [1.0, 2.0]}, {"samples_ms": [1.0]})


def test_compare_engines_sizes_only_when_not_timing():
    r = db.compare_engines(["course"], engines={"course": [qh.default_engine()]}, timing=False)
    assert r["latency"] == [] and r["speedups"] == [] and r["sizes"][0]["ratio"] > 2.5
    table = db.engines_markdown(r)
    assert "size ratio" in table and "speedup" not in table and "not timed" in table
    db.plot_engines(r)


def test_compare_engines_reports_ratios_with_their_spread_and_a_readable_figure():
    r = db.compare_engines(["course"], engines={"course": [qh.default_engine()]}, batches={"course": [1]}, rounds=10, warmup=1)
    (s,) = r["speedups"]
    assert s["runs"] == 10 and s["speedup_q1"] <= s["speedup"] <= s["speedup_q3"]
    table = db.engines_markdown(r)
    assert "(IQR)" in table and "interleaved rounds" in table and "| 10 |" in table
    fig = db.plot_engines(r)
    speed_ax = fig.axes[0]
    assert speed_ax.get_xscale() == "linear"  # ratios read off a linear axis with integer ticks
    ticks = [t for t in speed_ax.get_xticks() if 0 <= t <= speed_ax.get_xlim()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    assert speed_ax.get_legend() is None  # every bar is labelled on the axis


def test_paired_latency_samples_last_at_least_the_cpu_floor():
    # a call of about 0.5 ms of CPU: each sample must bundle enough calls for >= SAMPLE_CPU_S of CPU time
    x = torch.randn(64, 64)

    def busy(t):
        for _ in range(20):
            t = torch.tanh(t @ t.T / 64)
        return t

    out = db.paired_latency({"a": (busy, None), "b": (busy, None)}, x, rounds=10, warmup=1)
    for lat in out.values():
        assert lat["calls_per_run"] >= 2
        assert lat["calls_per_run"] * lat["cpu_median_ms"] >= 0.5 * db.SAMPLE_CPU_S * 1e3  # half: a busy CI machine
