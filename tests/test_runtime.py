"""qhelpers.runtime: ExecuTorch .pte export, load and run, and the errors a learner meets."""

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import qhelpers as qh
from qhelpers import runtime

pytestmark = pytest.mark.skipif(not qh.executorch_available(), reason="ExecuTorch is not installed (pip install executorch==1.5.1)")


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


@pytest.fixture(scope="module")
def float_pte(tmp_path_factory):
    model, x = _tiny(), torch.randn(1, 1, 8, 8)
    path = tmp_path_factory.mktemp("pte") / "tiny_float.pte"
    return model, x, qh.export_pte(model, (x,), path)


def test_float_round_trip_matches_eager(float_pte):
    model, x, export = float_pte
    assert export.path.is_file() and export.bytes == export.path.stat().st_size
    assert export.delegated_subgraphs >= 1 and export.delegated_nodes > 0
    assert 0 < export.delegated_fraction <= 1 and "delegated to XNNPACK" in str(export)
    assert sum(d for d, _ in export.by_operator.values()) == export.delegated_nodes
    pte = qh.load_pte(export.path)
    assert pte.input_shapes == [(1, 1, 8, 8)] and pte.input_dtypes == [torch.float32]
    with torch.no_grad():
        assert torch.allclose(pte(x), model(x), atol=1e-5)
        assert torch.allclose(qh.run_pte(export.path, x), model(x), atol=1e-5)  # a path is loaded first


def test_no_temporary_file_is_left(float_pte):
    _, _, export = float_pte
    assert [p.name for p in export.path.parent.iterdir()] == [export.path.name]


def test_int8_export_runs_close_to_the_pt2e_graph(tmp_path):
    model = _tiny()
    calib = [torch.randn(8, 1, 8, 8) for _ in range(3)]
    q = qh.quantize_xnnpack(model, (calib[0][:2],), calib)
    assert qh.count_quant_ops(q)["quantize_per_tensor"] > 0
    x = torch.randn(1, 1, 8, 8)
    export = qh.export_pte(q, (x,), tmp_path / "tiny_int8.pte")
    assert export.delegated_nodes > 0
    with torch.no_grad():
        ref, out = q(x), qh.load_pte(export.path)(x)
    assert (out - ref).abs().max() <= 0.1 * ref.abs().max() + 0.02


def test_without_delegation_nothing_goes_to_xnnpack(tmp_path):
    model, x = _tiny(), torch.randn(1, 1, 8, 8)
    export = qh.export_pte(model, (x,), tmp_path / "portable.pte", delegate=False)
    assert export.delegated_nodes == 0 and export.delegated_subgraphs == 0 and export.non_delegated_nodes > 0
    with torch.no_grad():
        assert torch.allclose(qh.load_pte(export.path)(x), model(x), atol=1e-5)


def test_missing_and_corrupt_files_get_clear_errors(tmp_path, float_pte):
    with pytest.raises(FileNotFoundError, match="no .pte file at"):
        qh.load_pte(tmp_path / "nope.pte")
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"this is not a program" * 10)
    with pytest.raises(ValueError, match="not a valid ExecuTorch program"):
        qh.load_pte(garbage)
    truncated = tmp_path / "truncated.pte"
    truncated.write_bytes(float_pte[2].path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="not a valid ExecuTorch program.*too small"):
        qh.load_pte(truncated)
    empty = tmp_path / "empty.pte"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a valid ExecuTorch program"):
        qh.load_pte(empty)
    with pytest.raises(ValueError, match="no method 'predict'"):
        qh.load_pte(float_pte[2].path, method="predict")


def test_bad_inputs(tmp_path, float_pte):
    model, x, export = float_pte
    pte = qh.load_pte(export.path)
    with pytest.raises(ValueError, match=r"exported for shape \(1, 1, 8, 8\)"):
        pte(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="dtype"):
        pte(x.double())
    with pytest.raises(ValueError, match="takes 1 input"):
        pte(x, x)
    with pytest.raises(TypeError, match="input 0 must be a torch.Tensor"):
        pte([1.0])
    with pytest.raises(TypeError, match="pte must be a PteModule"):
        qh.run_pte(42, x)
    with pytest.raises(ValueError, match="must end in .pte"):
        qh.export_pte(model, (x,), tmp_path / "model.pt")
    with pytest.raises(TypeError, match="example_inputs"):
        qh.export_pte(model, [], tmp_path / "m.pte")
    with pytest.raises(TypeError, match="model must be"):
        qh.export_pte("model", (x,), tmp_path / "m.pte")
    with pytest.raises(ValueError, match="at least 2"):
        qh.quantize_xnnpack(model, (x,), [x])
    with pytest.raises(ValueError, match="no batches"):
        qh.quantize_xnnpack(model, (torch.randn(2, 1, 8, 8),), [])


def test_missing_executorch_is_named_with_the_pin(monkeypatch, tmp_path, float_pte):
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)  # import of it now raises ImportError
    assert qh.executorch_available() is False
    with pytest.raises(ModuleNotFoundError, match="pip install executorch==1.5.1"):
        qh.load_pte(float_pte[2].path)
    with pytest.raises(ModuleNotFoundError, match="ExecuTorch is not installed"):
        qh.export_pte(_tiny(), (torch.randn(1, 1, 8, 8),), tmp_path / "m.pte")


def test_runtime_log_filter_drops_only_the_cpuinfo_lines(capsys):
    captured = []
    with runtime._native_stderr(captured):
        os.write(2, b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n")
        os.write(2, b"[method.cpp:1243] Error resizing tensor at input 0\n")
        # ExecuTorch's bindings forward the C++ log to Python's sys.stderr during a call (Jupyter's output)
        print("[cpuinfo_utils.cpp:125] CPU info and manual query on # of cpus dont match.", file=sys.stderr)
        print("[program.cpp:168] Program identifier", file=sys.stderr)
    assert len(captured) == 4
    err = capsys.readouterr().err
    assert "cpuinfo_utils" not in err and "[method.cpp:1243] Error resizing tensor" in err and "[program.cpp:168]" in err


@pytest.mark.slow
def test_loading_in_a_fresh_process_shows_no_cpuinfo_lines(float_pte):
    """The runtime logs them once per process, at the first load: a fresh process shows it, with and without the filter."""
    import subprocess

    path = str(float_pte[2].path)
    raw = "from executorch.runtime import Runtime; Runtime.get().load_program({!r}).load_method('forward')".format(path)
    filtered = "import qhelpers as qh; qh.load_pte({!r})".format(path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(qh.__file__).parent.parent), os.environ.get("PYTHONPATH")) if p)}
    unfiltered = subprocess.run([sys.executable, "-c", raw], capture_output=True, text=True, env=env, timeout=300)
    assert unfiltered.returncode == 0, unfiltered.stderr
    if sys.platform.startswith("linux"):
        assert "[cpuinfo_utils.cpp:" in unfiltered.stderr  # what the filter is for (the runtime's Linux CPU probe)
    done = subprocess.run([sys.executable, "-c", filtered], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cpuinfo_utils" not in done.stderr and "cpuinfo_utils" not in done.stdout


def test_run_pte_can_hand_a_wrong_shape_to_the_runtime(float_pte, capsys):
    """check_shapes=False: the runtime's own complaint (logged, then RuntimeError), as an app on a phone meets it."""
    _, x, export = float_pte
    pte = qh.load_pte(export.path)
    with pytest.raises(RuntimeError):
        qh.run_pte(pte, torch.randn(2, 1, 8, 8), check_shapes=False)
    assert "static tensor" in capsys.readouterr().err  # [tensor_impl.cpp] Attempted to resize a static tensor ...
    assert torch.equal(qh.run_pte(pte, x, check_shapes=False), qh.run_pte(pte, x))
    with pytest.raises(TypeError, match="check_shapes"):
        qh.run_pte(pte, x, check_shapes="no")


def test_pte_operators_lists_kernels_outside_the_delegate(tmp_path, float_pte):
    _, x, export = float_pte
    assert qh.pte_operators(export.path) == {"operators": [], "delegates": ["XnnpackBackend"]}
    portable = qh.export_pte(_tiny(), (x,), tmp_path / "portable.pte", delegate=False)
    ops = qh.pte_operators(portable.path)
    assert ops["delegates"] == [] and any("convolution" in op for op in ops["operators"])
    with pytest.raises(FileNotFoundError):
        qh.pte_operators(tmp_path / "missing.pte")
    (tmp_path / "junk.pte").write_bytes(b"not a program")
    with pytest.raises(ValueError, match="not a valid ExecuTorch program"):
        qh.pte_operators(tmp_path / "junk.pte")


def test_set_executorch_threads_refuses_a_resize_under_a_loaded_program(float_pte):
    qh.load_pte(float_pte[2].path)  # a program is loaded in this process from here on
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

    current = int(_threadpool_get_thread_count())
    assert qh.set_executorch_threads(current) == current  # asking for the size it has is fine
    with pytest.raises(RuntimeError, match="already loaded"):
        qh.set_executorch_threads(current + 1)
    with pytest.raises(ValueError, match="positive int"):
        qh.set_executorch_threads(0)


@pytest.mark.slow
def test_the_40_db_bar_of_notebook_08_catches_a_per_tensor_file(tmp_path):
    """Notebook 08 checks its course .pte against the graph it was lowered from at > 40 dB (44 dB measured). The bar
    must separate a right file from a wrong one: a .pte lowered with per-tensor weights by mistake scores below it."""
    model = qh.load_course_model()
    calib = qh.digits_loader("calib", batch_size=100)
    test_x, _ = next(iter(qh.digits_loader("test", batch_size=200)))
    x1 = test_x[:1].clone()
    graphs = {per_channel: qh.quantize_xnnpack(model, test_x[:2].clone(), calib, per_channel=per_channel) for per_channel in (True, False)}
    with torch.no_grad():
        reference = graphs[True](test_x)
        sqnr = {}
        for per_channel, graph in graphs.items():
            pte = qh.load_pte(qh.export_pte(graph, (x1,), tmp_path / f"course_{per_channel}.pte").path)
            sqnr[per_channel] = qh.sqnr_db(reference, torch.cat([pte(test_x[i : i + 1]) for i in range(len(test_x))]))
    assert sqnr[True] > 40 > sqnr[False], sqnr  # notebook 08 measures 44.1 dB for the per-channel file on its 1,000 test digits; this test uses 200
