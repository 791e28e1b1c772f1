"""make slides (scripts/build_slides.py): a short reveal.js deck per notebook from the cells it marks, offline."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_slides", REPO / "scripts" / "build_slides.py")
bs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bs)
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NB03 = REPO / "notebooks" / "03_post_training_quantization.ipynb"


def _marks(path: Path) -> list[int]:
    return [i for i, c in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]) if bs.marked(c)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_every_notebook_marks_a_short_deck_that_opens_with_its_title(path):
    marks = _marks(path)
    assert 4 <= len(marks) <= 8, marks  # short: the title, the key figures or the flow, the decision, the summary
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert marks[0] == 0 and "".join(cells[0]["source"]).startswith("# "), "the deck opens with the notebook's title cell"
    assert any("Summary" in "".join(cells[i]["source"])[:40] for i in marks), "the deck ends on the summary (the decision)"
    student = REPO / "student" / path.name
    assert _marks(student) == marks, "student copies keep the marks (make student)"


@pytest.mark.slow
def test_a_deck_is_its_marked_cells_outputs_only_and_needs_no_network(tmp_path):
    decks = bs.build([NB03], tmp_path)
    (deck, title, n), = decks
    assert n == len(_marks(NB03)) and title.startswith("03 ")
    page = deck.read_text(encoding="utf-8")
    assert page.count('<section') == 2 * n  # nbconvert nests each slide as <section><section> (a column of one)
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("reveal.js/") for s in sources), sources
    for s in sources:
        assert (tmp_path / s).is_file(), s
    assert "post_training_quantize(" not in page, "code cells show their output only"
    assert page.count("data:image/png;base64,") >= 2, "the two figures the notebook marks"
    assert '<a href="03_post_training_quantization.slides.html">' in (tmp_path / "index.html").read_text()


def test_a_notebook_that_marks_nothing_is_refused(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Nothing marked")])
    path = tmp_path / "99_unmarked.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="marks no cell for slides"):
        bs.deck(path, tmp_path)
    with pytest.raises(ValueError, match="nothing to build"):
        bs.build([], tmp_path)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
def test_in_chromium_offline_each_deck_has_its_slides_and_shows_its_figure(tmp_path):
    from test_html import _chromium_or_skip, offline_route

    playwright_api = _chromium_or_skip()
    decks = bs.build(NOTEBOOKS, tmp_path)
    blocked: list[str] = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.route("**/*", offline_route(blocked))  # the deck must need nothing but its folder
            for deck, _, n in decks:
                page.goto(deck.as_uri(), wait_until="load")
                assert page.evaluate("typeof Reveal !== 'undefined' && Reveal.isReady()"), deck.name
                assert page.evaluate("Reveal.getTotalSlides()") == n, deck.name
                title = page.locator("section.present h1").first
                assert title.is_visible() and title.inner_text().strip()[:2] == deck.name[:2], deck.name
            page.goto(decks[3][0].as_uri() + "#/1", wait_until="load")  # 03, slide 2: the calibration figure
            page.wait_for_timeout(300)
            figure = page.locator("section.present img").first
            size = figure.evaluate("img => [img.complete, img.naturalWidth, img.getBoundingClientRect().width]")
            assert size[0] and size[1] > 300 and size[2] > 300, size
        finally:
            browser.close()
    assert blocked == [], f"a deck tried to fetch: {blocked}"
