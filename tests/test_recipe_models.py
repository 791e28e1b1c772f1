"""Every recipe cell on models it was not written for: the counts and SQNR it reports, and its errors.

Each recipe (tag ``recipe``, notebooks 02-08) is executed from the notebook as it stands, without qhelpers, and
run on small models of several families: torchvision classifiers (random weights, built offline, small
inputs), a CNN with a residual ``+``, one with ReLU6, one whose convolutions are an ``nn.Conv2d`` subclass
(as EfficientNet ports' "same" padding), an Embedding + LSTM classifier and a small Transformer encoder. A
supported model must come back with a ``quantization_report`` that says what was quantized and how close the
result is to float on the data given; an unsupported one must be refused with a message that names the fix.
With random weights the SQNR bounds are loose: they catch a float model passed off as INT8 (no error at all)
and a broken one (about 0 dB), not a small loss of accuracy.
"""

import ast
import copy
import json
import operator
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules

from qhelpers.notebooks import notebook_paths

pytestmark = pytest.mark.slow


def _recipe(prefix: str) -> dict:
    """The namespace of notebook ``prefix``'s recipe cell, executed alone."""
    path = next(p for p in notebook_paths() if p.name.startswith(prefix))
    cell = next(c for c in json.loads(path.read_text())["cells"] if "recipe" in c["metadata"].get("tags", []))
    source = "".join(cell["source"])
    assert "qhelpers" not in source
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(source, f"{path.stem} recipe", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def recipes():
    return {k: _recipe(k) for k in ("02", "03", "04", "05", "06", "07", "08")}


# ------------------------------------------------------------------------------------------------ the models


def refreshed(model: nn.Module, batches) -> nn.Module:
    """Fresh BatchNorms fitted to random weights (else the activations shrink to zero), in eval mode."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        for x in batches:
            model(x[0] if isinstance(x, tuple) else x)
    return model.eval()


class SameConv(nn.Conv2d):
    """An nn.Conv2d subclass with TF-style padding, as EfficientNet ports have."""

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SubclassNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = SameConv(3, 8, 3), SameConv(8, 8, 3), SameConv(8, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))))
        return self.fc(x.mean((2, 3)))


class ResCNN(nn.Module):
    """conv-bn-relu, then conv-bn with a plain residual ``+``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)) + y)
        return self.fc(y.mean((2, 3)))


class Stubbed(nn.Module):
    """``inner`` between a QuantStub and a DeQuantStub (what eager mode asks for, and no more)."""

    def __init__(self, inner):
        super().__init__()
        self.quant, self.inner, self.dequant = QuantStub(), inner, DeQuantStub()

    def forward(self, x):
        return self.dequant(self.inner(self.quant(x)))


class ReLU6Net(nn.Module):
    """Conv-BN-ReLU6 twice (as MobileNetV2 and EfficientNet-Lite), eager-ready."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = QuantStub(), DeQuantStub()
        self.c1, self.b1, self.r1 = nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU6()
        self.c2, self.b2, self.r2 = nn.Conv2d(16, 16, 3), nn.BatchNorm2d(16), nn.ReLU6()
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.r2(self.b2(self.c2(self.r1(self.b1(self.c1(self.quant(x)))))))
        return self.dequant(self.fc(x.mean((2, 3))))


class LSTMClassifier(nn.Module):
    def __init__(self, stub_after_embedding=True):
        super().__init__()
        self.embedding, self.lstm, self.fc = nn.Embedding(100, 16), nn.LSTM(16, 32, batch_first=True), nn.Linear(32, 5)
        self.quant, self.dequant, self.stub_after_embedding = QuantStub(), DeQuantStub(), stub_after_embedding

    def forward(self, tokens):
        if self.stub_after_embedding:
            x = self.quant(self.embedding(tokens))
        else:
            x = self.embedding(self.quant(tokens))
        return self.dequant(self.fc(self.lstm(x)[0][:, -1]))


class OnlyLSTM(nn.Module):
    """A two-layer LSTM between the stubs: no conv or linear layer at all."""

    def __init__(self):
        super().__init__()
        self.quant, self.lstm, self.dequant = QuantStub(), nn.LSTM(16, 32, num_layers=2, batch_first=True), DeQuantStub()

    def forward(self, x):
        return self.dequant(self.lstm(self.quant(x))[0])


class TransformerClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(16, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.encoder(self.inp(x)).mean(1))


def scaled_batchnorms(model: nn.Module) -> nn.Module:
    """BatchNorms that move and stretch the conv output (else clamping before or after them looks alike)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + 2.5 * torch.rand(m.num_features, generator=g))
                m.bias.copy_(2 * torch.rand(m.num_features, generator=g) - 1)
                m.momentum = 0.0  # QAT's training steps leave the running statistics as they are
    return model.eval()


def images(n=2, batch=4, size=32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) * scale for _ in range(n)]


def labelled(batches, classes=10):
    return [(x, torch.arange(len(x)) % classes) for x in batches]


def raises(fn, error, *needles):
    with pytest.raises(error) as info:
        fn()
    for needle in needles:
        assert needle in str(info.value), info.value
    return info.value


# --------------------------------------------------------------------------------------- 05: PT2E for x86


def test_pt2e_resnet18_falls_back_to_strict_export_and_quantizes_every_layer(recipes):
    quantize = recipes["05"]["quantize_pt2e_x86"]
    calib = images()
    model = refreshed(torchvision.models.resnet18(weights=None, num_classes=10), calib)
    with pytest.warns(UserWarning, match="strict=True instead: non-strict export failed"):
        q = quantize(model, (calib[0][:2],), calib)
    report = q.quantization_report
    assert (report.quantized, report.quantizable) == (21, 21) and report.left_float == {}
    assert report.sqnr_db > 10 and report.checked_on == 4


def test_pt2e_conv2d_subclass_is_exported_strictly_not_left_float(recipes):
    quantize = recipes["05"]["quantize_pt2e_x86"]
    calib = images()
    with pytest.warns(UserWarning, match="non-strict export left 3 of 4 conv/linear float"):
        q = quantize(SubclassNet().eval(), (calib[0][:2],), calib)
    assert (q.quantization_report.quantized, q.quantization_report.quantizable) == (4, 4)
    assert q.quantization_report.sqnr_db > 30


def test_pt2e_lstm_and_transformer_report_what_stays_float(recipes):
    quantize = recipes["05"]["quantize_pt2e_x86"]
    tokens = [torch.randint(0, 100, (4, 12), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="quantize_pt2e_x86")  # complete for what it handles: no fallback
        report = quantize(LSTMClassifier(stub_after_embedding=False).eval(), (tokens[0][:2],), tokens).quantization_report
    assert (report.quantized, report.quantizable) == (1, 1) and report.sqnr_db > 30
    assert "keeps it float" in report.left_float["lstm"] and "keeps it float" in report.left_float["embedding"]
    seqs = [torch.randn(4, 12, 16) for _ in range(2)]
    report = quantize(TransformerClassifier().eval(), (seqs[0][:2],), seqs).quantization_report
    assert (report.quantized, report.quantizable) == (6, 10) and report.sqnr_db > 25
    assert len(report.left_float) == 4 and all("attention" in why for why in report.left_float.values())


class Conv1dNet(nn.Module):
    """Two Conv1d, each followed by a functional relu, and a Linear head: X86InductorQuantizer's only Conv1d
    pattern is Conv1d -> nn.ReLU module, so both stay float."""

    def __init__(self, relu=torch.relu):
        super().__init__()
        self.a, self.b, self.fc, self.relu = nn.Conv1d(4, 8, 3), nn.Conv1d(8, 8, 3), nn.Linear(8, 4), relu

    def forward(self, x):
        return self.fc(self.relu(self.b(self.relu(self.a(x)))).mean(-1))


class TransposedNet(nn.Module):
    """A decoder-like stack: one Conv2d, three ConvTranspose2d, a Linear head."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Conv2d(4, 8, 3), nn.Linear(8, 4)
        self.t1, self.t2, self.t3 = nn.ConvTranspose2d(8, 8, 3), nn.ConvTranspose2d(8, 8, 3), nn.ConvTranspose2d(8, 8, 3)

    def forward(self, x):
        return self.fc(self.t3(self.t2(torch.relu(self.t1(torch.relu(self.a(x)))))).mean((-1, -2)))


def test_pt2e_counts_conv1d_and_transposed_convolutions_it_leaves_float(recipes):
    x86, xnnpack = recipes["05"]["quantize_pt2e_x86"], recipes["08"]["quantize_for_xnnpack"]
    torch.manual_seed(0)
    seqs = [torch.randn(8, 4, 16) for _ in range(2)]
    for relu in (torch.relu, F.relu):
        with pytest.warns(UserWarning, match="2 Conv1d/Conv3d/transposed convolutions stay float"):
            report = x86(Conv1dNet(relu).eval(), (seqs[0][:2],), seqs).quantization_report
        assert (report.quantized, report.quantizable) == (1, 3), report
        assert all("not followed by an nn.ReLU module" in report.left_float[n] for n in ("a", "b")), report
        assert "only when an nn.ReLU module follows it" in report.notes[0], report
    # a Conv1d followed by an nn.ReLU module is quantized (the converted graph reads its weight through a dequantize)
    model = nn.Sequential(nn.Conv1d(4, 8, 3), nn.ReLU(), nn.Conv1d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 12, 4)).eval()
    report = x86(model, (seqs[0][:2],), seqs).quantization_report
    assert (report.quantized, report.quantizable) == (2, 3) and list(report.left_float) == ["2"], report
    assert "not followed by an nn.ReLU module" in report.left_float["2"] and report.sqnr_db > 25, report
    model = nn.Sequential(nn.Conv1d(4, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14, 4)).eval()
    report = x86(model, (seqs[0][:2],), seqs).quantization_report
    assert (report.quantized, report.quantizable) == (2, 2) and not report.left_float and not report.notes, report
    maps = [torch.randn(8, 4, 10, 10) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = x86(TransposedNet().eval(), (maps[0][:2],), maps).quantization_report
        assert (report.quantized, report.quantizable) == (2, 5) and len(report.left_float) == 3, report
        report = xnnpack(TransposedNet().eval(), (maps[0][:2],), maps).quantization_report
    assert (report.quantized, report.quantizable) == (5, 5) and report.sqnr_db > 25, report


class TwoInputNet(nn.Module):
    """forward(x, y): two Linear branches added, then a head (a model with two inputs)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Linear(16, 32), nn.Linear(8, 32), nn.Linear(32, 4)

    def forward(self, x, y):
        return self.fc(torch.relu(self.a(x) + self.b(y)))


def test_pt2e_recipes_calibrate_a_model_with_two_inputs(recipes):
    torch.manual_seed(0)
    pairs = [(torch.randn(8, 16), torch.randn(8, 8)) for _ in range(2)]
    labels = torch.zeros(8, dtype=torch.long)
    for fn in (recipes["05"]["quantize_pt2e_x86"], recipes["08"]["quantize_for_xnnpack"]):
        # a batch is the pair of inputs, or (inputs, labels) with the pair as inputs
        for batches in (pairs, [(p, labels) for p in pairs], [list(p) for p in pairs]):
            model = TwoInputNet().eval()
            converted = fn(model, tuple(t[:2] for t in pairs[0]), batches)
            report = converted.quantization_report
            assert (report.quantized, report.quantizable) == (3, 3) and report.checked_on == 8, report
            assert report.sqnr_db > 25, report
            assert converted(*pairs[1]).shape == (8, 4)


def test_pt2e_refuses_no_data_and_a_model_without_layers(recipes):
    quantize = recipes["05"]["quantize_pt2e_x86"]
    x = images(1)[0]
    raises(lambda: quantize(ResCNN().eval(), (x[:2],), []), ValueError, "calibration_batches is empty")
    raises(lambda: quantize(nn.Sequential(nn.ReLU()).eval(), (x[:2],), [x]), RuntimeError, "no conv/linear layer")
    model = refreshed(ResCNN(), [x])
    reports = [quantize(model, example, [x]).quantization_report for example in ((x[:2],), x[:2])]  # one tensor: one input
    assert reports[0] == reports[1] and reports[1].quantized == 3, reports


# ------------------------------------------------------------------------------------ 08: XNNPACK (PT2E)


def test_xnnpack_counts_relu6_clamps(recipes):
    quantize = recipes["08"]["quantize_for_xnnpack"]
    calib = images(scale=3.0)
    report = quantize(refreshed(ReLU6Net(), calib), (calib[0][:2],), calib).quantization_report
    assert (report.quantized, report.quantizable) == (3, 3)
    assert report.notes and report.notes[0].startswith("2 ReLU6/clamp read an INT8 tensor"), report.notes


def test_xnnpack_residual_cnn_and_no_data(recipes):
    quantize = recipes["08"]["quantize_for_xnnpack"]
    calib = images()
    report = quantize(refreshed(ResCNN(), calib), (calib[0][:2],), calib).quantization_report
    assert (report.quantized, report.quantizable) == (3, 3) and report.sqnr_db > 30 and report.notes == []
    raises(lambda: quantize(ResCNN().eval(), (calib[0][:2],), []), ValueError, "calibration_batches is empty")
    bare = quantize(refreshed(ResCNN(), calib), calib[0][:2], calib).quantization_report  # one tensor: one input
    assert (bare.quantized, bare.quantizable) == (3, 3) and bare.sqnr_db > 30, bare


def test_plain_conv2d_subclasses_need_the_strict_retry_on_x86_only(recipes):
    """08's docstring: XNNPACKQuantizer quantizes plain nn.Conv2d subclasses on the first, non-strict export (no
    warning), while 05's X86InductorQuantizer needs the strict=True retry for them (one warning)."""
    class MyConv(nn.Conv2d):
        pass

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.c2, self.fc = MyConv(3, 8, 3), MyConv(8, 8, 3), nn.Linear(8 * 4 * 4, 4)

        def forward(self, x):
            return self.fc(F.relu(self.c2(F.relu(self.c(x)))).flatten(1))

    torch.manual_seed(0)
    calib = [torch.randn(8, 3, 8, 8)]
    for key, name, retried in (("05", "quantize_pt2e_x86", True), ("08", "quantize_for_xnnpack", False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = recipes[key][name](Net().eval(), (calib[0][:2],), calib).quantization_report
        assert (report.quantized, report.quantizable) == (3, 3), (key, report)
        assert any("exported with strict=True instead" in str(w.message) for w in caught) == retried, key


def test_xnnpack_refuses_conv3d_up_front(recipes, tmp_path):
    """XNNPACK does not delegate a 3-D convolution: the INT8 save failed (missing dequantize_per_channel.out) and a
    float .pte did not run, so both functions refuse it before exporting."""
    quantize, save = recipes["08"]["quantize_for_xnnpack"], recipes["08"]["save_pte"]
    model = nn.Sequential(nn.Conv3d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    clips = [torch.randn(2, 2, 5, 5, 5)]
    model(clips[0])
    raises(lambda: quantize(model, (clips[0],), clips), ValueError, "3-D convolution (0)", "not supported")
    raises(lambda: save(model, (clips[0],), tmp_path / "m.pte"), ValueError, "3-D convolution (0)")
    assert not (tmp_path / "m.pte").exists()


def test_every_int8_report_notes_a_catastrophic_sqnr(recipes):
    """Full counts with a broken output: calibration ranges set by a batch 1e6 times larger than the checked one
    put the checked batch in the zero code (a bias-free MLP, so nothing else carries the output). Each report
    says so in a note."""
    g = torch.Generator().manual_seed(0)
    tiny, huge = torch.randn(16, 16, generator=g) * 1e-3, torch.randn(16, 16, generator=g) * 1e3
    calib = [tiny, huge]
    model = nn.Sequential(QuantStub(), nn.Linear(16, 16, bias=False), nn.ReLU(), nn.Linear(16, 8, bias=False), DeQuantStub()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reports = {
            "03": recipes["03"]["post_training_quantize"](model, calib, "x86").quantization_report,
            "04": recipes["04"]["qat_finetune"](model, labelled(calib, 8), epochs=1, lr=0.0).quantization_report,
            "05": recipes["05"]["quantize_pt2e_x86"](model, (tiny[:2],), calib).quantization_report,
            "08": recipes["08"]["quantize_for_xnnpack"](model, (tiny[:2],), calib).quantization_report,
        }
        healthy = recipes["05"]["quantize_pt2e_x86"](model, (tiny[:2],), [tiny]).quantization_report
    for key, report in reports.items():
        assert report.quantized == report.quantizable and report.sqnr_db < 10, (key, report)
        assert any(note.startswith(f"SQNR {report.sqnr_db:.1f} dB against float") and "whatever the counts" in note
                   for note in report.notes), (key, report)
    advice = {"03": "fusion groups", "04": "after training with float before it", "05": "no fusion groups to check",
              "08": "no fusion groups to check"}  # each note names only causes that exist in its recipe
    for key, report in reports.items():
        assert any(advice[key] in note for note in report.notes), (key, report)
    assert healthy.sqnr_db > 10 and not any("SQNR" in note for note in healthy.notes), healthy


def test_all_recipe_cells_pasted_into_one_module_keep_their_own_helpers(recipes):
    """The recipe cells of 01-09 executed into ONE namespace, as one quantization.py holding all of them: no two
    recipes define the same top-level name with different code (each recipe's private helpers and report class
    carry its own prefix), and 03's, 05's and 06's reports are the ones each would give alone."""
    sources = {}
    for path in notebook_paths():
        for cell in json.loads(path.read_text())["cells"]:
            if "recipe" in cell["metadata"].get("tags", []):
                sources[path.name[:2]] = "".join(cell["source"])
    assert sorted(sources) == ["01", "02", "03", "04", "05", "06", "07", "08", "09"]
    defined, imported = {}, {}  # top-level def/class/assignment -> the recipes defining it; import -> the recipes
    for key, source in sources.items():
        for node in ast.parse(source).body:
            targets = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
                [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else []
            for name in targets:
                defined.setdefault(name, {})[key] = ast.unparse(node)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    imported.setdefault(alias.asname or alias.name.split(".")[0], set()).add(key)
    shared = {name: by for name, by in defined.items() if len(by) > 1}
    assert set(shared) == {"ContiguousClamp", "contiguous_clamps"}, sorted(shared)  # 03's and 04's public helpers:
    for name, by in shared.items():  # the same code in both (they call each recipe's own private helper)
        assert len({code.replace("_qat_", "_ptq_") for code in by.values()}) == 1, name
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in ("01", "03", "04", "05", "08", "06", "07", "02", "09"):
            exec(compile(sources[key], f"recipe {key}", "exec"), namespace)
    assert not set(imported) & set(defined), set(imported) & set(defined)
    for key, source in sources.items():  # an imported name is the same object in every recipe that imports it
        alone: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(source, f"recipe {key}", "exec"), alone)
        for name, keys in imported.items():
            assert key not in keys or alone[name] is namespace[name], (key, name)
    torch.manual_seed(0)
    calib = [torch.randn(8, 16) for _ in range(2)]
    model = nn.Sequential(QuantStub(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8), DeQuantStub()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = {
            "03": namespace["post_training_quantize"](model, calib, "x86").quantization_report,
            "05": namespace["quantize_pt2e_x86"](model, (calib[0],), calib).quantization_report,
        }
        alone = {
            "03": recipes["03"]["post_training_quantize"](model, calib, "x86").quantization_report,
            "05": recipes["05"]["quantize_pt2e_x86"](model, (calib[0],), calib).quantization_report,
        }
    for key in together:
        assert type(together[key]).__name__ == type(alone[key]).__name__ and repr(together[key]) == repr(alone[key]), key
        assert together[key].sqnr_db > 25 and together[key].checked_on == 8, together[key]
    for ns in (namespace, recipes["06"]):
        mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
        torch.manual_seed(1)
        mlp.load_state_dict(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).state_dict())
        ns["int8_weight_only"](mlp, example_inputs=(torch.ones(4, 64),))
        together["06" if ns is namespace else "06 alone"] = mlp.quantization_report
    assert repr(together["06"]) == repr(together["06 alone"]) and together["06"].sqnr_db > 30, together["06"]


class TupleOutput(nn.Module):
    """Two Linear layers, the logits and the hidden state both returned (a tuple, or a dict as a ModelOutput)."""

    def __init__(self, as_dict=False):
        super().__init__()
        self.as_dict, self.q, self.a, self.b = as_dict, QuantStub(), nn.Linear(64, 64), nn.Linear(64, 8)
        self.dq, self.dq2 = DeQuantStub(), DeQuantStub()

    def forward(self, x):
        h = torch.relu(self.a(self.q(x)))
        logits, hidden = self.dq(self.b(h)), self.dq2(h)
        return {"logits": logits, "hidden": hidden} if self.as_dict else (logits, hidden)


def test_int8_recipes_compare_every_tensor_of_a_tuple_or_dict_output(recipes):
    torch.manual_seed(0)
    calib = [torch.randn(8, 64) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reports = {
            "03": recipes["03"]["post_training_quantize"](TupleOutput().eval(), calib, "x86").quantization_report,
            "04": recipes["04"]["qat_finetune"](TupleOutput(), labelled(calib, 8), epochs=1, lr=0.0,
                                                loss_fn=lambda out, y: F.cross_entropy(out[0], y)).quantization_report,
            "05": recipes["05"]["quantize_pt2e_x86"](TupleOutput(as_dict=True).eval(), (calib[0],), calib).quantization_report,
            "08": recipes["08"]["quantize_for_xnnpack"](TupleOutput().eval(), (calib[0],), calib).quantization_report,
        }
    for key, report in reports.items():
        assert report.quantized == report.quantizable == 2 and 20 < report.sqnr_db < 60, (key, report)


class ForgotDequant(nn.Module):
    """Defines a DeQuantStub and forgets to call it (``two_out``: calls it on the second output only)."""

    def __init__(self, two_out=False):
        super().__init__()
        self.two_out, self.quant, self.dequant = two_out, QuantStub(), DeQuantStub()
        self.c, self.l = nn.Conv2d(3, 8, 3), nn.Linear(8 * 6 * 6, 4)
        if two_out:
            self.l2 = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        h = torch.relu(self.c(self.quant(x))).flatten(1)
        return (self.l(h), self.dequant(self.l2(h))) if self.two_out else self.l(h)


def test_eager_recipes_refuse_an_output_still_quantized(recipes):
    """A forward that skips the DeQuantStub on an output used to give sqnr_db=nan with no note (one output) or
    a float head compared with another INT8 head (two outputs): now a refusal naming the output."""
    torch.manual_seed(0)
    calib = [torch.randn(16, 3, 8, 8) for _ in range(2)]
    for two_out in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raises(lambda: recipes["03"]["post_training_quantize"](ForgotDequant(two_out).eval(), calib, "x86"),
                   ValueError, "output 0 of the INT8 model", "still quantized", "call self.dequant(...) on every output")
            raises(lambda: recipes["04"]["qat_finetune"](ForgotDequant(two_out), labelled(calib, 4), epochs=1,
                                                         freeze_observers_after=1, engine="x86", loss_fn=lambda out, y: F.cross_entropy(out[1] if two_out else out, y)),
                   ValueError, "output 0 of the INT8 model", "still quantized", "call self.dequant(...) on every output")
    sqnr_db = recipes["03"]["_ptq_sqnr_db"]
    raises(lambda: sqnr_db((torch.ones(2), torch.ones(2)), torch.ones(2)), ValueError, "returns 2 floating-point tensors")
    assert sqnr_db(torch.arange(3), torch.arange(3)) != sqnr_db(torch.arange(3), torch.arange(3))  # NaN: nothing to compare


def test_reports_note_an_unmeasured_sqnr(recipes):
    """An output with no floating-point tensor (here: integer class ids) gives NaN, which a note explains: in the
    eager recipes (03, 04) and in the PT2E ones (05, 08)."""
    class Argmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.a, self.dq = QuantStub(), nn.Linear(16, 4), DeQuantStub()

        def forward(self, x):
            out = self.dq(self.a(self.q(x)))
            return out if self.training else out.argmax(1)  # trained on logits, measured on class ids

    torch.manual_seed(0)
    calib = [torch.randn(8, 16) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reports = {
            "03": recipes["03"]["post_training_quantize"](Argmax().eval(), calib, "x86").quantization_report,
            "04": recipes["04"]["qat_finetune"](Argmax(), labelled(calib, 4), epochs=1, lr=0.0,
                                                loss_fn=F.cross_entropy).quantization_report,
        }

    class ConvArgmax(nn.Module):  # PT2E: a conv and a linear, class ids at the output
        def __init__(self):
            super().__init__()
            self.c, self.a = nn.Conv2d(3, 8, 3), nn.Linear(8 * 6 * 6, 4)

        def forward(self, x):
            return self.a(torch.relu(self.c(x)).flatten(1)).argmax(1)

    images_calib = [torch.randn(8, 3, 8, 8)]
    for key, name in (("05", "quantize_pt2e_x86"), ("08", "quantize_for_xnnpack")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reports[key] = recipes[key][name](ConvArgmax().eval(), (images_calib[0][:4],), images_calib).quantization_report
        assert (reports[key].quantized, reports[key].quantizable) == (2, 2), (key, reports[key])
    for key, report in reports.items():
        assert report.sqnr_db != report.sqnr_db, (key, report)  # NaN
        assert any(note.startswith("SQNR not measured") for note in report.notes), (key, report)


# ----------------------------------------------------------------------------------------- 03: eager PTQ


def test_eager_ptq_on_torchvision_quantizable_models(recipes):
    ptq = recipes["03"]["post_training_quantize"]
    calib = images()
    for builder, layers in ((torchvision.models.quantization.resnet18, 21), (torchvision.models.quantization.mobilenet_v2, 53)):
        model = refreshed(builder(weights=None, quantize=False, num_classes=10), calib)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notices; mobilenet's unused skip_add observers
            report = ptq(model, calib, "x86").quantization_report
        assert (report.quantized, report.quantizable) == (layers, layers), report
        assert report.sqnr_db > 0 and report.checked_on == 4  # random ImageNet-size networks: only "not broken"


def test_eager_ptq_refuses_what_eager_mode_cannot_run(recipes):
    ptq = recipes["03"]["post_training_quantize"]
    calib = images()
    plain = refreshed(torchvision.models.resnet18(weights=None, num_classes=10), calib)
    raises(lambda: ptq(plain, calib, "x86"), ValueError, "QuantStub", "quantize_pt2e_x86")
    raises(lambda: ptq(Stubbed(refreshed(ResCNN(), calib)).eval(), calib, "x86"), ValueError, "without FloatFunctional")
    seqs = [torch.randn(4, 12, 16)]
    raises(lambda: ptq(Stubbed(TransformerClassifier()).eval(), seqs, "x86"), ValueError, "TransformerEncoderLayer", "notebook 05")
    tokens = [torch.randint(0, 100, (8, 12))]
    raises(lambda: ptq(LSTMClassifier(stub_after_embedding=False).eval(), tokens, "x86"), ValueError, "after the Embedding")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raises(lambda: ptq(Stubbed(SubclassNet()).eval(), calib, "x86"), RuntimeError, "SameConv")
    raises(lambda: ptq(ResCNN().eval(), [], "x86"), ValueError, "QuantStub")


def test_eager_ptq_lstm_relu6_and_a_wrong_fusion(recipes):
    ptq = recipes["03"]["post_training_quantize"]
    tokens = [torch.randint(0, 100, (8, 12), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = ptq(LSTMClassifier().eval(), tokens, "x86").quantization_report  # Embedding: float_qparams, given here
        assert (report.quantized, report.quantizable) == (2, 2) and report.sqnr_db > 20  # the LSTM and the Linear
        seqs = [torch.randn(4, 12, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
        int8 = ptq(OnlyLSTM().eval(), seqs, "x86")  # was refused: "only 0 of 0 conv/linear layers were quantized"
        report = int8.quantization_report
        assert (report.quantized, report.quantizable, report.left_float) == (1, 1, {}) and report.sqnr_db > 20
        assert ".quantized" in type(int8.lstm).__module__
        calib = images(scale=3.0)
        model = refreshed(ReLU6Net(), calib)
        report = ptq(model, calib, "x86", fuse_groups=[["c1", "b1"], ["c2", "b2"]]).quantization_report
    assert report.notes == ["2 conv/linear feeding a ReLU6 quantized to a fixed [0, 6] range"] and report.sqnr_db > 25
    # conv + relu fused over the BatchNorm between them (a group that is not a chain): the float model changes
    seq = nn.Sequential(QuantStub(), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), DeQuantStub())
    seq = refreshed(seq, calib)
    with torch.no_grad():
        seq[2].bias.fill_(-1.0)
    raises(lambda: ptq(seq, calib, "x86", fuse_groups=[["1", "3"]]), ValueError, "fusion changed the float model")


def test_eager_ptq_leaves_the_engine_as_it_was_when_fusion_fails(recipes):
    ptq = recipes["03"]["post_training_quantize"]
    calib = images()
    model = Stubbed(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 4))).eval()
    before = torch.backends.quantized.engine
    other = next(e for e in ("qnnpack", "x86") if e != before)
    raises(lambda: ptq(model, calib, other, fuse_groups=[["inner.0", "inner.11", "inner.2"]]), ValueError, "inner.11")
    assert torch.backends.quantized.engine == before
    with pytest.raises(Exception):  # torch's fuse_modules has no fusion for a conv followed by a linear
        ptq(model, calib, other, fuse_groups=[["inner.0", "inner.4"]])
    assert torch.backends.quantized.engine == before


def test_eager_ptq_relu6_after_an_unfused_batchnorm_clamps_the_batchnorm_not_the_conv(recipes):
    ptq = recipes["03"]["post_training_quantize"]
    calib = images(scale=3.0)
    torch.manual_seed(0)
    model = scaled_batchnorms(refreshed(ReLU6Net(), calib))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = ptq(model, calib, "x86", fuse_groups=[["c1", "b1"], ["c2", "b2"]]).quantization_report
        unfused = ptq(model, calib, "x86")  # no fuse_groups, no fuse_model: the BatchNorms stay
    assert unfused.quantization_report.notes[-1].startswith("nothing was fused"), unfused.quantization_report.notes
    assert not any(note.startswith("nothing was fused") for note in fused.notes)
    assert [unfused.b1.scale, unfused.b2.scale] == [6 / 127] * 2  # 7-bit, as x86's activations (reduce_range) and unfused.c1.scale != 6 / 255
    # the [0, 6] range on the conv, before the BatchNorm, clamped what the BatchNorm then moves: about 13 dB here
    report = unfused.quantization_report
    assert report.sqnr_db > 25 and report.sqnr_db > fused.sqnr_db - 6, (report, fused)


class FunctionalReLU6Net(ReLU6Net):
    def forward(self, x):
        x = F.relu6(self.b1(self.c1(self.quant(x))))
        return self.dequant(self.fc(self.r2(self.b2(self.c2(x))).mean((2, 3))))


class ClampNet(nn.Module):
    """Conv, ``x.clamp(0, 6)`` (a common way to write ReLU6), conv: torch's quantized clamp, as relu6's."""

    def __init__(self, untraceable=False):
        super().__init__()
        self.quant, self.dequant, self.untraceable = QuantStub(), DeQuantStub(), untraceable
        self.c1, self.c2 = nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3)

    def forward(self, x):
        y = self.c1(self.quant(x))
        if not self.untraceable or x.sum() > -1e9:  # data-dependent control flow: torch.fx cannot trace it
            y = y.clamp(0, 6)
        return self.dequant(self.c2(y))


def _recipe_module(prefix: str, tmp_path):
    """Notebook ``prefix``'s recipe cell as an imported module: torch.jit.script reads its classes' source."""
    import importlib.util
    import sys

    path = next(p for p in notebook_paths() if p.name.startswith(prefix))
    cell = next(c for c in json.loads(path.read_text())["cells"] if "recipe" in c["metadata"].get("tags", []))
    file = tmp_path / f"recipe_{prefix}.py"
    file.write_text("".join(cell["source"]))
    spec = importlib.util.spec_from_file_location(f"recipe_{prefix}_{tmp_path.name}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _qnnpack_or_skip():
    if "qnnpack" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no qnnpack")


def assert_relu6_is_exact(int8, x):
    """Its input already has the fixed [0, 6] range: the INT8 ReLU6 must give it back unchanged."""
    seen = []
    handle = int8.r1.register_forward_hook(lambda m, args, out: seen.append((args[0].dequantize(), out.dequantize())))
    before, torch.backends.quantized.engine = torch.backends.quantized.engine, "qnnpack"  # run on the engine it was built for
    try:
        with torch.no_grad():
            int8(x)
    finally:
        torch.backends.quantized.engine = before
        handle.remove()
    assert (seen[0][0] - seen[0][1]).abs().max().item() == 0.0, "the INT8 ReLU6 changed an input already in [0, 6]"


def test_eager_ptq_relu6_on_qnnpack_is_right_and_its_range_follows_the_qconfig(recipes):
    """qnnpack's quantized ReLU6 is wrong on a channels_last input (a conv's output): the recipe makes it contiguous."""
    _qnnpack_or_skip()
    ptq = recipes["03"]["post_training_quantize"]
    calib = images(scale=3.0)
    groups = [["c1", "b1"], ["c2", "b2"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = refreshed(ReLU6Net(), calib)
        int8 = ptq(model, calib, "qnnpack", fuse_groups=groups)
        x86 = ptq(model, calib, "x86", fuse_groups=groups).quantization_report
        raises(lambda: ptq(refreshed(FunctionalReLU6Net(), calib), calib, "qnnpack", fuse_groups=groups), ValueError,
               "qnnpack", "channels_last", "nn.ReLU6", "x86")
    assert_relu6_is_exact(int8, calib[0])
    assert [int8.c1.scale, int8.c2.scale] == pytest.approx([6 / 255] * 2)  # qnnpack's activations are 8-bit: so is the fixed range
    report = int8.quantization_report
    assert (report.quantized, report.quantizable) == (3, 3) and report.sqnr_db > 25 and report.sqnr_db > x86.sqnr_db - 6, (report, x86)


def test_eager_recipes_refuse_a_functional_clamp_on_qnnpack(recipes):
    """x.clamp(0, 6) runs the same quantized clamp kernel as relu6: wrong on qnnpack for a conv's output (about -2 dB)."""
    _qnnpack_or_skip()
    ptq, qat = recipes["03"]["post_training_quantize"], recipes["04"]["qat_finetune"]
    calib = images(scale=3.0)
    data = labelled(calib)
    torch.manual_seed(0)
    model = ClampNet().eval()
    needles = ("torch's quantized clamp (relu6, hardtanh, clamp) on qnnpack", "channels_last", "nn.ReLU6", "x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raises(lambda: ptq(model, calib, "qnnpack"), ValueError, *needles)
        raises(lambda: qat(model, data, epochs=1, lr=0.0, engine="qnnpack"), ValueError, *needles)
        x86 = ptq(model, calib, "x86").quantization_report
        assert x86.sqnr_db > 20 and x86.notes == [], x86  # x86's clamp is right: nothing to refuse
        untraceable = ClampNet(untraceable=True).eval()
        untraceable.load_state_dict(model.state_dict())
    with pytest.warns(UserWarning, match="cannot trace"):
        report = ptq(untraceable, calib, "qnnpack").quantization_report
    assert any(note.startswith("not traceable by torch.fx") for note in report.notes), report.notes
    # the skipped check would have refused it: qnnpack's clamp breaks the output, and the SQNR note says so
    assert report.sqnr_db < 10 and any(note.startswith("SQNR ") for note in report.notes), report


def test_eager_ptq_qnnpack_fix_survives_torchscript_and_a_state_dict_reload(recipes, tmp_path):
    """The contiguous input is part of the structure: torch.jit.script keeps it, and so does a skeleton the recipe builds."""
    _qnnpack_or_skip()
    recipe = _recipe_module("03", tmp_path)
    calib = images(scale=3.0)
    groups = [["c1", "b1"], ["c2", "b2"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = refreshed(ReLU6Net(), calib)
        int8 = recipe.post_training_quantize(model, calib, "qnnpack", fuse_groups=groups)
        skeleton = recipe.post_training_quantize(model, calib[:1], "qnnpack", fuse_groups=groups)  # as the docstring says
        hand_built = copy.deepcopy(model)  # notebook 03's own route: fuse, qconfig, prepare, convert, then the wrapper
        fuse_modules(hand_built, groups, inplace=True)
        hand_built.qconfig = torch.ao.quantization.QConfig(  # the recipe's, on qnnpack
            activation=torch.ao.quantization.HistogramObserver.with_args(dtype=torch.quint8),
            weight=torch.ao.quantization.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
        before, torch.backends.quantized.engine = torch.backends.quantized.engine, "qnnpack"
        try:
            torch.ao.quantization.prepare(hand_built, inplace=True)
            hand_built(calib[0])
            torch.ao.quantization.convert(hand_built, inplace=True)
            recipe.contiguous_clamps(hand_built, "qnnpack")
            skeleton.load_state_dict(int8.state_dict())  # under the engine that runs it: loading packs the weights for it
            hand_built.load_state_dict(int8.state_dict())
            scripted = torch.jit.script(int8)
            with torch.no_grad():
                ref, expected = model(calib[0]), int8(calib[0])
                outs = [scripted(calib[0]), skeleton(calib[0]), hand_built(calib[0])]
        finally:
            torch.backends.quantized.engine = before
    assert int8.quantization_report.sqnr_db > 25
    for route, out in zip(("torch.jit.script", "the recipe's skeleton", "a hand-built skeleton"), outs):
        assert torch.equal(out, expected), route
    assert recipe._ptq_sqnr_db(ref, outs[0]) == int8.quantization_report.sqnr_db


def test_relu6_range_top_code_follows_the_activation_observer(recipes):
    from torch.ao.quantization import HistogramObserver, get_default_qat_qconfig

    top = recipes["03"]["_ptq_relu6_top"]
    for reduce_range, expected in ((True, 127), (False, 255)):
        assert top(HistogramObserver.with_args(dtype=torch.quint8, reduce_range=reduce_range)) == expected
    assert [recipes["04"]["_qat_relu6_top"](get_default_qat_qconfig(e).activation) for e in ("x86", "qnnpack")] == [127, 255]


# ----------------------------------------------------------------------------------------------- 04: QAT


def test_qat_refuses_before_training(recipes):
    qat = recipes["04"]["qat_finetune"]
    data = labelled(images())
    calls = []

    def counting_loss(out, y):
        calls.append(1)
        return F.cross_entropy(out, y)

    raises(lambda: qat(Stubbed(refreshed(ResCNN(), [x for x, _ in data])), data, loss_fn=counting_loss), ValueError, "FloatFunctional")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raises(lambda: qat(Stubbed(SubclassNet()), data, loss_fn=counting_loss), RuntimeError, "would fail after training")
    assert calls == []  # both refused before the first training step
    raises(lambda: qat(Stubbed(SubclassNet()), data, epochs=0), ValueError, "epochs=0")
    raises(lambda: qat(Stubbed(SubclassNet()), data, engine="X86"), ValueError, "engine 'X86' is unknown", "valid: [")
    for frozen in (0, -1):  # observers frozen before the first batch would convert with no range at all
        raises(lambda: qat(Stubbed(SubclassNet()), data, freeze_observers_after=frozen), ValueError,
               f"freeze_observers_after={frozen}", "at least one epoch")
    model = nn.Sequential(QuantStub(), nn.Linear(8, 4), DeQuantStub())
    regression = [(torch.randn(16, 8), torch.randn(16, 4))]
    int8 = qat(model, regression, epochs=1, freeze_observers_after=1, loss_fn=F.mse_loss)  # 1: frozen after the first epoch
    assert int8.quantization_report.quantized == 1 and int8.quantization_report.sqnr_db > 25
    raises(lambda: qat(ReLU6Net(), [], epochs=1), ValueError, "no batches")


class LogBetweenStubs(nn.Module):
    """torch.log between the stubs: no quantized kernel (the fix is a DeQuantStub/QuantStub pair around it)."""

    def __init__(self):
        super().__init__()
        self.quant, self.fc, self.dequant = QuantStub(), nn.Linear(8, 4), DeQuantStub()

    def forward(self, x):
        return self.dequant(torch.sigmoid(self.fc(self.quant(x))).log())


def test_eager_recipes_name_an_op_without_a_quantized_kernel(recipes):
    x = [torch.randn(16, 8)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raises(lambda: recipes["03"]["post_training_quantize"](LogBetweenStubs().eval(), x, "x86"), RuntimeError,
               "an op with no quantized kernel", "a DeQuantStub before it and a QuantStub after it")
        raises(lambda: recipes["04"]["qat_finetune"](LogBetweenStubs(), [(x[0], torch.randn(16, 4))], loss_fn=F.mse_loss),
               RuntimeError, "would fail after training", "an op with no quantized kernel", "a DeQuantStub before it")


def test_qat_relu6_and_another_loss(recipes):
    qat = recipes["04"]["qat_finetune"]
    data = labelled(images(scale=3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = refreshed(ReLU6Net(), [x for x, _ in data])
        int8 = qat(model, data, epochs=1, lr=0.0, fuse_groups=[["c1", "b1"], ["c2", "b2"]])
        report = int8.quantization_report
        assert (report.quantized, report.quantizable) == (3, 3) and report.sqnr_db > 25 and report.notes
        regression = [(torch.randn(16, 8), torch.randn(16, 4)) for _ in range(2)]
        mlp = nn.Sequential(QuantStub(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), DeQuantStub())
        report = qat(mlp, regression, epochs=1, loss_fn=F.mse_loss).quantization_report
    assert (report.quantized, report.quantizable) == (2, 2) and report.sqnr_db > 25


def test_qat_relu6_after_an_unfused_batchnorm_clamps_the_batchnorm_not_the_conv(recipes):
    qat = recipes["04"]["qat_finetune"]
    data = labelled(images(scale=3.0))
    torch.manual_seed(0)
    model = scaled_batchnorms(refreshed(ReLU6Net(), [x for x, _ in data]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = qat(model, data, epochs=1, lr=0.0, freeze_bn_after=0, fuse_groups=[["c1", "b1"], ["c2", "b2"]]).quantization_report
        unfused = qat(model, data, epochs=1, lr=0.0)
    # the fixed [0, 6] range sits on the BatchNorm's output, which the ReLU6 clamps, not on the conv's before it
    assert [unfused.b1.scale, unfused.b2.scale] == [6 / 127] * 2  # 7-bit, as x86's activations (reduce_range) and unfused.c1.scale != 6 / 255
    assert fused.sqnr_db > 25 and unfused.quantization_report.notes == fused.notes + [
        "nothing was fused (no fuse_groups, no fuse_model): each BatchNorm stays a separate op; "
        "fuse Conv-BN(-ReLU) groups for accuracy and speed"]


def test_qat_freezes_an_unfused_batchnorm_too(recipes):
    """freeze_bn_stats acts on fused ConvBn only: the recipe puts an unfused BatchNorm in eval mode at the same epoch."""
    qat = recipes["04"]["qat_finetune"]
    data = labelled(images(scale=3.0))
    model = refreshed(ReLU6Net(), [x for x, _ in data])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = qat(model, data, epochs=1, lr=0.0, freeze_bn_after=0)  # no fusion: b1, b2 stay BatchNorms
        moved = qat(model, data, epochs=1, lr=0.0, freeze_bn_after=1)
    assert torch.equal(int8.b1.running_mean, model.b1.running_mean)
    assert not torch.equal(moved.b1.running_mean, model.b1.running_mean)


def test_qat_relu6_on_qnnpack_is_right(recipes):
    _qnnpack_or_skip()
    qat = recipes["04"]["qat_finetune"]
    data = labelled(images(scale=3.0))
    groups = [["c1", "b1"], ["c2", "b2"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = refreshed(ReLU6Net(), [x for x, _ in data])
        int8 = qat(model, data, epochs=1, lr=0.0, engine="qnnpack", fuse_groups=groups)
        x86 = qat(model, data, epochs=1, lr=0.0, engine="x86", fuse_groups=groups).quantization_report
        raises(lambda: qat(refreshed(FunctionalReLU6Net(), [x for x, _ in data]), data, engine="qnnpack", fuse_groups=groups),
               ValueError, "qnnpack", "channels_last", "nn.ReLU6", "x86")
    assert_relu6_is_exact(int8, data[0][0])
    assert [int8.c1.scale, int8.c2.scale] == pytest.approx([6 / 255] * 2)
    report = int8.quantization_report
    assert (report.quantized, report.quantizable) == (3, 3) and report.sqnr_db > 25 and report.sqnr_db > x86.sqnr_db - 6, (report, x86)


# ------------------------------------------------------------------------------------- 06: weight-only INT8


def test_weight_only_weight_sqnr_is_that_of_the_weights_torchao_stores(recipes):
    """weight_sqnr_db is measured on torchao's own grid (max|w|/127.5 per row here), not on a ±127 one: it equals the
    worst layer's SQNR of weight.dequantize() against the float weight (review rcp_r9: 48.2 dB reported, 48.09 stored)."""
    weight_only = recipes["06"]["int8_weight_only"]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
    floats = [layer.weight.detach().clone() for layer in (model[0], model[2])]
    weight_only(model, example_inputs=torch.randn(8, 64))
    stored = [(10 * torch.log10(w.pow(2).sum() / (w - layer.weight.dequantize().float()).pow(2).sum())).item()
              for w, layer in zip(floats, (model[0], model[2]))]
    ours = min((10 * torch.log10(w.pow(2).sum() / (w - torch.clamp(torch.round(w / s), -127, 127) * s).pow(2).sum())).item()
               for w in floats for s in [w.abs().amax(1, keepdim=True) / 127])
    assert model.quantization_report.weight_sqnr_db == round(min(stored), 1) != round(ours, 1), (stored, ours)


def test_weight_only_leaves_attention_out_proj_float_and_the_transformer_runs(recipes):
    weight_only = recipes["06"]["int8_weight_only"]
    model, x = TransformerClassifier().eval(), torch.randn(4, 12, 16)
    names = weight_only(model, example_inputs=(x,))
    report = model.quantization_report
    assert len(names) == 6 and (report.quantized, report.quantizable) == (6, 10)  # 2 layers: in_proj_weight, out_proj
    assert sorted(name.rsplit(".", 1)[-1] for name in report.left_float) == ["in_proj_weight"] * 2 + ["out_proj"] * 2
    assert report.sqnr_db > 30
    with torch.no_grad():
        model(x)  # F.multi_head_attention_forward reads out_proj.weight itself: it must still be a float Parameter
    model.train()
    model(x).sum().backward()
    raises(lambda: weight_only(model), ValueError, "already quantized")


def test_weight_only_reports_a_weight_norm_linear_as_parametrized_not_already_quantized(recipes):
    weight_only = recipes["06"]["int8_weight_only"]
    torch.manual_seed(0)
    wn = nn.utils.parametrizations.weight_norm
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), wn(nn.Linear(64, 64))).eval()
    assert weight_only(model, example_inputs=(torch.randn(4, 64),)) == ["0"]
    report = model.quantization_report
    assert (report.quantized, report.quantizable) == (1, 2), report
    assert report.left_float["2"].startswith("parametrized weight (weight_norm/spectral_norm)"), report
    assert nn.utils.parametrize.is_parametrized(model[2], "weight") and type(model[0].weight) is not nn.Parameter
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.utils.parametrizations.spectral_norm(nn.Linear(64, 256))).eval()
    with pytest.warns(UserWarning, match="parametrized: 1 matrices, 16384 values"):
        weight_only(model)
    assert "parametrized weight" in model.quantization_report.left_float["2"]


def test_weight_only_lstm_and_mobilenet(recipes):
    weight_only = recipes["06"]["int8_weight_only"]
    lstm = LSTMClassifier().eval()
    assert weight_only(lstm, example_inputs=(torch.randint(0, 100, (4, 12)),)) == ["fc"]
    assert "quantize_dynamic" in lstm.quantization_report.left_float["lstm"]
    assert "quantize_dynamic" not in lstm.quantization_report.left_float["embedding"]
    mobilenet = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval()
    weight_only(mobilenet, example_inputs=(images(1)[0],))
    assert (mobilenet.quantization_report.quantized, mobilenet.quantization_report.quantizable) == (2, 2)
    tied = nn.ModuleDict({"emb": nn.Embedding(100, 32), "head": nn.Linear(32, 100), "fc": nn.Linear(32, 32)})
    tied.head.weight = tied.emb.weight  # an LM-style tie: quantizing the head would untie it
    assert weight_only(tied) == ["fc"] and tied.head.weight is tied.emb.weight
    assert "tied" in tied.quantization_report.left_float["head"]
    thin = nn.ModuleList([nn.Linear(32, 32), nn.Linear(8, 4096)])  # most of the weights in a layer with 8 inputs
    with pytest.warns(UserWarning, match="most Linear weights stay float") as record:
        assert weight_only(thin, min_features=16) == ["0"]
    assert "float: below min_features=16: 1 matrices, 32768 values" in str(record[0].message)


def test_weight_only_warning_names_attention_projections_whatever_min_features(recipes):
    """The float majority of a TransformerEncoderLayer is nn.MultiheadAttention's: the warning says so, with or
    without min_features, and does not blame min_features, which left nothing float here."""
    weight_only = recipes["06"]["int8_weight_only"]
    for min_features in (0, 1):
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=64).eval()
        with pytest.warns(UserWarning, match="most Linear weights stay float") as record:
            assert weight_only(layer, min_features=min_features) == ["linear1", "linear2"]
        message = str(record[0].message)
        assert "(16384 of 24576 values; 2 of 4 weight matrices quantized)" in message, message
        assert "nn.MultiheadAttention projections: 2 matrices, 16384 values" in message and "min_features" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # half float (in_proj + out_proj = linear1 + linear2): not most, no warning
        weight_only(nn.TransformerEncoderLayer(32, 4, 64).eval())


class DictOutput(nn.Module):
    """Two Linear layers whose forward returns a dict, as a Hugging Face ModelOutput (or a tuple, or argmax ints)."""

    def __init__(self, kind="dict"):
        super().__init__()
        self.kind, self.a, self.b = kind, nn.Linear(64, 64), nn.Linear(64, 8)

    def forward(self, x):
        h = torch.relu(self.a(x))
        logits = self.b(h)
        if self.kind == "ints":
            return logits.argmax(1)
        return {"logits": logits, "hidden": h} if self.kind == "dict" else (logits, h)


def test_weight_only_compares_a_dict_or_tuple_output_and_refuses_ints_before_changing_the_model(recipes):
    weight_only = recipes["06"]["int8_weight_only"]
    torch.manual_seed(0)
    x = torch.randn(4, 64)
    for kind in ("dict", "tuple"):
        model = DictOutput(kind).eval()
        assert weight_only(model, example_inputs=(x,)) == ["a", "b"]
        report = model.quantization_report
        assert report.sqnr_db > 30 and report.checked_on == 4 and report.notes == [], report
    model = DictOutput("ints").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    raises(lambda: weight_only(model, example_inputs=(x,)), ValueError, "no floating-point tensor (a Tensor)",
           "call without example_inputs")
    assert type(model.a.weight) is nn.Parameter and not hasattr(model, "quantization_report")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_weight_only_measures_in_eval_mode_and_leaves_batchnorm_statistics_alone(recipes):
    weight_only = recipes["06"]["int8_weight_only"]
    x = torch.randn(32, 256)
    sqnr = {}
    for training in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Dropout(0.1), nn.Linear(512, 256)).train(training)
        weight_only(model, example_inputs=(x,))
        sqnr[training] = model.quantization_report.sqnr_db
        assert model.training == training  # put back as it was
        assert bool(model.quantization_report.notes) == training, model.quantization_report
    assert sqnr[True] == sqnr[False] > 30, sqnr  # dropout noise is not reported as quantization error
    model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 8))  # training mode
    mean = model[1].running_mean.clone()
    weight_only(model, example_inputs=x[:, :64])  # one tensor, not a tuple: taken as the one input
    assert model[1].num_batches_tracked.item() == 0 and torch.equal(model[1].running_mean, mean)
    assert model.training and model.quantization_report.checked_on == 32
    raises(lambda: weight_only(model), ValueError, "nothing left to quantize: 2 nn.Linear weights are already quantized")


def test_weight_only_restores_each_submodules_own_mode(recipes):
    """A frozen BatchNorm under a model in training mode stays frozen, and an MC-dropout under a model in eval
    mode stays on: each module's own flag is put back, not the root's spread over all."""
    weight_only = recipes["06"]["int8_weight_only"]
    torch.manual_seed(0)
    x = torch.randn(32, 64)
    frozen = nn.Sequential(nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 64))
    frozen.train()
    frozen[1].eval()
    frozen[3].eval()
    mc = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 64)).eval()
    mc[2].train()
    for model in (frozen, mc):
        before = [m.training for m in model.modules()]
        mean = [m.running_mean.clone() for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
        weight_only(model, example_inputs=x)
        assert [m.training for m in model.modules()] == before
        assert all(torch.equal(a, m.running_mean) for a, m in zip(mean, [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]))
        report = model.quantization_report
        assert report.sqnr_db > 30, report  # measured without dropout noise
        assert any("each module's own training flag was restored" in note for note in report.notes), report
    assert frozen.quantization_report.notes[0].startswith("4 of 6 modules were in training mode (first: (the model))")
    assert mc.quantization_report.notes[0].startswith("1 of 5 modules were in training mode (first: 2)")


# ---------------------------------------------------------------------------------- 07: CLE + bias correction


def test_cle_refuses_unfolded_batchnorm_relu6_and_a_residual_fan_out(recipes):
    equalize = recipes["07"]["equalize_and_correct"]
    calib = images()
    resnet = refreshed(torchvision.models.resnet18(weights=None, num_classes=10), calib)
    block = resnet.layer1[0]
    acts = [torch.randn(2, 64, 8, 8).relu()]
    raises(lambda: equalize(block.conv1, block.conv2, acts, model=resnet), ValueError, "fold BatchNorm")
    folded = fuse_modules(copy.deepcopy(resnet), [["layer1.0.conv1", "layer1.0.bn1"], ["layer1.0.conv2", "layer1.0.bn2"]])
    conv1, conv2 = folded.layer1[0].conv1, folded.layer1[0].conv2
    with torch.no_grad():
        ref = conv2(torch.relu(conv1(acts[0])))
    for correct_bias in (False, True):  # each report is checked against the pair it is attached to
        c1, c2 = equalize(conv1, conv2, [(a, None) for a in acts], model=folded, correct_bias=correct_bias)
        report = c1.quantization_report
        assert report is c2.quantization_report and report.path_checked and report.equalization_sqnr_db > 100
        with torch.no_grad():
            out = c2(torch.relu(c1(acts[0])))
        returned = min((10 * torch.log10(ref.pow(2).sum() / (ref - out).pow(2).sum())).item(), 999.0)
        assert abs(report.returned_sqnr_db - returned) < 0.5, (correct_bias, report, returned)
        if not correct_bias:
            assert report.returned_sqnr_db == report.equalization_sqnr_db
    chain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU6(), nn.Conv2d(8, 4, 3)).eval()
    raises(lambda: equalize(chain[0], chain[2], calib, model=chain), ValueError, "ReLU6", "clamps")
    raises(lambda: equalize(chain[0], chain[2], calib, activation=F.relu6), ValueError, "relu6")
    swish = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Hardswish(), nn.Conv2d(8, 4, 3)).eval()
    raises(lambda: equalize(swish[0], swish[2], calib, model=swish), ValueError, "Hardswish")
    res = fuse_modules(refreshed(ResCNN(), calib), [["conv1", "bn1"], ["conv2", "bn2"]])
    raises(lambda: equalize(res.conv1, res.conv2, calib, model=res), ValueError, "residual fan-out")
    raises(lambda: equalize(chain[0], chain[2], []), ValueError, "empty")


def test_cle_numeric_check_catches_a_clamp_it_was_not_told_about(recipes):
    equalize = recipes["07"]["equalize_and_correct"]
    torch.manual_seed(0)
    a, b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)
    with torch.no_grad():
        a.weight.mul_(torch.logspace(-1, 1.5, 8).reshape(8, 1, 1, 1))
    def clamp(t):  # a clamp under a name the recipe does not know: only its check on the data sees it
        return t.clamp(max=1.0)

    raises(lambda: equalize(a, b, [torch.randn(4, 3, 8, 8)], activation=clamp), ValueError, "changed the float function")


class FunctionalLeakyPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.b(F.avg_pool2d(F.leaky_relu(self.a(x), 0.1), 3, 2, padding=1))


def test_cle_passes_pooling_and_leaky_relu_between_the_convs(recipes):
    """Max and average pooling (with padding) and LeakyReLU commute with a positive per-channel scale: accepted."""
    equalize = recipes["07"]["equalize_and_correct"]
    torch.manual_seed(0)
    calib = [torch.randn(4, 3, 12, 12)]
    spread = torch.logspace(-1.5, 1.5, 8).reshape(8, 1, 1, 1)  # conv1's channel ranges 1000x apart
    for pool in (nn.MaxPool2d(3, 2, padding=1), nn.AvgPool2d(3, 2, padding=1)):
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), pool, nn.Conv2d(8, 4, 3)).eval()
        with torch.no_grad():
            model[0].weight.mul_(spread)
        c1, c2 = equalize(model[0], model[3], calib, model=model, activation=lambda t, pool=pool: pool(torch.relu(t)))
        report = c1.quantization_report
        assert report.path_checked and report.equalization_sqnr_db > 100, (pool, report)
        assert report.channel_range_ratio[1] < report.channel_range_ratio[0] / 10, report
    leaky = FunctionalLeakyPool().eval()
    with torch.no_grad():
        leaky.a.weight.mul_(spread)
    c1, _ = equalize(leaky.a, leaky.b, calib, model=leaky,
                     activation=lambda t: F.avg_pool2d(F.leaky_relu(t, 0.1), 3, 2, padding=1))
    assert c1.quantization_report.path_checked and c1.quantization_report.equalization_sqnr_db > 100
    silu = nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(2), nn.SiLU(), nn.Conv2d(8, 4, 3)).eval()
    raises(lambda: equalize(silu[0], silu[3], calib, model=silu), ValueError, "SiLU", "per-channel scale")
    shifted = torch.fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)))
    graph = shifted.graph
    relu = next(n for n in graph.nodes if n.op == "call_module" and n.target == "1")
    with graph.inserting_after(relu):
        plus = graph.call_function(operator.add, (relu, 1.0))
    relu.replace_all_uses_with(plus)
    plus.args = (relu, 1.0)
    shifted.recompile()
    raises(lambda: equalize(shifted.get_submodule("0"), shifted.get_submodule("2"), calib, model=shifted),
           ValueError, "add", "an added constant")


class ReluPoolPair(nn.Module):
    """Conv -> ReLU -> MaxPool2d(2) -> Conv, conv1's channels 10x apart (review rcp_r7's model)."""

    def __init__(self, functional=False):
        super().__init__()
        self.functional = functional
        self.c1, self.r, self.p, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1)
        with torch.no_grad():
            self.c1.weight[:8] *= 10

    def forward(self, x):
        if self.functional:
            return self.c2(F.max_pool2d(F.relu(self.c1(x)), 2))
        return self.c2(self.p(self.r(self.c1(x))))


def test_cle_refuses_an_activation_that_is_not_the_models_path(recipes):
    """With model= given, `activation` must be what the model applies between the convs: the bias correction is
    fitted to it. ReLU alone where the model has ReLU then MaxPool is refused; the true path passes."""
    equalize = recipes["07"]["equalize_and_correct"]
    torch.manual_seed(0)
    calib = [torch.randn(8, 3, 16, 16) for _ in range(2)]
    true_path = lambda t: torch.max_pool2d(torch.relu(t), 2)  # noqa: E731
    for functional in (False, True):
        model = ReluPoolPair(functional).eval()
        raises(lambda: equalize(model.c1, model.c2, calib, bits=4, model=model), ValueError,
               "activation=relu is not what the model applies between the convs", "max_pool2d" if functional else "MaxPool2d")
        c1, _ = equalize(model.c1, model.c2, calib, bits=4, model=model, activation=true_path)
        assert c1.quantization_report.path_checked
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)).eval()  # nothing between: ReLU is wrong too
    raises(lambda: equalize(plain[0], plain[1], calib, model=plain), ValueError, "(nothing)")
    equalize(plain[0], plain[1], calib, model=plain, activation=lambda t: t)
    dropout = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(8, 4, 3)).train()
    equalize(dropout[0], dropout[3], calib, model=dropout)  # dropout: the identity at inference, left out


def test_cle_bias_correction_is_the_same_with_an_in_place_relu(recipes):
    """An in-place activation (nn.ReLU(inplace=True), as torchvision's models use) must not overwrite the float
    reference the bias correction is measured against: it gives the same corrected pair, and the same 4-bit SQNR
    against the original pair, as the default torch.relu (review rcp_r9: 9.4 dB instead of 18.9 dB before)."""
    equalize = recipes["07"]["equalize_and_correct"]
    torch.manual_seed(0)

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.relu, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return self.c2(self.relu(self.c1(x)))

    model = Pair().eval()
    with torch.no_grad():
        model.c1.weight.mul_(torch.logspace(-1, 1, 8).reshape(-1, 1, 1, 1))  # channels over 0.1 ... 10
    calib = [torch.randn(16, 3, 8, 8) for _ in range(4)]
    x = torch.cat(calib)

    def rounded(conv):  # the 4-bit grid the recipe itself uses
        q = copy.deepcopy(conv)
        scale = q.weight.abs().max() / 7
        with torch.no_grad():
            q.weight.copy_(torch.clamp(torch.round(q.weight / scale), -7, 7) * scale)
        return q

    with torch.no_grad():
        ref = model.c2(torch.relu(model.c1(x)))
        results = {}
        for label, activation in (("default", torch.relu), ("in place", model.relu)):
            c1, c2 = equalize(model.c1, model.c2, calib, bits=4, model=model, activation=activation)
            out = rounded(c2)(torch.relu(rounded(c1)(x)))
            sqnr = (10 * torch.log10(ref.pow(2).sum() / (ref - out).pow(2).sum())).item()
            results[label] = (c1, c2, sqnr, c1.quantization_report.returned_sqnr_db)
    (d1, d2, d_sqnr, d_returned), (i1, i2, i_sqnr, i_returned) = results["default"], results["in place"]
    for a, b in ((d1, i1), (d2, i2)):
        assert torch.allclose(a.weight, b.weight) and torch.allclose(a.bias, b.bias, atol=1e-6), (a.bias, b.bias)
    assert abs(d_sqnr - i_sqnr) < 0.01 and d_returned == i_returned, (d_sqnr, i_sqnr, d_returned, i_returned)


def test_cle_refuses_linear_and_conv1d_pairs_with_a_sentence(recipes):
    equalize = recipes["07"]["equalize_and_correct"]
    raises(lambda: equalize(nn.Linear(8, 16), nn.Linear(16, 4), [torch.randn(4, 8)]), ValueError,
           "a pair of nn.Conv2d, got Linear and Linear")
    raises(lambda: equalize(nn.Conv1d(3, 8, 3), nn.Conv1d(8, 8, 3), [torch.randn(4, 3, 16)]), ValueError,
           "got Conv1d and Conv1d")


# ----------------------------------------------------------------------------------- 02: pretrained INT8


def test_pretrained_refuses_a_float_builder_and_leaves_the_engine(recipes, tmp_path, monkeypatch):
    load = recipes["02"]["load_pretrained_quantized"]
    engine = torch.backends.quantized.engine
    raises(lambda: load(torchvision.models.mobilenet_v3_small), ValueError, "torchvision.models.quantization", "mobilenet_v3_large")
    assert torch.backends.quantized.engine == engine
    raises(lambda: load(torchvision.models.quantization.shufflenet_v2_x0_5, backend="x86"), RuntimeError, "float model")
    assert torch.backends.quantized.engine == engine
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    raises(lambda: load(torchvision.models.quantization.resnet18, "DEFAULT"), FileNotFoundError, "resnet18_fbgemm")
    try:
        model = load(torchvision.models.quantization.shufflenet_v2_x0_5, backend="fbgemm")
        assert model.quantization_report["quantized"] == model.quantization_report["quantizable"] > 50
    finally:
        torch.backends.quantized.engine = engine


@pytest.mark.skipif("x86" not in torch.backends.quantized.supported_engines, reason="needs an x86 CPU (torch's default engine x86)")
def test_pretrained_packs_mobilenet_v3_for_the_backend_asked(recipes):
    """MobileNetV3's builder sets no engine and converts under the active one: the recipe sets it first."""
    from qhelpers.latency import _packed_kernel

    load = recipes["02"]["load_pretrained_quantized"]
    engine = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "x86"
        model = load(torchvision.models.quantization.mobilenet_v3_large, None, backend="qnnpack")
        assert model.quantization_report["engine"] == torch.backends.quantized.engine == "qnnpack"
        assert "qnnpack" in _packed_kernel(model.features[0][0]._packed_params).lower()  # not "FBGEMM"
        torch.backends.quantized.engine = "x86"
        raises(lambda: load(torchvision.models.quantization.mobilenet_v3_large), ValueError, "backend=")
        assert torch.backends.quantized.engine == "x86"
    finally:
        torch.backends.quantized.engine = engine
