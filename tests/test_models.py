"""The course model: architecture in torchvision's quantizable style, the shipped checkpoint, fusion."""

import json
import shutil

import pytest
import torch
from torch.ao.nn.quantized import FloatFunctional

import qhelpers as qh


@pytest.fixture(scope="module")
def model():
    return qh.load_course_model()


def test_checkpoint_reaches_promised_accuracy(model):
    meta = qh.course_model_metadata()
    acc = qh.accuracy(model, qh.digits_loader("test"))
    assert acc >= 97.5
    assert acc == pytest.approx(meta["test_accuracy"], abs=0.05)
    assert meta["training_command"] == "python -m qhelpers.rebuild model"
    assert meta["sha256"] == qh.sha256_file(qh.data_dir() / qh.CHECKPOINT_NAME)


def test_model_has_quantization_ready_structure(model):
    kinds = {type(m) for m in model.modules()}
    assert {torch.ao.quantization.QuantStub, torch.ao.quantization.DeQuantStub, FloatFunctional} <= kinds
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    out = model(torch.zeros(3, 1, 28, 28))
    assert out.shape == (3, 10)


def test_fuse_model_keeps_outputs_and_removes_batchnorm(model):
    x = qh.digits_dataset("test", limit=64).tensors[0]
    fused = qh.CourseNet()
    fused.load_state_dict(model.state_dict())
    fused.eval().fuse_model()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)


def test_fuse_model_for_qat_in_train_mode():
    m = qh.CourseNet().train()
    m.fuse_model(is_qat=True)
    from torch.ao.nn.intrinsic import ConvBnReLU2d

    assert any(isinstance(mod, ConvBnReLU2d) for mod in m.modules())


def test_corrupt_checkpoint_names_file(tmp_path):
    for name in ("course_model.pt", "course_model.json"):
        shutil.copy(qh.data_dir() / name, tmp_path / name)
    (tmp_path / "course_model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"course_model\.pt is corrupt.*python -m qhelpers\.rebuild model"):
        qh.load_course_model(tmp_path)
    (tmp_path / "course_model.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"course_model\.pt is missing"):
        qh.load_course_model(tmp_path)


def test_unreadable_checkpoint_with_matching_checksum_is_reported(tmp_path):
    (tmp_path / "course_model.pt").write_bytes(b"garbage")
    meta = {"sha256": qh.sha256_file(tmp_path / "course_model.pt")}
    (tmp_path / "course_model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="could not be read as a checkpoint"):
        qh.load_course_model(tmp_path)


# --------------------------------------------------------------------------- the registry of shipped models


def test_every_shipped_model_is_in_the_registry_and_matches_its_files():
    """One ModelSpec per file pair in data/: its metadata names it and its rebuild command, its checksum holds, and
    the notebooks' named helpers are the registry's load/metadata calls."""
    from qhelpers import registry
    from qhelpers.rebuild import MODELS

    assert sorted(MODELS) == ["depthwise", "int8", "model", "transformer"]
    shipped = {p.stem for p in qh.data_dir().glob("*.pt")}
    assert shipped == {spec.checkpoint.removesuffix(".pt") for spec in MODELS.values()}
    helpers = {"model": (qh.load_course_model, qh.course_model_metadata), "depthwise": (qh.load_depthwise_model, qh.depthwise_model_metadata),
               "transformer": (qh.load_digit_transformer, qh.digit_transformer_metadata), "int8": (None, qh.course_int8_metadata)}
    for name, spec in MODELS.items():
        meta = registry.model_metadata(spec)
        assert meta["model"] == spec.label and meta["sha256"] == qh.sha256_file(qh.data_dir() / spec.checkpoint)
        assert meta.get("training_command", meta.get("rebuild_command")) == spec.rebuild_command == f"python -m qhelpers.rebuild {name}"
        load, metadata = helpers[name]
        assert metadata() == meta
        if load is not None:
            a, b = load().state_dict(), registry.load_model(spec).state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TypeError, match="int8"):
        registry.load_model(MODELS["int8"])


@pytest.mark.slow  # one epoch of the depthwise model at batch 500: a few seconds
def test_rebuild_writes_a_loadable_checkpoint_and_its_metadata(tmp_path, monkeypatch):
    from qhelpers import registry
    from qhelpers.models_depthwise import DEPTHWISE_MODEL

    shutil.copytree(qh.data_dir(), tmp_path / "data")
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path / "data"))
    monkeypatch.setitem(DEPTHWISE_MODEL.recipe, "batch_size", 500)  # 7 steps
    meta = registry.rebuild_model(DEPTHWISE_MODEL, epochs=1)
    on_disk = json.loads((tmp_path / "data" / DEPTHWISE_MODEL.metadata).read_text())
    assert meta == on_disk and meta["recipe"] == {**DEPTHWISE_MODEL.recipe, "epochs": 1}
    assert meta["training_command"] == "python -m qhelpers.rebuild depthwise" and meta["test_images"] == 1000
    model = qh.load_depthwise_model(tmp_path / "data")
    assert qh.accuracy(model, qh.digits_loader("test")) == pytest.approx(meta["test_accuracy"], abs=0.05)
