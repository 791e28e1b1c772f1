"""Which laptops can install the course's pins: pip's resolver, run for each target platform, on this machine.

For each platform (manylinux x86_64 and aarch64, macOS 14 and 13 on Apple Silicon, macOS 13 on Intel, Windows x64
and ARM64) and each requirements file (``requirements.txt``: notebooks 00-07; ``requirements-deploy.txt``: the same
plus notebook 08's ExecuTorch), it runs

    pip install --dry-run --ignore-installed --target TMP --python-version 3.11 --platform TAG ... --only-binary=:all: -r FILE

and prints one table row: installs, or pip's reason. Two things make pip's answer the target's and not this
machine's: the environment markers of the requirements (``platform_system == "Linux"`` on torch's CUDA libraries)
are evaluated for the target platform (pip evaluates them for the running interpreter otherwise), and the
pure-Python packages that PyPI has only as source (``SOURCE_ONLY``: a real install builds them on any OS) are
offered as wheels built here once, since ``--platform`` needs ``--only-binary=:all:``. Needs the package index.

    python scripts/platform_check.py                 # the table, for README.md and docs/WORKSHOP.md
    python scripts/platform_check.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = "3.11"
SOURCE_ONLY = ["antlr4-python3-runtime==4.9.3"]  # ExecuTorch -> hydra-core -> antlr4 4.9.*: an sdist, pure Python


def _manylinux(arch: str) -> list[str]:
    # pip 23 does not expand a manylinux_2_28 tag to the older ones a wheel may carry: list them all
    return [f"manylinux_2_{v}_{arch}" for v in range(28, 16, -1)] + [f"manylinux2014_{arch}"]


# name -> (pip --platform tags, the environment markers of such a laptop)
PLATFORMS: dict[str, tuple[list[str], dict[str, str]]] = {
    "Linux x86_64 (manylinux_2_28)": (_manylinux("x86_64"), {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}),
    "Linux aarch64 (manylinux_2_28)": (_manylinux("aarch64"), {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix"}),
    "Windows x64 (win_amd64)": (["win_amd64"], {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"}),
    "Windows on ARM (win_arm64)": (["win_arm64"], {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "ARM64", "os_name": "nt"}),
    "macOS 14+ Apple Silicon (macosx_14_0_arm64)": (["macosx_14_0_arm64"], {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"}),
    "macOS 13 Apple Silicon (macosx_13_0_arm64)": (["macosx_13_0_arm64"], {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"}),
    "macOS 13 Intel (macosx_13_0_x86_64)": (["macosx_13_0_x86_64"], {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64", "os_name": "posix"}),
}

# pip, with the environment markers evaluated for the target (argv[1] is the markers as JSON)
PIP_FOR_TARGET = """
import json, sys
from pip._vendor.packaging import markers
target = json.loads(sys.argv[1])
_default = markers.default_environment
markers.default_environment = lambda: {**_default(), **target}
from pip._internal.cli.main import main
sys.argv = ["pip"] + sys.argv[2:]
sys.exit(main())
"""


def _pins_only(requirements: Path, out: Path) -> Path:
    """``requirements`` without the local project lines (``-e .``): the pins and what they pull in."""
    lines = []
    for raw in requirements.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#") or line.startswith(("-e ", "--editable ")):
            continue
        if line.startswith("-r "):
            lines += _pins_only(requirements.parent / line.split(None, 1)[1], out).read_text().splitlines()
            continue
        lines.append(line)
    path = out / f"pins-{requirements.stem}.txt"
    path.write_text("\n".join(dict.fromkeys(lines)) + "\n")
    return path


def _reason(log: str) -> str:
    """pip's reason in one line: the package it found no wheel for, or the conflict, or its last error."""
    m = re.search(r"No matching distribution found for (.+)", log)
    if m:
        return f"no wheel for {m.group(1).strip()}"
    m = re.search(r"Cannot install (.+?) because", log)
    if m:
        causes = re.findall(r"^\s+(.+ depends on .+)$", log, re.MULTILINE)
        # without a cause pip found no file of that version for the platform (a constraint file makes it a "conflict")
        return f"conflict installing {m.group(1)} ({causes[0]})" if causes else f"no wheel for {m.group(1)}"
    errors = [line.removeprefix("ERROR: ") for line in log.splitlines() if line.startswith("ERROR: ")]
    return errors[-1] if errors else (log.strip().splitlines()[-1] if log.strip() else "pip failed")


def check(name: str, requirements: Path, work: Path, wheels: Path) -> dict:
    tags, env = PLATFORMS[name]
    report = work / "report.json"
    cmd = [sys.executable, "-c", PIP_FOR_TARGET, json.dumps(env), "install", "--dry-run", "--ignore-installed",
           "--disable-pip-version-check", "--quiet", "--report", str(report), "--target", str(work / "target"),
           "--python-version", PYTHON, "--only-binary=:all:", "--find-links", str(wheels), "-r", str(requirements)]
    for tag in tags:
        cmd += ["--platform", tag]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    row = {"platform": name, "requirements": requirements.name, "ok": done.returncode == 0}
    if row["ok"]:
        installed = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
        row["torch"], row["executorch"], row["packages"] = installed.get("torch"), installed.get("executorch"), len(installed)
    else:
        row["reason"] = _reason("\n".join(x for x in done.stderr.splitlines() if not x.startswith("WARNING: Location")))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--only", action="append", default=[], help="a platform name (start of it); repeatable")
    args = ap.parse_args(argv)
    names = [n for n in PLATFORMS if not args.only or any(n.startswith(o) for o in args.only)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="qh-platforms-") as tmp:
        work, wheels = Path(tmp), Path(tmp) / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "-w", str(wheels), *SOURCE_ONLY], check=True, capture_output=True, timeout=600)
        files = [_pins_only(REPO / "requirements.txt", work), _pins_only(REPO / "requirements-deploy.txt", work)]
        print("| Laptop | `requirements.txt` (00-07) | `requirements-deploy.txt` (+ ExecuTorch, 08) |\n|---|---|---|", flush=True)
        for name in names:
            cells = []
            for req in files:
                row = check(name, req, work, wheels)
                rows.append(row)
                cells.append(f"installs (torch {row['torch']}{', executorch ' + row['executorch'] if row.get('executorch') else ''})"
                             if row["ok"] else f"no: {row['reason']}")
            print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
