"""The classroom server's parts: the room-password sign-in, one system user per learner, each learner's folder.

``hub/jupyterhub_config.py`` (``make hub``) puts them together; ``tests/test_hub.py`` runs them for real and
``scripts/hub_sizing.py`` measures a learner's load with the same environment and memory limit.

* **Sign-in** (``RoomAuthenticator``): a name and the room's password, which the teacher sets
  (``QHELPERS_HUB_PASSWORD``, or ``QHELPERS_HUB_PASSWORD_FILE``: a file only its owner can read, mode 0600).
  A name is 1-20 lowercase letters, digits, ``-`` or ``_``, starting with a letter (``name_problem`` says
  why another is refused, on the sign-in page); JupyterHub lowercases names first.
* **One system user per learner** (``LearnerSpawner``, JupyterHub's ``LocalProcessSpawner``): learner ``ada``
  runs as the system user ``qh-ada`` (the prefix keeps a learner called ``root`` from being root), created by
  the hub (which runs as root) at the first sign-in, with no password and its home in the learner's folder.
* **The learner's folder** ``<hub dir>/learners/<name>/`` (mode 0700, owned by the learner): its own copy of
  the course's ``student/`` (copied once: a restart keeps the learner's work), ``data`` (a link to the course's
  ``data/``, which learners can read and not write), and ``progress/<name>.jsonl``, the self-checks' log that
  ``qhelpers progress --hub <hub dir>`` reads.
* **Limits** (``learner_env``, ``memory_limit_preexec``): 2 threads per kernel (``OMP_NUM_THREADS`` and the
  like, which torch follows), torch.compile's C++ builds in the kernel's own process, and a memory limit per
  process (the learner's server and each of its kernels, ``RLIMIT_DATA``): a kernel that goes over it gets a
  ``MemoryError`` (torch: ``can't allocate memory``) in its cell, not the machine's out-of-memory killer.
"""

from __future__ import annotations

import hmac
import os
import pwd
import re
import resource
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Callable, Optional

PASSWORD_ENV = "QHELPERS_HUB_PASSWORD"
PASSWORD_FILE_ENV = "QHELPERS_HUB_PASSWORD_FILE"
USER_PREFIX_ENV = "QHELPERS_HUB_USER_PREFIX"
DEFAULT_USER_PREFIX = "qh-"
MIN_PASSWORD = 8
NAME = re.compile(r"[a-z][a-z0-9_-]{0,19}")
LEARNERS = "learners"  # <hub dir>/learners/<name>/: one folder per learner (qhelpers.progress reads the same layout)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
DEFAULT_MEMORY = "6G"  # per process (QHELPERS_HUB_MEMORY): notebook 06's kernel peaked at 3.7 GB (docs/WORKSHOP.md's sizing)
MEMORY_ENV = "QHELPERS_HUB_MEMORY"  # bytes, set by learner_env; memory_limit_preexec reads it


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be a learner's name (shown on the sign-in page), or ``None`` when it can."""
    if NAME.fullmatch(name):
        return None
    shown = repr(name) if len(name) <= 40 else repr(name[:40] + "...")
    return (
        f"{shown} cannot be a learner name: use 1-20 lowercase letters, digits, '-' or '_', starting with a letter "
        "(no spaces, '/', '..' or other symbols), e.g. ada or ada-l"
    )


def system_user(name: str, prefix: Optional[str] = None) -> str:
    """The system user a learner's processes run as: the prefix (``QHELPERS_HUB_USER_PREFIX``, ``qh-``) and the name."""
    return (prefix if prefix is not None else os.environ.get(USER_PREFIX_ENV, DEFAULT_USER_PREFIX)) + name


def room_password(env: Optional[dict] = None) -> str:
    """The room's password from ``QHELPERS_HUB_PASSWORD`` or ``QHELPERS_HUB_PASSWORD_FILE``; ``SystemExit`` saying what is wrong."""
    env = os.environ if env is None else env
    path = env.get(PASSWORD_FILE_ENV, "").strip()
    if path:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise SystemExit(f"hub: {PASSWORD_FILE_ENV}={path}: {exc.strerror}") from exc
        if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.geteuid():
            raise SystemExit(
                f"hub: {path} must belong to the hub's user and be readable by it alone "
                f"(mode {stat.S_IMODE(st.st_mode):o}): chmod 600 {path}"
            )
        password = Path(path).read_text(encoding="utf-8").strip()
    else:
        password = env.get(PASSWORD_ENV, "")
    if len(password) < MIN_PASSWORD:
        raise SystemExit(
            f"hub: set the room's password (at least {MIN_PASSWORD} characters) in {PASSWORD_ENV}, or in a file "
            f"named by {PASSWORD_FILE_ENV} (chmod 600): nobody can sign in without it"
        )
    return password


def closed_to_learners(paths: list[Path]) -> list[str]:
    """The folders on the way to ``paths`` that other users cannot pass through (no ``o+x``), as ``chmod`` would name them.

    A learner's server runs as the learner, so the course venv's Python (and the interpreter it links to), the
    course's ``student/`` and ``data/`` and the hub's folder must be reachable by any user.
    """
    closed = []
    for path in paths:
        for folder in reversed(Path(path).resolve().parents):
            if not os.stat(folder).st_mode & 0o001 and str(folder) not in closed:
                closed.append(str(folder))
    return closed


def parse_bytes(size: str) -> int:
    """``"3G"``, ``"512M"`` or a number of bytes."""
    size = str(size).strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
    return int(float(size[:-1] if scale > 1 else size) * scale)


def learner_env(env: dict, *, name: str, folder: Path, data: Path, threads: int = 2, memory: int = 0) -> dict:
    """The environment of a learner's server and kernels: thread limits, the learner's name, log and data."""
    env = dict(env)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # a thread waiting for its pair sleeps: on a shared server spinning burns others' CPU
    env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # torch.compile builds in the kernel, not in a pool of workers
    env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder) / ".cache" / "torchinductor")  # in the learner's folder, not /tmp
    env["QHELPERS_LEARNER"] = name
    env["QHELPERS_PROGRESS"] = str(Path(folder) / "progress") + os.sep
    env["QHELPERS_DATA"] = str(data)
    if memory:
        env[MEMORY_ENV] = str(memory)
    return env


def memory_limit_preexec(env: dict, then: Optional[Callable[[], None]] = None) -> Callable[[], None]:
    """A ``preexec_fn`` that caps the process's memory at ``env[QHELPERS_HUB_MEMORY]`` bytes (inherited by its kernels)."""
    limit = int(env.get(MEMORY_ENV) or 0)

    def preexec() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        if then is not None:
            then()

    return preexec


def ensure_system_user(user: str, home: Path) -> pwd.struct_passwd:
    """The system user ``user``, created (no password, home ``home``, not created by useradd) when missing."""
    try:
        return pwd.getpwnam(user)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--home-dir", str(home), "--no-create-home", "--shell", "/bin/bash", "--user-group",
         "--comment", "classroom learner", user],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return pwd.getpwnam(user)


def prepare_folder(folder: Path, course: Path, uid: int, gid: int) -> None:
    """The learner's folder: mode 0700, its own copy of each student notebook it lacks, ``data``, ``progress/``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.parent.chmod(0o711)  # learners pass through <hub dir>/learners/, and cannot list it
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chown(folder, uid, gid)
    folder.chmod(0o700)
    student = folder / "student"
    student.mkdir(exist_ok=True)
    os.chown(student, uid, gid)
    for notebook in sorted((course / "student").glob("*.ipynb")):
        target = student / notebook.name
        if not target.exists():
            shutil.copyfile(notebook, target)
            os.chown(target, uid, gid)
    data = folder / "data"
    if not data.is_symlink():
        data.symlink_to(course / "data")
        os.lchown(data, uid, gid)
    progress = folder / "progress"
    progress.mkdir(exist_ok=True)
    os.chown(progress, uid, gid)


def prepare_learner(name: str, folder: Path, course: Path) -> None:
    """The learner's system user and folder, before their server starts; a failure says what to tell the teacher.

    JupyterHub shows the message on the learner's spawn page ("Spawn failed: ..."): a full disk, for instance,
    reads "No space left on device" with the folder, not a bare traceback.
    """
    try:
        account = ensure_system_user(system_user(name), folder)
        prepare_folder(folder, course, account.pw_uid, account.pw_gid)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"the server could not create the system user for {name!r} ({exc.stderr.strip()}): tell the teacher") from exc
    except OSError as exc:
        raise RuntimeError(f"the server could not prepare {name!r}'s folder {folder}: {exc.strerror}: tell the teacher") from exc


def make_authenticator_class():
    """``RoomAuthenticator`` (built here so that the functions above import without JupyterHub)."""
    from jupyterhub.auth import Authenticator
    from tornado import web
    from traitlets import Unicode

    class RoomAuthenticator(Authenticator):
        """A learner's name and the room's shared password; a name that cannot be a system user is refused, saying why."""

        room_password = Unicode(config=True, help="The room's password (see room_password())")

        async def authenticate(self, handler, data):
            name = self.normalize_username(str(data.get("username", "")))
            problem = name_problem(name)
            if problem:
                raise web.HTTPError(403, problem)
            given = str(data.get("password", "")).encode()
            if not self.room_password or not hmac.compare_digest(given, self.room_password.encode()):
                return None
            return name

    return RoomAuthenticator


def make_spawner_class():
    """``LearnerSpawner``: JupyterHub's ``LocalProcessSpawner``, as the learner's own system user, in their folder."""
    from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
    from tornado import web
    from traitlets import Integer, Unicode

    class LearnerSpawner(LocalProcessSpawner):
        hub_dir = Unicode(config=True, help="The hub's folder: learners' folders are in its learners/")
        course_dir = Unicode(config=True, help="The course folder (its student/ and data/)")
        threads = Integer(2, config=True, help="Threads per kernel (OMP_NUM_THREADS and the like)")

        @property
        def folder(self) -> Path:
            return Path(self.hub_dir) / LEARNERS / self.user.name

        async def start(self):
            try:
                prepare_learner(self.user.name, self.folder, Path(self.course_dir))
            except RuntimeError as exc:  # shown to the learner as it is (JupyterHub's page, not "Unhandled error")
                error = web.HTTPError(500, str(exc))
                error.jupyterhub_message = str(exc)
                raise error from exc
            return await super().start()

        def make_preexec_fn(self, name):
            return memory_limit_preexec(self.get_env(), then=set_user_setuid(system_user(name)))

        def user_env(self, env):
            account = pwd.getpwnam(system_user(self.user.name))
            env.update(USER=account.pw_name, HOME=account.pw_dir, SHELL=account.pw_shell or "/bin/bash")
            return env

        def get_env(self):
            env = super().get_env()
            return learner_env(
                env, name=self.user.name, folder=self.folder, data=Path(self.course_dir) / "data",
                threads=self.threads, memory=int(self.mem_limit or 0),
            )  # fmt: skip

    return LearnerSpawner
