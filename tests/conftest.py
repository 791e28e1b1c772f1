"""Shared test setup: fixed threads and seeds, and the markers that keep the inner loop fast.

Markers (declared in pyproject.toml): ``slow`` (notebook runs, installs, training), ``browser`` (Chromium),
``network`` (the package index). Tests marked ``network`` are skipped unless ``-m`` names them
(``pytest -m network``): nothing in the default run needs the network. nbval's notebook cells are ``slow``.
``make quick`` runs ``pytest -m "not slow and not browser and not network" tests``.
"""
import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_threads_and_seed():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    wants_network = "network" in (config.getoption("-m") or "") and "not network" not in (config.getoption("-m") or "")
    skip_network = pytest.mark.skip(reason="needs the package index: run with -m network")
    for item in items:
        if type(item).__name__ == "IPyNbCell":  # a cell run by nbval
            item.add_marker(pytest.mark.slow)
        if "network" in item.keywords and not wants_network:
            item.add_marker(skip_network)
