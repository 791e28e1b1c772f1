"""Exercises of notebooks/05_beyond_eager_mode.ipynb: each self-check accepts the right answer and rejects the typical wrong ones with a hint."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import qhelpers as qh

X_SCALE, W_SCALE, OUT_SCALE = 0.0039, 0.0021, 0.047
OTHER_W_SCALES = torch.tensor([0.0017, 0.0030])


@pytest.fixture(scope="module")
def pt2e_graph():
    """The course model's PT2E Q/DQ graph, as convert_pt2e returns it (calibrated on random images: only its nodes matter)."""
    qh.silence_pt2e_noise()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    torch.manual_seed(0)
    model = qh.load_course_model().eval()
    x = torch.randn(2, 1, 28, 28)
    with warnings.catch_warnings():
        qh.silence_known_deprecations()
        prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))
        prepared(x)
        return convert_pt2e(prepared)


# --------------------------------------------------------------------------- exercise 1: requantization multiplier


def _ex1(answer, capsys):
    ok = qh.check_requant_multiplier(answer, X_SCALE, W_SCALE, OUT_SCALE, other_w_scales=OTHER_W_SCALES)
    return ok, capsys.readouterr().out


def test_ex1_accepts_right_answer(capsys):
    ok, out = _ex1(X_SCALE * W_SCALE / OUT_SCALE, capsys)
    assert ok and "✅" in out


def test_ex1_rejects_accumulator_scale(capsys):
    ok, out = _ex1(X_SCALE * W_SCALE, capsys)
    assert not ok and "accumulator's scale" in out


def test_ex1_rejects_upside_down(capsys):
    ok, out = _ex1(OUT_SCALE / (X_SCALE * W_SCALE), capsys)
    assert not ok and "upside down" in out


def test_ex1_rejects_missing_input_scale(capsys):
    ok, out = _ex1(W_SCALE / OUT_SCALE, capsys)
    assert not ok and "one scale is missing" in out


def test_ex1_rejects_other_channel(capsys):
    ok, out = _ex1(X_SCALE * float(OTHER_W_SCALES[1]) / OUT_SCALE, capsys)
    assert not ok and "another output channel" in out


def test_ex1_blank_is_not_filled_in(capsys):
    ok, out = _ex1(..., capsys)
    assert not ok and "not filled in yet" in out


@pytest.fixture(scope="module")
def eager_int8():
    with warnings.catch_warnings():
        qh.silence_known_deprecations()
        qh.setup(seed=0, threads=1)
        return qh.quantize_course_model(qh.load_course_model(), qh.digits_loader("calib", batch_size=100))


def _down1(q):
    down1 = q.down1[0]
    w = qh.quantized_weight(down1)[1].scale.expand(down1.out_channels).double()
    return float(q.stem[0].scale), w, float(down1.scale)


def test_ex1_notebook_answer_down1_channel_5(eager_int8, capsys):
    x, w, out = _down1(eager_int8)
    assert qh.check_layer_multiplier(x * float(w[5]) / out, eager_int8, "down1", channel=5)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    ("image_scale", "wrong input scale"),          # the input image's scale (the stem's input) instead of the stem's output
    ("stem_channel_0", "wrong input scale"),       # the stem's printed channel-0 multiplier, reused for down1
    ("channel_0", "another output channel"),
    ("own_output_as_input", "wrong input scale"),
    ("next_layer_output", "wrong output scale"),  # the output scale of the layer after down1
])
def test_ex1_notebook_rejects_typical_mistakes(eager_int8, wrong, hint, capsys):
    q = eager_int8
    x, w, out = _down1(q)
    stem_w = qh.quantized_weight(q.stem[0])[1].scale.reshape(-1).double()
    answers = {
        "image_scale": float(q.quant.scale) * float(w[5]) / out,
        "stem_channel_0": float(q.quant.scale) * float(stem_w[0]) / x,
        "channel_0": x * float(w[0]) / out,
        "own_output_as_input": out * float(w[5]) / out,
        "next_layer_output": x * float(w[5]) / float(q.res.conv1[0].scale),
    }
    if wrong == "channel_0" and torch.isclose(w[0], w[5]):
        pytest.skip("channels 0 and 5 share a scale on this engine (per-tensor weights)")
    assert not qh.check_layer_multiplier(answers[wrong], q, "down1", channel=5)
    out_text = capsys.readouterr().out
    assert hint in out_text or (wrong == "stem_channel_0" and "not yet" in out_text)


def test_ex1_layer_check_bad_input(eager_int8):
    with pytest.raises(ValueError, match="layer must be one of"):
        qh.check_layer_multiplier(0.1, eager_int8, "down3", channel=0)
    with pytest.raises(ValueError, match="output channels"):
        qh.check_layer_multiplier(0.1, eager_int8, "down1", channel=99)
    with pytest.raises(TypeError, match="converted eager INT8 CourseNet"):
        qh.check_layer_multiplier(0.1, qh.load_course_model(), "down1", channel=0)


# --------------------------------------------------------------------------- exercise 2: count dequantize_per_channel nodes
# The notebook asks it of the strict-export ResNet18 graph; the course model's PT2E graph has the same kinds of nodes
# (7 dequantize_per_channel: 5 convolutions + 2 Linears) and builds in a second.


def _dq_nodes(graph):
    return [n for n in graph.graph.nodes if n.op == "call_function" and getattr(n.target, "__name__", "").startswith("dequantize_per_channel")]


def _pairs(graph, i=1):
    return [(getattr(graph, n.args[0].target), getattr(graph, n.args[i].target)) for n in _dq_nodes(graph)]


def test_ex2_accepts_right_answer(pt2e_graph, capsys):
    pairs = _pairs(pt2e_graph)
    assert len(pairs) == 7 and all(w.dtype == torch.int8 and s.is_floating_point() for w, s in pairs)
    assert all(s.shape == (w.shape[0],) for w, s in pairs)  # one scale per output channel
    assert qh.check_dequantized_weights(pairs, pt2e_graph)
    assert "✅" in capsys.readouterr().out


EX2_WRONG = [  # (answer builder, hint): answers that never read a dequantize node's arguments
    ("count", "that is a count"),
    ("weights", "the int8 weights are right; pair each"),
    ("state_int8", "the int8 weights are right; pair each"),  # the state-dict filter: no scales
    ("float_weights", "float tensors"),
    ("three_weights", "not single tensors"),
    ("float_with_scales", "float weights"),
    ("zero_points", "zero points"),
    ("shifted_scales", "not their scales"),
    ("one_short", "one short"),
    ("reversed", "another order"),
    ("two", "got 2 pairs"),
    ("singletons", "a pair of tensors"),
    ("a_word", "give a list of (weight, scales) pairs"),
]


@pytest.mark.parametrize("wrong, hint", EX2_WRONG, ids=[w for w, _ in EX2_WRONG])
def test_ex2_rejects_what_avoids_the_graph(pt2e_graph, wrong, hint, capsys):
    pairs = _pairs(pt2e_graph)
    weights = [w for w, _ in pairs]
    scales = [s for _, s in pairs]
    float_weights = [m.weight for m in qh.load_course_model().modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    state_int8 = [t for t in pt2e_graph.state_dict().values() if t.dtype == torch.int8]
    assert len(_dq_nodes(pt2e_graph)) == len(state_int8) == 7
    answers = {
        "count": qh.count_quant_ops(pt2e_graph)["dequantize_per_channel"],
        "weights": weights,
        "state_int8": state_int8,
        "float_weights": float_weights,
        "three_weights": weights[:3],
        "float_with_scales": list(zip(float_weights, scales)),
        "zero_points": _pairs(pt2e_graph, 2),
        "shifted_scales": list(zip(weights, scales[1:] + scales[:1])),
        "one_short": pairs[:-1],
        "reversed": pairs[::-1],
        "two": pairs[:2],
        "singletons": [(w,) for w in weights],
        "a_word": "weights",
    }
    assert not qh.check_dequantized_weights(answers[wrong], pt2e_graph)
    assert hint in capsys.readouterr().out, hint


@pytest.mark.parametrize("answer", ["weights", {"stem": 1}, torch.zeros(3)], ids=["str", "dict", "tensor"])
def test_ex2_rejects_a_non_list_without_printing_the_solution(pt2e_graph, answer, capsys):
    assert not qh.check_dequantized_weights(answer, pt2e_graph)
    out = capsys.readouterr().out
    assert "give a list of (weight, scales) pairs" in out and "first two arguments" in out
    assert "getattr" not in out and ".target" not in out and "args[" not in out  # the idea, not the solution's code


def test_ex2_buffer_zip_passes_as_the_docstring_says(pt2e_graph, capsys):
    """convert_pt2e registers the weights and scales in graph order: zipping a dtype filter gives the same pairs."""
    ws = [b for _, b in pt2e_graph.named_buffers() if b.dtype == torch.int8]
    ss = [b for _, b in pt2e_graph.named_buffers() if b.dtype == torch.float32 and b.dim() == 1]
    assert qh.check_dequantized_weights(list(zip(ws, ss)), pt2e_graph)
    assert "buffers()``" in qh.check_dequantized_weights.__doc__ and "cannot tell" in qh.check_dequantized_weights.__doc__
    capsys.readouterr()


def test_ex2_rejects_a_blank(pt2e_graph, capsys):
    assert not qh.check_dequantized_weights(..., pt2e_graph)
    assert "not filled in yet" in capsys.readouterr().out


# --------------------------------------------------------------------------- exercise 3: use the map

RIGHT = {"a": "prepare_pt2e", "b": "quantize_", "c": "keep float", "d": "XNNPACKQuantizer"}


def test_ex3_accepts_right_answer(capsys):
    assert qh.check_migration(dict(RIGHT))
    assert "❌" not in capsys.readouterr().out


def test_ex3_rejects_following_the_warning_for_a_cnn(capsys):
    assert not qh.check_migration({**RIGHT, "a": "quantize_"})
    assert "nn.Linear weights only" in capsys.readouterr().out


def test_ex3_rejects_quantize_for_lstm(capsys):
    assert not qh.check_migration({**RIGHT, "c": "quantize_"})
    assert "leaves nn.LSTM float" in capsys.readouterr().out


def test_ex3_rejects_x86_path_for_phone(capsys):
    assert not qh.check_migration({**RIGHT, "d": "prepare_pt2e"})
    assert "targets a phone" in capsys.readouterr().out


def test_ex3_rejects_static_graph_for_dynamic_linear(capsys):
    assert not qh.check_migration({**RIGHT, "b": "prepare_pt2e"})
    assert "dynamic quantization of Linear layers" in capsys.readouterr().out


def test_ex3_rejects_unknown_and_blank(capsys):
    assert not qh.check_migration({**RIGHT, "a": "torch.compile"})
    assert "is not one of" in capsys.readouterr().out
    assert not qh.check_migration(...)
    assert "not filled in yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="dict"):
        qh.check_migration(["prepare_pt2e"])


# --------------------------------------------------------------------------- exercise 4: predict first

@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256)).eval()
    return block, torch.randn(32, 256)


def test_ex4_measurement_is_what_the_notebook_says(mlp):
    block, tokens = mlp
    assert 44 < qh.weight_only_sqnr(block, tokens, bits=8) < 46.5  # equal to torchao's Int8WeightOnlyConfig on this block
    assert 18 < qh.weight_only_sqnr(block, tokens, bits=4) < 24


def test_ex4_accepts_right_answer(mlp, capsys):
    assert qh.check_bits_prediction(18.0, 24.0, *mlp, bits=4)
    assert "measured: 8-bit weights" in capsys.readouterr().out


def test_ex4_rejects_no_change(mlp, capsys):
    assert not qh.check_bits_prediction(40, 46, *mlp, bits=4)
    out = capsys.readouterr().out
    assert "too optimistic" in out and "coarser" in out


def test_ex4_rejects_three_db_per_bit(mlp, capsys):
    assert not qh.check_bits_prediction(30, 36, *mlp, bits=4)  # 3 dB per bit: the power rule applied as if to amplitude
    out = capsys.readouterr().out
    assert "too optimistic" in out


def test_ex4_rejects_too_pessimistic(mlp, capsys):
    assert not qh.check_bits_prediction(2, 8, *mlp, bits=4)
    assert "too pessimistic" in capsys.readouterr().out


def test_ex4_rejects_range_too_wide(mlp, capsys):
    assert not qh.check_bits_prediction(0, 45, *mlp, bits=4)
    assert "predicts little" in capsys.readouterr().out


@pytest.mark.parametrize("low, high", [(40, 46), (30, 36), (2, 8), (24, 30)])
def test_ex4_rejects_without_printing_the_measurement(mlp, low, high, capsys):
    """A wrong range gets a hint and no number: printing 20.6 dB would make the second try a copy."""
    assert not qh.check_bits_prediction(low, high, *mlp, bits=4)
    out = capsys.readouterr().out
    assert "measured" not in out and "dB," not in out
    assert f"{qh.weight_only_sqnr(*mlp, bits=4):.1f}" not in out and f"{qh.weight_only_sqnr(*mlp, bits=8):.1f}" not in out


def test_ex4_rejects_swapped_bounds(mlp, capsys):
    assert not qh.check_bits_prediction(24, 18, *mlp, bits=4)
    assert "swap" in capsys.readouterr().out
    assert not qh.check_bits_prediction(..., 24, *mlp, bits=4)
    assert "not filled in yet" in capsys.readouterr().out


@pytest.fixture(scope="module")
def mlp_outlier(mlp):
    """The notebook's exercise-4 block: one weight per output row set to 3x the row's largest."""
    import copy

    block, tokens = mlp
    outlier = copy.deepcopy(block)
    with torch.no_grad():
        for layer in outlier:
            if isinstance(layer, nn.Linear):
                layer.weight[:, 0] = 3 * layer.weight.abs().amax(1)
    return outlier, tokens


def test_ex4_outlier_separates_the_rules(mlp_outlier):
    """8-bit 35.6 dB, 4-bit 11.0 dB: 'proportional to bits' (17.8) is more than 6 dB from the measurement."""
    r8, r4 = (qh.weight_only_sqnr(*mlp_outlier, bits=b) for b in (8, 4))
    assert 34 < r8 < 37 and 9.5 < r4 < 12.5
    assert r8 / 2 - r4 > 6  # no 6-dB range holds both


def test_ex4_outlier_accepts_six_db_per_bit(mlp_outlier, capsys):
    assert qh.check_bits_prediction(8.5, 14.5, *mlp_outlier, bits=4)
    assert "✅" in capsys.readouterr().out


def test_ex4_outlier_rejects_proportional_to_bits(mlp_outlier, capsys):
    assert not qh.check_bits_prediction(15, 21, *mlp_outlier, bits=4)  # 35.6 / 2 = 17.8, centred
    assert "not proportional to the bits" in capsys.readouterr().out
    assert not qh.check_bits_prediction(31, 37, *mlp_outlier, bits=4)  # no change: still its own hint
    assert "coarser" in capsys.readouterr().out


def test_weight_only_sqnr_bad_input(mlp):
    block, tokens = mlp
    with pytest.raises(ValueError, match="bits"):
        qh.weight_only_sqnr(block, tokens, bits=1)
    with pytest.raises(ValueError, match="nn.Linear"):
        qh.weight_only_sqnr(nn.Sequential(nn.ReLU()), tokens, bits=8)
