"""Shared test setup: fixed threads and seeds, and the markers that make the test tiers.

Markers (declared in pyproject.toml): ``slow`` (half a second or more: notebook runs, training, quantizing a
model), ``ci`` (the CI tier only), ``browser`` (Chromium), ``network`` (the package index). Tests marked
``network`` are skipped unless ``-m`` names them (``pytest -m network``): nothing in the default run needs the
network. nbval's notebook cells are ``slow``; tests/tiers.py lists the other ``ci`` and ``slow`` tests.
``make quick`` runs ``-m "not slow and not ci and not browser and not network"``, ``make test`` everything but
``ci``, ``browser`` and ``network`` (plus the notebooks), ``make test-ci`` those.
"""
from pathlib import Path

import pytest
import torch

from tiers import CI, SLOW, SLOW_FIXTURES


@pytest.fixture(autouse=True)
def _fixed_threads_and_seed():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    from qhelpers import checks, ptq_checks

    ptq_checks._FIRST_PREDICTIONS.clear()  # each test starts as a fresh kernel: no prediction judged yet
    checks._FIRST_JUDGED.clear()
    yield


def _tier_keys(item) -> list[str]:
    """The keys of tests/tiers.py that name ``item``: its file, its file::name (parametrizations included), and
    file::name[id] of a parametrization."""
    path = Path(str(item.fspath)).resolve()
    try:
        rel = path.relative_to(Path(__file__).resolve().parents[1]).as_posix()
    except ValueError:
        return []
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    return [rel, f"{rel}::{name}"] + ([f"{rel}::{item.name}"] if item.name != name else [])


def pytest_collection_modifyitems(config, items):
    wants_network = "network" in (config.getoption("-m") or "") and "not network" not in (config.getoption("-m") or "")
    skip_network = pytest.mark.skip(reason="needs the package index: run with -m network")
    used = set()
    for item in items:
        if type(item).__name__ == "IPyNbCell":  # a cell run by nbval
            item.add_marker(pytest.mark.slow)
        keys = _tier_keys(item)
        for key in keys:
            if key in CI:
                item.add_marker(pytest.mark.ci)
                used.add(key)
            if key in SLOW:
                item.add_marker(pytest.mark.slow)
                used.add(key)
        for fixture in SLOW_FIXTURES.get(keys[0] if keys else "", ()):
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.slow)
                used.add((keys[0], fixture))
        if "network" in item.keywords and not wants_network:
            item.add_marker(skip_network)
    tests_dir = Path(__file__).resolve().parent
    if not config.getoption("-k") and {Path(str(a).split("::")[0]).resolve() for a in config.args} >= {tests_dir}:
        stale = sorted((set(CI) | set(SLOW) | {(f, x) for f, xs in SLOW_FIXTURES.items() for x in xs}) - used, key=str)
        if stale:
            raise pytest.UsageError(f"tests/tiers.py names tests that do not exist (renamed or deleted?): {stale}")
