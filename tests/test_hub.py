"""The classroom server (``make hub``, ``hub/``): its parts here; the whole hub, in Chromium, in test_hub_browser.py (CI tier)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hub"))

import classroom  # noqa: E402


@pytest.mark.parametrize("name", ["ada", "ada-l", "bob_2", "x", "a" * 20])
def test_acceptable_names(name):
    assert classroom.name_problem(name) is None


@pytest.mark.parametrize("name", ["a/b", "ada lovelace", "..", "../etc", "a..b", "", "1ada", "-ada", "ada!", "Ada", "a" * 21, "ad\u00e9", "ada\n"])
def test_unsafe_names_are_refused_saying_what_a_name_is(name):
    problem = classroom.name_problem(name)
    assert problem is not None and "cannot be a learner name" in problem
    assert "no spaces, '/', '..'" in problem and "e.g. ada" in problem


def test_a_learner_named_root_is_not_root():
    assert classroom.system_user("root", prefix="qh-") == "qh-root"
    assert classroom.system_user("ada") == os.environ.get(classroom.USER_PREFIX_ENV, "qh-") + "ada"


def test_the_room_password_is_required_and_its_file_must_be_private(tmp_path):
    with pytest.raises(SystemExit, match="set the room's password"):
        classroom.room_password({})
    with pytest.raises(SystemExit, match="at least 8 characters"):
        classroom.room_password({classroom.PASSWORD_ENV: "short"})
    assert classroom.room_password({classroom.PASSWORD_ENV: "long enough"}) == "long enough"
    secret = tmp_path / "room-password"
    secret.write_text("from the file\n")
    secret.chmod(0o644)
    with pytest.raises(SystemExit, match=r"readable by it alone \(mode 644\): chmod 600"):
        classroom.room_password({classroom.PASSWORD_FILE_ENV: str(secret)})
    secret.chmod(0o600)
    assert classroom.room_password({classroom.PASSWORD_FILE_ENV: str(secret), classroom.PASSWORD_ENV: "ignored!"}) == "from the file"
    with pytest.raises(SystemExit, match="No such file"):
        classroom.room_password({classroom.PASSWORD_FILE_ENV: str(tmp_path / "missing")})


def test_closed_folders_on_the_way_are_named(tmp_path):
    inner = tmp_path / "closed" / "venv" / "python"
    inner.parent.mkdir(parents=True)
    inner.write_text("")
    (tmp_path / "closed").chmod(0o700)
    try:
        closed = classroom.closed_to_learners([inner])
    finally:
        (tmp_path / "closed").chmod(0o755)
    assert str(tmp_path / "closed") in closed
    assert str(tmp_path / "closed" / "venv") not in closed


def test_learner_env_limits_threads_and_names_the_log(tmp_path):
    env = classroom.learner_env({"PATH": "/bin", "OMP_NUM_THREADS": "16"}, name="ada", folder=tmp_path, data=REPO / "data", threads=2, memory=2**30)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["TORCHINDUCTOR_COMPILE_THREADS"] == "1" and env["TORCHINDUCTOR_CACHE_DIR"].startswith(str(tmp_path))
    assert env["QHELPERS_LEARNER"] == "ada" and env["QHELPERS_PROGRESS"] == str(tmp_path / "progress") + os.sep
    assert env["QHELPERS_DATA"] == str(REPO / "data") and env["PATH"] == "/bin"
    assert env[classroom.MEMORY_ENV] == str(2**30)
    assert classroom.parse_bytes("4G") == 4 * 2**30 and classroom.parse_bytes("512M") == 512 * 2**20 and classroom.parse_bytes("1000") == 1000


def test_a_kernel_over_its_memory_limit_gets_an_error_in_its_cell():
    env = {**os.environ, classroom.MEMORY_ENV: str(512 * 2**20)}
    code = "b = bytearray(1 << 30)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, preexec_fn=classroom.memory_limit_preexec(env), capture_output=True, text=True)
    assert proc.returncode == 1 and "MemoryError" in proc.stderr
    ok = subprocess.run([sys.executable, "-c", "b = bytearray(1 << 26)"], env=env, preexec_fn=classroom.memory_limit_preexec(env))
    assert ok.returncode == 0


def test_the_learners_folder_is_private_and_a_restart_keeps_their_work(tmp_path):
    course = tmp_path / "course"
    (course / "student").mkdir(parents=True)
    (course / "data").mkdir()
    (course / "student" / "00_start_here.ipynb").write_text("{}")
    folder = tmp_path / "hub" / classroom.LEARNERS / "ada"
    uid, gid = os.getuid(), os.getgid()
    classroom.prepare_folder(folder, course, uid, gid)
    assert (folder.stat().st_mode & 0o777) == 0o700 and (folder.parent.stat().st_mode & 0o777) == 0o711
    assert (folder / "student" / "00_start_here.ipynb").read_text() == "{}"
    assert (folder / "data").resolve() == course / "data" and (folder / "progress").is_dir()
    (folder / "student" / "00_start_here.ipynb").write_text('{"mine": 1}')
    (course / "student" / "01_manual_tensor_quantization.ipynb").write_text("{}")
    classroom.prepare_folder(folder, course, uid, gid)  # the second start: new notebooks come, work stays
    assert (folder / "student" / "00_start_here.ipynb").read_text() == '{"mine": 1}'
    assert (folder / "student" / "01_manual_tensor_quantization.ipynb").exists()


def test_a_full_disk_or_a_failed_useradd_is_a_sentence_for_the_teacher(tmp_path, monkeypatch):
    import errno
    import pwd as pwd_module

    monkeypatch.setattr(classroom, "ensure_system_user", lambda user, home: pwd_module.getpwuid(os.getuid()))

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "ada" / "student"))

    monkeypatch.setattr(classroom, "prepare_folder", full)
    with pytest.raises(RuntimeError, match=r"could not prepare 'ada''s folder .*: No space left on device: tell the teacher"):
        classroom.prepare_learner("ada", tmp_path / "ada", REPO)

    def refused(user, home):
        raise subprocess.CalledProcessError(1, ["useradd"], stderr="useradd: cannot lock /etc/passwd\n")

    monkeypatch.setattr(classroom, "ensure_system_user", refused)
    with pytest.raises(RuntimeError, match=r"could not create the system user for 'ada' \(useradd: cannot lock /etc/passwd\): tell the teacher"):
        classroom.prepare_learner("ada", tmp_path / "ada", REPO)


def _fake_v2(root):
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu\n")
    return root


def test_cgroup_v2_where_it_has_memory_else_v1_else_none_said_once(tmp_path):
    v2 = classroom.find_cgroups(_fake_v2(tmp_path / "v2"))
    assert v2 == classroom.Cgroups(2, (tmp_path / "v2" / "qhelpers-hub",))
    assert v2.groups("ada") == [tmp_path / "v2" / "qhelpers-hub" / "ada"]
    assert "share 6 GB (cgroup v2" in v2.describe(6 * 2**30)
    v1 = tmp_path / "v1"  # v2 without memory (this kind of machine: "unified"), v1 memory and cpu under the hub's own group
    for path in (v1 / "memory" / "hub.service" / "memory.limit_in_bytes", v1 / "cpu" / "hub.service" / "cpu.shares"):
        path.parent.mkdir(parents=True)
        path.write_text("0\n")
    (v1 / "cgroup.controllers").write_text("cpu pids\n")
    found = classroom.find_cgroups(v1, "4:memory:/hub.service\n2:cpu,cpuacct:/hub.service\n0::/\n")
    assert found == classroom.Cgroups(1, (v1 / "memory" / "hub.service" / "qhelpers-hub", v1 / "cpu" / "hub.service" / "qhelpers-hub"))
    none = classroom.find_cgroups(v1, "2:cpu,cpuacct:/\n0::/\n")
    assert none.version == 0 and none.groups("ada") == []
    assert "cgroup v2 without the memory controller" in none.why and "no cgroup v1 memory group" in none.why
    said = none.describe(6 * 2**30)
    assert said.startswith("no per-learner memory limit") and "6 GB (RLIMIT_DATA)" in said


def test_a_learners_cgroup_v2_gets_the_limit_and_goes_when_empty(tmp_path):
    root = _fake_v2(tmp_path / "cg")
    cgroups = classroom.find_cgroups(root)
    groups = classroom.make_learner_groups(cgroups, "ada", 3 * 2**30)
    assert groups == [root / "qhelpers-hub" / "ada"]
    assert (groups[0] / "memory.max").read_text() == str(3 * 2**30) and (groups[0] / "cpu.weight").read_text() == "100"
    assert (root / "cgroup.subtree_control").read_text() == "+memory"  # cpu was there already
    assert (root / "qhelpers-hub" / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert classroom.remove_learner_groups(groups) == [groups[0]]  # the fake's files: like a group with processes
    for f in [*groups[0].iterdir(), root / "qhelpers-hub" / "cgroup.subtree_control"]:
        f.unlink()  # a real group's files go with it
    assert classroom.remove_learner_groups(groups) == [] and not (root / "qhelpers-hub").exists()
    assert classroom.remove_learner_groups(groups) == []  # already gone


MEMORY_HOG = "import sys, time; b = b'x' * (int(sys.argv[1]) << 20); print('holding', flush=True); time.sleep(120)"


def _hog(mb: int, env: dict, groups) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", MEMORY_HOG, str(mb)], env=env, stdout=subprocess.PIPE, text=True,
                            preexec_fn=classroom.memory_limit_preexec(env, groups=tuple(groups)))  # fmt: skip
    return proc


def test_one_learners_kernels_together_over_the_cap_are_killed_and_another_learner_is_untouched():
    """For real (root, a cgroup with memory): 2 x 400 MB under a 600 MB cap per learner, each under 1 GB per process."""
    import secrets

    if os.geteuid() != 0:
        pytest.skip("a learner's cgroup needs root")
    found = classroom.find_cgroups()
    if not found.version:
        pytest.skip(found.why)
    cgroups = classroom.Cgroups(found.version, tuple(b.parent / f"qhelpers-hub-test-{secrets.token_hex(3)}" for b in found.bases))
    env = {**os.environ, classroom.MEMORY_ENV: str(2**30)}  # per process: 1 GB
    cap = 600 * 2**20
    procs = []
    groups = {name: classroom.make_learner_groups(cgroups, name, cap) for name in ("ann", "bob")}
    try:
        bob = _hog(400, env, groups["bob"])
        procs.append(bob)
        assert bob.stdout.readline() == "holding\n"
        first = _hog(400, env, groups["ann"])
        procs.append(first)
        assert first.stdout.readline() == "holding\n"  # one kernel of ann's: under both caps
        second = _hog(400, env, groups["ann"])
        procs.append(second)
        second.stdout.readline()
        deadline = time.monotonic() + 30
        while first.poll() is None and second.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        codes = sorted(p.returncode for p in (first, second) if p.poll() is not None)
        assert codes == [-signal.SIGKILL], "ann's two processes (800 MB) should have met her 600 MB cap"
        assert bob.poll() is None, "bob's process, in his own group, must not be touched"
        memory_group = groups["ann"][0]
        if found.version == 1:
            assert "oom_kill 1" in (memory_group / "memory.oom_control").read_text()
        else:
            assert "oom_kill 1" in (memory_group / "memory.events").read_text()
        assert str(bob.pid) in (groups["bob"][0] / "cgroup.procs").read_text().split()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()
    for name, gs in groups.items():
        assert classroom.remove_learner_groups(gs) == [], name
        assert not any(g.exists() for g in gs)
    assert not any(b.exists() for b in cgroups.bases)


def test_a_name_error_in_a_hub_kernel_says_when_the_kernel_started(tmp_path):
    """A real kernel with the hub's environment: the traceback stays, one sentence is added."""
    from jupyter_client.manager import start_new_kernel

    env = classroom.learner_env(dict(os.environ), name="ada", folder=tmp_path, data=REPO / "data")
    assert env["PYTHONSTARTUP"] == str(REPO / "hub" / "kernel_startup.py")
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        replies = {}
        for code in ("a = 1", "x_undefined + 1", "def f():\n    y += 1\nf()", "a + 1"):
            replies[code] = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None)["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    error = replies["x_undefined + 1"]
    assert error["status"] == "error" and error["ename"] == "NameError"
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in error["traceback"]]
    assert any("x_undefined + 1" in line for line in lines), lines  # IPython's traceback is kept
    assert "NameError: name 'x_undefined' is not defined" in lines[-2], lines
    assert re.fullmatch(
        r"'x_undefined' is not defined in this kernel, which started at \d\d:\d\d and has run 1 cell since: if a cell above "
        r"defines it, run the cells above \(Run > Run All Above Selected Cell\); a restart or a stopped server forgets "
        r"variables, not files\.", error["traceback"][-1]
    ), error["traceback"][-1]  # fmt: skip
    assert replies["def f():\n    y += 1\nf()"]["ename"] == "UnboundLocalError"
    assert "is not defined in this kernel" not in "".join(replies["def f():\n    y += 1\nf()"]["traceback"])
    assert replies["a + 1"]["status"] == "ok"
