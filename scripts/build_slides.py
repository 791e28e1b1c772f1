"""Build a short reveal.js deck per notebook from the cells the notebook marks for slides, for teaching offline.

    python scripts/build_slides.py                 # every notebook -> build/slides/NN_name.slides.html, index.html
    python scripts/build_slides.py notebooks/03_post_training_quantization.ipynb -o /tmp/slides

A notebook marks a cell for its deck in the cell's metadata only (``"slideshow": {"slide_type": "slide"}``, what
JupyterLab's property inspector writes), so marking never changes a notebook's outputs. Each marked cell is one
slide: a Markdown cell as text, a code cell as its committed output only (the key figure, the printed decision tree,
a table), never re-run. The decks use nbconvert's reveal.js template with reveal.js itself copied beside them from
``scripts/reveal.js/`` (reveal.js 5.2, MIT licence; its theme without web fonts), formulas pre-rendered to MathML
and widgets as static snapshots (as ``make html`` does), so they open from a USB stick with no network.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import SlidesExporter

REPO = Path(__file__).resolve().parents[1]
REVEAL = Path(__file__).resolve().parent / "reveal.js"
SLIDE_TYPES = ("slide", "subslide", "fragment")

_spec = importlib.util.spec_from_file_location("build_html", Path(__file__).resolve().parent / "build_html.py")
build_html = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_html)

# nbconvert's reveal template without what it loads from the web (jQuery, RequireJS, Mermaid, MathJax, the widget
# manager): reveal.js from the folder beside the deck, started by a plain script.
TEMPLATE = """{%- extends 'reveal/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script>
Reveal.initialize({controls: true, progress: true, hash: true, slideNumber: "c/t", transition: "none",
                   width: 1280, height: 800, margin: 0.04, center: false});
</script>
{% endblock footer_js %}
"""
STYLE = (
    ".reveal .slides section { text-align: left; overflow-y: auto; max-height: 100%; }\n"
    ".reveal .jp-OutputPrompt, .reveal .jp-InputPrompt { display: none; }\n"
    ".reveal .jp-OutputArea-output pre { font-size: 15px; line-height: 1.25; }\n"
    ".reveal .jp-RenderedHTMLCommon { font-size: 22px; }\n"
    ".reveal img { max-height: 560px; }\n"
    "math[display=block] { margin: 0.6em 0; }"
)


def marked(cell) -> bool:
    """True for a cell the notebook marks for its deck (``metadata.slideshow.slide_type``)."""
    return (cell.get("metadata", {}).get("slideshow") or {}).get("slide_type") in SLIDE_TYPES


def deck(path: Path, out_dir: Path) -> tuple[Path, str, int]:
    """Write ``out_dir/<stem>.slides.html`` from the marked cells of ``path``; returns the deck, its title, its slides."""
    path = Path(path)
    if path.suffix != ".ipynb" or not path.exists():
        raise ValueError(f"path={str(path)!r} is not an existing .ipynb file")
    nb = nbformat.read(path, as_version=4)
    title = build_html.notebook_title(nb, path.stem)
    build_html.static_widgets(nb)  # widget outputs -> their saved snapshot, before the cells are picked
    nb.cells = [cell for cell in nb.cells if marked(cell)]
    if not nb.cells:
        raise ValueError(f"{path.name} marks no cell for slides (metadata.slideshow.slide_type)")
    nb.cells[0].metadata["slideshow"] = {"slide_type": "slide"}
    nb.metadata["title"] = title
    formulas: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = build_html.prerender_math(cell.source, formulas)
        else:
            cell.metadata["transient"] = {"remove_source": True}  # the committed output is the slide
    exporter = SlidesExporter(template_name="reveal", reveal_url_prefix="reveal.js", reveal_theme="white",
                              extra_loaders=[DictLoader({"qh_slides.html.j2": TEMPLATE})])
    exporter.template_file = "qh_slides.html.j2"
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = body.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)
    for token, mathml in formulas.items():
        body = body.replace(token, mathml)
    body = re.sub(r'href="(\d\d_[\w-]+)\.ipynb(#[^"]*)?"', r'href="../html/\1.html\2"', body)  # the full page
    out = out_dir / f"{path.stem}.slides.html"
    out.write_text(body, encoding="utf-8")
    return out, title, len(nb.cells)


def build(notebooks: list[Path], out_dir: Path) -> list[tuple[Path, str, int]]:
    """A deck per notebook in ``out_dir``, reveal.js beside them, and an index page."""
    if not notebooks:
        raise ValueError("notebooks is empty: nothing to build")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REVEAL, out_dir / "reveal.js", dirs_exist_ok=True)
    decks = [deck(p, out_dir) for p in notebooks]
    items = "\n".join(f'  <li><a href="{html.escape(p.name)}">{html.escape(t)}</a> ({n} slides)</li>' for p, t, n in decks)
    (out_dir / "index.html").write_text(
        f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>INT8 quantization in PyTorch: slides</title>
<style>body {{ font-family: sans-serif; max-width: 42em; margin: 3em auto; line-height: 1.5; }}</style></head>
<body>
<h1>INT8 quantization in PyTorch: a short deck per notebook</h1>
<p>Teach from these, then let the room work in the notebooks (<code>make lab</code>). Arrow keys or space to move,
<kbd>F</kbd> for full screen, <kbd>Esc</kbd> for an overview. Outputs are those of the notebooks' committed run.</p>
<ol>
{items}
</ol>
</body>
</html>
""",
        encoding="utf-8",
    )
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb in order")
    parser.add_argument("-o", "--out", type=Path, default=REPO / "build" / "slides")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for out, title, n in build(notebooks, args.out):
        print(f"{out}: {title} ({n} slides)")
    print(f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
