"""The ``qh.`` namespace: one module per public name, and the learner's table (docs/API.md) up to date."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import qhelpers as qh

ROOT = Path(__file__).resolve().parents[1]


def _surface():
    spec = importlib.util.spec_from_file_location("learner_surface", ROOT / "scripts" / "learner_surface.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("learner_surface", module)
    spec.loader.exec_module(module)
    return module


def test_no_two_modules_export_the_same_public_name():
    """``from .x import *`` in qhelpers/__init__.py: a later module's name silently replaces an earlier one's
    (it once replaced notebook 04's mse_activation_ranges with notebook 07's). Each name in one ``__all__`` only."""
    twice = {name: modules for name, modules in _surface().exported_by().items() if len(modules) > 1}
    assert not twice, f"public names exported by more than one qhelpers module (qh.<name> is the last one): {twice}"


def test_every_exported_name_is_the_object_of_its_module():
    """``qh.<name>`` is the object its (one) module defines under that name."""
    for name, (module,) in _surface().exported_by().items():
        assert getattr(qh, name) is getattr(sys.modules[f"qhelpers.{module}"], name), name


def test_every_name_a_notebook_uses_is_exported():
    surface = _surface()
    owners = surface.exported_by()
    missing = {name: nbs for name, nbs in surface.notebook_uses().items() if name not in owners}
    assert not missing, f"notebooks use qh.<name> that no module's __all__ exports: {missing}"


def test_the_learner_table_is_up_to_date():
    surface = _surface()
    assert surface.TABLE.read_text() == surface.render(), (
        "docs/API.md is out of date (a notebook uses a new qh. name, or stopped using one): "
        "run .venv/bin/python scripts/learner_surface.py and commit docs/API.md"
    )
