"""setup, env_report, engines, and the handling of torch 2.13+ deprecation warnings."""

import subprocess
import sys
import warnings

import pytest
import torch

import qhelpers as qh


def test_setup_fixes_seed_threads_and_engine():
    info = qh.setup(seed=5, threads=1, engine="qnnpack")
    a = torch.rand(3)
    qh.setup(seed=5, threads=1)
    assert torch.equal(a, torch.rand(3))
    assert info == {"seed": 5, "threads": 1, "engine": "qnnpack", "deterministic": False}
    assert qh.setup(seed=5, threads=1, deterministic=True)["deterministic"] is True
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1
    assert qh.setup(threads=2)["engine"] == qh.default_engine()


def test_unknown_engine_is_refused_with_the_supported_list():
    with pytest.raises(ValueError, match=r"quantized engine 'tpu' is unknown or not available on this machine.*available: .*qnnpack"):
        qh.set_engine("tpu")
    with pytest.raises(TypeError):
        qh.set_engine(3)
    with pytest.raises(ValueError):
        qh.setup(threads=0)


def test_engine_context_manager_restores_the_previous_engine():
    qh.set_engine("qnnpack")
    with qh.engine("x86" if "x86" in qh.supported_engines() else "qnnpack") as name:
        assert torch.backends.quantized.engine == name
    assert torch.backends.quantized.engine == "qnnpack"
    with pytest.raises(RuntimeError, match="boom"):
        with qh.engine("qnnpack"):
            torch.backends.quantized.engine = qh.default_engine()
            raise RuntimeError("boom")
    assert torch.backends.quantized.engine == "qnnpack"
    qh.set_engine(None)
    assert torch.backends.quantized.engine == qh.default_engine()


def test_default_engine_follows_the_machine_and_QHELPERS_ENGINE(monkeypatch):
    monkeypatch.delenv("QHELPERS_ENGINE", raising=False)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert qh.default_engine() == "x86"
    monkeypatch.setattr("platform.machine", lambda: "aarch64")  # torch lists x86/fbgemm on aarch64; they fail at convert
    assert "x86" not in qh.supported_engines() and "fbgemm" not in qh.supported_engines()
    assert qh.default_engine() == "qnnpack"
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setenv("QHELPERS_ENGINE", "qnnpack")
    assert qh.supported_engines() == ["qnnpack"] and qh.default_engine() == "qnnpack"
    with pytest.raises(ValueError, match="not available"):
        qh.check_engine("x86")
    monkeypatch.setenv("QHELPERS_ENGINE", "tpu")
    with pytest.raises(ValueError, match="QHELPERS_ENGINE='tpu'"):
        qh.default_engine()


def test_env_report_has_what_results_depend_on(capsys):
    r = qh.env_report()
    assert r["torch"].startswith("2.14.1") and r["torchvision"].startswith("0.29.1")
    assert r["active_engine"] in r["quantized_engines"]
    assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert r["x86_int8_exact"] == qh.cpu_has_vnni() and r["emulated"] == qh.emulated()
    assert set(r["int8_exact"]) | set(r["int8_16bit_pairs"]) <= set(r["quantized_engines"])  # the probes: tests/test_cpu.py
    assert "cpu_capability" in capsys.readouterr().out


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_show_warnings_prints_the_quantized_dtype_deprecation_once_without_paths():
    out = _run(
        "import qhelpers as qh, torch\n"
        "with qh.show_warnings():\n"
        "    torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)\n"
        "    torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)\n"
    )
    lines = [l for l in out.splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("UserWarning: torch.quantize_per_tensor")
    assert "Triggered internally" not in lines[0] and "/__w/" not in lines[0] and ".py:" not in lines[0]


def test_silence_known_deprecations_is_narrow():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qh.silence_known_deprecations("torch.ao.quantization")
        torch.ao.quantization.prepare(torch.nn.Sequential(torch.nn.Linear(2, 2)).eval())
        warnings.warn("something else is deprecated", DeprecationWarning)
    messages = [str(w.message) for w in caught]
    assert not any("torch.ao.quantization is deprecated" in m for m in messages)
    assert "something else is deprecated" in messages
    with pytest.raises(ValueError, match="unknown deprecation"):
        qh.silence_known_deprecations("everything")


def test_prepare_warns_without_the_filter():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.ao.quantization.prepare(torch.nn.Sequential(torch.nn.Linear(2, 2)).eval())
    assert any("torch.ao.quantization is deprecated" in str(w.message) for w in caught)


def test_fast_mode_reads_the_environment(monkeypatch):
    monkeypatch.delenv("QHELPERS_FAST", raising=False)
    assert qh.fast_mode() is False
    monkeypatch.setenv("QHELPERS_FAST", "1")
    assert qh.fast_mode() is True
