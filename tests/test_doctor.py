"""qhelpers.doctor (`python -m qhelpers.doctor`): the laptop check says OK, or what is wrong and the fix."""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
import shutil
import sys

import pytest
import torch

from qhelpers import doctor
from qhelpers.files import data_dir
from qhelpers.versions import course_requirements


def test_this_machine_is_ready(capsys):
    assert doctor.main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("OK")
    for what in ("system", "python", "packages", "engines", "cpu", "compiler", "disk", "data", "int8"):
        assert f"  {what}: " in out or f"{what}: " in out


def test_python_versions():
    assert doctor.check_python((3, 11)).status == "OK"
    warn = doctor.check_python((3, 12))
    assert warn.status == "WARN" and "wheelhouse" in warn.fix
    assert doctor.check_python((3, 10)).status == "FAIL"  # the pinned numpy and scipy need 3.11


def fake(versions):
    def get(name):
        if name not in versions:
            raise md.PackageNotFoundError(name)
        return versions[name]
    return get


def test_versions_against_the_pins(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("torch==2.14.1\ntorchvision==0.29.1  # comment\ntorchao==0.18.0\nexecutorch==1.5.1\nmatplotlib==3.11.2\n-e .\n")
    good = {"torch": "2.14.1+cpu", "torchvision": "0.29.1", "torchao": "0.18.0", "executorch": "1.5.1", "matplotlib": "3.11.2"}
    (ok,) = doctor.check_versions(fake(good), req)
    assert ok.status == "OK" and "torch 2.14.1+cpu" in ok.message and "executorch 1.5.1" in ok.message
    (bad,) = doctor.check_versions(fake({**good, "torch": "2.9.0"}), req)
    assert bad.status == "FAIL" and "torch 2.9.0 (pinned 2.14.1)" in bad.message and "requirements.txt" in bad.fix
    (et,) = doctor.check_versions(fake({**good, "executorch": "1.4.0"}), req)
    assert et.status == "FAIL" and "executorch 1.4.0 (pinned 1.5.1)" in et.message
    (minor,) = doctor.check_versions(fake({**good, "matplotlib": "3.10.0"}), req)
    assert minor.status == "WARN"
    for name in ("torchao", "executorch"):
        (gone,) = doctor.check_versions(fake({k: v for k, v in good.items() if k != name}), req)
        assert gone.status == "FAIL" and name in gone.message


def test_every_pinned_package_is_checked():
    """requirements.txt and requirements-deploy.txt are the one list: each of their pins is checked (executorch and numpy among them)."""
    names = list(course_requirements().requirements)
    assert {"torch", "torchvision", "torchao", "executorch", "numpy", "scipy", "jupyterlab"} <= set(names)
    seen = []

    def get(name):
        seen.append(name)
        return md.version(name)

    doctor.check_versions(get)
    assert seen == names


def test_a_package_missing_from_this_venv_fails_and_executorch_only_warns(tmp_path):
    """The real installed versions (no stand-in): a pinned package that is not installed FAILs with the install command;
    requirements-deploy.txt's pins (ExecuTorch: notebook 08 only) are checked too, a missing one only WARNs with
    make setup-08; the doctor reads both files beside each other."""
    req = tmp_path / "requirements.txt"
    req.write_text(f"torch=={md.version('torch')}\nno-such-course-package==1.0\n-e .\n")
    lines = doctor.check_versions(requirements=req)
    assert [f.status for f in lines] == ["FAIL"], [f.line() for f in lines]
    assert "missing: no-such-course-package" in lines[0].message and "pip install -r requirements.txt" in lines[0].fix
    req.write_text(f"torch=={md.version('torch')}\n")
    (tmp_path / "requirements-deploy.txt").write_text("-r requirements.txt\nno-such-runtime==2.0\n")
    course = course_requirements(req)
    assert set(course.requirements) == {"torch", "no-such-runtime"} and course.optional == {"no-such-runtime"}
    warn, ok = doctor.check_versions(requirements=req)
    assert warn.status == "WARN" and "no-such-runtime" in warn.message and "only notebook 08" in warn.message, warn.line()
    assert "make setup-08" in warn.fix and "requirements-deploy.txt" in warn.fix and "triage: no ExecuTorch" in warn.fix
    assert ok.status == "OK" and ok.message == f"torch {md.version('torch')}"
    assert doctor.doctor_report([warn, ok])[1], "a missing ExecuTorch does not make the laptop NOT READY"


def test_the_course_pins_executorch_for_notebook_08_only():
    """requirements.txt (notebooks 00-07) has no ExecuTorch; requirements-deploy.txt adds exactly its pin."""
    course = course_requirements()
    assert course.optional == {"executorch"} and str(course.requirements["executorch"].specifier) == "==1.5.1"
    assert "requirements-deploy.txt" in course.source


def test_the_system_line_names_the_os_version_and_cpu(monkeypatch):
    """The first line of a reply tells the teacher which wheelhouse and which triage rows a laptop needs."""
    line = doctor.check_system()
    assert line.status == "OK" and platform.machine() in line.message and "logical CPUs" in line.message
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "mac_ver", lambda: ("13.6.1", ("", "", ""), "arm64"))
    assert doctor.check_system().message.startswith("macOS 13.6.1, ")
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    monkeypatch.setattr(platform, "release", lambda: "11")
    monkeypatch.setattr(platform, "version", lambda: "10.0.22631")
    assert doctor.check_system().message.startswith("Windows 11 (10.0.22631), ")


@pytest.mark.slow
def test_without_a_c_compiler_the_compiler_line_warns_with_the_fix():
    """A PATH without cc, c++, gcc, g++ or clang and an empty Inductor cache (scripts/cpu_kind.sh nocc, as on most
    Windows laptops): torch.compile really fails, and the doctor's line says so with this OS's fix."""
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code = "from qhelpers import doctor; print(doctor.check_compiler().line())"
    done = subprocess.run([str(repo / "scripts" / "cpu_kind.sh"), "nocc", sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=600, cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)))
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert out.startswith("WARN  compiler: torch.compile cannot build code here (") and "compiler" in out.split("(", 1)[1].lower(), out
    assert "fix: install a C++ compiler: `sudo apt install g++`" in out and "(triage: no C++ compiler)" in out, out


def test_without_requirements_txt_the_installed_ranges_are_checked_and_said(monkeypatch, tmp_path):
    """A pip install . used outside the course folder: no requirements.txt, so the declared ranges, with a WARN saying so."""
    from qhelpers import versions as pins

    monkeypatch.setattr(pins, "_requirements_file", lambda: None)
    monkeypatch.setattr(md, "requires", lambda dist: [
        "torch<2.15,>=2.13", "numpy>=2", 'executorch<1.6,>=1.5; extra == "deploy"', 'pytest; extra == "dev"'])
    found = doctor.check_versions(fake({"torch": "2.14.1", "numpy": "2.4.6"}))
    assert [f.status for f in found] == ["WARN", "WARN", "OK"]
    assert "requirements.txt not found" in found[0].message and "declared version ranges" in found[0].message
    assert "executorch" in found[1].message and "qhelpers[deploy]" in found[1].fix  # an extra: WARN, not FAIL
    (_, bad) = doctor.check_versions(fake({"torch": "2.12.0", "numpy": "2.4.6", "executorch": "1.5.1"}))
    assert bad.status == "FAIL" and "torch 2.12.0 (needs <2.15,>=2.13)" in bad.message


def test_disk_thresholds():
    assert doctor.check_disk(free_bytes=int(0.5e9)).status == "FAIL"
    assert doctor.check_disk(free_bytes=int(2e9)).status == "WARN"
    assert doctor.check_disk(free_bytes=int(50e9)).status == "OK"


def test_data_checksums_catch_a_changed_or_missing_file(tmp_path):
    for p in data_dir().glob("digits.*"):
        shutil.copy(p, tmp_path / p.name)
    assert doctor.check_data(tmp_path).status == "OK"
    with open(tmp_path / "digits.npz", "ab") as f:
        f.write(b"x")
    bad = doctor.check_data(tmp_path)
    assert bad.status == "FAIL" and "digits.npz" in bad.message and "git checkout data/" in bad.fix
    (tmp_path / "digits.npz").unlink()
    assert "missing" in doctor.check_data(tmp_path).message
    assert doctor.check_data(tmp_path / "nowhere").status == "FAIL"
    (tmp_path / "digits.json").write_text(json.dumps({"no": "checksum"}))
    assert doctor.check_data(tmp_path).status == "FAIL"  # nothing checksummed is not OK either


def test_engines_on_an_arm_like_machine_and_a_bad_engine_variable(monkeypatch):
    monkeypatch.setenv("QHELPERS_ENGINE", "qnnpack")
    findings = doctor.check_engines()
    assert findings[0].status == "OK" and "qnnpack" in findings[0].message
    assert doctor.check_int8_smoke().message.endswith("qnnpack")
    monkeypatch.setenv("QHELPERS_ENGINE", "no-such-engine")
    (bad,) = doctor.check_engines()
    assert bad.status == "FAIL" and "QHELPERS_ENGINE" in bad.fix


def test_cpu_line_follows_the_measured_probe(monkeypatch):
    import qhelpers.cpu as cpu

    monkeypatch.delenv("QHELPERS_ENGINE", raising=False)
    if not cpu.is_x86_machine() or torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("the x86 lines need an x86 CPU with AVX2")
    monkeypatch.setattr(cpu, "int8_pairs_saturate", lambda engine: True)  # what the probe measures without AVX512-VNNI
    monkeypatch.setattr(cpu, "cpu_flags_label", lambda: "avx_vnni")  # Intel 12th gen and later
    line = doctor.check_engines()[1]
    assert line.status == "WARN" and "without AVX512-VNNI" in line.message and "AVX-VNNI, which FBGEMM does not use" in line.message
    assert doctor.doctor_report([line])[1]  # a warning, still ready
    monkeypatch.setattr(cpu, "int8_pairs_saturate", lambda engine: False)
    line = doctor.check_engines()[1]
    assert line.status == "OK" and "exact" in line.message
    # the depthwise probe: exact, saturated at 128 channels, or not run (never reported as exact then)
    monkeypatch.setattr(cpu, "depthwise_probe_outputs", lambda engine: {16: 9.0, 128: 9.0})
    line = doctor.check_engines()[1]
    assert line.status == "OK" and "exact (measured: Linear, dense-conv and depthwise probes)" in line.message
    monkeypatch.setattr(cpu, "depthwise_probe_outputs", lambda engine: {16: 9.0, 128: 5.0})
    line = doctor.check_engines()[1]
    assert line.status == "OK" and "of 128 channels miss" in line.message and "adds 16-bit pairs" in line.message
    assert "VNNI" not in line.message  # measured exact, not credited to a CPU feature (oneDNN has an AVX-VNNI level too)
    monkeypatch.setattr(cpu, "depthwise_probe_outputs", lambda engine: None)
    line = doctor.check_engines()[1]
    assert line.status == "WARN" and "depthwise probe could not run" in line.message and "depthwise probes" not in line.message
    monkeypatch.setattr(cpu, "int8_pairs_saturate", lambda engine: None)
    assert doctor.check_engines()[1].status == "WARN"
    monkeypatch.setenv("QHELPERS_EMULATED", "1")
    assert "emulated" in doctor.check_engines()[1].message


def test_compiler_line_and_its_fix(monkeypatch):
    import qhelpers.cpu as cpu

    monkeypatch.setattr(cpu, "compile_available", lambda: (True, ""))
    assert doctor.check_compiler().status == "OK"
    monkeypatch.setattr(cpu, "compile_available", lambda: (False, "InvalidCxxCompiler: No working C++ compiler found"))
    monkeypatch.setattr("platform.system", lambda: "Windows")
    line = doctor.check_compiler()
    assert line.status == "WARN" and "No working C++ compiler" in line.message and "Build Tools" in line.fix
    monkeypatch.setattr("platform.system", lambda: "Darwin")
    assert "xcode-select --install" in doctor.check_compiler().fix


def test_report_lists_fixes_and_fails_on_a_problem():
    findings = [doctor.Finding("OK", "python", "3.11"), doctor.Finding("FAIL", "disk", "0.2 GB free", "free space")]
    text, ready = doctor.doctor_report(findings)
    assert not ready and "fix: free space" in text and text.splitlines()[-1].startswith("NOT READY: 1 problem")
    text, ready = doctor.doctor_report([doctor.Finding("WARN", "cpu", "no VNNI", "nothing")])
    assert ready and "1 warning" in text


def _kernel_spec(root, name, argv):
    spec = root / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))


@pytest.mark.slow
def test_the_jupyter_kernel_imports_qhelpers_or_the_fix_says_how(monkeypatch, tmp_path):
    """The course's kernel imports this qhelpers (OK); a kernel of a Python without the course (simulated: qhelpers
    blocked in its sys.modules, as in Anaconda's base) FAILs with the fix; a kernel that cannot start FAILs too."""
    ok = doctor.check_kernel()
    assert ok.status == "OK" and "imports qhelpers from this course" in ok.message, ok.line()
    no_course = "import sys; sys.modules['qhelpers'] = None; from ipykernel import kernelapp; kernelapp.launch_new_instance()"
    _kernel_spec(tmp_path, "other-python", [sys.executable, "-c", no_course, "-f", "{connection_file}"])
    _kernel_spec(tmp_path, "broken", [str(tmp_path / "no-such-python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    other = doctor.check_kernel(kernel_name="other-python")
    assert other.status == "FAIL" and "cannot import qhelpers" in other.message and "ModuleNotFoundError" in other.message, other.line()
    assert "make lab" in other.fix and "VS Code" in other.fix and "triage: No module named 'qhelpers'" in other.fix
    broken = doctor.check_kernel(kernel_name="broken", timeout_s=30)
    assert broken.status == "FAIL" and "did not start" in broken.message, broken.line()
