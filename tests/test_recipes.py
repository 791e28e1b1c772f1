"""Recipe cells (tag "recipe") run alone in a fresh kernel, with only their own imports.

Each recipe cell carries, in its metadata, a ``recipe_test``: code that runs right after the cell in the
same fresh kernel, builds a small model inline and checks that the recipe works on it. Nothing from the
notebook above the cell is available, so a recipe that leans on hidden state fails here.
"""

import json

import nbformat
import pytest
from nbclient import NotebookClient

from qhelpers.notebooks import notebook_paths

pytestmark = pytest.mark.slow  # each recipe runs in a fresh kernel


def recipe_cells():
    found = []
    for path in notebook_paths():
        nb = json.loads(path.read_text())
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code" and "recipe" in cell["metadata"].get("tags", []):
                found.append(pytest.param(cell, id=f"{path.stem}-cell{i}"))
    return found


RECIPES = recipe_cells()


def test_every_recipe_cell_has_its_test():
    for param in RECIPES:
        cell = param.values[0]
        assert cell["metadata"].get("qhelpers", {}).get("recipe_test", "").strip(), "recipe cell without recipe_test"


@pytest.mark.parametrize("cell", RECIPES)
def test_recipe_runs_alone_in_a_fresh_kernel(cell, tmp_path):
    source = "".join(cell["source"])
    assert "import qhelpers" not in source, "a recipe must not need the course's helper package"
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source), nbformat.v4.new_code_cell(cell["metadata"]["qhelpers"]["recipe_test"])]
    )
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
