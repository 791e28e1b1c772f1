"""The bundled digits: splits, checksums, clear errors for missing or corrupt files."""

import json
import shutil

import numpy as np
import pytest
import torch

import qhelpers as qh
from qhelpers import data as qdata


def test_splits_sizes_and_balance():
    splits = qh.load_digits()
    assert {s: len(splits[s][1]) for s in qh.SPLITS} == {"train": 3500, "calib": 500, "test": 1000}
    for split, (images, labels) in splits.items():
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        assert labels.dtype == np.int64
        counts = np.bincount(labels, minlength=10)
        assert counts.min() == counts.max(), f"{split} is not stratified: {counts}"
    assert int(splits["test"][0].max()) > 200  # real pixel intensities, not a blank array


def test_splits_do_not_overlap():
    splits = qh.load_digits()
    seen = set()
    for images, _ in splits.values():
        hashes = {img.tobytes() for img in images}
        assert not (hashes & seen)
        seen |= hashes


def test_dataset_is_normalized_float():
    ds = qh.digits_dataset("calib", limit=100)
    x, y = ds.tensors
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min().item() == pytest.approx(-qh.MNIST_MEAN / qh.MNIST_STD, rel=1e-5)


def test_loader_shuffle_is_seeded():
    a = next(iter(qh.digits_loader("train", batch_size=8, shuffle=True, seed=3)))[1]
    b = next(iter(qh.digits_loader("train", batch_size=8, shuffle=True, seed=3)))[1]
    assert torch.equal(a, b)


@pytest.fixture
def data_copy(tmp_path):
    for name in ("digits.npz", "digits.json", "course_model.pt", "course_model.json"):
        shutil.copy(qh.data_dir() / name, tmp_path / name)
    return tmp_path


def test_missing_file_names_file_and_rebuild_command(data_copy):
    (data_copy / "digits.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"digits\.npz is missing.*python -m qhelpers\.rebuild data"):
        qh.load_digits(data_copy)


def test_corrupt_file_is_detected_by_checksum(data_copy):
    raw = bytearray((data_copy / "digits.npz").read_bytes())
    raw[1000] ^= 0xFF
    (data_copy / "digits.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"digits\.npz is corrupt.*rebuild"):
        qh.load_digits(data_copy)


def test_corrupt_metadata_is_reported(data_copy):
    (data_copy / "digits.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"digits\.json is not valid JSON"):
        qh.load_digits(data_copy)


def test_recorded_checksum_matches_shipped_file():
    meta = json.loads((qh.data_dir() / "digits.json").read_text())
    assert meta["sha256"] == qh.sha256_file(qh.data_dir() / "digits.npz")
    assert "CC BY-SA 3.0" in meta["license"]


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """A write that dies half way (after some bytes reached the disk) leaves the old file intact and no temp file.

    The failure is injected after the first bytes are written, so a non-atomic implementation (writing
    straight into ``target``) would leave b"par" behind and fail this test.
    """
    import os as _os

    target = tmp_path / "out.bin"
    qh.atomic_write_bytes(target, b"first")
    real_fdopen = _os.fdopen

    class DiesHalfWay:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
            return False

        def write(self, payload):
            self.f.write(payload[:3])
            self.f.flush()
            raise OSError("disk full (injected)")

    def fdopen(fd, *args, **kwargs):
        return DiesHalfWay(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr("qhelpers.files.os.fdopen", fdopen)
    with pytest.raises(OSError, match="disk full"):
        qh.atomic_write_bytes(target, b"partial payload")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_data_dir_follows_QHELPERS_DATA_and_says_how_to_fix_a_missing_one(tmp_path, monkeypatch):
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    assert qh.data_dir() == tmp_path
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="QHELPERS_DATA=.*is not a folder"):
        qh.data_dir()
    monkeypatch.delenv("QHELPERS_DATA")
    monkeypatch.delenv("QHELPERS_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # no course folder at or above the current directory ...
    monkeypatch.setattr("qhelpers.files._package_course_folder", lambda: None)  # ... nor beside the package (pip install .)
    with pytest.raises(FileNotFoundError, match=r"pip install -e \.` from the course folder.*QHELPERS_HOME.*QHELPERS_DATA"):
        qh.data_dir()


def test_course_root_is_where_the_learner_works(tmp_path, monkeypatch):
    """QHELPERS_HOME, else the nearest folder holding notebooks/ and data/ at or above the current directory."""
    course = tmp_path / "course"
    (course / "notebooks" / "deep").mkdir(parents=True)
    (course / "data").mkdir()
    monkeypatch.delenv("QHELPERS_HOME", raising=False)
    monkeypatch.delenv("QHELPERS_DATA", raising=False)
    monkeypatch.chdir(course / "notebooks" / "deep")
    assert qh.course_root() == course.resolve()
    assert qh.data_dir() == course.resolve() / "data"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="QHELPERS_HOME"):
        qh.course_root()
    assert qh.course_root(required=False) is None
    monkeypatch.setenv("QHELPERS_HOME", str(course))
    assert qh.course_root() == course.resolve()
    monkeypatch.setenv("QHELPERS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="QHELPERS_HOME=.*not the course folder"):
        qh.course_root()
    # the learner's copy without solutions (scripts/build_student_bundle.py): student/ instead of notebooks/
    bundle = tmp_path / "bundle"
    (bundle / "student").mkdir(parents=True)
    (bundle / "data").mkdir()
    monkeypatch.delenv("QHELPERS_HOME")
    monkeypatch.chdir(bundle / "student")
    assert qh.course_root() == bundle.resolve()
    (bundle / "data").rmdir()  # student/ alone is not a course folder
    with pytest.raises(FileNotFoundError, match="data/ and notebooks/ or student/"):
        qh.course_root()


@pytest.mark.parametrize("bad", [dict(split="valid"), dict(split="test", limit=0), dict(split="test", batch_size=0)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        qh.digits_loader(**bad)


def test_data_dir_can_be_overridden(monkeypatch, data_copy):
    monkeypatch.setenv("QHELPERS_DATA", str(data_copy))
    assert qh.data_dir() == data_copy
    assert qdata.load_digits()["test"][0].shape[0] == 1000
