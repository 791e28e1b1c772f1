"""Each public helper's docstring names the notebook that introduced it: the first notebook that calls ``qh.<name>``.

Public names no notebook uses are listed below, each with the reason it stays public (a type a public helper
returns, a constant, or a building block the CLI, the recipes or the tests call); a new unused public name
fails here until it is used by a notebook, listed with its reason, or made private.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import types
from pathlib import Path

import pytest

import qhelpers as qh
from qhelpers.notebooks import notebook_paths

NOTEBOOKS = notebook_paths()
CODE = {p.name: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code") for p in NOTEBOOKS}

# Functions that stay public though no notebook calls them: the file (package module, script, notebook or test)
# that must use each one, and why. test_listed_names_are_used_where_the_list_says checks the file really uses it.
NOT_IN_NOTEBOOKS = {
    "check_requant_multiplier": ("qhelpers/beyond_eager_checks.py", "check_layer_multiplier (notebook 05's exercise 1) gives its hints with it"),
    "compile_fix": ("qhelpers/doctor.py", "the doctor's fix line when torch.compile cannot build code"),
    "cpu_flags_label": ("qhelpers/doctor.py", "the doctor's CPU line names the flags beside the measured probe"),
    "not_filled": ("qhelpers/checks.py", "the blank test every self-check runs first (report, read_range, check_qparams_function)"),
    "cpu_has_vnni": ("qhelpers/environment.py", "env_report's x86_int8_exact entry (the notebooks measure with int8_pairs_saturate)"),
    "linear_qat_int8": ("qhelpers/deprecations.py", "the deprecation map's torchao QAT row runs it (_probe_qat_linear); notebook 05's text names it"),
    "probe_outputs": ("qhelpers/cpu.py", "the raw probe outputs cpu_facts reports"),
    "depthwise_missed": ("qhelpers/environment.py", "env_report's depthwise_16bit_pairs row and the doctor's depthwise line"),
    "depthwise_pairs_saturate": ("qhelpers/cpu.py", "cpu_facts lists depthwise_saturating_engines with it; the boolean form of depthwise_probe_outputs that notebooks 01 and 02 and the answers name"),
    "outputs_kind": ("qhelpers/notebooks.py", "execute records the CPU kind of a notebook's outputs; tests/nbval_cpu_kind.py compares on that kind only"),
    "requantize": ("qhelpers/plain_int8.py", "the fixed-point requantization step plain_int8_forward uses"),
    "atomic_write_bytes": ("qhelpers/registry.py", "every artifact writer (rebuild, CLI, runtime, the benchmark) uses it"),
    "cached_hash_matches": ("notebooks/02_pretrained_quantized_models.ipynb", "notebook 02's text points the learner to it"),
    "calibrate": ("qhelpers/fake_quant.py", "the calibration loop qat and recovery reuse"),
    "quantization_aware_training": ("qhelpers/qat.py", "the QAT loop that qat_finetune (the package twin of notebook 04's recipe) runs; notebook 07 no longer calls it"),
    "check_engine": ("qhelpers/ptq.py", "every helper that takes engine= validates it here"),
    "convert_qat_model": ("qhelpers/qat.py", "the 8-bit convert step of the QAT recipe (qat_finetune)"),
    "course_int8_metadata": ("qhelpers/pretrained.py", "the INT8 artifact's metadata (the weights enum's meta reads it)"),
    "course_root": ("qhelpers/deployment_benchmark.py", "where outputs go: results/, progress/, student/, the README"),
    "data_dir": ("qhelpers/models.py", "where the course's data lives, used by every loader"),
    "equalize_pair": ("qhelpers/equalization.py", "the one-pair step of cross_layer_equalization, tested on its own"),
    "explore": ("qhelpers/widgets.py", "the explorer's computation, behind the widget notebook 01 shows"),
    "fake_quant_range": ("qhelpers/straight_through.py", "reads a FakeQuantize's range (tests, plots)"),
    "is_fused": ("qhelpers/ptq.py", "fuse() uses it to refuse fusing twice"),
    "keep_in_float": ("qhelpers/ptq.py", "post_training_quantize(float_modules=...) calls it"),
    "observers_frozen": ("qhelpers/qat.py", "tells whether a QAT model's observers are frozen (the exercise check)"),
    "plot_histogram_with_grid": ("qhelpers/widgets.py", "the explorer widget draws with it"),
    "probe_api": ("qhelpers/deprecations.py", "deprecation_map probes each API with it"),
    "qat_finetune": ("notebooks/04_quantization_aware_training.ipynb", "the package twin of notebook 04's recipe cell, named in its text; tests compare the two"),
    "qat_qconfig": ("qhelpers/qat.py", "quantization_aware_training builds its default qconfig with it"),
    "qparams_from_minmax": ("qhelpers/quantmath.py", "qparams_from_tensor and the observers' twin build on it"),
    "quant_range": ("qhelpers/tensor_checks.py", "the integer range of bits/signed, used across the package"),
    "quantize_xnnpack": ("qhelpers/cli_quantize.py", "the CLI's --target xnnpack and make bench"),
    "random_shift": ("qhelpers/training.py", "the course model's augmentation (make model)"),
    "rebuild_course_int8": ("qhelpers/pretrained.py", "python -m qhelpers.rebuild int8 (the INT8 artifact's ModelSpec)"),
    "report": ("qhelpers/ptq_checks.py", "prints every self-check's verdict and logs progress"),
    "sha256_file": ("qhelpers/registry.py", "checksums of every shipped file"),
    "storage_dtype": ("qhelpers/quantmath.py", "the smallest integer dtype for a range (quantize uses it)"),
    "train_digit_transformer": ("tests/test_transformer.py", "trains the transformer with its recipe; only tests call it (the rebuild uses the registry)"),
    "verify_file": ("qhelpers/doctor.py", "every loader verifies its file's checksum with it"),
    "w8a8_linear": ("qhelpers/smoothquant.py", "the simulated W8A8 layer behind SmoothQuant's measurement"),
    "weight_storage_bytes": ("qhelpers/linear_checks.py", "bytes of a quantized weight with its scales (the per-group table)"),
}
REPO = Path(__file__).resolve().parents[1]


def _used_in(name: str, relpath: str) -> bool:
    """Does the file use ``name``: a load of it (a call or a reference, not its definition) in a .py file, or
    ``qh.<name>`` anywhere in a notebook's cells (code or text)?"""
    path = REPO / relpath
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return any(re.search(rf"\bqh\.{re.escape(name)}\b", "".join(c["source"])) for c in cells)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id == name:
            return True
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and node.attr == name:
            return True
    return False


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


# Listed names whose only caller is a test: public helpers kept on purpose, each with the reason here.
TEST_ONLY = {
    "train_digit_transformer": "the transformer's one-line train helper beside load_digit_transformer/digit_transformer_metadata",
}


@pytest.mark.parametrize("name", sorted(NOT_IN_NOTEBOOKS))
def test_listed_callers_are_course_files_not_tests(name):
    """A public name is kept for a caller in the course (the package, a script, a notebook), not for its own tests:
    a name only tests use is dead code (delete it with its tests), unless TEST_ONLY says why it stays."""
    where, _ = NOT_IN_NOTEBOOKS[name]
    if name in TEST_ONLY:
        assert where.startswith("tests/"), f"{name} has a course caller now ({where}): remove it from TEST_ONLY"
        return
    assert where.split("/")[0] in ("qhelpers", "scripts", "notebooks"), (
        f"qh.{name} is listed as used by {where} only: a test is not a caller. Point the entry at the course file "
        f"that calls it, or delete {name} and its tests"
    )


@pytest.mark.parametrize("name", sorted(NOT_IN_NOTEBOOKS))
def test_listed_names_are_used_where_the_list_says(name):
    """A reason on the list is true: the named file uses the name (so a list entry cannot outlive its caller)."""
    where, _ = NOT_IN_NOTEBOOKS[name]
    assert _used_in(name, where), f"qh.{name} is listed as used by {where}, which does not use it: fix the entry, or delete {name}"
