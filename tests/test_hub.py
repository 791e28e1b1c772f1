"""The classroom server (``make hub``, ``hub/``): its parts here; the whole hub, in Chromium, in test_hub_browser.py (CI tier)."""

from __future__ import annotations

import os
import subprocess
import sys
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
