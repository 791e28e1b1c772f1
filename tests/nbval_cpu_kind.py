"""A pytest plugin (loaded by pyproject.toml's addopts): strict nbval compares a notebook's outputs only on
the kind of CPU that printed them.

``python -m qhelpers.notebooks execute`` records ``qhelpers.cpu.outputs_kind()`` (machine, float ISA, engines,
which engines saturate 16-bit pair sums) in each notebook's metadata, and the hygiene test requires the record.
On another kind of CPU the INT8 kernels compute other numbers (an AVX2 CPU saturates where AVX512-VNNI is exact),
so there each of that notebook's cells runs with its asserts only, as in ``make test-cpus``, and the run says so
when it starts and in its summary. On the kind that printed them, outputs are compared as nbval does.

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadscope``) the workers collect and decide; each sends its
lines to the controller (``workeroutput``), which prints the summary.
"""

from __future__ import annotations

from pathlib import Path

_OTHER_KIND: list[str] = []  # notebooks whose committed outputs another kind of CPU printed (see _compare_only_on_the_same_cpu_kind)


def _compare_only_on_the_same_cpu_kind(config, items) -> None:
    """Turn off output comparison for the cells of notebooks recorded on another CPU kind (see the module docstring)."""
    _OTHER_KIND.clear()
    cells = [item for item in items if type(item).__name__ == "IPyNbCell" and item.options.get("check")]
    if not cells:
        return
    from qhelpers.cpu import outputs_kind

    here = outputs_kind()
    for notebook in {item.parent for item in cells}:
        recorded = notebook.nb.metadata.get("qhelpers", {}).get("outputs_recorded_on")
        if recorded is None or recorded == here:  # no record: compared (the hygiene test asks for the record)
            continue
        differs = ", ".join(f"{k} {recorded.get(k)} there, {here.get(k)} here" for k in sorted(here) if recorded.get(k) != here.get(k))
        _OTHER_KIND.append(f"{Path(str(notebook.fspath)).name}: outputs recorded on another CPU kind ({differs}); "
                           "its cells run with their asserts only, outputs not compared")
        for item in cells:
            if item.parent is notebook:
                item.options["check"] = False
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for line in _OTHER_KIND:
        if reporter is not None:
            reporter.write_line(f"nbval: {line}", yellow=True)


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)  # an xdist worker: hand the lines to the controller
    if workeroutput is not None:
        workeroutput["qh_other_kind"] = list(_OTHER_KIND)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_FromWorkers(), "nbval_cpu_kind_from_workers")


class _FromWorkers:
    """The xdist controller's side: the lines each worker found (every worker collects every notebook)."""

    def pytest_testnodedown(self, node, error):
        for line in getattr(node, "workeroutput", {}).get("qh_other_kind", []):
            if line not in _OTHER_KIND:
                _OTHER_KIND.append(line)


def pytest_terminal_summary(terminalreporter):
    if _OTHER_KIND:
        terminalreporter.section("notebooks compared with asserts only (another CPU kind)", yellow=True)
        for line in sorted(_OTHER_KIND):
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config, items):
    _compare_only_on_the_same_cpu_kind(config, items)
