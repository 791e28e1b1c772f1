# The classroom server (`make hub`): JupyterHub for a room, each learner signed in with a name and the room's
# password, running as their own system user in their own folder (hub/classroom.py has the parts and says why).
#
# Set by the environment (make hub passes its variables on):
#   QHELPERS_HUB_PASSWORD or QHELPERS_HUB_PASSWORD_FILE  the room's password (required; the file chmod 600)
#   QHELPERS_HUB_DIR      the hub's folder: learners' folders, the hub's database and secret (/srv/qhelpers-hub)
#   QHELPERS_HUB_IP, QHELPERS_HUB_PORT  where learners connect (all interfaces, 8000); on 127.0.0.1 the hub's
#   API and the proxy's API listen on QHELPERS_HUB_API_PORT (8081) and QHELPERS_HUB_PROXY_API_PORT (8001)
#   QHELPERS_HUB_MEMORY   memory of a learner (6G): their server and kernels together (a cgroup, when the server has
#                         one: see hub/classroom.py) and each process alone; QHELPERS_HUB_THREADS threads per kernel (2)
#   QHELPERS_HUB_IDLE     seconds before an idle learner's server is stopped (3600); its kernels after 2700
import os
import sys
from pathlib import Path

HUB = Path(__file__).resolve().parent
COURSE = HUB.parent
sys.path.insert(0, str(HUB))

from classroom import DEFAULT_MEMORY, KERNEL_STARTUP, closed_to_learners, make_authenticator_class, make_spawner_class, parse_bytes, room_password  # noqa: E402

c = get_config()  # noqa: F821 - JupyterHub defines it when it loads this file

hub_dir = Path(os.environ.get("QHELPERS_HUB_DIR", "/srv/qhelpers-hub")).resolve()
state = hub_dir / "state"  # the hub's database, cookie secret and proxy pid: root only
state.mkdir(parents=True, exist_ok=True)
hub_dir.chmod(0o711)
state.chmod(0o700)
closed = closed_to_learners([Path(sys.executable).resolve(), COURSE / "student", COURSE / "data", KERNEL_STARTUP, hub_dir])
if closed:
    raise SystemExit(
        f"hub: each learner runs as their own user, and no other user can pass through {', '.join(closed)} "
        f"(where the course venv's Python, student/, data/ or the hub's folder are): chmod o+x {' '.join(closed)}, "
        "or make the course venv from a Python outside them (make setup PYTHON=/usr/bin/python3.11)"
    )
idle = int(os.environ.get("QHELPERS_HUB_IDLE", "3600"))

c.JupyterHub.ip = os.environ.get("QHELPERS_HUB_IP", "")
c.JupyterHub.port = int(os.environ.get("QHELPERS_HUB_PORT", "8000"))
c.JupyterHub.hub_port = int(os.environ.get("QHELPERS_HUB_API_PORT", "8081"))  # the hub's own API, on 127.0.0.1
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('QHELPERS_HUB_PROXY_API_PORT', '8001')}"
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every learner's server
c.JupyterHub.cleanup_proxy = True
c.ConfigurableHTTPProxy.command = [str(HUB / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")

c.JupyterHub.authenticator_class = make_authenticator_class()
c.Authenticator.room_password = room_password()
c.Authenticator.allow_all = True  # anyone with the room's password and an acceptable name

c.JupyterHub.spawner_class = make_spawner_class()
c.Spawner.hub_dir = str(hub_dir)
c.Spawner.course_dir = str(COURSE)
c.Spawner.threads = int(os.environ.get("QHELPERS_HUB_THREADS", "2"))
c.Spawner.mem_limit = parse_bytes(os.environ.get("QHELPERS_HUB_MEMORY", DEFAULT_MEMORY))
c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]  # the course venv's: its kernel is the course's
c.Spawner.notebook_dir = "~"  # the learner's folder (their home)
c.Spawner.default_url = "/lab/tree/student/00_start_here.ipynb"
c.Spawner.args = [
    # A kernel idle 45 minutes is shut down, even with its notebook open in a tab (JupyterLab keeps a closed
    # notebook's kernel running): a learner holds the busy kernel and at most the previous notebook's.
    f"--MappingKernelManager.cull_idle_timeout={min(2700, idle)}",
    "--MappingKernelManager.cull_connected=True",
    "--MappingKernelManager.cull_interval=60",
]
c.Spawner.http_timeout = 120  # a busy room: the server's first start imports a lot
c.Spawner.start_timeout = 120

# Idle culling: a learner's server with no activity for QHELPERS_HUB_IDLE seconds is stopped (their folder stays).
c.JupyterHub.services = [
    {"name": "idle-culler", "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={idle}", "--cull-every=60"]},
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"], "services": ["idle-culler"]},
]
