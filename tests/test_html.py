"""scripts/build_html.py (`make html`): static pages of the notebooks and an index linking them in order."""

from __future__ import annotations

import html
import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_html", REPO / "scripts" / "build_html.py")
bh = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bh)

NB00 = REPO / "notebooks" / "00_start_here.ipynb"


def _title_and_hidden(path: Path) -> tuple[str, int]:
    """The notebook's '# ' title and its number of hidden-source cells, read straight from the JSON."""
    nb = json.loads(path.read_text())
    title = next(
        line[2:].strip()
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
        for line in "".join(c["source"]).splitlines()
        if line.startswith("# ")
    )
    hidden = sum(bool(c["metadata"].get("jupyter", {}).get("source_hidden")) for c in nb["cells"])
    return title, hidden


def test_one_notebook_builds_with_title_index_and_folded_solutions(tmp_path):
    title, hidden = _title_and_hidden(NB00)
    assert bh.main(["-o", str(tmp_path), str(NB00)]) == 0
    page = (tmp_path / "00_start_here.html").read_text(encoding="utf-8")
    assert f"<title>{html.escape(title)}</title>" in page
    assert html.escape(title) in page.split("</head>", 1)[1]  # in the body too, as the notebook's heading
    # Exercise solutions stay folded, one <details> per hidden cell, as they are in JupyterLab.
    assert page.count('<details class="qh-solution">') == hidden
    # "Next: 01 ..." links to the next page, not to a notebook file that is not in the site.
    assert 'href="01_manual_tensor_quantization.html"' in page
    assert not re.search(r'href="\d\d_\w+\.ipynb', page)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert re.search(rf'<li><a href="00_start_here.html">{re.escape(html.escape(title))}</a></li>', index)


def test_index_keeps_the_given_order():
    pages = [(Path("01_b.html"), "B & co"), (Path("00_a.html"), "A")]
    index = bh.index_html(pages)
    assert index.index("01_b.html") < index.index("00_a.html")
    assert "B &amp; co" in index


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="is not an existing .ipynb"):
        bh.convert(tmp_path / "missing.ipynb", tmp_path)
    with pytest.raises(ValueError, match="notebooks is empty"):
        bh.build([], tmp_path)
