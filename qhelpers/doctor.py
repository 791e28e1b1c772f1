"""The 2-minute laptop check of a workshop morning: ``python -m qhelpers.doctor`` says OK or what is wrong.

Introduced in docs/WORKSHOP.md (the morning checklist); notebook 00's first cells show the same facts.
It checks, in order: the OS and CPU (a line for the teacher), the Python version, every package pinned in
requirements.txt and requirements-deploy.txt (executorch, which only notebook 08 needs: a WARN when missing), the quantized engines and what the CPU's INT8 kernels do (measured), whether
``torch.compile`` can build code (a C++ compiler), whether the Jupyter kernel imports qhelpers, free disk space, the bundled data and models
against their recorded checksums, and a tiny INT8 layer run on the default engine. Each line is ``OK``, ``WARN`` (works, with a caveat) or ``FAIL`` with a ``fix:``; the exit code is 0 unless
something FAILs. The fixes refer to the laptop triage table in docs/WORKSHOP.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .files import course_root, data_dir, verify_file
from .versions import course_requirements

__all__ = ["Finding", "run_checks", "doctor_report"]

COURSE_PYTHON = (3, 11)
MIN_PYTHON = (3, 11)  # pyproject.toml's requires-python: the pinned numpy and scipy need 3.11
# The packages whose version changes what the notebooks compute: another version of these FAILs, of the rest WARNs.
CORE_PACKAGES = ("torch", "torchvision", "torchao", "executorch")
MIN_FREE_GB, LOW_FREE_GB = 1.0, 3.0


@dataclass
class Finding:
    """One line of the report: ``status`` is "OK", "WARN" or "FAIL"; ``fix`` says what to do when not OK."""

    status: str
    what: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.what}: {self.message}"
        return text + (f"\n      fix: {self.fix}" if self.fix and self.status != "OK" else "")


def check_system() -> Finding:
    """The OS, its version and the CPU: the teacher plans wheelhouses and pairs from this line of each reply."""
    system, machine = platform.system(), platform.machine()
    if system == "Darwin":
        release = "macOS " + (platform.mac_ver()[0] or platform.release())
    elif system == "Windows":
        release = f"Windows {platform.release()} ({platform.version()})"
    else:
        release = f"{system} {platform.release()}"
        try:
            os_release = platform.freedesktop_os_release()
            release += f" ({os_release.get('PRETTY_NAME', os_release.get('NAME', ''))})"
        except (OSError, AttributeError):
            pass
    from .versions import _cpu_name

    return Finding("OK", "system", f"{release}, {machine}, {_cpu_name()}, {os.cpu_count()} logical CPUs")


def check_python(version: Optional[tuple[int, int]] = None) -> Finding:
    """3.11 is the course's Python (its wheelhouse is built with it); newer ones work online."""
    v = tuple(version or sys.version_info[:2])
    shown = ".".join(map(str, v))
    if v < MIN_PYTHON:
        return Finding("FAIL", "python", f"{shown} is too old", "install Python 3.11 and recreate the venv (triage: Python version)")
    if v != COURSE_PYTHON:
        return Finding(
            "WARN", "python", f"{shown} (the course is tested with 3.11)",
            "fine with internet; an offline wheelhouse built with 3.11 will not install here: use Python 3.11 (triage: Python version)",
        )
    return Finding("OK", "python", f"{shown} ({platform.python_implementation()}, {platform.machine()})")


def check_versions(installed: Optional[Callable[[str], str]] = None, requirements: Optional[Path] = None) -> list[Finding]:
    """Every package the course pins (``requirements.txt``, the one source: ``qhelpers.versions``) installed at its
    version; ``installed`` maps a name to a version and ``requirements`` names the file, for tests.

    Without ``requirements.txt`` (run outside the course folder after ``pip install .``) it checks the version
    ranges the installed package declares, and says so in a WARN line.
    """
    from packaging.version import InvalidVersion, Version

    get = installed or md.version
    course = course_requirements(requirements)
    found, wrong, missing, optional_missing = [], [], [], []
    for name, req in course.requirements.items():
        try:
            have = get(name)
        except md.PackageNotFoundError:
            (optional_missing if name in course.optional else missing).append(name)
            continue
        found.append(f"{name} {have}")
        try:
            ok = req.specifier.contains(Version(have).public, prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            wrong.append((name, f"{name} {have} ({'pinned' if course.exact else 'needs'} {str(req.specifier).lstrip('=')})"))
    fix = "pip install -r requirements.txt in the course's venv (the notebooks' numbers are checked with the pinned versions)"
    out = []
    if not course.exact:
        out.append(Finding("WARN", "pins", f"requirements.txt not found: checking {course.source}",
                           "run the doctor from the course folder (or set QHELPERS_HOME to it) to check the exact pins"))
    if not course.requirements:
        out.append(Finding("FAIL", "packages", "no requirements found to check", "run the doctor from the course folder"))
    if missing:
        out.append(Finding("FAIL", "packages", "missing: " + ", ".join(missing), "pip install -r requirements.txt (or from the wheelhouse: triage: no internet)"))
    if optional_missing:
        out.append(Finding("WARN", "packages", "missing (only notebook 08 and `qhelpers quantize --target xnnpack` need it): "
                            + ", ".join(optional_missing), DEPLOY_FIX if course.exact else "pip install 'qhelpers[deploy]'"))
    if wrong:
        core = any(name in CORE_PACKAGES for name, _ in wrong)
        out.append(Finding("FAIL" if core else "WARN", "versions", "; ".join(text for _, text in wrong), fix))
    if not missing and not wrong and course.requirements:
        out.append(Finding("OK", "packages", ", ".join(found)))
    return out


def check_engines() -> list[Finding]:
    """The quantized engines, the default one, and what the CPU's INT8 kernels do (measured, not read from flags)."""
    from .cpu import cpu_flags_label, depthwise_missed, depthwise_probe_outputs, emulated, int8_pairs_saturate, is_x86_machine
    from .environment import default_engine, supported_engines

    try:
        engines = supported_engines()
        default = default_engine()
    except Exception as exc:  # e.g. QHELPERS_ENGINE names an engine this machine lacks
        return [Finding("FAIL", "engines", str(exc), "unset QHELPERS_ENGINE or set it to an engine listed here (triage: Apple Silicon / ARM)")]
    if not engines:
        return [Finding("FAIL", "engines", "torch offers no quantized engine", "reinstall torch from requirements.txt (triage: wrong torch build)")]
    out = [Finding("OK", "engines", f"{', '.join(engines)} (the course uses {default})")]
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    saturates = int8_pairs_saturate(default)
    where = " (emulated: timings mean nothing here)" if emulated() else ""
    if not is_x86_machine():
        out.append(Finding("OK", "cpu", f"ARM ({platform.machine()}): {default} is the engine; INT8 sums "
                                        f"{'saturate at 16 bits' if saturates else 'are exact (32 bits)'}{where}"))
    elif capability in ("DEFAULT", "NO AVX", "") or capability.startswith("SSE"):
        out.append(
            Finding("WARN", "cpu", f"no AVX2 ({capability}): INT8 runs but is slow, speed-ups in 02-05 will be small or negative{where}",
                    "pair this learner with a neighbour for the timing cells (triage: x86 without AVX2)")
        )
    elif saturates is None:
        out.append(Finding("WARN", "cpu", f"{capability}: the INT8 probe could not run on {default}{where}",
                           "reinstall torch from requirements.txt (triage: wrong torch build)"))
    elif saturates:
        label = " (the flags say AVX-VNNI, which FBGEMM does not use)" if cpu_flags_label() == "avx_vnni" else ""
        out.append(Finding("WARN", "cpu", f"{capability} without AVX512-VNNI{label}: {default}'s INT8 kernels add 8-bit products "
                                          f"in 16-bit pairs (measured); notebooks take that branch, smaller speed-ups{where}",
                           "nothing to fix; calibrate with reduce_range (the x86 qconfig) as notebook 01 shows (triage: x86 without VNNI)"))
    elif default not in ("x86", "fbgemm", "onednn"):  # qnnpack: 32-bit sums on every CPU, with or without VNNI
        out.append(Finding("OK", "cpu", f"{capability}: {default}'s INT8 sums are exact (measured; {default} adds in 32 bits on every CPU){where}"))
    elif (probes := depthwise_probe_outputs(default)) is None:
        out.append(Finding("WARN", "cpu", f"{capability}: {default}'s INT8 Linear and dense-conv sums are exact (measured); its "
                                          f"depthwise probe could not run{where}",
                           "reinstall torch from requirements.txt (triage: wrong torch build)"))
    elif (wide := depthwise_missed(probes)):
        # FBGEMM's depthwise kernel: the fbgemm engine always; x86 off Linux, or over 100 groups on Linux (measured)
        cause = ("FBGEMM's depthwise kernel adds 16-bit pairs" if all(v == 5.0 for v in wide.values())
                 else f"probe values {wide}, cause not identified")
        out.append(Finding("OK", "cpu", f"{capability}: {default}'s INT8 Linear and dense-conv sums are exact (measured); its "
                                        f"3x3 depthwise convs of {' and '.join(map(str, wide))} channels miss their exact sum "
                                        f"({cause}): compare a depthwise model's outputs with qnnpack's (notebook 02){where}"))
    else:
        out.append(Finding("OK", "cpu", f"{capability}: {default}'s INT8 sums are exact (measured: Linear, dense-conv and depthwise "
                                        f"probes){where}"))
    return out


def check_compiler() -> Finding:
    """Whether ``torch.compile`` builds a one-line function here (Inductor needs a C++ compiler); a fix per OS."""
    from .cpu import compile_available, compile_fix

    ok, reason = compile_available()
    if ok:
        return Finding("OK", "compiler", "torch.compile builds and runs code here")
    return Finding("WARN", "compiler", f"torch.compile cannot build code here ({reason}); notebooks 05-08 skip their compiled rows",
                   compile_fix() + " (triage: no C++ compiler)")


DEPLOY_FIX = ("make setup-08 (Windows: .venv\\Scripts\\pip install -r requirements-deploy.txt); where pip finds no wheel "
              "for this laptop, follow notebook 08 from build/html (triage: no ExecuTorch)")
KERNEL_FIX = ("start JupyterLab from the course's venv: `make lab`, or .venv/bin/jupyter lab (Windows: .venv\\Scripts\\jupyter lab); "
              "in VS Code pick the .venv interpreter as the notebook's kernel (triage: No module named 'qhelpers')")


def check_kernel(*, kernel_name: str = "python3", timeout_s: float = 120) -> Finding:
    """Whether the Jupyter kernel ``kernel_name`` that this Python's JupyterLab starts imports this course's qhelpers.

    The most common first-cell error of a workshop is ``No module named 'qhelpers'``: Jupyter started from another
    Python (Anaconda's base, a system Jupyter) runs a kernel that has not got the course installed. This starts the
    kernel as JupyterLab would (its kernel spec, in the course's ``student/`` folder), imports qhelpers in it and
    says which file it imported.
    """
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        return Finding("FAIL", "kernel", "jupyter_client is not installed in this Python", "pip install -r requirements.txt (in the course's venv)")
    try:
        root = course_root(required=False)
    except FileNotFoundError:  # a QHELPERS_HOME that is not the course folder: the data line says so
        root = None
    cwd = root / "student" if root is not None and (root / "student").is_dir() else Path.cwd()
    out: list[str] = []

    def collect(msg: dict) -> None:
        content = msg.get("content", {})
        if msg.get("msg_type") == "stream":
            out.append(content.get("text", ""))
        elif msg.get("msg_type") == "error":
            out.append(f"{content.get('ename')}: {content.get('evalue')}")

    try:
        km, kc = start_new_kernel(kernel_name=kernel_name, startup_timeout=timeout_s, cwd=str(cwd),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # the kernel's own log lines
    except Exception as exc:
        return Finding("FAIL", "kernel", f"the Jupyter kernel {kernel_name!r} did not start: {type(exc).__name__}: {str(exc)[:160]}", KERNEL_FIX)
    try:
        kc.execute_interactive("import sys, qhelpers; print(qhelpers.__file__); print(sys.executable)", timeout=timeout_s, output_hook=collect)
    except Exception as exc:
        out.append(f"{type(exc).__name__}: {exc}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    text = "".join(out).strip()
    lines = text.splitlines()
    if len(lines) != 2 or not lines[0].endswith(".py"):
        return Finding("FAIL", "kernel", f"the Jupyter kernel {kernel_name!r} cannot import qhelpers ({text[:160] or 'no output'})", KERNEL_FIX)
    imported = Path(lines[0]).resolve().parent
    here = Path(__file__).resolve().parent
    if imported != here:
        return Finding("WARN", "kernel", f"the Jupyter kernel {kernel_name!r} ({lines[1]}) imports qhelpers from {imported}, not from {here}",
                       KERNEL_FIX)
    return Finding("OK", "kernel", f"the Jupyter kernel {kernel_name!r} ({lines[1]}) imports qhelpers from this course")


def check_disk(path: Optional[Path] = None, free_bytes: Optional[int] = None) -> Finding:
    """Free space where the course lives: results, caches and a re-install need room."""
    free = free_bytes if free_bytes is not None else shutil.disk_usage(path or course_root(required=False) or Path.cwd()).free
    gb = free / 1e9
    if gb < MIN_FREE_GB:
        return Finding("FAIL", "disk", f"{gb:.1f} GB free", f"free at least {MIN_FREE_GB:.0f} GB (a fresh venv with the CUDA torch build needs ~6 GB; triage: low disk)")
    if gb < LOW_FREE_GB:
        return Finding("WARN", "disk", f"{gb:.1f} GB free", "enough for the day, not for reinstalling the venv (triage: low disk)")
    return Finding("OK", "disk", f"{gb:.0f} GB free")


def check_data(directory: Optional[Path] = None) -> Finding:
    """Every artifact in ``data/`` whose ``.json`` records a sha256 matches it."""
    directory = Path(directory) if directory is not None else data_dir()
    if not directory.is_dir():
        return Finding("FAIL", "data", f"{directory} is missing", "run from the course folder, or set QHELPERS_DATA to its data/ folder")
    checked, problems = 0, []
    for meta_path in sorted(directory.glob("*.json")):
        try:
            import json

            meta = json.loads(meta_path.read_text())
        except ValueError:
            problems.append(f"{meta_path.name} is not valid JSON")
            continue
        if not isinstance(meta, dict) or "sha256" not in meta:
            continue
        artifacts = [p for p in directory.glob(meta_path.stem + ".*") if p.suffix != ".json"]
        if not artifacts:
            problems.append(f"{meta_path.stem}: the file that {meta_path.name} describes is missing")
            continue
        for artifact in artifacts:
            try:
                verify_file(artifact, meta["sha256"], "git checkout data/  (or copy data/ again from the USB stick)")
                checked += 1
            except (OSError, ValueError) as exc:
                problems.append(str(exc).split(";")[0])
    if problems:
        return Finding("FAIL", "data", "; ".join(problems), "git checkout data/ (or copy the course folder again); never edit data/ by hand")
    if not checked:
        return Finding("FAIL", "data", f"no checksummed files in {directory}", "copy the course folder again (data/ is part of it)")
    return Finding("OK", "data", f"{checked} files match their recorded checksums")


def check_int8_smoke() -> Finding:
    """A tiny quantized Linear on the default engine: the kernels the course needs actually run."""
    try:
        import torch

        from .environment import default_engine, engine

        with engine(default_engine()) as name, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notices are taught in the notebooks, not here
            layer = torch.ao.nn.quantized.Linear(8, 4)
            x = torch.quantize_per_tensor(torch.linspace(-1, 1, 16).reshape(2, 8), 0.01, 128, torch.quint8)
            y = layer(x).dequantize()
        if y.shape != (2, 4) or not torch.isfinite(y).all():
            raise RuntimeError(f"unexpected output {tuple(y.shape)}")
    except Exception as exc:
        return Finding("FAIL", "int8", f"a quantized Linear failed: {type(exc).__name__}: {str(exc)[:160]}", "reinstall torch from requirements.txt; if it persists, see the triage table")
    return Finding("OK", "int8", f"a quantized Linear ran on {name}")


def run_checks() -> list[Finding]:
    """All checks, in the order printed."""
    findings = [check_system(), check_python()]
    findings += check_versions()
    findings += check_engines()
    findings.append(check_compiler())
    findings.append(check_kernel())
    findings.append(check_disk())
    findings.append(check_data())
    findings.append(check_int8_smoke())
    return findings


def doctor_report(findings: list[Finding]) -> tuple[str, bool]:
    """The printed report and whether the laptop is ready (no FAIL)."""
    fails = [f for f in findings if f.status == "FAIL"]
    warns = [f for f in findings if f.status == "WARN"]
    lines = ["qhelpers doctor: is this laptop ready for the course?"] + ["  " + f.line().replace("\n", "\n  ") for f in findings]
    if fails:
        lines.append(f"NOT READY: {len(fails)} problem{'s' if len(fails) > 1 else ''} (see the fix lines; docs/WORKSHOP.md has the laptop triage table)")
    elif warns:
        lines.append(f"OK: ready, with {len(warns)} warning{'s' if len(warns) > 1 else ''} above")
    else:
        lines.append("OK: this laptop is ready")
    return "\n".join(lines), not fails


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.doctor", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    text, ready = doctor_report(run_checks())
    print(text)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
