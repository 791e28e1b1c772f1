"""Tests for qhelpers.modern: the deprecation map, plain-int8 inference, PT2E on the course model, save/load."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import qhelpers as qh
from qhelpers import environment

NOTEBOOK = qh.course_root() / "notebooks" / "05_beyond_eager_mode.ipynb"


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    qh.silence_pt2e_noise()
    with warnings.catch_warnings():
        qh.silence_known_deprecations()
        yield


@pytest.fixture(scope="module")
def course():
    qh.setup(seed=0, threads=2, engine="x86")
    model = qh.load_course_model()
    calib = qh.digits_loader("calib", batch_size=100)
    eager_int8 = qh.quantize_course_model(model, calib, engine="x86")
    return model, eager_int8


@pytest.fixture(scope="module")
def pt2e_recipe():
    """The PT2E recipe cell of the notebook, executed as it stands (it must not need qhelpers)."""
    nb = json.loads(NOTEBOOK.read_text())
    recipes = [c for c in nb["cells"] if "recipe" in c.get("metadata", {}).get("tags", [])]
    assert len(recipes) == 1
    source = "".join(recipes[0]["source"])
    assert "qhelpers" not in source and "qh." not in source
    namespace: dict = {}
    exec(compile(source, "recipe", "exec"), namespace)
    return namespace["quantize_pt2e_x86"], recipes[0]["metadata"]["qhelpers"]["recipe_test"], source


# --------------------------------------------------------------------------- deprecation map


def test_deprecation_map_statuses_come_from_the_calls():
    rows = qh.deprecation_map()
    status = {r["api"]: r for r in rows}
    assert len(rows) == len(qh.COURSE_APIS)
    qdtype = status["torch.quantize_per_tensor / per_channel (qint8, quint8)"]
    assert qdtype["status"] == "warns" and "deprecated" in qdtype["warning"]
    assert status["torch.ao.quantization prepare / convert"]["warning"].startswith("DeprecationWarning: torch.ao.quantization is deprecated")
    assert status["torch.jit.script (TorchScript deployment)"]["warning"].startswith("FutureWarning")
    assert status["torchao quantize_"]["status"] == "works"


def test_quantized_dtype_probe_does_not_depend_on_earlier_calls():
    # torch's C++ side warns once per process: the probe must still see it after the warning has fired
    torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8)
    torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8)
    row = qh.probe_api(qh.COURSE_APIS[0])
    assert row["status"] == "warns"
    assert not torch.is_warn_always_enabled()  # restored


def test_probe_statuses_for_handmade_calls():
    def deprecated():
        warnings.warn("old thing", DeprecationWarning)

    def removed():
        raise AttributeError("module 'torch' has no attribute 'gone'")

    def user_warning_not_deprecation():
        warnings.warn("just a hint", UserWarning)

    rows = qh.deprecation_map(
        [qh.ApiProbe("a", "01", deprecated, "x"), qh.ApiProbe("b", "01", removed, "y"), qh.ApiProbe("c", "01", user_warning_not_deprecation, "z")]
    )
    assert [r["status"] for r in rows] == ["warns", "removed", "works"]
    assert rows[0]["warning"] == "DeprecationWarning: old thing"


def test_deprecation_map_bad_input():
    with pytest.raises(ValueError, match="probes"):
        qh.deprecation_map([])
    with pytest.raises(TypeError, match="ApiProbe"):
        qh.probe_api("torch.quantize_per_tensor")


def test_print_table(capsys):
    qh.print_table([{"a": 1.234, "b": "x" * 100}], max_width=10)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["a", "b"] and out[2].split() == ["1.234", "xxxxxxx..."]
    with pytest.raises(ValueError, match="columns"):
        qh.print_table([{"a": 1}], ["b"])


def test_silence_pt2e_noise_drops_only_its_lines(caplog):
    qh.silence_pt2e_noise()
    qh.silence_pt2e_noise()  # idempotent
    logger = logging.getLogger("torch.utils._pytree")
    assert sum(isinstance(f, environment._DropByMessage) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="torch.utils._pytree"):
        logger.warning("<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile")
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


# --------------------------------------------------------------------------- plain int8


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    stride=st.sampled_from([1, 2]),
    padding=st.sampled_from([0, 1]),
    relu=st.booleans(),
)
def test_int8_conv2d_matches_torch_quantized_conv(seed, stride, padding, relu):
    """Against torch's own quantized convolution (fbgemm-family kernel) on random codes: within 1 code."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 7, 7, generator=g) * 4 - 1
    w = torch.randn(5, 3, 3, 3, generator=g) * 0.3
    b = torch.randn(5, generator=g)
    x_qp = qh.qparams_from_tensor(x, 8, signed=False)
    w_qp = qh.qparams_from_tensor(w, 8, signed=True, scheme="symmetric", axis=0)
    ref_float = torch.nn.functional.conv2d(qh.fake_quantize(x, x_qp), qh.fake_quantize(w, w_qp), b, stride, padding)
    if relu:
        ref_float = ref_float.relu()
    out_qp = qh.qparams_from_tensor(ref_float, 8, signed=False)
    out_qp = qh.QParams(out_qp.scale, out_qp.zero_point, 0, 255, 8, False, "affine")

    torch.backends.quantized.engine = "x86"
    cls = torch.ao.nn.intrinsic.quantized.ConvReLU2d if relu else torch.ao.nn.quantized.Conv2d
    qconv = cls(3, 5, 3, stride=stride, padding=padding)
    qw = torch.quantize_per_channel(w, w_qp.scale, w_qp.zero_point, 0, torch.qint8)
    qconv.set_weight_bias(qw, b)
    qconv.scale, qconv.zero_point = float(out_qp.scale), int(out_qp.zero_point)
    qx = torch.quantize_per_tensor(x, float(x_qp.scale), int(x_qp.zero_point), torch.quint8)
    theirs = qconv(qx).int_repr()

    ours = qh.int8_conv2d(qh.quantize(x, x_qp), x_qp, qh.quantize(w, w_qp), w_qp, b, out_qp, stride, padding, relu)
    assert ours.dtype == torch.uint8 and ours.shape == theirs.shape
    assert (ours.int() - theirs.int()).abs().max() <= 1


def test_int8_conv2d_bad_input():
    qp = qh.qparams_from_tensor(torch.rand(4), 8, signed=False)
    wqp = qh.qparams_from_tensor(torch.randn(2, 3, 3, 3), 8, signed=True, scheme="symmetric", axis=0)
    codes = torch.zeros(1, 3, 5, 5, dtype=torch.uint8)
    w = torch.zeros(2, 3, 3, 3, dtype=torch.int8)
    with pytest.raises(TypeError, match="x_q"):
        qh.int8_conv2d(codes.float(), qp, w, wqp, None, qp)
    with pytest.raises(ValueError, match="channels"):
        qh.int8_conv2d(torch.zeros(1, 4, 5, 5, dtype=torch.uint8), qp, w, wqp, None, qp)
    with pytest.raises(ValueError, match="bias"):
        qh.int8_conv2d(codes, qp, w, wqp, torch.zeros(3), qp)
    with pytest.raises(ValueError, match="4-D"):
        qh.int8_conv2d(codes[0], qp, w, wqp, None, qp)


def test_plain_int8_forward_matches_eager_int8(course):
    _, eager_int8 = course
    x, _ = next(iter(qh.digits_loader("test", batch_size=128)))
    ours = qh.plain_int8_forward(eager_int8, x)
    with torch.no_grad():
        theirs = eager_int8(x)
    steps = ((ours - theirs).abs() / eager_int8.fc2.scale).max().item()
    assert steps <= 2.0 + 1e-4
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


def test_plain_int8_forward_bad_input(course):
    model, eager_int8 = course
    with pytest.raises(ValueError, match="28"):
        qh.plain_int8_forward(eager_int8, torch.zeros(1, 1, 14, 14))
    with pytest.raises(TypeError, match="converted eager INT8"):
        qh.plain_int8_forward(model, torch.zeros(1, 1, 28, 28))


# --------------------------------------------------------------------------- PT2E and deployment


@pytest.fixture(scope="module")
def course_pt2e(course, pt2e_recipe):
    model, _ = course
    quantize_pt2e_x86, _, _ = pt2e_recipe
    example = torch.randn(2, 1, 28, 28)
    return quantize_pt2e_x86(model, (example,), qh.digits_loader("calib", batch_size=100))


def test_pt2e_recipe_on_course_model_within_one_point(course, course_pt2e):
    model, _ = course
    test = qh.digits_loader("test", batch_size=250)
    float_acc, pt2e_acc = qh.accuracy(model, test), qh.graph_accuracy(course_pt2e, test)
    assert abs(pt2e_acc - float_acc) <= 1.0
    counts = qh.count_quant_ops(course_pt2e)
    assert counts["quantize_per_tensor"] > 0 and counts["dequantize_per_channel"] > 0


def test_recipe_test_metadata_passes(pt2e_recipe):
    _, recipe_test, source = pt2e_recipe
    namespace: dict = {}
    exec(compile(source, "recipe", "exec"), namespace)
    exec(compile(recipe_test, "recipe_test", "exec"), namespace)


def test_graph_helpers_bad_input():
    with pytest.raises(TypeError, match="GraphModule"):
        qh.count_quant_ops(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="GraphModule"):
        qh.graph_accuracy(nn.Linear(2, 2), [])
    with pytest.raises(TypeError, match="GraphModule"):
        qh.strip_unused_weights(nn.Linear(2, 2))


def test_export_save_load_round_trip(course_pt2e, tmp_path):
    import copy

    ship = copy.deepcopy(course_pt2e)
    removed = qh.strip_unused_weights(ship)
    assert removed > 0
    example = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(ship(example), course_pt2e(example))  # nothing the graph reads was removed
    program = torch.export.export(ship, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "m.pt2"
    size = qh.save_exported(program, path)
    assert size == path.stat().st_size
    loaded = torch.export.load(path).module()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), course_pt2e(x))
    with pytest.raises(TypeError, match="ExportedProgram"):
        qh.save_exported(ship, path)


def test_torchscript_save_load_round_trip(course, tmp_path):
    _, eager_int8 = course
    path = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        size = qh.save_torchscript(eager_int8, path)
        loaded = torch.jit.load(path)
    assert size == path.stat().st_size
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), eager_int8(x))
    with pytest.raises(TypeError, match="nn.Module"):
        qh.save_torchscript("model", path)


# --------------------------------------------------------------------------- self-checks


def test_checks(capsys, course_pt2e):
    assert qh.check_requant_multiplier(0.5 * 0.02 / 0.1, 0.5, 0.02, 0.1)
    assert not qh.check_requant_multiplier(0.5 * 0.02, 0.5, 0.02, 0.1)
    assert "accumulator" in capsys.readouterr().out
    assert not qh.check_requant_multiplier(..., 0.5, 0.02, 0.1)
    assert "not filled in yet" in capsys.readouterr().out
    assert qh.check_size_ratio(3.0, 300, 100) and not qh.check_size_ratio(1 / 3, 300, 100)
    assert "upside down" in capsys.readouterr().out
    n = qh.count_quant_ops(course_pt2e)["quantize_per_tensor"]
    assert qh.check_op_count(n, course_pt2e) and not qh.check_op_count(n + 1, course_pt2e)
    assert not qh.check_op_count(None, course_pt2e)


# --------------------------------------------------------------------------- map rows added for the gaps, quantize_ coverage, latency


def test_deprecation_map_new_rows():
    rows = {r["api"]: r for r in qh.deprecation_map()}
    for api in ("torch.ao.quantization.quantize_fx prepare_fx / convert_fx", "torch.ao.quantization.quantize_dynamic (nn.LSTM / nn.GRU)",
                "torchvision.models.quantization (quantizable models)", "qnnpack engine (eager INT8 on Arm)"):
        assert rows[api]["status"] == "warns", api
    for api in ("torchao quantize_(m, QATConfig(...))", "torchao quant_primitives (quantize_affine ...)"):
        assert rows[api]["status"] == "works", api
    assert "XNNPACKQuantizer" in rows["qnnpack engine (eager INT8 on Arm)"]["replacement"]
    assert "QATConfig" in rows["torch.ao.quantization.prepare_qat"]["replacement"]
    before = torch.backends.quantized.engine
    qh.probe_api(next(p for p in qh.COURSE_APIS if p.name.startswith("qnnpack engine")))
    assert torch.backends.quantized.engine == before


def test_weight_storage_shows_what_quantize_touched():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 4))
    lstm = nn.LSTM(4, 4)
    quantize_(model, Int8WeightOnlyConfig())
    quantize_(lstm, Int8WeightOnlyConfig())
    assert qh.weight_storage(model) == {"0 (Conv2d)": "Parameter", "2 (Linear)": "Int8Tensor"}
    assert qh.weight_storage(lstm) == {"(model) (LSTM)": "Parameter"}
    with pytest.raises(TypeError, match="nn.Module"):
        qh.weight_storage("model")


def test_interleaved_latency_and_bad_input():
    models = {"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)}
    out = qh.interleaved_latency(models, torch.randn(2, 4), rounds=2, min_run_time=0.01)
    assert set(out) == {"a", "b"} and all(v > 0 for v in out.values())
    with pytest.raises(ValueError, match="models"):
        qh.interleaved_latency({}, torch.randn(2, 4))
    with pytest.raises(ValueError, match="rounds"):
        qh.interleaved_latency(models, torch.randn(2, 4), rounds=0)


def test_quantized_weight(course):
    _, eager_int8 = course
    codes, qp = qh.quantized_weight(eager_int8.stem[0])
    assert codes.dtype == torch.int8 and qp.per_channel and qp.scale.numel() == codes.shape[0]
    with pytest.raises(TypeError, match="converted eager quantized"):
        qh.quantized_weight(nn.Linear(2, 2))
