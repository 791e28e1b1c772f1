"""A JupyterLab server on loopback for the tests that need a real one (test_browser, test_lab_settings, test_hub_browser).

Free port, random token, log to a file; waits until ``/api/status`` answers, and always stops the
server (terminate, then kill after 15 s). Also what the Chromium tests share: where Chromium is, its flags, and
JupyterLab's menu and status bar as a learner uses them.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# As root, Chromium needs --no-sandbox; the networking flags stop it calling home on a closed network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def menu(page, top: str, item: str) -> None:
    """Click ``top`` in JupyterLab's menu bar, then ``item`` in the menu that opens."""
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


KERNEL_IDLE_JS = """(name) => {
    const bar = document.querySelector('#jp-main-statusbar');
    return !!bar && bar.innerText.includes(name) && /\\(ipykernel\\) \\| Idle/.test(bar.innerText);
}"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_it_answers(proc: subprocess.Popen, url: str, log_path: Path, timeout_s: float, what: str) -> None:
    """Until ``url`` answers 200; fails the test with the log's end when ``proc`` exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{Path(log_path).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within {timeout_s:g} s:\n{Path(log_path).read_text()[-3000:]}")
        time.sleep(0.3)


@contextlib.contextmanager
def jupyterlab(root: Path, lab_args: list[str], env: dict, log_path: Path, timeout_s: float = 60) -> Iterator[tuple[str, str]]:
    """Start ``python -m jupyterlab`` serving ``root`` with ``lab_args``; yields ``(base_url, token)`` once it answers."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *lab_args,
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_it_answers(proc, f"{base}/api/status?token={token}", log_path, timeout_s, "JupyterLab")
            yield base, token
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
