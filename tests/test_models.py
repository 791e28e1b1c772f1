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
