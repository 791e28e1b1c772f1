"""qhelpers.cpu: CPU facts by measurement (the INT8 probes, the compile probe), here and on the other CPU kinds.

The tests marked ``cpu_kinds`` run the probes on the kinds of ``scripts/cpu_kind.sh`` (an emulated Haswell
under qemu, qnnpack only, no compiler). They run when ``-m`` names the marker (``make test-cpus`` does), and
skip elsewhere; the Haswell one needs root and Debian's qemu-user (``make setup-dev`` installs it): when the
marker is asked for, a missing emulator is a failure, not a skip.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import qhelpers as qh
from qhelpers import cpu

REPO = Path(__file__).resolve().parents[1]
EXACT = {"linear": 64.0, "conv": 72.0}
SATURATED = {"linear": 32.5, "conv": 36.5}  # measured under qemu-x86_64 -cpu Haswell-v4 (x86, fbgemm, onednn)


@pytest.fixture
def fresh_probes():
    cpu._measure.cache_clear()
    cpu._measure_depthwise.cache_clear()
    yield
    cpu._measure.cache_clear()
    cpu._measure_depthwise.cache_clear()


def _fake_probes(monkeypatch, linear, conv):
    monkeypatch.setattr(cpu, "_probe_output", lambda engine, k=cpu.PROBE_K: linear)
    monkeypatch.setattr(cpu, "_conv_probe_output", lambda engine, channels=cpu.CONV_PROBE_CHANNELS: conv)


def test_exact_and_saturated_probe_outputs_are_told_apart(monkeypatch, fresh_probes):
    monkeypatch.delenv("QHELPERS_ENGINE", raising=False)
    _fake_probes(monkeypatch, **SATURATED)  # what an AVX2 CPU returns
    assert qh.int8_pairs_saturate("qnnpack") is True
    cpu._measure.cache_clear()
    _fake_probes(monkeypatch, **EXACT)
    assert qh.int8_pairs_saturate("qnnpack") is False
    cpu._measure.cache_clear()
    _fake_probes(monkeypatch, linear=64.0, conv=36.5)  # a conv path that saturates while the Linear does not
    assert qh.int8_pairs_saturate("qnnpack") is True
    cpu._measure.cache_clear()
    _fake_probes(monkeypatch, linear=63.5, conv=72.0)  # one output step off is not exact
    assert qh.int8_pairs_saturate("qnnpack") is True


def test_engines_the_course_does_not_offer_give_none(monkeypatch, fresh_probes):
    assert qh.int8_pairs_saturate("no-such-engine") is None
    monkeypatch.setenv("QHELPERS_ENGINE", "qnnpack")  # the ARM-like kind hides the x86 engines
    assert qh.int8_pairs_saturate("x86") is None and qh.cpu_has_vnni() is None
    assert qh.int8_pairs_saturate("qnnpack") is False
    monkeypatch.delenv("QHELPERS_ENGINE")
    monkeypatch.setattr("platform.machine", lambda: "arm64")  # x86/fbgemm kernels exist on x86 CPUs only
    assert qh.int8_pairs_saturate("x86") is None and qh.int8_pairs_saturate("fbgemm") is None
    with pytest.raises(TypeError, match="engine must be a string"):
        qh.int8_pairs_saturate(None)


def test_a_probe_that_cannot_run_gives_none(monkeypatch, fresh_probes):
    monkeypatch.delenv("QHELPERS_ENGINE", raising=False)

    def broken(engine, k=cpu.PROBE_K):
        raise RuntimeError("unknown architecture")

    monkeypatch.setattr(cpu, "_probe_output", broken)
    assert qh.int8_pairs_saturate("qnnpack") is None


def _fake_depthwise(monkeypatch, values):
    """The depthwise probe returns ``values[channels]`` (a dict) on every engine."""
    cpu._measure_depthwise.cache_clear()
    monkeypatch.setattr(cpu, "_depthwise_probe_output", lambda engine, channels=16: values[channels])


def test_the_depthwise_probe_is_its_own_fact(monkeypatch, fresh_probes):
    monkeypatch.delenv("QHELPERS_ENGINE", raising=False)
    _fake_probes(monkeypatch, **EXACT)  # Linear and dense conv exact (AVX512-VNNI) ...
    _fake_depthwise(monkeypatch, {16: 9.0, 128: 5.0})  # ... depthwise exact at 16 groups, saturated at 128 (x86, Linux)
    assert qh.int8_pairs_saturate("qnnpack") is False and qh.depthwise_probe_outputs("qnnpack") == {16: 9.0, 128: 5.0}
    assert qh.depthwise_pairs_saturate("qnnpack") is True  # at either width
    assert qh.depthwise_pairs_saturate("qnnpack", 16) is False and qh.depthwise_pairs_saturate("qnnpack", 128) is True
    facts = qh.cpu_facts()
    assert "qnnpack" in facts.depthwise_saturating_engines and "qnnpack" not in facts.saturating_engines
    assert facts.depthwise_probes["qnnpack"] == {16: 9.0, 128: 5.0}
    assert qh.env_report(print_it=False)["depthwise_16bit_pairs"]["qnnpack"] == [128]
    _fake_depthwise(monkeypatch, {16: 9.0, 128: 9.0})
    assert qh.depthwise_pairs_saturate("qnnpack") is False and "qnnpack" not in qh.env_report(print_it=False)["depthwise_16bit_pairs"]
    _fake_depthwise(monkeypatch, {16: 8.5, 128: 9.0})
    assert qh.depthwise_pairs_saturate("qnnpack", 16) is True  # one output step off is not exact
    with pytest.raises(ValueError, match="channels must be one of"):
        qh.depthwise_pairs_saturate("qnnpack", 32)
    cpu._measure_depthwise.cache_clear()

    def broken(engine, channels=16):
        raise RuntimeError("unknown architecture")

    monkeypatch.setattr(cpu, "_depthwise_probe_output", broken)
    assert qh.depthwise_pairs_saturate("qnnpack") is None and qh.depthwise_probe_outputs("qnnpack") is None
    assert qh.depthwise_pairs_saturate("no-such-engine") is None
    monkeypatch.setattr("platform.machine", lambda: "arm64")
    assert qh.depthwise_pairs_saturate("fbgemm") is None
    with pytest.raises(TypeError, match="engine must be a string"):
        qh.depthwise_pairs_saturate(None)


def test_the_doctor_names_the_depthwise_widths_that_miss(monkeypatch, fresh_probes):
    from qhelpers.doctor import check_engines

    monkeypatch.delenv("QHELPERS_ENGINE", raising=False)
    _fake_probes(monkeypatch, **EXACT)
    _fake_depthwise(monkeypatch, {16: 5.0, 128: 5.0})  # x86 off Linux with AVX512-VNNI: every depthwise conv on FBGEMM
    line = [f for f in check_engines() if f.what == "cpu"][0]
    if cpu.is_x86_machine() and torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX"):
        assert line.status == "OK" and "depthwise convs of 16 and 128 channels miss their exact sum" in line.message
        assert "compare a depthwise model's outputs with qnnpack's" in line.message
    if cpu.is_x86_machine() and torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX"):
        assert "(FBGEMM's depthwise kernel adds 16-bit pairs)" in line.message
        _fake_depthwise(monkeypatch, {16: 9.0, 128: 7.0})  # wrong, but not what saturated pairs give
        line = [f for f in check_engines() if f.what == "cpu"][0]
        assert "of 128 channels miss" in line.message and "cause not identified" in line.message and "16-bit" not in line.message
    _fake_depthwise(monkeypatch, {16: 9.0, 128: 9.0})
    line = [f for f in check_engines() if f.what == "cpu"][0]
    assert "miss their exact sum" not in line.message
    monkeypatch.setenv("QHELPERS_ENGINE", "qnnpack")  # exact on every CPU: not because of AVX512-VNNI
    line = [f for f in check_engines() if f.what == "cpu"][0]
    if cpu.is_x86_machine() and torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "NO AVX"):
        assert "adds in 32 bits on every CPU" in line.message and "VNNI" not in line.message


def test_the_real_depthwise_probe_here():
    # qnnpack is exact on every CPU; FBGEMM's depthwise kernel adds 16-bit pairs on every x86 CPU (fbgemm engine);
    # x86 on Linux with AVX512-VNNI sends 16 groups with symmetric weights to oneDNN (exact), 128 to FBGEMM.
    assert qh.depthwise_probe_outputs("qnnpack") == {16: 9.0, 128: 9.0} and qh.depthwise_pairs_saturate("qnnpack") is False
    if not cpu.is_x86_machine():
        return
    assert qh.depthwise_probe_outputs("fbgemm") == {16: 5.0, 128: 5.0}
    if sys.platform.startswith("linux"):
        assert qh.depthwise_pairs_saturate("x86", 16) is qh.int8_pairs_saturate("x86")
        assert qh.depthwise_probe_outputs("x86")[128] == 5.0


def test_cpu_has_vnni_is_the_x86_probe(monkeypatch, fresh_probes):
    monkeypatch.delenv("QHELPERS_ENGINE", raising=False)
    _fake_probes(monkeypatch, **SATURATED)
    assert qh.cpu_has_vnni() is (False if cpu.is_x86_machine() else None)
    cpu._measure.cache_clear()
    _fake_probes(monkeypatch, **EXACT)
    assert qh.cpu_has_vnni() is (True if cpu.is_x86_machine() else None)


def test_the_real_probes_here_agree_with_each_other_and_with_the_flags():
    # Natively, on this machine: qnnpack sums in 32 bits on every CPU; x86 and fbgemm run the same FBGEMM Linear.
    facts = qh.cpu_facts()
    assert facts.probes["qnnpack"] == EXACT and "qnnpack" in facts.exact_engines
    if not cpu.is_x86_machine():
        assert facts.saturating_engines == ()
        return
    assert set(facts.saturating_engines) | set(facts.exact_engines) == set(facts.probes)
    assert (qh.int8_pairs_saturate("x86") is True) == (qh.int8_pairs_saturate("fbgemm") is True)
    for engine in facts.saturating_engines:  # saturated means about half, not some other failure
        assert 30 < facts.probes[engine]["linear"] < 34 and 34 < facts.probes[engine]["conv"] < 38, facts.probes
    # FBGEMM sums exactly only with AVX512-VNNI; AVX-VNNI (avx_vnni) is a flag it does not use.
    if facts.flags == "avx512_vnni":
        assert qh.int8_pairs_saturate("x86") is False
    elif facts.flags in ("avx_vnni", "none"):
        assert qh.int8_pairs_saturate("x86") is True


@pytest.mark.slow  # a fresh Python process that imports torch
def test_the_probes_leave_the_deprecation_warning_for_the_notebook():
    # The quantized dtypes' deprecation is a once-per-process C++ warning: a probe must not use it up (notebook 00
    # shows it in its warnings section, after the environment report), nor print anything itself.
    code = (
        "import warnings, torch, qhelpers as qh\n"
        "before = torch.backends.quantized.engine\n"
        "qh.cpu_facts(); qh.env_report(print_it=False)\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8)\n"
        "print(sum('quantized tensor creation' in str(w.message) for w in seen))\n"
        "print(torch.is_warn_always_enabled(), torch.backends.quantized.engine == before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "QHELPERS_ENGINE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == ["1", "False", "True"]  # and the probes restore what they change
    assert "quantized tensor creation" not in done.stderr


def test_cpu_facts_and_the_environment_report_say_the_same():
    facts = qh.cpu_facts()
    report = qh.env_report(print_it=False)
    assert report["int8_16bit_pairs"] == [e for e in report["quantized_engines"] if e in facts.saturating_engines]
    assert report["int8_exact"] == [e for e in report["quantized_engines"] if e in facts.exact_engines]
    assert report["x86_int8_exact"] == qh.cpu_has_vnni() and report["emulated"] == qh.emulated() == facts.emulated
    assert facts.isa == torch.backends.cpu.get_cpu_capability() and facts.compile_ok is None
    assert facts.as_dict()["engines"] == tuple(qh.supported_engines())
    with pytest.raises(TypeError, match="probe_compile"):
        qh.cpu_facts(probe_compile="yes")


def test_compile_probe_reports_the_first_line_of_the_error(monkeypatch):
    def no_compiler(fn, **kwargs):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return call

    saved = dict(cpu._COMPILE_RESULT)
    cpu._COMPILE_RESULT.clear()
    monkeypatch.setattr(torch, "compile", no_compiler)
    try:
        assert qh.compile_available() == (False, "RuntimeError: InvalidCxxCompiler: No working C++ compiler found")
    finally:
        cpu._COMPILE_RESULT.clear()
        cpu._COMPILE_RESULT.update(saved)


@pytest.mark.slow
def test_compile_probe_here():
    ok, reason = qh.compile_available()
    assert ok == (shutil.which("g++") is not None or shutil.which("c++") is not None or shutil.which("cl") is not None), reason


def test_compile_fix_names_the_install_for_each_os():
    assert "Build Tools" in qh.compile_fix("Windows") and "cl.exe" in qh.compile_fix("Windows")
    assert "xcode-select --install" in qh.compile_fix("Darwin")
    assert "apt install g++" in qh.compile_fix("Linux") and "dnf install gcc-c++" in qh.compile_fix("Linux")
    assert qh.compile_fix() == qh.compile_fix(__import__("platform").system())
    with pytest.raises(TypeError, match="system"):
        qh.compile_fix(3)


@pytest.mark.parametrize(
    "text, label",
    [
        ("flags\t\t: fpu avx2 avx512f avx512_vnni avx_vnni\n", "avx512_vnni"),
        ("flags\t\t: fpu avx2 avx_vnni\n", "avx_vnni"),  # Intel 12th gen and later: FBGEMM does not use it
        ("flags\t\t: fpu avx2 fma\n", "none"),
        ("Features\t: fp asimd asimddp\n", "none"),  # ARM Linux
        ("processor\t: 0\n", "unknown"),
    ],
)
def test_flags_label(tmp_path, text, label):
    (tmp_path / "cpuinfo").write_text(text)
    assert qh.cpu_flags_label(str(tmp_path / "cpuinfo")) == label


def test_flags_label_without_proc(tmp_path):
    assert qh.cpu_flags_label(str(tmp_path / "missing")) == "unknown"  # macOS, Windows


def test_emulated_reads_the_harness_flag(monkeypatch):
    monkeypatch.delenv("QHELPERS_EMULATED", raising=False)
    assert qh.emulated() is False
    monkeypatch.setenv("QHELPERS_EMULATED", "1")
    assert qh.emulated() is True
    monkeypatch.setenv("QHELPERS_EMULATED", "0")
    assert qh.emulated() is False


# --- the probes on the other CPU kinds (scripts/cpu_kind.sh) ------------------------------------------------

FACTS_SCRIPT = (
    "import json, torch, torch._inductor.config, torch._inductor.runtime.cache_dir_utils, qhelpers as qh\n"
    "f = qh.cpu_facts(probe_compile={compile})\n"
    "a = torch.full((32, 64), 127, dtype=torch.int8)\n"
    "print('FACTS' + json.dumps(dict(f.as_dict(), int_mm=int(torch._int_mm(a, a.t().contiguous())[0, 0]),"
    " vnni=qh.cpu_has_vnni(), report=qh.env_report(print_it=False)['int8_16bit_pairs'],"
    " march=torch._inductor.config.cpp.march, inductor_cache=torch._inductor.runtime.cache_dir_utils.cache_dir())))\n"
)


@pytest.fixture
def cpu_kinds_selected(request):
    # Asked for by name (make test-cpus), a kind that cannot be made is a failure, never a skip.
    marks = request.config.getoption("-m") or ""
    if "cpu_kinds" not in marks or "not cpu_kinds" in marks:
        pytest.skip("runs the CPU kinds: pytest -m cpu_kinds (make test-cpus)")


def _facts_under(kind: str, *, probe_compile: bool = False, timeout: int = 1800) -> dict:
    script = FACTS_SCRIPT.format(compile=probe_compile)
    python = "$QEMU_PY" if kind == "haswell" else str(REPO / ".venv" / "bin" / "python")
    command = [str(REPO / "scripts" / "cpu_kind.sh"), kind, "bash", "-c", f'{python} -c "$0"', script]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("QHELPERS_ENGINE", None)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    line = [x for x in done.stdout.splitlines() if x.startswith("FACTS")]
    assert done.returncode == 0 and line, done.stderr[-2000:]
    return json.loads(line[0][len("FACTS"):])


@pytest.mark.slow
@pytest.mark.cpu_kinds
def test_probes_on_an_emulated_haswell(cpu_kinds_selected):
    # Faithful: torch reads a Haswell CPUID (AVX2, no AVX-512, no VNNI) and dispatches as on such a laptop.
    missing = [what for what, ok in (("qemu-x86_64", shutil.which("qemu-x86_64")), ("root", os.geteuid() == 0)) if not ok]
    assert not missing, f"the Haswell kind needs {' and '.join(missing)} (make setup-dev installs qemu-user)"
    facts = _facts_under("haswell")
    assert facts["isa"] == "AVX2" and facts["flags"] == "none" and facts["emulated"] is True
    assert sorted(facts["saturating_engines"]) == ["fbgemm", "onednn", "x86"] and facts["exact_engines"] == ["qnnpack"]
    assert facts["report"] == [e for e in facts["engines"] if e in facts["saturating_engines"]] and facts["vnni"] is False
    for engine in ("x86", "fbgemm", "onednn"):
        assert facts["probes"][engine] == SATURATED, facts["probes"]
    assert facts["probes"]["qnnpack"] == EXACT
    # depthwise: FBGEMM's kernel (x86, fbgemm) saturates; oneDNN's depthwise conv is exact on AVX2 (its dense ones are not)
    assert sorted(facts["depthwise_saturating_engines"]) == ["fbgemm", "x86"], facts["depthwise_saturating_engines"]
    assert facts["depthwise_probes"]["onednn"] == {"16": 9.0, "128": 9.0} and facts["depthwise_probes"]["x86"] == {"16": 5.0, "128": 5.0}
    assert facts["int_mm"] == 64 * 127 * 127  # eager torch._int_mm takes its exact reference path without VNNI
    # Inductor builds for Haswell (its default -march=native is the host's AVX-512: SIGILL under the emulator),
    # into an empty cache of its own (kernels a native run built must not be loaded).
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    assert facts["march"] == "haswell", facts["march"]
    assert facts["inductor_cache"] != default_cache_dir() and Path(facts["inductor_cache"]).name == "inductor"


@pytest.mark.slow
@pytest.mark.cpu_kinds
def test_probes_with_qnnpack_only_and_without_a_compiler(cpu_kinds_selected):
    arm_like = _facts_under("qnnpack")
    assert arm_like["engines"] == ["qnnpack"] and arm_like["exact_engines"] == ["qnnpack"] and arm_like["vnni"] is None
    assert arm_like["depthwise_probes"] == {"qnnpack": {"16": 9.0, "128": 9.0}} and arm_like["depthwise_saturating_engines"] == []
    no_cc = _facts_under("nocc", probe_compile=True, timeout=600)
    assert no_cc["compile_ok"] is False and "compiler" in no_cc["compile_reason"].lower(), no_cc["compile_reason"]
