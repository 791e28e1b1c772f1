"""Per-section timing of a notebook for docs/WORKSHOP.md: what each section asks of a room, measured.

For each ``## N. Title`` section of a student copy: its prose (words), its code cells, its exercises, and how long
its cells take to run here (the student copy executed top to bottom with nbclient, blanks left in, errors allowed;
nothing is written back). A session's minutes are then shared between the sections in proportion to
``words / WPM + EXERCISE_MIN per exercise + run time``, the reading pace and exercise time of a room rather than of one
reader, so that the sections add up to the notebook's slot in the day plan.

    python scripts/section_times.py student/01_manual_tensor_quantization.ipynb --slot 60
    python scripts/section_times.py --json build/section_times.json student/0[0-5]_*.ipynb --slot 15,60,45,75,60,45
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

WPM = 120  # a room reads a projected or shared notebook aloud-ish and discusses: slower than one reader's 200
EXERCISE_MIN = 5.0  # one exercise: try, check, a hint or two (the self-checks answer at once)


def _seconds(cell) -> float:
    e = cell.metadata.get("execution", {})
    a, b = e.get("iopub.execute_input"), e.get("shell.execute_reply")
    if not (a and b):
        return 0.0
    return (dt.datetime.fromisoformat(b.replace("Z", "+00:00")) - dt.datetime.fromisoformat(a.replace("Z", "+00:00"))).total_seconds()


def execute(path: Path, timeout: int = 1200):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, record_timing=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb, time.perf_counter() - started


def sections(nb) -> list[dict]:
    out: list[dict] = []
    current = {"title": "(header)", "words": 0, "code": 0, "exercises": 0, "run_s": 0.0}
    out.append(current)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^## (.+)$", cell.source, re.MULTILINE)
            if m:
                current = {"title": m.group(1).strip(), "words": 0, "code": 0, "exercises": 0, "run_s": 0.0}
                out.append(current)
            current["words"] += len(re.findall(r"\w+", re.sub(r"```.*?```", " ", cell.source, flags=re.S)))
        elif cell.cell_type == "code":
            current["code"] += 1
            current["exercises"] += "exercise" in cell.metadata.get("tags", [])
            current["run_s"] += _seconds(cell)
    return [s for s in out if s["words"] or s["code"]]


def share(rows: list[dict], slot: float) -> None:
    weights = [r["words"] / WPM + EXERCISE_MIN * r["exercises"] + r["run_s"] / 60 for r in rows]
    total = sum(weights) or 1.0
    for r, w in zip(rows, weights, strict=True):
        r["raw_min"] = round(w, 1)
        r["min"] = round(slot * w / total)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--slot", default="", help="the session minutes, one per notebook (comma-separated)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    slots = [float(s) for s in args.slot.split(",") if s] or [0.0] * len(args.notebooks)
    result = {}
    for path, slot in zip(args.notebooks, slots, strict=True):
        nb, wall = execute(path)
        rows = sections(nb)
        share(rows, slot or sum(r["words"] / WPM + EXERCISE_MIN * r["exercises"] + r["run_s"] / 60 for r in rows))
        result[path.stem] = {"wall_s": round(wall, 1), "slot": slot, "sections": rows}
        print(f"{path.name}: ran in {wall:.0f} s; slot {slot:g} min; unscaled {sum(r['raw_min'] for r in rows):.0f} min")
        for r in rows:
            print(f"  {r['min']:3d} min  ({r['raw_min']:5.1f})  {r['words']:5d} words  {r['code']:2d} code  {r['exercises']} ex  "
                  f"{r['run_s']:6.1f} s  {r['title']}")
        sys.stdout.flush()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
