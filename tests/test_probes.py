"""scripts/probes/: the scripts behind the results notebooks 00, 02 and 09 quote as "measured outside the notebook".

Each must at least import and have a ``main`` and a usage line, so that it cannot rot silently; the fastest one
(a single ONNX Runtime node, about a second) also runs. The others take tens of seconds to minutes: run them by
hand (their numbers are in docs/REFERENCES.md, in the section of the notebook named by the file name).
"""

import importlib.util
from pathlib import Path

import pytest

PROBES = sorted((Path(__file__).resolve().parent.parent / "scripts" / "probes").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(f"probe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_probes():
    assert len(PROBES) >= 5, PROBES


@pytest.mark.parametrize("path", PROBES, ids=lambda p: p.name)
def test_probe_imports_and_has_main(path):
    module = _load(path)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
    assert "Usage: python scripts/probes/" + path.name in (module.__doc__ or ""), f"{path.name}: no usage line in its docstring"


def test_ort_conv_probe_runs(capsys):
    pytest.importorskip("onnxruntime")
    _load(next(p for p in PROBES if p.name == "09_ort_conv.py")).main([])
    out = capsys.readouterr().out
    assert "ORT_DISABLE_ALL" in out and "ORT_ENABLE_ALL" in out and "(got, exact)" in out
