"""One classroom-server learner's load: peak memory and CPU-seconds per notebook, with the hub's settings.

    python scripts/hub_sizing.py                       # notebooks 00-05, 2 threads, JSON to results/hub_sizing.json
    python scripts/hub_sizing.py --threads 1 06 07 08  # others

Each notebook runs from a clean kernel, top to bottom (nbclient, as "Run All" does), in a temporary copy of the
course's solution notebooks (the committed notebooks are never written), in a kernel started with the environment
the classroom server gives each learner (``hub/classroom.py``'s ``learner_env``: thread limits, compile threads,
``QHELPERS_DATA``) and its per-process memory limit. Per notebook it reports the kernel's peak resident memory
(``ru_maxrss`` of the reaped kernel process) and its CPU-seconds (user + system), plus the wall time, which
depends on the machine's load (CPU-seconds and peak memory much less).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hub"))

from classroom import DEFAULT_MEMORY, learner_env, memory_limit_preexec, parse_bytes  # noqa: E402

ONE = r"""
import json, resource, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient
path = Path(sys.argv[1])
nb = nbformat.read(path, as_version=4)
t0 = time.monotonic()
NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
wall = time.monotonic() - t0
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel (and anything it started), reaped at shutdown
print(json.dumps({"wall_s": round(wall, 1), "cpu_s": round(kids.ru_utime + kids.ru_stime, 1), "peak_rss_mb": round(kids.ru_maxrss / 1024)}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", default=["00", "01", "02", "03", "04", "05"], help="notebook numbers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", default=DEFAULT_MEMORY, help="memory limit per process, as on the hub")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "hub_sizing.json")
    args = parser.parse_args(argv)
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hub-sizing-") as tmp:
        course = Path(tmp)
        shutil.copytree(REPO / "notebooks", course / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        (course / "data").symlink_to(REPO / "data")
        env = learner_env(dict(os.environ), name="sizing", folder=course, data=REPO / "data", threads=args.threads, memory=parse_bytes(args.memory))
        env.pop("QHELPERS_PROGRESS", None)  # nbclient runs log nothing anyway
        for number in args.notebooks:
            (path,) = sorted((course / "notebooks").glob(f"{number}_*.ipynb"))
            proc = subprocess.run(
                [sys.executable, "-c", ONE, str(path)], cwd=course, env=env, capture_output=True, text=True,
                preexec_fn=memory_limit_preexec(env), check=False,
            )  # fmt: skip
            if proc.returncode:
                print(f"{path.name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            row = {"notebook": path.stem, **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{path.stem}: {row['cpu_s']} CPU-s, peak {row['peak_rss_mb']} MB, {row['wall_s']} s wall", flush=True)
    load = os.getloadavg()
    result = {
        "threads": args.threads,
        "memory_limit": args.memory,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "notebooks": rows,
        "total_cpu_s": round(sum(r["cpu_s"] for r in rows), 1),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "notebooks"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
