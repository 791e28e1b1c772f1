"""The digit transformer: architecture, checkpoint verification, shipped accuracy."""

import shutil

import pytest
import torch
from torch import nn

import qhelpers as qh
from qhelpers import transformer as T


def test_every_weight_matrix_is_a_plain_linear():
    m = qh.DigitTransformer()
    linears = [n for n, mod in m.named_modules() if type(mod) is nn.Linear]
    assert len(linears) == 2 + 6 * 3  # embed, head, and q/k/v/out/fc1/fc2 per block
    matrices = {n for n, p in m.named_parameters() if p.dim() == 2}
    assert matrices == {f"{n}.weight" for n in linears}
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_patches_are_the_image_cut_into_squares_row_by_row():
    m = qh.DigitTransformer(patch=7)
    x = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28)
    p = m.patches(x)
    assert p.shape == (1, 16, 49)
    assert torch.equal(p[0, 1], x[0, 0, 0:7, 7:14].reshape(-1))  # second patch: first row of patches, second column
    assert torch.equal(p[0, 4], x[0, 0, 7:14, 0:7].reshape(-1))


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    att = qh.Attention(16, 4).eval()
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([att.q.weight, att.k.weight, att.v.weight]))
        ref.in_proj_bias.copy_(torch.cat([att.q.bias, att.k.bias, att.v.bias]))
        ref.out_proj.weight.copy_(att.out.weight)
        ref.out_proj.bias.copy_(att.out.bias)
        x = torch.randn(2, 5, 16)
        torch.testing.assert_close(att(x), ref(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="patch must divide 28"):
        qh.DigitTransformer(patch=5)
    with pytest.raises(ValueError, match="divisible by heads"):
        qh.Attention(10, 4)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        qh.DigitTransformer()(torch.randn(2, 28, 28))


def test_shipped_checkpoint_loads_verified_and_reaches_its_accuracy():
    meta = qh.digit_transformer_metadata()
    assert meta["test_accuracy"] >= 95.0 and meta["recipe"] == qh.TRANSFORMER_RECIPE
    assert meta["training_command"] == qh.TRANSFORMER_RETRAIN_COMMAND
    model = qh.load_digit_transformer()
    assert not model.training
    assert qh.accuracy(model, qh.digits_loader("test")) == pytest.approx(meta["test_accuracy"], abs=0.11)


def test_corrupt_or_missing_checkpoint_names_the_rebuild_command(tmp_path):
    for name in (T.TRANSFORMER_CHECKPOINT_NAME, T.TRANSFORMER_METADATA_NAME):
        shutil.copy(qh.data_dir() / name, tmp_path / name)
    with open(tmp_path / T.TRANSFORMER_CHECKPOINT_NAME, "r+b") as f:
        f.seek(100)
        f.write(b"\x00corrupt")
    with pytest.raises(ValueError, match="python -m qhelpers.rebuild transformer"):
        qh.load_digit_transformer(tmp_path)
    (tmp_path / T.TRANSFORMER_CHECKPOINT_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="python -m qhelpers.rebuild transformer"):
        qh.load_digit_transformer(tmp_path)


def test_training_restores_the_thread_count(monkeypatch):
    monkeypatch.setitem(T.TRANSFORMER_RECIPE, "batch_size", 500)
    torch.set_num_threads(2)
    model = qh.train_digit_transformer(epochs=1)
    assert torch.get_num_threads() == 2 and not model.training


def test_the_one_rebuild_entry_point_knows_the_transformer():
    from qhelpers import rebuild

    assert "transformer" in rebuild.MODELS
    with pytest.raises(SystemExit):  # --epochs is for model and transformer only
        rebuild.main(["int8", "--epochs", "2"])
