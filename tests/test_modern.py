"""Tests for notebook 05's modules (deprecations, plain_int8, torchao_inspect, pt2e_export): the deprecation map, plain-int8 inference, PT2E on the course model, save/load."""

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
    assert status["torchao quantize_"]["status"] == "no warning"


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
    assert [r["status"] for r in rows] == ["warns", "removed", "no warning"]
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
    # where the x86 engine's kernels saturate 16-bit pair sums (no AVX512-VNNI), 7-bit activation codes keep its sums
    # exact, as the engine's default qconfig does; the emulation computes exact sums on every CPU
    x_qp = qh.qparams_from_tensor(x, 8, signed=False, reduce_range=qh.int8_pairs_saturate("x86"))
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


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_plain_int8_forward_reproduces_each_engine_exactly(engine):
    """With the engine's own bias handling (float for x86, int32 for qnnpack) the plain-int8 logits equal the eager model's."""
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"no {engine} engine here")
    previous = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = engine
        eager_int8 = qh.quantize_course_model(qh.load_course_model(), qh.digits_loader("calib", batch_size=100), engine=engine)
        x, _ = next(iter(qh.digits_loader("test", batch_size=128)))
        with torch.no_grad():
            theirs = eager_int8(x)
        assert torch.equal(qh.plain_int8_forward(eager_int8, x), theirs)
        other = qh.plain_int8_forward(eager_int8, x, bias_in_float=not qh.bias_in_float_for(engine))
        assert not torch.equal(other, theirs)  # the other bias handling misses a few codes
        assert ((other - theirs).abs() / eager_int8.fc2.scale).max().item() <= 2.0 + 1e-4
    finally:
        torch.backends.quantized.engine = previous


def test_int8_conv2d_stem_codes_per_engine(course):
    """The stem of the eager INT8 course model (x86 engine): the float-bias formula reproduces every code, the int32 bias not."""
    _, eager_int8 = course
    x, _ = next(iter(qh.digits_loader("test", batch_size=64)))
    stem = eager_int8.stem[0]
    x_qp = qh.QParams(eager_int8.quant.scale.float(), eager_int8.quant.zero_point.long(), 0, 255, 8, False, "affine")
    w_codes, w_qp = qh.quantized_weight(stem)
    out_qp = qh.QParams(torch.tensor([stem.scale]), torch.tensor([stem.zero_point]), 0, 255, 8, False, "affine")
    with torch.no_grad():
        theirs = stem(eager_int8.quant(x)).int_repr()
    codes = qh.quantize(x, x_qp)
    args = (codes, x_qp, w_codes, w_qp, stem.bias(), out_qp, 1, 1, True)
    assert torch.equal(qh.int8_conv2d(*args, bias_in_float=True), theirs)
    int32_bias = qh.int8_conv2d(*args)
    fixed = qh.int8_conv2d(*args, fixed_point=True)
    assert (int32_bias.int() - theirs.int()).abs().max() <= 1
    assert (fixed.int() - int32_bias.int()).abs().max() <= 1
    with pytest.raises(ValueError, match="int32"):
        qh.int8_conv2d(*args, bias_in_float=True, fixed_point=True)
    with pytest.raises(TypeError, match="True or False"):
        qh.int8_conv2d(*args, bias_in_float="yes")
    with pytest.raises(ValueError, match="engine"):
        qh.bias_in_float_for("tpu")


def test_refresh_bn_statistics_revives_a_random_mobilenet():
    import torchvision

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, 3, 64, 64, generator=g)]
    m = torchvision.models.mobilenet_v2(weights=None).eval()
    with torch.no_grad():
        dead = m(batches[0]).std().item()
    momenta = [b.momentum for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    qh.refresh_bn_statistics(m, batches)
    with torch.no_grad():
        alive = m(batches[0]).std().item()
    assert dead < 1e-3 < 0.01 < alive and not m.training
    assert [b.momentum for b in m.modules() if isinstance(b, nn.BatchNorm2d)] == momenta
    with pytest.raises(ValueError, match="BatchNorm"):
        qh.refresh_bn_statistics(nn.Linear(2, 2), [torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="non-empty"):
        qh.refresh_bn_statistics(m, [])


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


# --------------------------------------------------------------------------- map rows added for the gaps, quantize_ coverage, latency


def test_deprecation_map_pins_each_warning_on_the_call_that_emits_it():
    rows = {r["api"]: r for r in qh.deprecation_map()}
    for api in ("torch.ao.quantization.quantize_fx prepare_fx / convert_fx", "torch.ao.quantization.quantize_dynamic (nn.LSTM / nn.GRU)",
                "torch.ao.quantization.prepare_qat", "qnnpack engine (eager INT8 on Arm)"):
        assert rows[api]["status"] == "warns", api
    # no warning of their own (measured with each call alone): the note says why they go anyway
    for api in ("torchvision.models.quantization (quantizable models)", "torch.ao.quantization.fuse_modules",
                "torch.ao.ns._numeric_suite.compare_weights"):
        assert rows[api]["status"] == "no warning" and rows[api]["note"], api
    # the qnnpack engine warns only through the quantized dtypes its kernels make, not through prepare/convert
    assert "quantized tensor creation" in rows["qnnpack engine (eager INT8 on Arm)"]["warning"]
    for api in ("torchao QAT for Linear (QATConfig), then quantize_", "torchao quant_primitives (quantize_affine ...)",
                "torchao prepare_pt2e / convert_pt2e", "torchao quantize_"):
        assert rows[api]["status"] == "no warning", api
    assert "XNNPACKQuantizer" in rows["qnnpack engine (eager INT8 on Arm)"]["replacement"]
    assert rows["torch.jit.script (TorchScript deployment)"]["notebook"] == "03"
    assert rows["torch.ao.quantization.quantize_dynamic (nn.Linear)"]["notebook"] == "00, 03"
    before = torch.backends.quantized.engine
    qh.probe_api(next(p for p in qh.COURSE_APIS if p.name.startswith("qnnpack engine")))
    assert torch.backends.quantized.engine == before


def test_probe_reports_a_call_that_fails_and_ignores_setup_warnings():
    def setup():
        warnings.warn("setup is deprecated", DeprecationWarning)
        return 3

    def fails(x):
        raise RuntimeError(f"broken {x}")

    rows = qh.deprecation_map([qh.ApiProbe("setup warns", "-", lambda x: x, "r", setup=setup), qh.ApiProbe("fails", "-", fails, "r", setup=setup)])
    assert [r["status"] for r in rows] == ["no warning", "fails"]
    assert "broken 3" in rows[1]["warning"]


def test_linear_qat_int8_ends_in_int8_weights():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    seen = []

    def train_step(model):
        seen.append(type(model[0]).__name__)  # fake-quantized during training
        model(torch.randn(4, 16)).sum().backward()

    qh.linear_qat_int8(m, train_step)
    assert seen == ["FakeQuantizedLinear"]
    assert all(m[i].weight.qdata.dtype == torch.int8 for i in (0, 2))
    with pytest.raises(TypeError, match="train_step"):
        qh.linear_qat_int8(nn.Linear(2, 2), None)


def test_linear_qat_int8_deploys_the_activation_quantizer_it_trained_with():
    """The INT8 model computes what the fake-quantized one computed (asymmetric per-token activations in both;
    the config's default, symmetric, gives about 40 dB here), and torchao's Inductor option setter does not run."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
    x = torch.randn(32, 64) + 0.5
    outputs = {}

    def no_training(model):
        with torch.no_grad():
            outputs["fake"] = model(x)

    setter_options = ("coordinate_descent_tuning", "coordinate_descent_check_all_directions", "force_fuse_int_mm_with_mul", "fx_graph_cache")
    before = {k: getattr(torch._inductor.config, k) for k in setter_options}  # what torchao's recommended_inductor_config_setter sets
    qh.linear_qat_int8(m, no_training)
    with torch.no_grad():
        assert qh.sqnr_db(outputs["fake"], m(x)) > 80
    assert {k: getattr(torch._inductor.config, k) for k in setter_options} == before


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
