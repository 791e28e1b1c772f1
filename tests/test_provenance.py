"""Each public helper's docstring names the notebook that introduced it: the first notebook that calls ``qh.<name>``.

Public names no notebook uses are listed below, each with the reason it stays public (a type a public helper
returns, a constant, or a building block the CLI, the recipes or the tests call); a new unused public name
fails here until it is used by a notebook, listed with its reason, or made private.
"""

from __future__ import annotations

import inspect
import json
import re
import types

import pytest

import qhelpers as qh
from qhelpers.notebooks import notebook_paths

NOTEBOOKS = notebook_paths()
CODE = {p.name: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code") for p in NOTEBOOKS}

# Functions that stay public though no notebook calls them, and why.
NOT_IN_NOTEBOOKS = {
    "atomic_write_bytes": "data: every artifact writer (rebuild, CLI, runtime) uses it",
    "cached_hash_matches": "pretrained: the CLI's torchvision path checks the hub cache with it",
    "calibrate": "ptq: the calibration loop qat and the CLI reuse",
    "check_close": "checks: the generic self-check other checks build on",
    "check_engine": "environment: every helper that takes engine= validates it here",
    "check_size_ratio": "runtime: a self-check of notebook 08's exercises, called through a wrapper",
    "convert_qat_model": "qat: the 8-bit convert step of the QAT recipe (tests, qat_finetune)",
    "course_int8_metadata": "pretrained: the INT8 artifact's metadata (the weights enum's meta reads it)",
    "data_dir": "data: where the course's data lives (QHELPERS_DATA), used by every loader",
    "equalize_pair": "recovery: the one-pair step of cross_layer_equalization, tested on its own",
    "explore": "widgets: the explorer's computation, behind the widget notebook 01 shows",
    "fake_quant_range": "qat: reads a FakeQuantize's range (tests, plots)",
    "is_fused": "ptq: fuse() uses it to refuse fusing twice",
    "keep_in_float": "ptq: post_training_quantize(float_modules=...) calls it",
    "not_filled": "checks: every self-check's blank-answer test",
    "observers_frozen": "qat: tells whether a QAT model's observers are frozen (tests, the exercise check)",
    "plot_histogram_with_grid": "plotting: the explorer widget draws with it",
    "predict": "metrics: the CLI's pretrained command",
    "probe_api": "modern: deprecation_map probes each API with it",
    "qat_finetune": "qat: the package twin of notebook 04's recipe cell (tests compare the two)",
    "qat_qconfig": "qat: quantization_aware_training builds its default qconfig with it",
    "qparams_from_minmax": "quantmath: qparams_from_tensor and the observers' twin build on it",
    "quant_range": "quantmath: the integer range of bits/signed, used across the package",
    "quantize_xnnpack": "runtime: the CLI's --target xnnpack and export_pte's callers",
    "random_shift": "training: the course model's augmentation (make model)",
    "rebuild_course_int8": "pretrained: python -m qhelpers.rebuild int8",
    "repo_dir": "data: the course folder (notebooks, student copies, bench output)",
    "report": "checks: prints every self-check's verdict and logs progress",
    "run_pte": "runtime: runs a .pte (the CLI, make bench)",
    "sha256_file": "data: checksums of every shipped file",
    "storage_dtype": "quantmath: the smallest integer dtype for a range (quantize uses it)",
    "train_course_model": "training: python -m qhelpers.rebuild model",
    "train_digit_transformer": "transformer: python -m qhelpers.rebuild transformer",
    "verify_file": "data: every loader verifies its file's checksum with it",
    "w8a8_linear": "linear: the simulated W8A8 layer behind SmoothQuant's measurement",
    "weight_only_sqnr": "modern: notebook 05's exercise check measures with it",
    "weight_storage_bytes": "linear: bytes of a quantized weight with its scales (tests, the per-group table)",
}


def first_use(name: str):
    for nb, src in CODE.items():
        if re.search(rf"\bqh\.{re.escape(name)}\b", src):
            return nb
    return None


PUBLIC = sorted(n for n in dir(qh) if not n.startswith("_") and not isinstance(getattr(qh, n), types.ModuleType))
HELPERS = [n for n in PUBLIC if inspect.isfunction(getattr(qh, n)) or inspect.isclass(getattr(qh, n))]


@pytest.mark.parametrize("name", [n for n in HELPERS if first_use(n)])
def test_docstring_names_the_notebook_that_introduced_it(name):
    obj = getattr(qh, name)
    claimed = re.findall(r"Introduced in notebooks/(\S+?\.ipynb)", obj.__doc__ or "")
    assert claimed, f"qh.{name}: its docstring should say 'Introduced in notebooks/{first_use(name)}'"
    assert claimed[0] == first_use(name), f"qh.{name} says {claimed[0]} but is first used in {first_use(name)}"


def test_public_functions_no_notebook_uses_are_listed_with_a_reason():
    unused = sorted(n for n in HELPERS if inspect.isfunction(getattr(qh, n)) and not first_use(n))
    assert set(unused) <= set(NOT_IN_NOTEBOOKS), f"public but used by no notebook, and not listed: {sorted(set(unused) - set(NOT_IN_NOTEBOOKS))}"
    stale = sorted(n for n in NOT_IN_NOTEBOOKS if n in PUBLIC and first_use(n))
    assert not stale, f"listed as unused but a notebook uses them now: {stale}"
