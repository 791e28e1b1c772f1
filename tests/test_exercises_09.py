"""Notebook 09's self-checks: the right answer passes, the typical wrong answers fail with a hint naming the mistake."""

import numpy as np
import pytest
import torch
from torch import nn

import qhelpers as qh
from qhelpers import server_checks
from verdicts import rejected

# --------------------------------------------------------------------------- exercise 1: how much smaller the INT8 file is


@pytest.fixture
def files(tmp_path):
    """A float export of 1,000 bytes, its pre-processed copy of 990, the INT8 file of 260; another model's 400 and 150."""
    sizes = {"m.onnx": 1000, "m_pre.onnx": 990, "m_int8.onnx": 260, "c.onnx": 400, "c_int8.onnx": 150}
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(b"x" * n)
    return tmp_path


def check1(answer, d, **kwargs):
    return qh.check_onnx_size_ratio(answer, d / "m.onnx", d / "m_int8.onnx", **kwargs)


def test_ex1_accepts_right_answer(files, capsys):
    assert check1(1000 / 260, files)
    assert check1(torch.tensor(1000 / 260, dtype=torch.float32), files)  # a float32 tensor is exact enough
    assert check1(1000 / 260, files, others={"the course model": (files / "c.onnx", files / "c_int8.onnx")})
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (260 / 1000, ("INT8 bytes / float bytes",)),             # the inverse (swapped files)
    (26.0, ("percentage",)),                                  # INT8 as a percentage of float
    (100 * 1000 / 260, ("percentage",)),
    (990 / 260, ("pre-processed", "quant_pre_process")),     # the file quant_pre_process wrote
    (4, ("one byte instead of four",)),                       # the constant
    (3.85, ("rounded",)),                                     # 3.846..., rounded
    (2.0, ("divide the float file",)),
])
def test_ex1_rejects_typical_mistakes(files, wrong, words, capsys):
    rejected(capsys, check1(wrong, files), *words)


def test_ex1_another_models_files(files, capsys):
    others = {"a third model": (files / "m_pre.onnx", files / "c_int8.onnx"), "the course model": (files / "c.onnx", files / "c_int8.onnx")}
    rejected(capsys, check1(400 / 150, files, others=others), "the course model")
    rejected(capsys, check1(150 / 400, files, others=others), "the course model")


def test_ex1_without_a_preprocessed_file_and_bad_paths(files, tmp_path, capsys):
    (files / "m_pre.onnx").unlink()
    rejected(capsys, check1(990 / 260, files), "divide the float file")
    assert not check1(..., files)
    assert "not filled in" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="int8_path.*re-run its sections 3-4"):
        qh.check_onnx_size_ratio(3.0, files / "m.onnx", files / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="others"):
        check1(2.0, files, others={"x": (files / "nope.onnx", files / "c_int8.onnx")})


# --------------------------------------------------------------------------- exercise 2: the worst pair sum


def right_2(codes):
    pairs = codes.to(torch.int64).reshape(codes.shape[0], -1, 2)
    return int(255 * torch.maximum(pairs.clamp(min=0).sum(2), (-pairs).clamp(min=0).sum(2)).max())


CODES = torch.tensor([[60, -64, 12, 30], [-5, -64, 64, 1]], dtype=torch.int8)  # reduce-range codes of a small conv


def test_ex2_reference_values():
    t = lambda rows: torch.tensor(rows, dtype=torch.int8)  # noqa: E731
    assert server_checks._worst_pair_sum_reference(t([[127, 127]])) == 64770
    assert server_checks._worst_pair_sum_reference(t([[127, -128]])) == 255 * 128
    assert server_checks._worst_pair_sum_reference(t([[63, 63, -64, -64]])) == 255 * 128 == 32640 <= 32767
    assert server_checks._worst_pair_sum_reference(CODES) == 255 * 69


def test_ex2_accepts_right_answer(capsys):
    assert qh.check_worst_pair_sum(right_2, CODES)
    assert qh.check_worst_pair_sum(lambda c: torch.tensor(right_2(c)), CODES)  # a tensor holding the number
    assert "✅" in capsys.readouterr().out


def abs_sum(codes):  # forgets that activations are never negative
    pairs = codes.to(torch.int64).reshape(codes.shape[0], -1, 2)
    return int(255 * pairs.abs().sum(2).max())


def int8_activations(codes):  # 127 instead of 255
    return right_2(codes) // 255 * 127


def int8_activations_128(codes):
    return right_2(codes) // 255 * 128


def one_product(codes):  # no pairs
    return int(255 * codes.to(torch.int64).abs().max())


def top_two(codes):  # the two largest weights of a row, wherever they are
    flat = codes.to(torch.int64).reshape(codes.shape[0], -1)
    return int(255 * flat.clamp(min=0).sort(dim=1, descending=True).values[:, :2].sum(1).max())


def negate_without_cast(codes):  # -(-128) wraps to -128 in int8
    pairs = codes.reshape(codes.shape[0], -1, 2)
    return int(255 * torch.maximum(pairs.clamp(min=0).sum(2), (-pairs).clamp(min=0).sum(2)).max())


def first_pair_only(codes):
    pairs = codes.to(torch.int64).reshape(codes.shape[0], -1, 2)
    return int(255 * torch.maximum(pairs.clamp(min=0).sum(2), (-pairs).clamp(min=0).sum(2))[:, 0].max())


def overlapping_pairs(codes):  # every adjacent pair (0, 1), (1, 2), ...: equals the right answer on some files
    pairs = codes.to(torch.int64).unfold(1, 2, 1)
    return int(255 * torch.maximum(pairs.clamp(min=0).sum(2), (-pairs).clamp(min=0).sum(2)).max())


def constant(codes):  # the printed limit
    return 32767


def right_on_the_file_only(codes):  # the answer for the file's codes, typed in
    return 255 * 69


@pytest.mark.parametrize("fn, words", [
    (abs_sum, ("opposite signs", "a pair of opposite signs")),
    (int8_activations, ("uint8", "255")),
    (int8_activations_128, ("uint8",)),
    (one_product, ("one product",)),
    (top_two, ("neighbours",)),
    (negate_without_cast, ("-(-128) is -128", "wider integer type")),
    (first_pair_only, ("not only the first",)),
    (overlapping_pairs, ("do not overlap", "side by side across two pairs")),
    (constant, ("two weights of 127", "64770")),
    (right_on_the_file_only, ("two weights of 127",)),
])
def test_ex2_rejects_typical_mistakes(fn, words, capsys):
    rejected(capsys, qh.check_worst_pair_sum(fn, CODES), *words)


def test_ex2_the_checks_own_reference_is_refused(capsys):
    assert "worst_pair_sum_reference" not in dir(qh)
    rejected(capsys, qh.check_worst_pair_sum(server_checks._worst_pair_sum_reference, CODES), "the check's own reference")


def test_ex2_a_wrapper_around_the_reference_is_refused(capsys):
    from qhelpers.server_checks import _worst_pair_sum_reference as ref

    rejected(capsys, qh.check_worst_pair_sum(lambda c: server_checks._worst_pair_sum_reference(c), CODES), "calls the check's own reference")
    rejected(capsys, qh.check_worst_pair_sum(lambda c: int(ref(c.clone())), CODES), "calls the check's own reference")
    assert not server_checks._WATCHING[0]  # the watch ends with the check
    assert qh.check_worst_pair_sum(right_2, CODES)  # and a right function after it still passes


def test_ex2_the_watch_ends_when_the_function_raises():
    def broken(codes):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        qh.check_worst_pair_sum(broken, CODES)
    assert not server_checks._WATCHING[0]


def test_ex2_a_result_instead_of_a_function(capsys):
    rejected(capsys, qh.check_worst_pair_sum(255 * 69, CODES), "pass your function")


@pytest.mark.parametrize("as_float", [float, np.float64, lambda v: torch.tensor(float(v)), lambda v: np.array(float(v)), bool])
def test_ex2_refuses_a_float_or_bool_answer(as_float, capsys):
    """The task asks for an int: a whole float such as 31110.0 (or a float tensor or array) is refused with that hint."""
    rejected(capsys, qh.check_worst_pair_sum(lambda c: as_float(right_2(c)), CODES), "return an int")


def test_ex2_integer_answers_of_other_types_pass():
    assert qh.check_worst_pair_sum(lambda c: np.int64(right_2(c)), CODES)
    assert qh.check_worst_pair_sum(lambda c: np.array(right_2(c), dtype=np.int32), CODES)


def test_ex2_an_answer_that_is_no_number_is_a_type_error():
    with pytest.raises(TypeError, match="worst pair sum must be a single number"):
        qh.check_worst_pair_sum(lambda c: "31110", CODES)


def test_ex2_blank_and_bad_codes(capsys):
    assert not qh.check_worst_pair_sum(..., CODES)
    assert "not filled in" in capsys.readouterr().out
    with pytest.raises(TypeError, match="codes"):
        qh.check_worst_pair_sum(right_2, CODES.float())
    with pytest.raises(TypeError, match="K even"):
        qh.check_worst_pair_sum(right_2, torch.zeros(2, 3, dtype=torch.int8))


@pytest.mark.parametrize("fn", [negate_without_cast, first_pair_only])
def test_ex2_the_neighbours_hint_only_where_it_is_the_mistake(fn, capsys):
    assert "neighbours" not in rejected(capsys, qh.check_worst_pair_sum(fn, CODES))


def test_ex2_no_hint_when_a_later_answer_is_not_a_number(capsys):
    out = rejected(capsys, qh.check_worst_pair_sum(lambda c: "x" if c.shape == (3, 2) else 32767, CODES), "two weights of 127")
    assert "neighbours" not in out and "uint8" not in out


def test_ex2_a_wrong_rule_the_check_does_not_know_gets_the_numbers(capsys):
    out = rejected(capsys, qh.check_worst_pair_sum(lambda c: right_2(c) + 1, CODES), "two weights of 127", "64771", "64770")
    assert "opposite signs" not in out


# --------------------------------------------------------------------------- exercise 3: stored integer tensors


@pytest.fixture(scope="module")
def qdq_file(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from qhelpers import server_runtimes as sr

    folder = tmp_path_factory.mktemp("qdq")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3)).eval()
    x = torch.randn(16, 1, 8, 8)
    float_path = sr.export_onnx(model, x[:2], folder / "tiny.onnx")
    return sr.quantize_onnx(float_path, folder / "tiny_int8.onnx", x, reduce_range=True)


def right_3(graph):
    stored = {i.name for i in graph.initializer}
    return sum(n.op_type == "DequantizeLinear" and n.input[0] in stored for n in graph.node)


@pytest.mark.slow  # the fixture exports and quantizes a small model with ONNX Runtime
def test_ex3_counts_of_the_tiny_file(qdq_file):
    c = server_checks._graph_counts(server_checks._onnx_graph(qdq_file))
    assert c["weighted"] == 3 and c["stored"] == 6, c  # two convs and a linear: a weight and a bias each
    crafted = server_checks._graph_counts(server_checks._crafted_graph())
    assert len(set(crafted.values())) == len(crafted), crafted  # every wrong rule gives its own count on the check's graph


@pytest.mark.slow
def test_ex3_accepts_right_answer(qdq_file, capsys):
    assert qh.check_stored_integer_dq_function(right_3, qdq_file)
    assert qh.check_stored_integer_dq_function(lambda g: torch.tensor(right_3(g)), str(qdq_file))
    assert "✅" in capsys.readouterr().out


def _rule(key):
    return lambda graph: server_checks._graph_counts(graph)[key]


@pytest.mark.slow
@pytest.mark.parametrize("key, words", [
    ("distinct", ("stored tensors, not the nodes", "small graph")),  # right on ONNX Runtime's files, wrong on a shared weight
    ("dq", ("every DequantizeLinear", "course model's file")),
    ("q", ("QuantizeLinear nodes",)),
    ("dq_minus_q", ("int8 graph input", "small graph")),          # right on ONNX Runtime's files, wrong on the check's
    ("two_per_layer", ("every layer has a bias", "small graph")),   # right on the course model's file (14 = 2 x 7)
    ("weighted", ("biases",)),
    ("initializers", ("scales and zero points",)),
    ("not_after_q_or_input", ("int8 output of another node", "QLinearConv", "small graph")),  # right on ONNX Runtime's QDQ files
])
def test_ex3_rejects_typical_rules(qdq_file, key, words, capsys):
    rejected(capsys, qh.check_stored_integer_dq_function(_rule(key), qdq_file), *words)


@pytest.mark.slow
def test_ex3_rejects_every_dq_not_after_a_quantize_or_an_input(qdq_file, capsys):
    def wrong(graph):  # "an activation's DequantizeLinear follows a QuantizeLinear or a graph input; count the others"
        q_out = {o for n in graph.node if n.op_type == "QuantizeLinear" for o in n.output}
        inputs = {i.name for i in graph.input}
        return sum(n.op_type == "DequantizeLinear" and n.input[0] not in q_out and n.input[0] not in inputs for n in graph.node)

    assert wrong(server_checks._onnx_graph(qdq_file)) == right_3(server_checks._onnx_graph(qdq_file))  # right on the file
    rejected(capsys, qh.check_stored_integer_dq_function(wrong, qdq_file), "small graph", "returns 9", "right count is 7",
             "int8 output of another node")


@pytest.mark.slow
def test_ex3_a_number_and_other_wrong_answers(qdq_file, tmp_path, capsys):
    rejected(capsys, qh.check_stored_integer_dq_function(6, qdq_file), "pass your function")
    rejected(capsys, qh.check_stored_integer_dq_function(lambda g: 14, qdq_file), "course model's file", "right count is 6")  # a constant
    rejected(capsys, qh.check_stored_integer_dq_function(lambda g: 1000, qdq_file), "input[0]")
    assert not qh.check_stored_integer_dq_function(..., qdq_file)
    assert "not filled in" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="onnx_path.*re-run its sections 3-4"):
        qh.check_stored_integer_dq_function(right_3, tmp_path / "missing.onnx")
