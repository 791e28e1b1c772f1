"""qhelpers.deployment_benchmark: the benchmark command measures every path, reports what it skips, and its output is well formed (no timing thresholds)."""

import json
import re
import warnings

import pytest
import torch

from qhelpers import bench_report
from qhelpers import deployment_benchmark as bench
from qhelpers.latency import Latency

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")

FAST = {"min_run_time": 0.01, "warmup": 1}


def _measured(rows):
    return [r for r in rows if "skipped" not in r]


def _check_rows(result, model):
    rows = [r for r in result["rows"] if r["model"] == model]
    by_path = {r["path"]: r for r in rows}
    float_ms = by_path["float"]["median_ms"]
    for r in _measured(rows):
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0
        assert r["runs"] >= bench.MIN_SAMPLES, f"{r['label']}: {r['runs']} samples"
        assert r["vs_float_eager"] == pytest.approx(float_ms / r["median_ms"], rel=2e-3, abs=5e-4)  # rounded to 3 decimals
    return by_path


def test_run_bench_measures_the_chosen_paths_and_skips_a_missing_engine(tmp_path):
    saved_engine, saved_threads = torch.backends.quantized.engine, torch.get_num_threads()
    result = bench.run_bench(["course"], engines={"course": ["qnnpack", "arm64"]}, paths=["eager_int8", "pt2e"], threads=1, **FAST)
    assert torch.backends.quantized.engine == saved_engine and torch.get_num_threads() == saved_threads
    rows = result["rows"]
    assert [(r["path"], r["engine"]) for r in rows] == [("float", None), ("eager_int8", "qnnpack"), ("eager_int8", "arm64"), ("pt2e", None)]
    _check_rows(result, "course")
    skipped = rows[2]
    assert "'arm64' is not available on this CPU" in skipped["skipped"] and "median_ms" not in skipped
    assert rows[0]["size_ratio"] == 1.0 and rows[1]["size_ratio"] > 2.5  # eager INT8 state dict against float
    assert rows[0]["vs_float_compiled"] is None  # float compiled was not measured: no ratio, not a made-up one
    table = bench.markdown_table(result)
    assert "| course | eager INT8 (arm64) | skipped: engine 'arm64' is not available" in table
    assert rows[1]["agreement_pct"] >= 98.0 and rows[1]["float_accuracy_pct"] == rows[0].get("float_accuracy_pct", rows[1]["float_accuracy_pct"])
    agreeing = [r for r in rows if "agreement_pct" in r]  # the course model's INT8 rows: a third table
    assert agreeing == [rows[1]] and re.search(r"\| course \| eager INT8 \(qnnpack\) \| 9\d\.\d \|", table.split("agrees with float %")[1])
    assert table.count("| course |") == len(rows) + len(agreeing) and "vs float eager" in table and "vs float compiled" in table
    assert "Fastest path per model on this machine (lowest median): course: " in table
    paths = bench.write_results(result, tmp_path, "t")
    assert json.loads(paths["json"].read_text()) == result
    assert paths["md"].read_text() == table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_server_runtime_paths_report_times_conversion_and_agreement():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    result = bench.run_bench(["course"], paths=["ort_float", "ort_int8", "ov_float", "ov_int8"], server_subset=50, **FAST)
    by_path = _check_rows(result, "course")
    assert set(by_path) == {"float", "ort_float", "ort_int8", "ov_float", "ov_int8"} and not [r for r in result["rows"] if "skipped" in r]
    for path in ("ort_float", "ov_float"):
        assert by_path[path]["agreement_pct"] == 100.0 and 0.8 < by_path[path]["size_ratio"] < 1.2
    for path in ("ort_int8", "ov_int8"):  # INT8: within two points of float here (the tests of server_runtimes bound it tighter)
        r = by_path[path]
        assert r["agreement_pct"] >= 97.0 and abs(r["accuracy_pct"] - r["float_accuracy_pct"]) <= 2.0 and r["size_ratio"] > 1.8
    steps = [c["step"] for c in result["compile"]]
    assert len(steps) == 4 and steps[1].startswith("ONNX Runtime INT8") and steps[3].startswith("OpenVINO INT8")
    assert all(c["seconds"] > 0 for c in result["compile"])
    table = bench.markdown_table(result)
    assert "| course | ONNX Runtime INT8 (QDQ) |" in table and "| course | OpenVINO INT8 (NNCF) |" in table.split("agrees with float %")[1]


def test_a_missing_server_runtime_is_a_skipped_row(monkeypatch):
    from qhelpers import server_runtimes

    monkeypatch.setattr(server_runtimes, "server_runtimes_available", lambda: {"onnxruntime": False, "openvino": True})
    result = bench.run_bench(["course"], paths=["ort_int8"], **FAST)
    (row,) = [r for r in result["rows"] if r["path"] == "ort_int8"]
    assert row["skipped"].startswith("onnxruntime is not installed (pip install ") and "median_ms" not in row


@pytest.mark.slow
def test_compiled_and_executorch_paths_report_times_and_sizes():
    pytest.importorskip("executorch")
    result = bench.run_bench(["course"], paths=["float_compiled", "et_float", "et_int8"], **FAST)
    by_path = _check_rows(result, "course")
    assert set(by_path) == {"float", "float_compiled", "et_float", "et_int8"} and not [r for r in result["rows"] if "skipped" in r]
    assert by_path["float_compiled"]["vs_float_compiled"] == 1.0
    assert by_path["et_int8"]["vs_float_compiled"] == pytest.approx(by_path["float_compiled"]["median_ms"] / by_path["et_int8"]["median_ms"], rel=2e-3)
    # the .pte sizes: INT8 about 3x smaller than float for the course model
    assert 2.5 < by_path["et_float"]["size_bytes"] / by_path["et_int8"]["size_bytes"] < 4.0
    assert by_path["et_int8"]["delegated_nodes"] > 30
    steps = [c["step"] for c in result["compile"]]
    assert steps == ["torch.compile float (first call)", "ExecuTorch float: export + lower", "ExecuTorch INT8: quantize + export + lower"]
    assert all(c["seconds"] > 0 for c in result["compile"])
    assert "Compile and lowering times" in bench.markdown_table(result)


def test_a_failing_path_is_a_row_with_its_reason_and_the_others_still_run(monkeypatch):
    from qhelpers import runtime

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no C++ compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(runtime, "executorch_available", lambda: False)
    result = bench.run_bench(["course"], paths=["float_compiled", "pt2e_compiled", "et_float"], **FAST)
    reasons = {r["path"]: r.get("skipped") for r in result["rows"]}
    assert reasons["float"] is None
    assert reasons["float_compiled"] == reasons["pt2e_compiled"] == "RuntimeError: no C++ compiler here"
    assert "pip install executorch==1.5.1" in reasons["et_float"]
    assert result["compile"] == []


def test_every_cell_asks_for_at_least_MIN_RUNS_samples(monkeypatch):
    """Each latency is measure_latency(..., min_runs=qh.MIN_RUNS): the count a median and an IQR need, set in one place."""
    from qhelpers import bench as bench_run
    from qhelpers.latency import MIN_RUNS

    seen = []

    def recorder(fn, x, threads=1, min_run_time=0.5, warmup=3, label="", *, min_runs=2):
        seen.append(min_runs)
        return Latency(median_ms=1.0, iqr_ms=0.1, runs=min_runs, threads=threads)

    monkeypatch.setattr(bench_run, "measure_latency", recorder)
    result = bench.run_bench(["course"], paths=["float"], **FAST)
    assert seen == [MIN_RUNS] and [r["runs"] for r in result["rows"]] == [MIN_RUNS] == [bench.MIN_SAMPLES]


def test_quick_command_line_writes_results(tmp_path, capsys):
    assert bench.main(["--quick", "--paths", "eager_int8", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench_quick.json").read_text())
    assert result["mode"] == "quick" and {r["model"] for r in result["rows"]} == set(bench.QUICK_MODELS)
    _check_rows(result, "course")
    out = capsys.readouterr().out
    assert "| model | path | median ms | IQR ms | samples |" in out and "bench_quick.png" in out
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--update-readme"])


def test_build_int8_refuses_a_float_result(monkeypatch):
    """torchvision's quantize=True with backend="x86" returns a float model; the bench notices."""
    monkeypatch.setitem(bench.MODELS, "shufflenet_v2_x0_5", {"input": (3, 64, 64), "engines": ("x86",), "strict": False})
    with pytest.raises(RuntimeError, match="no quantized modules"):
        bench.build_int8("shufflenet_v2_x0_5", "x86")


def test_build_int8_times_the_shipped_course_weights_on_every_engine():
    """Every engine gets the same shipped INT8 state dict, packed for it (notebook 02, section 7 against section 6)."""
    import qhelpers as qh
    from qhelpers.latency import state_dict_digest, weights_digest

    shipped = state_dict_digest(qh.CourseNet_QuantizedWeights.DEFAULT.get_state_dict())
    saved = torch.backends.quantized.engine
    try:
        for engine in [e for e in bench.MODELS["course"]["engines"] if e in qh.supported_engines()]:
            model = bench.build_int8("course", engine)
            assert torch.backends.quantized.engine == engine  # left active, as most of torchvision's builders do
            assert weights_digest(model) == shipped, engine
    finally:
        torch.backends.quantized.engine = saved


def test_bad_inputs():
    with pytest.raises(ValueError, match="model must be one of"):
        bench.build_float("vgg16")
    with pytest.raises(ValueError, match="engine for resnet18"):
        bench.build_int8("resnet18", "x86")
    with pytest.raises(ValueError, match="batch"):
        bench.example_input("course", 0)
    with pytest.raises(ValueError, match="threads"):
        bench.run_bench(["course"], threads=0)
    with pytest.raises(ValueError, match="model must be one of"):
        bench.run_bench(["nope"])
    with pytest.raises(ValueError, match="paths must be a non-empty subset"):
        bench.run_bench(["course"], paths=["tflite"])


def test_every_model_of_the_issue_is_measured_on_every_path():
    assert set(bench.MODELS) == {"course", "mobilenet_v2", "resnet18", "resnet50"}
    assert [k for k, _ in bench.PATHS] == ["float", "float_compiled", "eager_int8", "pt2e", "pt2e_compiled", "et_float", "et_int8",
                                          "ort_float", "ort_int8", "ov_float", "ov_int8"]
    assert bench.MODELS["resnet18"]["strict"] and bench.MODELS["resnet50"]["strict"]


def test_example_input_shapes():
    assert bench.example_input("course", 3).shape == (3, 1, 28, 28)
    assert bench.example_input("resnet18", 2).shape == (2, 3, 224, 224)
    assert torch.equal(bench.example_input("course", 2), bench.example_input("course", 2))


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench_report.README_START}\nold table\n{bench_report.README_END}\noutro\n")
    bench.update_readme("| a | b |\n|---|---|", readme)
    text = readme.read_text()
    assert text.startswith(f"intro\n{bench_report.README_START}\n| a | b |\n|---|---|\n<!-- bench:sha256 ") and text.endswith(f"-->\n{bench_report.README_END}\noutro\n")
    assert bench.readme_section(readme) == ("| a | b |\n|---|---|", True)
    readme.write_text(text.replace("| a |", "| edited by hand |"))
    assert bench.readme_section(readme)[1] is False  # a hand edit breaks the digest
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        bench.update_readme("x", readme)
    assert readme.read_text() == "no markers"


def _table_rows(table):
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 9 and cells[0] != "model":
            rows.append(cells)
    return rows


def test_committed_readme_section_is_an_unedited_full_run_of_the_current_bench():
    """The README's results: written by `make bench` (digest intact), every model and path present, ratios consistent."""
    from qhelpers.files import course_root

    table, digest_ok = bench.readme_section(course_root() / "README.md")
    assert digest_ok is not None, "the README's results have no digest line: they were not written by make bench; run: make bench"
    assert digest_ok, "the results section was edited by hand; run: make bench"
    rows = _table_rows(table)
    labels = dict(bench.PATHS)
    for model, spec in bench.MODELS.items():
        found = {cells[1].split(" [")[0] for cells in rows if cells[0] == model}
        expected = {labels[k] for k, _ in bench.PATHS if k != "eager_int8"} | {f"{labels['eager_int8']} ({e})" for e in spec["engines"]}
        assert found == expected, f"{model}: the section is not a full run (missing {expected - found}); run: make bench"
    for model in bench.MODELS:
        by_label = {cells[1].split(" [")[0]: cells for cells in rows if cells[0] == model}
        float_ms = float(by_label[labels["float"]][2])
        for cells in by_label.values():
            if cells[2].startswith("skipped"):
                continue
            assert int(cells[4]) >= bench.MIN_SAMPLES
            assert float(cells[5].rstrip("x")) == pytest.approx(float_ms / float(cells[2]), rel=0.02, abs=0.01)


def test_a_run_on_a_machine_loaded_beyond_its_cores_says_so():
    quiet = {"cpu_count": 2, "load_average_1min": 0.4, "load_average_1min_end": 1.0}
    assert bench_report._load_warning(quiet) == "" and bench_report._load_warning({"cpu_count": 2}) == ""
    loaded = bench_report._load_warning({**quiet, "load_average_1min_end": 13.6})
    assert loaded.startswith(" The load average (13.6) exceeded the 2 cores") and "rerun `make bench` on a quiet machine" in loaded
    result = {"machine": {"date_utc": "d", "cpu": "c", "cpu_capability": "AVX2", "torch": "t", **quiet, "load_average_1min": 16.4},
              "settings": {"batch": 1, "threads": 1, "min_samples": 10}, "rows": [], "compile": []}
    assert "The load average (16.4) exceeded the 2 cores" in bench.markdown_table(result).splitlines()[0]


def test_the_course_models_accuracy_is_folded_away_as_a_spoiler_for_notebook_00():
    """The accuracy table answers notebook 00's exercise 4 (INT8 against float, predictions changed): folded away."""
    from qhelpers.files import course_root

    row = {"model": "course", "label": "eager INT8 (x86)", "median_ms": 1.0, "iqr_ms": 0.1, "runs": 10, "accuracy_pct": 99.0, "float_accuracy_pct": 98.8, "agreement_pct": 99.6}
    result = {"machine": {"date_utc": "d", "cpu": "c", "cpu_capability": "AVX2", "torch": "t", "cpu_count": 2, "load_average_1min": 0.4, "load_average_1min_end": 1.0},
              "settings": {"batch": 1, "threads": 1, "min_samples": 10}, "rows": [row], "compile": []}
    table = bench.markdown_table(result)
    folded = table.split(f"<details><summary>{bench_report.SPOILER_NOTE}</summary>")[1].split("</details>")[0]
    assert "notebook 00's exercise 4" in bench_report.SPOILER_NOTE and "| 99.6 |" in folded
    section, _ = bench.readme_section(course_root() / "README.md")
    assert "| agrees with float % |" in section.split("<details>")[1].split("</details>")[0]
    assert "-> INT8 9" not in (course_root() / "README.md").read_text()
