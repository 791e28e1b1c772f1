"""The course stands on its own files: no dangling file references, no words about where the course came from.

Checked in notebooks/ (markdown and code cells), README.md, docs/, data/README.md and tests/README.md:

* every markdown link to a local file (``[text](path)``, ``[text](path#anchor)``) points to a file in the
  repository, and an anchor into a markdown file names one of its headings;
* every backticked ``*.md`` path (```docs/WORKSHOP.md```) exists, relative to the repository root or to the
  file that names it (a bare file name may sit anywhere in the repository);
* nothing names the material the course was written from ("the seed's ...", "seed file", "the brief",
  ``shared/``, ``REFERENCE-NUMBERS.md``). ``seed`` as torch's random seed (``qh.setup(seed=0)``) is fine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".ipynb_checkpoints", "student", "build", "dist"}


def _files() -> list[Path]:
    found = sorted((REPO / "notebooks").glob("*.ipynb")) + sorted((REPO / "docs").rglob("*.md"))
    found += [REPO / p for p in ("README.md", "data/README.md", "tests/README.md") if (REPO / p).exists()]
    return found


def _texts(path: Path) -> list[tuple[str, str, bool]]:
    """(where, text, is_markdown) pieces of a file: each notebook cell's source and printed outputs, or the whole file.

    Links and backticked paths are checked in markdown only (in code, ``f(x)[i](y)`` is not a link); the origin
    words everywhere, code comments and outputs included.
    """
    if path.suffix != ".ipynb":
        return [("", path.read_text(encoding="utf-8"), True)]
    nb = json.loads(path.read_text(encoding="utf-8"))
    pieces = []
    for i, cell in enumerate(nb["cells"]):
        pieces.append((f"cell {i}", "".join(cell["source"]), cell["cell_type"] == "markdown"))
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain") or ""
            pieces.append((f"cell {i} output", "".join(text), False))
    return pieces


LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
BACKTICKED_MD = re.compile(r"`([^`\s]*\.md)(?:#[^`\s]*)?`")
ORIGIN_WORDS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\bseed's\b",
        r"\bseed\s+(?:file|course|notebook|repo|repository|project|document|material|text|workflow)s?\b",
        r"\b(?:the|course's|our|your|my)\s+brief\b",
        r"\bbrief's\b",
        r"\bshared/",
        r"REFERENCE-NUMBERS\.md",
    )
]


def _slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _anchors(md_file: Path) -> set[str]:
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", md_file.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {_slug(h) for h in heads}


# Directories that commands write into and git ignores (`make bench` writes results/bench.md): naming a file
# there names an output the reader creates, not material that should be in the repository.
GENERATED_DIRS = ("results/", "build/", "wheelhouse/")


def _exists(target: str, base: Path) -> Path | None:
    if target.startswith(GENERATED_DIRS):
        return REPO / target
    for root in (base, REPO):
        p = (root / target).resolve()
        if p.exists():
            return p
    if "/" not in target:
        for p in REPO.rglob(target):
            if not SKIP_DIRS & set(p.relative_to(REPO).parts):
                return p
    return None


def problems_in(path: Path) -> list[str]:
    """Every dangling reference and origin word in one file, as readable lines."""
    base = path.parent
    rel = path.relative_to(REPO)
    found = []
    for where, text, is_markdown in _texts(path):
        at = f"{rel} {where}".strip()
        for m in LINK.finditer(text if is_markdown else ""):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                continue  # web address, mailto:, or an anchor within the same page
            file_part, _, anchor = target.partition("#")
            resolved = _exists(file_part, base)
            if resolved is None:
                found.append(f"{at}: link to {target!r}, which is not in the repository")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                found.append(f"{at}: link to {target!r}: {resolved.name} has no heading with anchor #{anchor}")
        for m in BACKTICKED_MD.finditer(text if is_markdown else ""):
            if _exists(m.group(1), base) is None:
                found.append(f"{at}: names `{m.group(1)}`, which is not in the repository")
        for pattern in ORIGIN_WORDS:
            for m in pattern.finditer(text):
                line = text[: m.start()].count("\n") + 1
                found.append(f"{at} line {line}: {m.group(0)!r} (the course names no material outside itself)")
    return found




def _params():
    for path in _files():
        rel = str(path.relative_to(REPO))
        yield pytest.param(path, id=rel)


@pytest.mark.parametrize("path", list(_params()))
def test_no_dangling_references_and_no_origin_words(path):
    problems = problems_in(path)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_what_it_should(tmp_path, monkeypatch):
    page = REPO / "docs" / "REFERENCES.md"
    assert page.exists()
    assert "notebook-00--start-here" in _anchors(page)
    fake = REPO / "docs" / "_probe_test_references.md"
    fake.write_text(
        "See [the notes](missing/NOTES.md), [refs](REFERENCES.md#no-such-heading), [ok](REFERENCES.md#notebook-01--manual-tensor-quantization),\n"
        "`REFERENCE-NUMBERS.md`, `docs/WORKSHOP.md`, [web](https://pytorch.org), the seed's workflow, the brief,\n"
        "and torch's random seed (`seed=0`), which is fine.\n",
        encoding="utf-8",
    )
    try:
        problems = "\n".join(problems_in(fake))
    finally:
        fake.unlink()
    assert "missing/NOTES.md" in problems and "#no-such-heading" in problems
    assert "REFERENCE-NUMBERS.md" in problems and "seed's" in problems and "the brief" in problems
    assert "notebook-01" not in problems and "WORKSHOP" not in problems and "pytorch.org" not in problems
    assert "seed=0" not in problems


def test_notebook_00_section_does_not_give_exercise_4_away():
    """Notebook 00 links its REFERENCES section above exercise 4, and the workshop bundle ships REFERENCES: the
    section names no count of changed predictions and no INT8 accuracy of exercise 4's model (those are in
    docs/ANSWERS.md)."""
    text = (REPO / "docs" / "REFERENCES.md").read_text(encoding="utf-8")
    start = text.index("## Notebook 00")
    section = text[start : text.index("\n## ", start + 1)]
    assert not re.search(r"\bchanged\s+[1-9]", section), "a count (not the clip-only 0) of changed predictions in notebook 00's section"
    assert not re.search(r"\b(?:98|99)\.\d\s*%", section), "an INT8 accuracy in notebook 00's section"
    assert not re.search(r"\b\d+\s+to\s+\d+\s+over\s+nine\s+draws\b", section)
