"""The shape of the package: its modules in layers, each importing only from its own layer or below, and no cycles.

This table is the one place the layers are written down. A new module goes into a layer here (the test fails
until it does); an import that runs up the layers, or any import cycle, fails the test with the line that makes it.
Every import counts, also one inside a function: a lazy import hides a dependency from the reader, not from the
design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qhelpers"

LAYERS: list[tuple[str, set[str]]] = [
    # foundations: no import from the package; argument checks, what the CPU does, files, timing, metrics, the math
    ("foundations", {"_validate", "cpu", "files", "latency", "metrics", "quantmath", "int8_arithmetic"}),
    # the machine and the course's data: engines and warnings, versions, the progress log and the first predictions, the digits
    ("platform", {"environment", "versions", "progress", "prediction_memory", "data"}),
    # what lessons build on: the self-check machinery, training loops, the registry of shipped models
    ("building blocks", {"checks", "training", "registry"}),
    # the course's models and their shipped checkpoints
    ("models", {"models", "models_depthwise", "transformer"}),
    # the lessons (notebooks 00-09): each notebook's topics, one module each, and its self-checks (<topic>_checks)
    ("lessons", {"decision", "int8_prediction_checks", "plotting", "widgets", "tensor_checks",  # 00, 01
                 "pretrained", "int8_size", "pretrained_checks", "speedup_checks",  # 02
                 "ptq", "ptq_analysis", "ptq_checks",  # 03
                 "fake_quant", "fake_quant_repair", "qat", "straight_through", "qat_checks",  # 04
                 "deprecations", "plain_int8", "torchao_inspect", "pt2e_export", "beyond_eager_checks",  # 05
                 "helper_trap", "group_quant", "roofline", "layer_timing", "smoothquant", "linear_checks",  # 06
                 "range_setting", "wa_simulation", "equalization", "empirical_bias_correction", "adaptive_rounding",  # 07
                 "pt2e_debug", "recovery_checks", "recovery",
                 "runtime", "runtime_checks",  # 08
                 "server_runtimes", "server_checks"}),  # make bench's server rows; notebook 09's exercises
    # tools outside the notebooks: the benchmark, the command line, the laptop check, notebook tooling, rebuilds
    ("tools", {"bench_models", "bench_report", "bench", "deployment_benchmark", "cli_common", "cli_inspect", "cli_quantize", "cli",
               "doctor", "notebooks", "rebuild"}),
    # what `import qhelpers` and `python -m qhelpers` run
    ("entry points", {"__init__", "__main__"}),
]  # fmt: skip
LAYER_OF = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}


def imports_of(path: Path) -> dict[str, int]:
    """The package modules ``path`` imports (module-level or inside functions), each with its first line."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            absolute = (node.module or "").split(".")
            if node.level == 1:
                names = [absolute[0]] if node.module else [a.name for a in node.names]
            elif node.level == 0 and absolute[0] == "qhelpers":
                names = [absolute[1]] if len(absolute) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("qhelpers.")]
        for name in names:
            if (PACKAGE / f"{name}.py").is_file() and name != path.stem:
                found.setdefault(name, node.lineno)
    return found


GRAPH = {p.stem: imports_of(p) for p in sorted(PACKAGE.glob("*.py"))}


def test_every_module_has_a_layer():
    assert sorted(set(GRAPH) - set(LAYER_OF)) == [], "put the new module into a layer of LAYERS"
    assert sorted(set(LAYER_OF) - set(GRAPH)) == [], "LAYERS names modules that no longer exist"


def test_no_import_runs_up_the_layers():
    upward = [
        f"qhelpers/{module}.py:{line} imports {target} ({LAYERS[LAYER_OF[target]][0]}) from {LAYERS[LAYER_OF[module]][0]}"
        for module, targets in GRAPH.items() if module in LAYER_OF
        for target, line in targets.items() if target in LAYER_OF and LAYER_OF[target] > LAYER_OF[module]
    ]  # fmt: skip
    assert upward == []


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    assert find_cycles(GRAPH) == []


@pytest.mark.parametrize(
    "graph, cycles",
    [
        ({"a": {"b": 1}, "b": {"a": 2}}, [["a", "b"]]),
        ({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}, [["a", "b", "c"]]),
        ({"a": {"b": 1}, "b": {"c": 1}, "c": {}}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, cycles):
    assert find_cycles(graph) == cycles


def test_the_import_reader_sees_lazy_and_absolute_imports(tmp_path, monkeypatch):
    module = tmp_path / "probe.py"
    module.write_text("from . import data as _d\nfrom .files import course_root\nimport qhelpers.cpu\n"
                      "def f():\n    from .registry import load_model\n    from qhelpers import versions\n")  # fmt: skip
    monkeypatch.setattr(__import__(__name__), "PACKAGE", PACKAGE)
    assert set(imports_of(module)) == {"data", "files", "cpu", "registry", "versions"}
