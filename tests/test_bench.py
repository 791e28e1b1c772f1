"""qhelpers.bench: the benchmark command produces well-formed output (no timing thresholds)."""

import json
import warnings

import pytest
import torch

from qhelpers import bench

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")


def _check_result(result, models, engines, batches, threads):
    assert set(result["machine"]) >= {"cpu", "cpu_capability", "cpu_count", "torch", "date_utc", "load_average_1min"}
    expected_latency = sum(len(batches[m]) * len(threads) * (1 + len(engines[m])) for m in models)
    assert len(result["latency"]) == expected_latency
    for row in result["latency"]:
        assert row["median_ms"] > 0 and row["iqr_ms"] >= 0 and row["runs"] >= 1
        assert row["threads"] in threads and row["kind"] in ("float", "int8")
    assert len(result["speedups"]) == sum(len(batches[m]) * len(threads) * len(engines[m]) for m in models)
    for s in result["speedups"]:
        assert s["speedup"] == pytest.approx(s["float_ms"] / s["int8_ms"], rel=1e-2)
    assert {(s["model"], s["engine"]) for s in result["sizes"]} == {(m, e) for m in models for e in engines[m]}
    for s in result["sizes"]:
        assert s["int8_bytes"] < s["float_bytes"] and s["ratio"] == pytest.approx(s["float_bytes"] / s["int8_bytes"], rel=1e-3)


def test_run_bench_small_grid_is_well_formed(tmp_path):
    engines, batches, threads = {"course": ["x86"]}, {"course": [1, 4]}, (1, 2)
    saved = torch.backends.quantized.engine
    result = bench.run_bench(["course"], engines, batches, threads, min_run_time=0.01, warmup=1)
    assert torch.backends.quantized.engine == saved
    _check_result(result, ["course"], engines, batches, threads)
    table = bench.markdown_table(result)
    assert table.count("| course |") == 1 + 2 * 2 and "size ratio" in table and "INT8 speedup" in table
    paths = bench.write_results(result, tmp_path, "t")
    assert json.loads(paths["json"].read_text()) == result
    assert paths["md"].read_text() == table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_command_line_writes_results(tmp_path, capsys, monkeypatch):
    # The real command line in quick mode, on a smaller grid so that the test stays fast.
    monkeypatch.setitem(bench.MODELS, "course", {**bench.MODELS["course"], "engines": ("qnnpack",), "batches": (2,)})
    assert bench.main(["--quick", "--models", "course", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench_quick.json").read_text())
    assert result["mode"] == "quick"
    spec = bench.MODELS["course"]
    _check_result(result, ["course"], {"course": spec["engines"]}, {"course": spec["batches"]}, (1, 2))
    out = capsys.readouterr().out
    assert "| model | engine | batch | threads |" in out and "bench_quick.png" in out


def test_build_int8_refuses_a_float_result(monkeypatch):
    """torchvision's quantize=True with backend="x86" returns a float model; the bench notices."""
    monkeypatch.setitem(bench.MODELS, "shufflenet_v2_x0_5", {"input": (3, 64, 64), "batches": (1,), "engines": ("x86",)})
    with pytest.raises(RuntimeError, match="no quantized modules"):
        bench.build_int8("shufflenet_v2_x0_5", "x86")


def test_bad_inputs():
    with pytest.raises(ValueError, match="model must be one of"):
        bench.build_float("vgg16")
    with pytest.raises(ValueError, match="engine for resnet18"):
        bench.build_int8("resnet18", "x86")
    with pytest.raises(ValueError, match="batch"):
        bench.example_input("course", 0)
    with pytest.raises(ValueError, match="threads"):
        bench.run_bench(["course"], threads=(0,))
    with pytest.raises(ValueError, match="model must be one of"):
        bench.run_bench(["nope"])


def test_example_input_shapes():
    assert bench.example_input("course", 3).shape == (3, 1, 28, 28)
    assert bench.example_input("resnet18", 2).shape == (2, 3, 224, 224)
    assert torch.equal(bench.example_input("course", 2), bench.example_input("course", 2))


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    from qhelpers.bench import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\noutro\n")
    update_readme("| a | b |\n|---|---|", readme)
    assert readme.read_text() == f"intro\n{README_START}\n| a | b |\n|---|---|\n{README_END}\noutro\n"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_readme("x", readme)
    assert readme.read_text() == "no markers"


def test_committed_readme_has_the_bench_section():
    from qhelpers.bench import README_END, README_START
    from qhelpers.data import repo_dir

    text = (repo_dir() / "README.md").read_text()
    section = text.split(README_START)[1].split(README_END)[0]
    assert "INT8 speedup" in section and "size ratio" in section, "run: make bench"
