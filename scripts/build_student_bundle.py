"""A copy of the course to hand out before a workshop: the student notebooks without their solutions.

    python scripts/build_student_bundle.py                  # build/student-bundle/quantization-course/ and its .zip
    python scripts/build_student_bundle.py -o /tmp/bundle   # another output folder

The bundle holds what a learner needs to set up and run the course (``qhelpers/``, ``data/``, ``student/``,
``pyproject.toml``, ``requirements.txt``, ``requirements-deploy.txt``, ``LICENSE``, ``docs/REFERENCES.md``,
``docs/API.md``, ``scripts/lab_settings.py``, a Makefile with ``setup``, ``setup-08``, ``lab``, ``doctor`` and
``progress`` taken from the course's own, and a short README) and leaves out what gives the answers away:
``notebooks/`` (the solutions), ``docs/ANSWERS.md``, ``docs/WORKSHOP.md`` (the exit quiz's key), the tests and
the build scripts. The student copies' note about where the answers are says the teacher hands them out.

What it does not hide: the self-checks in ``qhelpers/`` compute the right answers to compare with the learner's,
so a learner who reads the package can find them. It keeps a room honest, not a graded exam.

The bundle is written into a temporary folder beside the output and renamed into place when complete, so an
interrupted build leaves no half-written bundle; an existing bundle is replaced.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qhelpers.notebooks import STUDENT_NOTE  # noqa: E402  (the note the student copies carry)

NAME = "quantization-course"
COPY = ["qhelpers", "data", "student", "pyproject.toml", "requirements.txt", "requirements-deploy.txt", "LICENSE",
        "docs/REFERENCES.md", "docs/API.md", "scripts/lab_settings.py"]
LEFT_OUT = ["notebooks", "docs/ANSWERS.md", "docs/WORKSHOP.md", "tests"]
MAKE_TARGETS = ["setup", "$(STAMP)", "setup-08", "lab", "doctor", "progress"]
BUNDLE_NOTE = (
    "\n\n> **Student copy.** Each exercise has blanks (`...`) to fill in, and the self-check after it says "
    "**correct** or **not yet** with a hint. Your teacher has the answers, with reasoning, and hands them out "
    "after the workshop."
)
README = """# INT8 quantization in PyTorch: the learner's copy

This folder is the course without its solutions, for a workshop. You work in `student/`.

Set up and open the course (Python 3.11; about 7 GB of disk; the first run installs for 10-30 minutes):

    make lab

`make doctor` checks this laptop in two minutes (send its whole output to your teacher if something is wrong);
`make setup-08` installs notebook 08's ExecuTorch where `make lab` could not; `make progress` shows your
self-check results. Your teacher has the answers and the full notebooks and hands them out after the workshop.
"""


_RULE = re.compile(r"^([^\s#=:][^=:]*?):(?!=)")  # "target: prerequisites", not "NAME := value"
_HEAD_VARS = ("PYTHON ", "VENV ", "PY ", "STAMP ")


def makefile_for_bundle(makefile: str) -> str:
    """The course's Makefile cut down to the learner's targets: its header variables and the blocks of
    ``MAKE_TARGETS`` (a block is the lines between blank lines; its comments and variables stay with it)."""
    head, kept, found = [], [], set()
    for block in (b for b in makefile.split("\n\n") if b.strip()):
        lines = block.splitlines()
        rules = [m.group(1).strip() for m in map(_RULE.match, lines) if m]
        if not rules:
            head += [ln for ln in lines if ln.startswith(_HEAD_VARS)]
        elif rules[0] in MAKE_TARGETS:
            kept.append(block)
            found.add(rules[0])
    missing = [t for t in MAKE_TARGETS if t not in found]
    if missing or not head:
        raise ValueError(f"the course's Makefile has no block for {missing or 'its header variables'}; update MAKE_TARGETS")
    phony = ".PHONY: " + " ".join(t for t in MAKE_TARGETS if not t.startswith("$"))
    intro = "# The learner's copy of the course: `make lab` sets up and opens it (student/00_start_here.ipynb)."
    return "\n\n".join([intro, "\n".join(head), phony, *kept]) + "\n"


def _student_notebook(path: Path) -> str:
    nb = json.loads(path.read_text())
    replaced = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        if STUDENT_NOTE in text:
            cell["source"] = text.replace(STUDENT_NOTE, BUNDLE_NOTE)
            replaced += 1
    if replaced != 1:
        raise ValueError(f"{path.name}: expected the student note once, found it {replaced} times; run `make student` first")
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def build(out_dir: Path, *, repo: Path = REPO) -> Path:
    """Write ``out_dir/quantization-course/`` and ``out_dir/quantization-course.zip``; return the folder."""
    student = sorted((repo / "student").glob("[0-9][0-9]_*.ipynb"))
    if not student:
        raise FileNotFoundError(f"no student copies in {repo / 'student'}: run `make student` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".bundle-") as tmp:
        root = Path(tmp) / NAME
        for rel in COPY:
            src = repo / rel
            if not src.exists():
                raise FileNotFoundError(f"{src} is missing from the course folder")
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
            else:
                shutil.copy2(src, dst)
        for path in student:
            (root / "student" / path.name).write_text(_student_notebook(path))
        (root / "Makefile").write_text(makefile_for_bundle((repo / "Makefile").read_text()))
        (root / "README.md").write_text(README)
        archive = shutil.make_archive(str(Path(tmp) / NAME), "zip", root_dir=tmp, base_dir=NAME)
        final, final_zip = out_dir / NAME, out_dir / f"{NAME}.zip"
        if final.exists():
            shutil.rmtree(final)
        Path(archive).replace(final_zip)
        root.replace(final)
    return final


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO / "build" / "student-bundle", help="output folder")
    args = parser.parse_args(argv)
    try:
        folder = build(args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"student-bundle: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {folder}/ and {folder}.zip (no notebooks/, no docs/ANSWERS.md, no docs/WORKSHOP.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
