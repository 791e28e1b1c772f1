"""The decision tree, the exercise self-checks, the explorer's logic and the plots."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import qhelpers as qh


@pytest.mark.parametrize(
    "calib, train, drop, arm, method, engine, notebook",
    [
        (True, False, None, False, "PTQ", "x86", "notebook 03"),
        (True, False, True, True, "PTQ in PT2E with XNNPACKQuantizer", "qnnpack", "notebooks 03, 05 and 08"),  # a phone: PT2E (05), ExecuTorch ships it (08)
        (True, True, False, False, "QAT", "x86", "notebook 04"),
        (True, True, False, True, "QAT in PT2E with XNNPACKQuantizer", "qnnpack", "notebooks 04, 05 and 08"),  # an eager QAT model cannot be lowered
        (True, False, False, False, "recover without training", "x86", "notebook 07"),
            (True, False, False, True, "recover without training", "qnnpack", "notebooks 07 and 08"),  # a phone ships through PT2E
        (False, True, None, True, "PTQ in PT2E with XNNPACKQuantizer", "qnnpack", "notebooks 03, 05 and 08"),  # training data calibrates: PTQ first
        (False, False, None, False, "collect data, then PTQ", "x86", "notebook 03"),  # quantize_dynamic leaves Conv2d in float
    ],
)
def test_recommend_walks_the_tree(calib, train, drop, arm, method, engine, notebook):
    r = qh.recommend(calib, train, drop, arm)
    assert (r.method, r.engine, r.notebook) == (method, engine, notebook)
    assert f"notebook {notebook[-2:]}" in qh.DECISION_TREE_TEXT or notebook[-2:] in qh.DECISION_TREE_TEXT


def test_recommend_sends_linear_models_to_weight_only_or_dynamic_first_with_or_without_data():
    # PyTorch's docs: dynamic/weight-only for LSTM, MLP, Embedding, Transformer; static for CNN (docs/REFERENCES.md)
    for calib in (True, False):
        for train in (True, False):
            r = qh.recommend(calib, train, model_kind="linear")
            assert (r.method, r.notebook) == ("dynamic INT8", "notebook 06")
    assert qh.recommend(True, True, False, model_kind="linear").notebook == "notebook 06"
    assert qh.recommend(False, False, model_kind="conv").method == "collect data, then PTQ"
    assert "Conv2d" in qh.recommend(False, False).reason
    with pytest.raises(ValueError, match="model_kind"):
        qh.recommend(False, False, model_kind="rnn")


def test_recommend_asks_first_for_a_pre_quantized_model():
    r = qh.recommend(False, False, model_kind="linear", pre_quantized=True)
    assert (r.method, r.notebook) == ("use the pre-quantized model", "notebook 02")
    arm = qh.recommend(True, False, arm_device=True, pre_quantized=True)
    # torchvision ships qnnpack weights: on ARM the model runs in eager mode; an ExecuTorch app quantizes in PT2E
    assert (arm.method, arm.engine) == ("use the pre-quantized model", "qnnpack")
    assert "IMAGENET1K_QNNPACK_V1" in arm.reason and "ExecuTorch" in arm.reason and "PT2E" in arm.reason
    # a pre-quantized model that lost too much is not the answer
    assert qh.recommend(True, True, ptq_drop_acceptable=False, pre_quantized=True).method == "QAT"
    with pytest.raises(TypeError, match="pre_quantized"):
        qh.recommend(True, False, pre_quantized="yes")


def test_the_tree_text_and_the_targets_know_notebooks_02_to_08():
    for n in ("02", "03", "04", "05", "06", "07", "08"):
        assert f"notebook {n}" in qh.DECISION_TREE_TEXT
    assert set(qh.DEPLOY_TARGETS) == {"x86", "arm"}
    assert all({"engine", "notebook", "deploy"} <= set(t) for t in qh.DEPLOY_TARGETS.values())


def test_arm_points_to_xnnpack_and_executorch_with_qnnpack_as_the_eager_engine():
    r = qh.recommend(True, False, arm_device=True)
    assert r.engine == "qnnpack" and "XNNPACKQuantizer" in r.deploy and "ExecuTorch" in r.deploy and "notebook 08" in r.deploy
    assert "PT2E" in r.method and "engine" not in str(r).split("(")[0]  # no eager engine named for a PT2E path
    assert "XNNPACKQuantizer" in qh.DECISION_TREE_TEXT and "qnnpack" in qh.DECISION_TREE_TEXT
    assert "X86InductorQuantizer" in qh.recommend(True, False).deploy


def test_recommend_refuses_non_booleans():
    with pytest.raises(TypeError, match="has_calibration_data"):
        qh.recommend("yes", False)
    with pytest.raises(TypeError, match="ptq_drop_acceptable"):
        qh.recommend(True, False, "maybe")


def test_checks_accept_right_and_reject_wrong_answers(capsys):
    x = torch.randn(50, generator=torch.Generator().manual_seed(1))
    qp = qh.qparams_from_tensor(x, 8, signed=False)

    def right(t):
        p = qh.qparams_from_tensor(t, 8, signed=False)
        return p.scale.item(), int(p.zero_point)

    assert qh.check_qparams_function(right, x)
    assert not qh.check_qparams_function(lambda t: (right(t)[0] * 1.01, right(t)[1]), x)
    assert not qh.check_qparams_function(lambda t: (right(t)[0], right(t)[1] + 0.5), x)
    codes = lambda t: qh.quantize(t, qp)  # noqa: E731
    assert qh.check_codes(codes, x, qp.scale.item(), int(qp.zero_point))
    assert not qh.check_codes(lambda t: codes(t).float(), x, qp.scale.item(), int(qp.zero_point))
    assert not qh.check_codes(lambda t: codes(t)[:-1], x, qp.scale.item(), int(qp.zero_point))
    w = torch.randn(4, 3)
    assert qh.check_per_channel_scales(qh.qparams_from_tensor(w, 8, True, "symmetric", axis=0).scale, w)
    assert not qh.check_per_channel_scales(qh.qparams_from_tensor(w, 8, True, "symmetric").scale.expand(4), w)
    out = capsys.readouterr().out
    assert out.count("✅") == 3 and out.count("❌") == 5


def test_blank_answers_print_not_filled_in(capsys):
    assert not qh.check_qparams_function(..., torch.ones(2))
    assert not qh.check_codes(..., torch.ones(2), 0.1, 0)
    assert "not filled in yet" in capsys.readouterr().out


def test_explore_clipping_trades_range_for_resolution():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(20_000, generator=g)
    sign = torch.where(torch.rand(20_000, generator=g) < 0.5, -1.0, 1.0)
    x = -torch.log(u) * sign  # Laplace: heavy tails, as weights and activations have
    full = qh.explore(x, bits=4, clip_percentile=100.0)
    clipped = qh.explore(x, bits=4, clip_percentile=99.9)
    assert clipped["sqnr_db"] > full["sqnr_db"] + 1.0  # at 4 bits clipping the tails wins
    assert 0 < clipped["clipped_percent"] < 0.5 and full["clipped_percent"] == 0.0
    at8 = qh.explore(x, bits=8, clip_percentile=99.0)
    assert at8["sqnr_db"] < qh.explore(x, bits=8)["sqnr_db"]  # at 8 bits the grid is fine enough; clipping costs
    assert full["levels"] == 16
    with pytest.raises(ValueError, match="clip_percentile"):
        qh.explore(x, clip_percentile=20)


def test_plots_draw_grid_and_lines():
    x = torch.randn(1000)
    qp = qh.qparams_from_tensor(x, 3)
    ax = qh.plot_histogram_with_grid(x, qp)
    assert len(ax.lines) == 8 + 2  # every level plus the two red range edges
    ax2 = qh.plot_per_channel_error({"a": [1.0, 2.0], "b": [0.5, 0.1]})
    assert len(ax2.lines) == 2
    assert ax2.get_yscale() == "linear" and ax2.get_ylim()[0] == 0  # readable ticks from 0, not two log labels
    legend = ax2.get_legend().get_window_extent(ax2.figure.canvas.get_renderer())
    assert legend.x0 >= ax2.get_window_extent().x1  # outside the axes: it hides no point
    with pytest.raises(ValueError):
        qh.plot_per_channel_error({})
    with pytest.raises(ValueError):
        qh.plot_histogram_with_grid(torch.randn(3, 2), qh.qparams_from_tensor(torch.randn(3, 2), axis=0))
    w = torch.randn(4, 5)
    errs = qh.per_channel_max_error(w, qh.qparams_from_tensor(w, axis=0))
    assert len(errs) == 4


def test_widgets_build_without_a_browser():
    box = qh.quantization_explorer(torch.randn(200))
    bits = box.children[0].children[0]
    before = box.children[1].value
    bits.value = 3
    assert box.children[1].value != before and "SQNR" in box.children[1].value
    chooser = qh.decision_chooser()
    pre, kind, calib, drop, train, arm, answer = chooser.children  # the tree's order
    train.value, drop.value = True, False
    assert "QAT" in answer.value
    drop.value, train.value = False, False
    assert "notebook 07" in answer.value
    drop.value, calib.value, kind.value = None, False, "linear"
    assert "dynamic INT8" in answer.value and "notebook 06" in answer.value
    arm.value = True
    assert "ExecuTorch" in answer.value and "notebook 08" in answer.value
    assert "quantize_dynamic on engine &#x27;qnnpack&#x27;" in answer.value  # an LSTM on ARM: XNNPACKQuantizer leaves it float
    pre.value = True
    assert "pre-quantized" in answer.value and "ExecuTorch" in answer.value  # eager on qnnpack, not an ExecuTorch model
    arm.value = False
    assert "pre-quantized" in answer.value
    clip = box.children[0].children[2]
    clip.value = 99.999  # the sweep's best 8-bit clip is reachable
    assert "SQNR" in box.children[1].value


def test_random_shift_moves_pixels_within_bounds():
    x = torch.zeros(4, 1, 6, 6)
    x[:, :, 3, 3] = 1.0
    shifted = qh.random_shift(x, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    assert torch.all(shifted.sum(dim=(1, 2, 3)) == 1.0)
    assert qh.random_shift(x, 0) is x


def test_scenarios_hold_stories_only(capsys):
    # the object a learner can print holds no answer: only the stories
    assert all(isinstance(story, str) and story for story in qh.SCENARIOS.values())
    assert not qh.check_recommendation("camera", ...)
    assert not qh.check_recommendation("camera", "PTQ")
    with pytest.raises(ValueError, match="unknown scenario"):
        qh.check_recommendation("moon", None)
    out = capsys.readouterr().out
    assert "not filled in yet" in out


def test_explore_clips_both_signed_tails_at_the_percentile():
    x = torch.cat([torch.linspace(-1.0, 1.0, 10_001), torch.tensor([-50.0, 8.0])])
    r = qh.explore(x, bits=8, scheme="affine", clip_percentile=99.0)
    lo, hi = torch.quantile(x, 0.01).item(), torch.quantile(x, 0.99).item()
    # the range runs from the 1st to the 99th percentile of the signed values, not +-(99th percentile of |x|)
    assert r["qparams"].scale.item() == pytest.approx((hi - lo) / 255, rel=1e-5)
    # clipped: the values whose code was clamped (beyond the range by more than half a step)
    step = r["qparams"].scale.item()
    beyond = (x < lo - step / 2) | (x > hi + step / 2)
    assert r["clipped_percent"] == pytest.approx(100 * float(beyond.float().mean()), abs=0.02)


def test_explore_counts_what_clamps_under_the_symmetric_scheme():
    # symmetric widens the clipped range to [-m, m]: the short tail clamps less than its percentile, here not at all
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20_000, generator=g), 5 + torch.rand(200, generator=g)])  # a long positive tail only
    r = qh.explore(x, bits=8, scheme="symmetric", clip_percentile=99.5)
    m = torch.quantile(x, 0.995).item()
    clamped = (x > m * 127.5 / 127.5).float().mean().item() * 100
    assert r["clipped_percent"] == pytest.approx(clamped, abs=0.02)
    assert r["clipped_percent"] < 1.0  # the percentile says 0.5 % each side; the negative side clamps nothing
    assert 99.999 in qh.CLIP_PERCENTILES and 99.95 in qh.CLIP_PERCENTILES  # the widget reaches the sweep's stops


def test_clip_sweep_finds_the_best_percentile_and_needs_the_full_range():
    g = torch.Generator().manual_seed(0)
    x = -torch.log(torch.rand(20_000, generator=g)) * torch.where(torch.rand(20_000, generator=g) < 0.5, -1.0, 1.0)
    s4, s8 = qh.clip_sweep(x, 4), qh.clip_sweep(x, 8)
    assert s4["best_db"] == max(s4["sqnr_db"].values()) and s4["full_db"] == s4["sqnr_db"][100.0]
    assert s4["gain_db"] > 1.0 and s4["best_percentile"] < 100.0  # coarse grid: clipping wins
    assert s8["gain_db"] < s4["gain_db"]  # fine grid: much less to win
    with pytest.raises(ValueError, match="must include 100"):
        qh.clip_sweep(x, 4, percentiles=(99.0, 98.0))


def test_arm_linear_model_whose_int8_lost_too_much_is_not_sent_back_to_dynamic_int8():
    # review 00_r19 finding 1: on ARM the "lost too much" answer was ignored and dynamic INT8 recommended again
    for train in (True, False):
        r = qh.recommend(True, train, ptq_drop_acceptable=False, arm_device=True, model_kind="linear")
        x86 = qh.recommend(True, train, ptq_drop_acceptable=False, model_kind="linear")
        assert r.method == x86.method == "finer scales or outlier handling"
        assert r.notebook == "notebooks 06 and 08" and x86.notebook == "notebook 06"
        assert "lost too much" in r.reason and "XNNPACKQuantizer" in r.reason and "ExecuTorch" in r.reason
        assert "XNNPACKQuantizer" not in x86.reason
        assert r.engine == "qnnpack" and "ExecuTorch" in r.deploy
    assert qh.recommend(True, True, arm_device=True, model_kind="linear").method == "dynamic INT8"
    assert qh.recommend(True, True, ptq_drop_acceptable=True, arm_device=True, model_kind="linear").method == "dynamic INT8"
