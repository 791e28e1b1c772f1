"""Static HTML of the course, for reading without Jupyter: one page per notebook and an index.

    python scripts/build_html.py                          # notebooks/NN_*.ipynb -> build/html/
    python scripts/build_html.py -o /tmp/site notebooks/01_manual_tensor_quantization.ipynb

Each notebook is converted as committed (with its outputs, nothing is re-run) by nbconvert's "lab"
template; exercise solutions (cells whose source is hidden in Jupyter) stay folded behind a
"Solution" toggle, as in JupyterLab, and links between notebooks point to their pages. ``index.html`` links the pages in course order with their titles.
Interactive widgets show as static snapshots at best: they need a running kernel.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parents[1]

# The lab template, with hidden-source cells (exercise solutions) folded into <details>.
TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block input_group -%}
{%- if cell.metadata.get('jupyter', {}).get('source_hidden') -%}
<details class="qh-solution"><summary>Solution (click to reveal)</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock input_group %}
"""
NOTEBOOK_LINK = re.compile(r'href="(\d\d_[\w-]+)\.ipynb(#[^"]*)?"')
STYLE = "details.qh-solution > summary { cursor: pointer; color: #1a5fb4; margin: 4px 0 4px 100px; }"


def notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first Markdown heading of the notebook (``# Title``), else ``fallback``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#{1,2}\s+(.+?)\s*$", cell.source, re.MULTILINE)
            if m:
                return m.group(1)
    return fallback


def convert(path: Path, out_dir: Path) -> tuple[Path, str]:
    """Convert one notebook to ``out_dir/<stem>.html``; returns the page and the notebook's title."""
    path = Path(path)
    if path.suffix != ".ipynb" or not path.exists():
        raise ValueError(f"path={str(path)!r} is not an existing .ipynb file")
    nb = nbformat.read(path, as_version=4)
    title = notebook_title(nb, path.stem)
    nb.metadata["title"] = title  # the page's <title>
    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"qh_course.html.j2": TEMPLATE})])
    exporter.template_file = "qh_course.html.j2"
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = body.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)
    body = NOTEBOOK_LINK.sub(r'href="\1.html\2"', body)  # links between notebooks -> between pages
    page = out_dir / f"{path.stem}.html"
    page.write_text(body, encoding="utf-8")
    return page, title


def index_html(pages: list[tuple[Path, str]]) -> str:
    """A plain index page linking each notebook's page in order."""
    items = "\n".join(f'  <li><a href="{html.escape(p.name)}">{html.escape(t)}</a></li>' for p, t in pages)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>INT8 quantization in PyTorch: the course</title>
<style>body {{ font-family: sans-serif; max-width: 42em; margin: 3em auto; line-height: 1.5; }}</style></head>
<body>
<h1>INT8 quantization in PyTorch</h1>
<p>The course's notebooks as static pages, with the outputs of their last committed run. To run them,
change the sliders or do the exercises, open them in JupyterLab (<code>make lab</code>).</p>
<ol>
{items}
</ol>
</body>
</html>
"""


def build(notebooks: list[Path], out_dir: Path) -> list[tuple[Path, str]]:
    """Convert ``notebooks`` (in the given order) into ``out_dir`` and write ``out_dir/index.html``."""
    if not notebooks:
        raise ValueError("notebooks is empty: nothing to build")
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = [convert(p, out_dir) for p in notebooks]
    (out_dir / "index.html").write_text(index_html(pages), encoding="utf-8")
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb in order")
    parser.add_argument("-o", "--out", type=Path, default=REPO / "build" / "html")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for page, title in build(notebooks, args.out):
        print(f"{page}: {title}")
    print(f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
