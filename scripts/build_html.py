"""Static HTML of the course, for reading without Jupyter: one page per notebook and an index.

    python scripts/build_html.py                          # notebooks/NN_*.ipynb -> build/html/
    python scripts/build_html.py -o /tmp/site notebooks/01_manual_tensor_quantization.ipynb

Each notebook is converted as committed (with its outputs, nothing is re-run) by nbconvert's "lab"
template; exercise solutions (cells whose source is hidden in Jupyter) stay folded behind a
"Solution" toggle, as in JupyterLab, and links between notebooks point to their pages. ``index.html`` links the pages in course order with their titles.

The pages work offline, with nothing fetched from the internet: formulas (``$...$``, ``$$...$$``)
are pre-rendered to MathML (latex2mathml), which browsers draw natively, instead of loading MathJax
from a CDN; and each interactive widget is replaced by a static snapshot drawn from the widget state
saved with the notebook (its figure, readouts and control values at save time), with a note that
moving the controls needs JupyterLab. No require.js, MathJax or widget-manager script is linked.
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
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
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
STYLE = (
    "details.qh-solution > summary { cursor: pointer; color: #1a5fb4; margin: 4px 0 4px 100px; }\n"
    ".qh-widget { border: 1px solid #c0c0c0; border-radius: 4px; padding: 8px; }\n"
    ".qh-widget-note { color: #555; font-size: 90%; font-style: italic; margin-bottom: 6px; }\n"
    ".qh-widget-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }\n"
    ".qh-widget-control { margin: 2px 0; }\n"
    ".qh-widget-control .qh-selected { font-weight: bold; text-decoration: underline; }\n"
    "math[display=block] { margin: 0.8em 0; font-size: 115%; }"
)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_NOTE = (
    "Static snapshot of an interactive widget, as saved with the notebook. To move its controls, "
    "open the notebook in JupyterLab (<code>make lab</code>)."
)


# --------------------------------------------------------------------------- formulas, offline

_CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.DOTALL)
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])")


def latex_to_mathml(latex: str, display: bool) -> str:
    """One formula as MathML (``<math>``), which Chromium, Firefox and Safari render without any script."""
    from latex2mathml.converter import convert

    mathml = convert(latex.strip(), display="block" if display else "inline")
    return mathml.replace("\\_", "_")


def prerender_math(markdown: str, formulas: dict[str, str]) -> str:
    """Replace each ``$$...$$``/``$...$`` outside code by a placeholder; ``formulas`` maps placeholders to MathML.

    The placeholders (plain words) pass through the Markdown converter untouched and are swapped
    for the MathML in the finished page, so Markdown never rewrites the MathML's text.
    """

    def stash(latex: str, display: bool) -> str:
        token = f"QHMATH{len(formulas)}QH"
        formulas[token] = latex_to_mathml(latex, display)
        return token

    parts = _CODE.split(markdown)
    for i in range(0, len(parts), 2):  # even parts are outside code
        text = _DISPLAY_MATH.sub(lambda m: stash(m.group(1), True), parts[i])
        parts[i] = _INLINE_MATH.sub(lambda m: stash(m.group(1), False), text)
    return "".join(parts)


# --------------------------------------------------------------------------- widgets, as static snapshots


def _text_output_html(output: dict) -> str:
    data = output.get("data", {})
    if output.get("output_type") == "stream":
        return f"<pre>{html.escape(''.join(output.get('text', '')))}</pre>"
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            payload = "".join(data[mime]) if isinstance(data[mime], list) else data[mime]
            return f'<img class="qh-widget-figure" alt="figure" src="data:{mime};base64,{payload.strip()}">'
    if "image/svg+xml" in data:
        return "".join(data["image/svg+xml"])
    if "text/html" in data:
        return "".join(data["text/html"])
    if "text/plain" in data:
        return f"<pre>{html.escape(''.join(data['text/plain']))}</pre>"
    return ""


def widget_snapshot(model_id: str, state: dict, depth: int = 0) -> str:
    """Static HTML of a saved widget (boxes, HTML/labels, outputs with figures, sliders, choices, progress bars)."""
    model = state.get(model_id)
    if model is None or depth > 20:
        return ""
    name, st = model.get("model_name", ""), model.get("state", {})
    desc = html.escape(str(st.get("description", "") or ""))
    label = f"{desc}: " if desc else ""
    children = [c.replace("IPY_MODEL_", "") for c in st.get("children", [])]
    if name in ("VBoxModel", "BoxModel", "GridBoxModel", "HBoxModel", "AccordionModel", "TabModel"):
        inner = "".join(widget_snapshot(c, state, depth + 1) for c in children)
        return f'<div class="qh-widget-row">{inner}</div>' if name == "HBoxModel" else f"<div>{inner}</div>"
    if name == "HTMLModel":
        return f'<div class="qh-widget-control">{label}{st.get("value", "")}</div>'
    if name in ("LabelModel", "TextModel", "TextareaModel"):
        return f'<div class="qh-widget-control">{label}{html.escape(str(st.get("value", "")))}</div>'
    if name == "OutputModel":
        return "".join(_text_output_html(o) for o in st.get("outputs", []))
    if name in ("FloatProgressModel", "IntProgressModel"):
        return f'<div class="qh-widget-control">{label}<progress value="{st.get("value", 0)}" max="{st.get("max", 100)}"></progress></div>'
    if name in ("IntSliderModel", "FloatSliderModel", "FloatLogSliderModel", "IntTextModel", "FloatTextModel", "CheckboxModel"):
        value = st.get("value")
        value = 10 ** value if name == "FloatLogSliderModel" and isinstance(value, (int, float)) else value
        return f'<div class="qh-widget-control">{label}<b>{html.escape(str(value))}</b></div>'
    if name in ("DropdownModel", "ToggleButtonsModel", "RadioButtonsModel", "SelectModel"):
        labels, index = st.get("_options_labels", []), st.get("index")
        options = " ".join(
            f'<span class="qh-selected">{html.escape(str(o))}</span>' if i == index else html.escape(str(o)) for i, o in enumerate(labels)
        )
        return f'<div class="qh-widget-control">{label}{options}</div>'
    return ""


def _widget_output(output: dict, state: dict) -> None:
    """Turn one widget output into HTML in place: its snapshot from the saved state, else its own fallback."""
    data = output["data"]
    view = data.pop(WIDGET_VIEW)
    snapshot = widget_snapshot(str(view.get("model_id", "")), state)
    if not snapshot:  # no saved state: a figure or HTML the output carries itself, else a note
        fallback = _text_output_html({"output_type": "display_data", "data": {k: v for k, v in data.items() if k != "text/plain"}})
        snapshot = fallback or "<p>(the widget's state was not saved with the notebook)</p>"
    data.clear()
    data["text/html"] = f'<div class="qh-widget"><div class="qh-widget-note">{WIDGET_NOTE}</div>{snapshot}</div>'
    data["text/plain"] = "(interactive widget: static snapshot)"


def static_widgets(nb: nbformat.NotebookNode) -> int:
    """Replace every widget output by a static snapshot and drop the saved widget state; returns how many."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                _widget_output(output, state)
                count += 1
    nb.metadata.pop("widgets", None)
    return count


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
    formulas: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = prerender_math(cell.source, formulas)
    static_widgets(nb)
    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"qh_course.html.j2": TEMPLATE})])
    exporter.template_file = "qh_course.html.j2"
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = body.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)
    body = NOTEBOOK_LINK.sub(r'href="\1.html\2"', body)  # links between notebooks -> between pages
    for token, mathml in formulas.items():
        body = body.replace(token, mathml)
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
