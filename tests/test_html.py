"""scripts/build_html.py (`make html`): static pages of the notebooks and an index linking them in order."""

from __future__ import annotations

import html
import importlib.util
import json
import re
from pathlib import Path

import nbformat
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


# --------------------------------------------------------------------------- offline: formulas and widgets

NB01 = REPO / "notebooks" / "01_manual_tensor_quantization.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
EXTERNAL = re.compile(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//', re.IGNORECASE)


def test_formulas_are_prerendered_to_mathml_outside_code():
    formulas: dict[str, str] = {}
    md = "Scale: $$\\frac{\\max - \\min}{255}$$ and $x_q$ inline, but not `$HOME` or\n```\necho $PATH $x$\n```\n"
    out = bh.prerender_math(md, formulas)
    assert len(formulas) == 2 and "$" not in out.split("`")[0]
    assert "`$HOME`" in out and "echo $PATH $x$" in out
    block, inline = formulas.values()
    assert block.startswith("<math") and 'display="block"' in block and "<mfrac>" in block
    assert 'display="inline"' in inline and "<msub>" in inline
    assert "\\_" not in bh.latex_to_mathml("\\text{zero\\_point}", display=False)


def test_widget_snapshot_from_saved_state_and_fallbacks():
    png = "iVBORw0KGgo="
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_row", "IPY_MODEL_out"]}},
        "row": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_bits", "IPY_MODEL_scheme", "IPY_MODEL_bar"]}},
        "bits": {"model_name": "IntSliderModel", "state": {"description": "bits", "value": 8}},
        "scheme": {"model_name": "DropdownModel", "state": {"description": "scheme", "_options_labels": ["affine", "symmetric"], "index": 1}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 16.0, "max": 16.0}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [{"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}}]}},
    }
    snap = bh.widget_snapshot("box", state)
    assert "bits: <b>8</b>" in snap and '<span class="qh-selected">symmetric</span>' in snap
    assert '<progress value="16.0" max="16.0">' in snap and f"data:image/png;base64,{png}" in snap
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {bh.WIDGET_STATE: {"state": state}}
    cell = nbformat.v4.new_code_cell("w")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "box"}, "text/plain": "VBox(...)"}),
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "unsaved"}, "image/png": png, "text/plain": "x"}),
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "unsaved"}, "text/plain": "x"}),
    ]
    nb.cells = [cell]
    assert bh.static_widgets(nb) == 3 and "widgets" not in nb.metadata
    htmls = [o.data["text/html"] for o in cell.outputs]
    assert all(WIDGET_VIEW not in o.data and "make lab" in h for o, h in zip(cell.outputs, htmls))
    assert "bits: <b>8</b>" in htmls[0] and f"base64,{png}" in htmls[1] and "state was not saved" in htmls[2]


def test_notebook_01_page_is_offline_with_its_formula_and_the_explorer_figure(tmp_path):
    nb = json.loads(NB01.read_text())
    widget_cells = sum(any(WIDGET_VIEW in o.get("data", {}) for o in c.get("outputs", [])) for c in nb["cells"])
    assert bh.main(["-o", str(tmp_path), str(NB01)]) == 0
    page = (tmp_path / NB01.with_suffix(".html").name).read_text(encoding="utf-8")
    assert "$$" not in page and "QHMATH" not in page
    assert page.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">') >= 1
    assert not EXTERNAL.search(page), f"the page loads something from the internet: {EXTERNAL.search(page).group(0)}"
    assert "mathjax" not in page.lower() and "require.min.js" not in page
    assert widget_cells >= 1 and page.count('<div class="qh-widget">') == widget_cells
    assert "qh-widget-figure" in page  # the explorer's histogram, from the state saved with the notebook
    assert WIDGET_VIEW not in page


# --------------------------------------------------------------------------- in Chromium, offline

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "results" / "screenshots"


def _chromium_or_skip():
    import os

    if os.environ.get("QHELPERS_SKIP_BROWSER", "0") not in ("", "0"):
        pytest.skip("QHELPERS_SKIP_BROWSER is set")
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI: run scripts/ensure_chromium.sh")
        pytest.skip(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh (or set QHELPERS_SKIP_BROWSER=1)")
    return pytest.importorskip("playwright.sync_api", reason="pip install -r requirements.txt (playwright)")


def offline_route(blocked: list[str]):
    """A Playwright route handler that lets a page load only itself (file: and data: URLs) and records the rest."""

    def offline(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    return offline


@pytest.mark.browser
def test_in_chromium_offline_the_formula_renders_and_the_widget_figure_shows(tmp_path):
    playwright_api = _chromium_or_skip()
    assert bh.main(["-o", str(tmp_path), str(NB01)]) == 0
    page_url = (tmp_path / NB01.with_suffix(".html").name).as_uri()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    blocked: list[str] = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.route("**/*", offline_route(blocked))  # the page must need nothing but itself
            page.goto(page_url, wait_until="load")
            math = page.locator('math[display="block"]').first
            math.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "html_01_formula.png"))
            # MathML laid out as math: a fraction stacks numerator over denominator, so it is taller
            # than one line of the formula's plain text, and no raw TeX is visible.
            frac = math.locator("mfrac").first.bounding_box()
            text = math.locator("mtext").first.bounding_box()
            assert frac and text and frac["height"] > 1.6 * text["height"], (frac, text)
            assert "\\frac" not in page.inner_text("body") and "$$" not in page.inner_text("body")
            figure = page.locator(".qh-widget img.qh-widget-figure").first
            figure.scroll_into_view_if_needed()
            figure.screenshot(path=str(SCREENSHOTS / "html_01_explorer_figure.png"))
            size = figure.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
            assert size[0] and size[1] > 100 and size[2] > 100, size
        finally:
            browser.close()
    assert blocked == [], f"the static page tried to fetch: {blocked}"


@pytest.mark.browser
def test_in_chromium_a_self_check_verdict_reads_without_an_emoji_font(tmp_path):
    """The verdict is a coloured word (green "correct", red "not yet"), not only a ✅/❌ that may draw as a box."""
    playwright_api = _chromium_or_skip()
    from qhelpers.checks import CheckResult

    lines = [CheckResult(True, "scale"), CheckResult(False, "zero_point", "got 3; widen the range to include 0")]
    page_path = tmp_path / "checks.html"
    page_path.write_text("<!DOCTYPE html><html><body>" + "".join(r._repr_html_line() for r in lines) + "</body></html>")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 800, "height": 100})
            page.goto(page_path.as_uri())
            page.screenshot(path=str(SCREENSHOTS / "check_verdicts.png"))
            badges = page.locator(".qh-check span").evaluate_all(
                "els => els.map(e => [e.innerText, getComputedStyle(e).backgroundColor, getComputedStyle(e).color])"
            )
        finally:
            browser.close()
    assert badges == [["correct", "rgb(26, 127, 55)", "rgb(255, 255, 255)"], ["not yet", "rgb(198, 40, 40)", "rgb(255, 255, 255)"]]
