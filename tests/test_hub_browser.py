"""The classroom server for real: ``hub/jupyterhub_config.py`` (what ``make hub`` runs) on loopback, learners in Chromium.

Starts JupyterHub as root on 127.0.0.1 (free ports) with its folder in a temporary directory and its own prefix for
the learners' system users; signs in two learners in Chromium (Playwright), each opens their own
``student/01_manual_tensor_quantization.ipynb``, runs the cells above exercise 1, answers it (ann right, bob wrong)
and runs its check; the teacher's view (``qhelpers progress --hub``) shows both. ann then runs a cell that puts her
processes together over her memory limit (a cgroup per learner): her kernel is killed and restarted, and JupyterLab's
dialog and the next cell's NameError say so; bob is untouched. A wrong password and unsafe names
are refused with their message; bob's system user cannot read ann's folder; the hub stops cleanly, leaving no
process of the hub, the proxy or a learner, no learner's file outside the test's directory, and no test user.

Needs root (it creates system users), Chromium, and the proxy in hub/node_modules (``make setup-dev`` installs it);
skipped with one line outside CI when one is missing, a failure under CI=true (the tests are always collected, so
tests/tiers.py's entry never goes stale). For the test's length it opens (o+x: pass through only) the folders on
the way to the venv's Python that other users cannot pass (pyenv under /root), and restores them after.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from lab_server import CHROMIUM, CHROMIUM_FLAGS, KERNEL_IDLE_JS, free_port, menu, wait_until_it_answers

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
PROXY = REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
NB01 = "01_manual_tensor_quantization.ipynb"
RIGHT = "sqnr_4bit_prediction = (sqnr_clean - 27, sqnr_clean - 21)"  # 4 bits fewer, about 6 dB each
WRONG = "sqnr_4bit_prediction = (sqnr_clean - 3, sqnr_clean + 3)"  # as if bits did not matter
HUB_MEMORY = "2.5G"  # per learner and per process: ann's server and notebook 01's kernel hold 0.75 GB of her group; a 2.1 GB cell fits one process, not the sum
HOG = "hog = b'x' * (2100 << 20)  # 2.1 GB: under the limit per process (2.3 GB with the kernel), over the learner's with notebook 01's kernel"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sys.path.insert(0, str(REPO / "hub"))
import classroom  # noqa: E402

def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (uid, command line)}`` of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry.stat().st_uid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return out


def _needs(missing: bool, why: str) -> None:
    """Skip with ``why`` (outside CI) or fail (under CI=true) when something the hub needs is missing."""
    if missing:
        if IN_CI:
            pytest.fail(f"the classroom server's test cannot run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def hub():
    """The hub on loopback; yields its URL, folder, users' prefix and a ``stop()``; always stops it and removes its users."""
    _needs(os.environ.get("QHELPERS_SKIP_BROWSER", "0") not in ("", "0"), "QHELPERS_SKIP_BROWSER is set")
    _needs(os.geteuid() != 0, "the classroom server runs as root (it creates a system user per learner)")
    _needs(not PROXY.exists(), f"{PROXY} is missing (make setup-dev runs npm ci --prefix hub)")
    _needs(shutil.which("useradd") is None, "useradd is missing")
    _needs(not CHROMIUM.exists(), f"{CHROMIUM} is missing (scripts/ensure_chromium.sh installs it)")
    pytest.importorskip("jupyterhub", reason="pip install -r requirements-hub.txt")
    tmp = Path(tempfile.mkdtemp(prefix="qhelpers-hub-test-"))
    tmp.chmod(0o711)
    prefix = f"qht{secrets.token_hex(2)}-"
    # Learners run as their own users: open (o+x, pass through only) the folders on the way to the venv's Python
    # for the test's length (pyenv under /root is 0700), as the hub's message asks a teacher to; restored after.
    python = Path(sys.executable).resolve()
    opened = {p: os.stat(p).st_mode & 0o7777 for p in classroom.closed_to_learners([python, REPO / "student", REPO / "data", tmp])}
    for p, mode in opened.items():
        os.chmod(p, mode | 0o001)
    password = tmp / "room-password"
    password.write_text("room-" + secrets.token_hex(8) + "\n")
    password.chmod(0o600)
    port, api_port, proxy_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QHELPERS_")}
    env.update(
        QHELPERS_HUB_DIR=str(tmp / "hub"), QHELPERS_HUB_PASSWORD_FILE=str(password), QHELPERS_HUB_USER_PREFIX=prefix,
        QHELPERS_HUB_IP="127.0.0.1", QHELPERS_HUB_PORT=str(port), QHELPERS_HUB_API_PORT=str(api_port),
        QHELPERS_HUB_PROXY_API_PORT=str(proxy_port), PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
        QHELPERS_HUB_MEMORY=HUB_MEMORY,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "hub.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(REPO / "hub" / "jupyterhub_config.py")],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip

    def stop() -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    try:
        wait_until_it_answers(proc, f"{base}/hub/api/", tmp / "hub.log", 180, "the hub")
        yield {"base": base, "dir": tmp / "hub", "tmp": tmp, "prefix": prefix, "password": password.read_text().strip(), "stop": stop, "pid": proc.pid}
    finally:
        stop()
        log.close()
        for user in [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith(prefix)]:
            subprocess.run(["userdel", user], check=False, capture_output=True)
        left = [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith(prefix)]
        assert not left, f"test users left in /etc/passwd: {left}"
        for p, mode in opened.items():
            os.chmod(p, mode)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(hub):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt (playwright)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def _sign_in(browser, hub, name: str, password: str):
    """A fresh browser (its own cookies) at the sign-in page, the form filled and sent; returns the page."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{hub['base']}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_load_state()
    return page


def _login_error(page) -> str:
    return page.locator(".login_error").inner_text().strip()


def test_a_wrong_password_and_unsafe_names_are_refused_with_their_message(browser, hub):
    page = _sign_in(browser, hub, "eve", "not-the-room-password")
    assert _login_error(page) == "Invalid username or password" and "/hub/login" in page.url
    for name in ("a/b", "ada lovelace", "..", "../root"):
        page = _sign_in(browser, hub, name, hub["password"])
        assert _login_error(page) == classroom.name_problem(name.lower()), name
        page.context.close()
    assert not any(u.pw_name.startswith(hub["prefix"]) for u in pwd.getpwall())  # no user made for a refused sign-in


CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"
STATE_JS = """(n) => Array.from(document.querySelectorAll('%s')).slice(0, n).map(cell => {
    const p = cell.querySelector('.jp-InputPrompt');
    return cell.classList.contains('jp-CodeCell') ? (p ? p.textContent.trim() : '') : 'md';
})""" % CELLS


def _wait_cells_run(page, upto: int, timeout_s: float) -> None:
    """Until every code cell before ``upto`` has an execution count and none is running."""
    deadline = time.monotonic() + timeout_s
    while True:
        prompts = [p for p in page.evaluate(STATE_JS, upto) if p != "md"]
        if prompts and all(re.search(r"\d", p) for p in prompts) and not any("*" in p for p in prompts):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the cells above exercise 1 did not run within {timeout_s:g} s: {prompts}")
        time.sleep(0.5)


def _exercise_index(page) -> int:
    return page.evaluate("""() => Array.from(document.querySelectorAll('%s')).findIndex(c =>
        c.classList.contains('jp-CodeCell') && (c.querySelector('.cm-content')?.textContent || '').startsWith('sqnr_4bit_prediction = ...'))""" % CELLS)


def _lab_settings(hub, name: str) -> None:
    """Every cell kept in the DOM (the test reads prompts without scrolling) and no news prompt, in the learner's settings."""
    account = pwd.getpwnam(classroom.system_user(name, prefix=hub["prefix"]))
    home = Path(account.pw_dir)
    settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for path, value in [("notebook-extension/tracker.jupyterlab-settings", '{"windowingMode": "none"}'),
                        ("apputils-extension/notification.jupyterlab-settings", '{"fetchNews": "false"}')]:
        (settings / path).parent.mkdir(parents=True, exist_ok=True)
        (settings / path).write_text(value)
    for p in [home / ".jupyter", *(home / ".jupyter").rglob("*")]:
        os.chown(p, account.pw_uid, account.pw_gid)


def test_two_learners_answer_exercise_1_of_notebook_01_and_the_teacher_sees_both(browser, hub):
    pages = {name: _sign_in(browser, hub, name, hub["password"]) for name in ("ann", "bob")}
    for name, page in pages.items():  # each lands in JupyterLab on their own server, at the first notebook
        page.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=180_000)
        _lab_settings(hub, name)  # read when the lab loads again, just below
        page.goto(f"{hub['base']}/user/{name}/lab/tree/student/{NB01}?reset")
        page.wait_for_function(KERNEL_IDLE_JS, arg=NB01, timeout=120_000)
    exercise = {}
    for name, page in pages.items():  # both rooms' kernels work at the same time
        exercise[name] = _exercise_index(page)
        assert exercise[name] > 0, "exercise 1's blank cell not found in student/01"
        page.locator(CELLS).nth(exercise[name]).locator(".jp-InputPrompt").click()
        menu(page, "Run", "Run All Above Selected Cell")
    for name, page in pages.items():
        _wait_cells_run(page, exercise[name], timeout_s=240)
        cell = page.locator(CELLS).nth(exercise[name])
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(RIGHT if name == "ann" else WRONG)
        page.keyboard.press("Shift+Enter")  # the exercise cell, then its check cell right after it
        page.keyboard.press("Shift+Enter")
    verdicts = {}
    for name, page in pages.items():
        check = page.locator(CELLS).nth(exercise[name] + 1).locator(".jp-OutputArea-output")
        check.filter(has_text=re.compile("correct|not yet")).last.wait_for(timeout=120_000)
        verdicts[name] = check.all_inner_texts()
    assert any(re.search(r"\bcorrect\b", t) and "not yet" not in t for t in verdicts["ann"]), verdicts["ann"]
    assert any("not yet" in t for t in verdicts["bob"]), verdicts["bob"]

    view = subprocess.run(
        [sys.executable, "-m", "qhelpers.progress", "--hub", str(hub["dir"])], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    ).stdout  # fmt: skip
    summary = view.split("\n\n")[0].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in summary[4:]}
    assert rows == {"ann": ["1/4"], "bob": ["0/4"]}, view
    assert re.search(r"01_manual_tensor_quantization\s+1\s+student\s+correct\s+1", view), view
    assert re.search(r"01_manual_tensor_quantization\s+1\s+student\s+wrong\s+1", view), view
    for page in pages.values():
        page.context.close()


def _memory_group(name: str, hub) -> Path:
    found = classroom.find_cgroups()  # the hub is this process's child: the same cgroups
    return found.groups(name)[0] if found.version else None


def test_a_learner_over_their_memory_sees_the_kernel_die_and_restart_and_then_the_restart_note(browser, hub):
    """ann (notebook 01's kernel still running) runs a 1.9 GB cell in a second notebook: her cgroup's limit kills it.

    Measured here: what JupyterLab shows then, and the NameError's added sentence in the restarted kernel.
    """
    group = _memory_group("ann", hub)
    if group is None:  # a container without a writable cgroup: the hub runs with the per-process limit alone
        pytest.skip("no cgroup with memory that root can write here: no per-learner limit to test")
    account = pwd.getpwnam(classroom.system_user("ann", prefix=hub["prefix"]))
    notebook = Path(account.pw_dir) / "student" / "hog.ipynb"
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": src}
             for i, src in enumerate([HOG, "len(hog)"])]  # fmt: skip
    notebook.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}))
    os.chown(notebook, account.pw_uid, account.pw_gid)
    bob_before = {pid for pid, (uid, _) in _processes().items() if uid == pwd.getpwnam(classroom.system_user("bob", prefix=hub["prefix"])).pw_uid}
    page = _sign_in(browser, hub, "ann", hub["password"])
    page.wait_for_url(re.compile(r"/user/ann/lab"), timeout=180_000)
    page.goto(f"{hub['base']}/user/ann/lab/tree/student/hog.ipynb")
    page.wait_for_function(KERNEL_IDLE_JS, arg="hog.ipynb", timeout=120_000)
    page.locator(CELLS).nth(0).locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=120_000)
    said = dialog.inner_text()
    print(f"\nJupyterLab, when the learner's cgroup kills the kernel: {said!r}")
    assert "Kernel Restarting" in said and "hog.ipynb appears to have died. It will restart automatically." in said, said
    oom = (group / "memory.oom_control").read_text() if (group / "memory.oom_control").exists() else (group / "memory.events").read_text()
    assert re.search(r"oom_kill [1-9]", oom), oom
    dialog.locator("button", has_text="Ok").click()
    page.wait_for_function(KERNEL_IDLE_JS, arg="hog.ipynb", timeout=120_000)
    page.locator(CELLS).nth(1).locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")  # the variable of the killed kernel's cell is gone
    out = page.locator(CELLS).nth(1).locator(".jp-OutputArea-output")
    out.filter(has_text="is not defined in this kernel").wait_for(timeout=60_000)
    text = out.inner_text()
    print(f"then, running the next cell: {text.splitlines()[-1]!r}")
    assert "NameError: name 'hog' is not defined" in text
    assert re.search(r"'hog' is not defined in this kernel, which started at \d\d:\d\d and has run 0 cells since", text), text
    bob_uid = pwd.getpwnam(classroom.system_user("bob", prefix=hub["prefix"])).pw_uid
    assert bob_before <= {pid for pid, (uid, _) in _processes().items() if uid == bob_uid}, "bob's processes must be untouched"
    page.context.close()


def test_a_learner_cannot_read_another_learners_folder(hub):
    ann_folder = hub["dir"] / classroom.LEARNERS / "ann"
    notebook = ann_folder / "student" / NB01
    assert notebook.exists() and (ann_folder.stat().st_mode & 0o777) == 0o700
    bob = classroom.system_user("bob", prefix=hub["prefix"])
    as_bob = dict(user=bob, group=bob, extra_groups=[], capture_output=True, text=True, cwd="/")
    for cmd in (["cat", str(notebook)], ["ls", str(ann_folder)], ["ls", str(hub["dir"] / classroom.LEARNERS)],
                ["cat", str(ann_folder / "progress" / "ann.jsonl")], ["ls", str(hub["dir"] / "state")]):
        denied = subprocess.run(cmd, **as_bob)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (cmd, denied)
    own = subprocess.run(["cat", str(hub["dir"] / classroom.LEARNERS / "bob" / "student" / NB01)], **as_bob)
    assert own.returncode == 0 and own.stdout.startswith("{")
    shared = subprocess.run(["touch", str(hub["dir"] / classroom.LEARNERS / "bob" / "data" / "mine")], **as_bob)
    assert shared.returncode != 0 and "Permission denied" in shared.stderr  # data/ is the course's, read-only


def test_the_hub_stops_cleanly_and_leaves_nothing_behind(hub):
    uids = {u.pw_uid for u in pwd.getpwall() if u.pw_name.startswith(hub["prefix"])}
    assert len(uids) == 2  # ann and bob
    running = {pid: cmd for pid, (uid, cmd) in _processes().items() if uid in uids}
    assert running, "the learners' servers should be running before the hub stops"
    groups = {name: classroom.find_cgroups().groups(name) for name in ("ann", "bob")}
    said = re.findall(r"classroom: (?:each learner's server and kernels share 2.5 GB|no per-learner memory limit).*", (hub["tmp"] / "hub.log").read_text())
    assert len(said) == 1 and said[0].startswith("classroom: each" if groups["ann"] else "classroom: no"), said  # once, in the hub's log
    for name, gs in groups.items():  # each learner's processes in their own groups (none where the machine has none)
        inside = {int(pid) for g in gs[:1] for pid in (g / "cgroup.procs").read_text().split()}
        uid = pwd.getpwnam(classroom.system_user(name, prefix=hub["prefix"])).pw_uid
        assert not gs or inside == {pid for pid, (u, _) in _processes().items() if u == uid}, (name, inside)
    assert hub["stop"]() == 0, (hub["tmp"] / "hub.log").read_text()[-3000:]
    deadline = time.monotonic() + 30  # the learners' servers were stopped by the hub; their kernels follow
    while True:
        left = {pid: cmd for pid, (uid, cmd) in _processes().items() if uid in uids or str(hub["tmp"]) in cmd or f"--port {hub['base'].rsplit(':', 1)[1]}" in cmd}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not left, f"still running after the hub stopped: {left}"
    kept = [str(g) for gs in groups.values() for g in gs if g.exists()]
    assert not kept, f"learners' cgroups left after the hub stopped: {kept}"
    stray = [str(p) for top in ("/tmp", "/var/tmp", "/dev/shm") for p in Path(top).iterdir() if p.lstat().st_uid in uids]
    assert not stray, f"learners' files outside the hub's folder: {stray}"
