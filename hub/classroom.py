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
* **Limits** (``learner_env``, ``Cgroups``, ``memory_limit_preexec``): 2 threads per kernel (``OMP_NUM_THREADS``
  and the like, which torch follows), torch.compile's C++ builds in the kernel's own process, and
  ``QHELPERS_HUB_MEMORY`` (6 GB) twice over:

  - **per learner**: the learner's server and all its kernels together, in their own cgroup
    ``qhelpers-hub/<name>`` (cgroup v2's ``memory.max`` where ``/sys/fs/cgroup`` has the memory controller, else
    cgroup v1's ``memory.limit_in_bytes`` under the hub's own memory group), made before the server starts, the
    server moved into it before it becomes the learner, removed when the hub stops the server. Each learner's
    group also gets an equal CPU share (v2 ``cpu.weight``, v1 ``cpu.shares``), so a learner with three busy
    kernels gets no more CPU than one with one. When the sum goes over the limit, the kernel's out-of-memory
    killer kills the learner's largest process (a kernel; the server is far smaller): JupyterLab says the kernel
    died and restarts it. Other learners are not touched. Without a usable cgroup the hub says so once in its
    log and keeps the per-process limit alone.
  - **per process** (``RLIMIT_DATA``, the first line of defence): a kernel that asks for more gets a
    ``MemoryError`` (torch: ``can't allocate memory``) in its cell, and keeps its variables.

* **After a restart** (``hub/kernel_startup.py``, the kernels' ``PYTHONSTARTUP``): a ``NameError`` keeps its
  traceback and adds when the kernel started and how many cells it has run since, and that a restart or a stopped
  server forgets variables, not files (*Run > Run All Above Selected Cell*).
"""

from __future__ import annotations

import errno
import hmac
import os
import pwd
import re
import resource
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
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
CGROUP_ROOT = Path("/sys/fs/cgroup")
HUB_GROUP = "qhelpers-hub"  # the learners' cgroups: qhelpers-hub/<name>
KERNEL_STARTUP = Path(__file__).resolve().parent / "kernel_startup.py"  # the kernels' PYTHONSTARTUP


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
    env["PYTHONSTARTUP"] = str(KERNEL_STARTUP)  # IPython runs it in each kernel: a NameError says when the kernel started
    if memory:
        env[MEMORY_ENV] = str(memory)
    return env


@dataclass(frozen=True)
class Cgroups:
    """Where the learners' cgroups go: ``version`` 2 or 1 with the parent folders ``bases``, or 0 and ``why`` not."""

    version: int
    bases: tuple = ()  # v2: (<root>/qhelpers-hub,); v1: (<memory group of the hub>/qhelpers-hub[, <cpu group>/qhelpers-hub])
    why: str = ""

    def groups(self, name: str) -> list[Path]:
        return [base / name for base in self.bases]

    def describe(self, memory: int) -> str:
        """The hub log's line about the per-learner limit."""
        if not self.version:
            return (f"no per-learner memory limit: {self.why}; each process of a learner keeps its own limit of "
                    f"{memory / 2**30:g} GB (RLIMIT_DATA), so a learner with three kernels can hold three times that")  # fmt: skip
        where = " and ".join(str(base / "<name>") for base in self.bases)
        return f"each learner's server and kernels share {memory / 2**30:g} GB (cgroup v{self.version}: {where})"


def find_cgroups(root: Path = CGROUP_ROOT, self_cgroup: Optional[str] = None) -> Cgroups:
    """cgroup v2 at ``root`` with the memory controller, else cgroup v1's memory hierarchy (the hub's own group), else none.

    ``self_cgroup`` is the hub's ``/proc/self/cgroup``. In v1 the learners' groups are children of the hub's own
    memory group (a limit on the hub's service then covers its learners too); in v2 they are under the root, where
    a child group can hold processes and the memory controller.
    """
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split() and os.access(root, os.W_OK):
        return Cgroups(2, (root / HUB_GROUP,))
    if self_cgroup is None:
        try:
            self_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            self_cgroup = ""
    own = {}
    for line in self_cgroup.splitlines():  # "4:memory:/system.slice/hub.service"
        _, kinds, path = line.split(":", 2)
        for kind in kinds.split(","):
            own[kind] = path.lstrip("/")
    bases = []
    for kind, control in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.shares")):
        group = root / kind / own.get(kind, "")
        if kind in own and (group / control).exists() and os.access(group, os.W_OK):
            bases.append(group / HUB_GROUP)
        elif kind == "memory":
            v2 = "cgroup v2 without the memory controller" if controllers.exists() else "no cgroup v2"
            return Cgroups(0, why=f"{v2} at {root}, and no cgroup v1 memory group the hub can write ({root / 'memory'})")
    return Cgroups(1, tuple(bases))


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:  # one write(2): a cgroup file takes one value per write
        f.write(value)


def make_learner_groups(cgroups: Cgroups, name: str, memory: int) -> list[Path]:
    """The learner's cgroups (made when missing) with their memory limit and an equal CPU share; the folders."""
    groups = cgroups.groups(name)
    if cgroups.version == 2:
        root, base = cgroups.bases[0].parent, cgroups.bases[0]
        wanted = [c for c in ("memory", "cpu") if c in (root / "cgroup.controllers").read_text().split()]
        for parent in (root, base):
            parent.mkdir(exist_ok=True)
            have = (parent / "cgroup.subtree_control").read_text().split() if (parent / "cgroup.subtree_control").exists() else []
            missing = " ".join("+" + c for c in wanted if c not in have)
            if missing:
                _write(parent / "cgroup.subtree_control", missing)
        group = groups[0]
        group.mkdir(exist_ok=True)
        _write(group / "memory.max", str(memory))
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")  # a learner's kernel swapping slows the whole room
        if "cpu" in wanted:
            _write(group / "cpu.weight", "100")
        return groups
    for group in groups:
        group.mkdir(parents=True, exist_ok=True)
    limits = [groups[0] / "memory.limit_in_bytes", groups[0] / "memory.memsw.limit_in_bytes"]  # memsw: memory and swap
    limits = [f for f in limits if f == limits[0] or f.exists()]
    try:  # the kernel keeps memsw >= memory: a lower limit goes first, a higher one (a group left by a killed hub) last
        for f in limits:
            _write(f, str(memory))
    except OSError:
        for f in reversed(limits):
            _write(f, str(memory))
    for group in groups[1:]:
        _write(group / "cpu.shares", "1024")
    return groups


def remove_learner_groups(groups: list[Path]) -> list[Path]:
    """Removes the learner's cgroups (and ``qhelpers-hub`` once empty); the groups still busy (processes in them)."""
    busy = []
    for group in groups:
        try:
            group.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            busy.append(group)
            continue
        try:
            group.parent.rmdir()  # qhelpers-hub itself, when it was the last learner's
        except OSError:
            pass
    return busy


def memory_limit_preexec(env: dict, then: Optional[Callable[[], None]] = None, groups: tuple = ()) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the process into the learner's cgroups ``groups`` and caps its memory at
    ``env[QHELPERS_HUB_MEMORY]`` bytes (its kernels inherit both), then runs ``then`` (the switch to the learner)."""
    limit = int(env.get(MEMORY_ENV) or 0)

    def preexec() -> None:
        for group in groups:
            _write(Path(group) / "cgroup.procs", str(os.getpid()))
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
    import asyncio

    from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
    from tornado import web
    from traitlets import Integer, Unicode

    class LearnerSpawner(LocalProcessSpawner):
        hub_dir = Unicode(config=True, help="The hub's folder: learners' folders are in its learners/")
        course_dir = Unicode(config=True, help="The course folder (its student/ and data/)")
        threads = Integer(2, config=True, help="Threads per kernel (OMP_NUM_THREADS and the like)")

        cgroups = None  # found at the first start (find_cgroups), said once in the hub's log
        groups = ()  # this learner's cgroups while their server runs

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
            memory = int(self.mem_limit or 0)
            if memory:
                cls = type(self)
                if cls.cgroups is None:
                    cls.cgroups = find_cgroups()
                    (self.log.info if cls.cgroups.version else self.log.warning)("classroom: %s", cls.cgroups.describe(memory))
                if cls.cgroups.version:
                    try:
                        self.groups = tuple(make_learner_groups(cls.cgroups, self.user.name, memory))
                    except OSError as exc:
                        self.log.warning("classroom: no cgroup for %s (%s): their processes keep the per-process limit alone", self.user.name, exc)
                        self.groups = ()
            return await super().start()

        async def stop(self, now=False):
            await super().stop(now=now)
            if self.groups:  # the server is gone; its kernels follow it within seconds
                for attempt in range(40):
                    busy = remove_learner_groups(list(self.groups))
                    if not busy:
                        break
                    if attempt == 10:  # 5 s after the server: what is left of the learner's (a stray kernel) is killed
                        for group in busy:
                            for pid in (group / "cgroup.procs").read_text().split():
                                try:
                                    os.kill(int(pid), signal.SIGKILL)
                                except ProcessLookupError:
                                    pass
                    await asyncio.sleep(0.5)
                else:
                    self.log.warning("classroom: %s's cgroups still hold processes: %s", self.user.name, ", ".join(map(str, busy)))
                self.groups = ()

        def make_preexec_fn(self, name):
            return memory_limit_preexec(self.get_env(), then=set_user_setuid(system_user(name)), groups=self.groups)

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
