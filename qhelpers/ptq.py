"""Post-training static quantization (eager mode): fusion, qconfigs, calibration, sensitivity.

Introduced in notebooks/03_post_training_quantization.ipynb.

* ``find_fusable_groups`` traces a model with ``torch.fx`` and lists the
  Conv+BN(+ReLU), Conv+ReLU, Linear+BN, Linear+ReLU and BN2d/3d+ReLU chains that
  ``torch.ao.quantization.fuse_modules`` can merge (only chains where each
  intermediate result feeds the next module alone, and no module is reused).
* ``make_qconfig`` / ``qconfig_variants`` build qconfigs that differ in one
  thing at a time (activation observer, weight granularity, ``reduce_range``).
* ``post_training_quantize`` is the recipe: fuse, set qconfig, prepare,
  calibrate, convert.
* ``calibration_draws`` measures how much calibration data is enough, over random draws;
  ``tensor_bytes`` separates a state dict's tensors from the file's container.
* ``sensitivity_table`` compares a float and a quantized model layer by layer
  with ``torch.ao.ns`` (``quantmath.sqnr_db`` of weights and of each layer's output);
  ``keep_in_float`` leaves chosen layers in float (both used in notebook 07).

All of it uses ``torch.ao.quantization``, which warns that it is deprecated (the warning names 2.10 for its
removal; it still works in the pinned 2.14; see "API facts" in docs/REFERENCES.md).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.ao.nn.intrinsic as nni
import torch.ao.nn.intrinsic.quantized as nniq
from torch import nn
from torch.ao.quantization import (
    DeQuantStub,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
    QConfig,
    QuantStub,
    convert,
    fuse_modules,
    fuse_modules_qat,
    prepare,
)

from .checks import _blank_safe, NotFilledIn, not_filled, read_range, report
from .environment import check_engine
from .environment import engine as use_engine
from .models_depthwise import DepthwiseNet, depthwise_model_metadata, load_depthwise_model
from .quantmath import sqnr_db

__all__ = [
    "find_fusable_groups",
    "fuse",
    "is_fused",
    "ACTIVATION_OBSERVERS",
    "make_qconfig",
    "qconfig_variants",
    "describe_qconfig",
    "calibrate",
    "post_training_quantize",
    "tensor_bytes",
    "CalibrationDraws",
    "calibration_draws",
    "plot_calibration_draws",
    "keep_in_float",
    "sensitivity_table",
    "check_fusable_groups",
    "check_qconfig",
    "check_engine_ptq",
    "check_prediction",
    "prediction_ready",
    "DepthwiseNet",
    "load_depthwise_model",
    "depthwise_model_metadata",
]

_CONV_BN = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
# torch's fuser table (torch/ao/quantization/fuser_method_mappings.py, _DEFAULT_OP_LIST_TO_FUSER_METHOD) has
# BatchNorm+ReLU for BatchNorm2d and BatchNorm3d only: fuse_modules refuses BatchNorm1d+ReLU
_BN_RELU = (nn.BatchNorm2d, nn.BatchNorm3d)


# --------------------------------------------------------------------------- fusion


def _chain_next(node: Any, users_of: dict, count_of: dict) -> Optional[Any]:
    """The single call_module user of ``node``, if ``node``'s output goes nowhere else."""
    users = users_of.get(node, [])
    if len(users) != 1:
        return None
    user = users[0]
    if user.op != "call_module" or count_of[user.target] != 1:
        return None
    return user


def find_fusable_groups(model: nn.Module) -> list[list[str]]:
    """Module-name groups that ``fuse_modules`` can fuse, in execution order, e.g. ``[["stem.0", "stem.1", "stem.2"]]``.

    Traces ``model`` with ``torch.fx.symbolic_trace`` (the model is not run
    and not changed). A chain qualifies when each module's output is used
    only by the next one and no module of the chain is called twice
    (fusing a shared ReLU would remove it from its other uses). Patterns:
    Conv{1,2,3}d+BatchNorm(+ReLU), Conv+ReLU, Linear+BatchNorm1d, Linear+ReLU,
    BatchNorm{2,3}d+ReLU (torch has no fuser for BatchNorm1d+ReLU). Raises ``TypeError`` for a non-module and ``ValueError``
    when the model cannot be traced.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:
        raise ValueError(
            f"model could not be traced with torch.fx ({type(exc).__name__}: {exc}); list its fusable groups by hand"
        ) from exc
    modules = dict(model.named_modules())
    count_of: dict[str, int] = {}
    users_of: dict = {}
    for node in graph.nodes:
        if node.op == "call_module":
            count_of[node.target] = count_of.get(node.target, 0) + 1
        for inp in node.all_input_nodes:
            users_of.setdefault(inp, []).append(node)
    groups: list[list[str]] = []
    taken: set[str] = set()
    for node in graph.nodes:
        if node.op != "call_module" or node.target in taken or count_of[node.target] != 1:
            continue
        first = modules[node.target]
        group = [node.target]
        nxt = _chain_next(node, users_of, count_of)
        nxt_mod = modules[nxt.target] if nxt is not None else None
        if type(first) in _CONV_BN or type(first) is nn.Linear:
            bn_type = _CONV_BN.get(type(first), nn.BatchNorm1d)
            if nxt_mod is not None and type(nxt_mod) is bn_type:
                group.append(nxt.target)
                nxt = _chain_next(nxt, users_of, count_of)
                nxt_mod = modules[nxt.target] if nxt is not None else None
                if type(first) is nn.Linear:  # Linear+BN1d has no ReLU variant
                    nxt_mod = None
            if nxt_mod is not None and type(nxt_mod) is nn.ReLU:
                group.append(nxt.target)
        elif type(first) in _BN_RELU and nxt_mod is not None and type(nxt_mod) is nn.ReLU:
            group.append(nxt.target)
        if len(group) > 1:
            groups.append(group)
            taken.update(group)
    return groups


def is_fused(model: nn.Module) -> bool:
    """True when ``model`` already contains fused modules (``torch.ao.nn.intrinsic``)."""
    return any(isinstance(m, nni._FusedModule) for m in model.modules())


def fuse(model: nn.Module, is_qat: bool = False, inplace: bool = False) -> nn.Module:
    """Fuse ``model`` (eval mode, or train mode with ``is_qat=True``); already-fused models are returned as they are.

    Uses the model's own ``fuse_model(is_qat)`` when it has one (torchvision's
    quantizable models and the course models do), else ``find_fusable_groups``.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not is_qat and model.training:
        raise ValueError("model is in training mode; call model.eval() before fusing for PTQ (or pass is_qat=True)")
    if is_qat and not model.training:
        raise ValueError("is_qat=True needs the model in training mode (model.train()); for PTQ use is_qat=False")
    target = model if inplace else copy.deepcopy(model)
    if is_fused(target):
        return target
    if hasattr(target, "fuse_model"):
        target.fuse_model(is_qat=is_qat)
    else:
        groups = find_fusable_groups(target)
        if groups:
            (fuse_modules_qat if is_qat else fuse_modules)(target, groups, inplace=True)
    return target


# --------------------------------------------------------------------------- qconfigs


ACTIVATION_OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "histogram": HistogramObserver,
}


def make_qconfig(activation: str = "histogram", per_channel: bool = True, reduce_range: bool = False) -> QConfig:
    """A static-quantization ``QConfig``: quint8 affine activations, qint8 symmetric weights.

    ``activation``: ``'minmax'`` (range of everything seen), ``'moving_average'``
    (exponential average of each batch's min/max), ``'histogram'`` (range
    chosen to minimise the quantization error of the collected histogram).
    ``per_channel``: one weight scale per output channel, else one per tensor.
    ``reduce_range``: activations use 7 bits (0..127), which avoids an
    overflow in the x86 (fbgemm) kernels on CPUs without VNNI.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    if activation not in ACTIVATION_OBSERVERS:
        raise ValueError(f"activation must be one of {list(ACTIVATION_OBSERVERS)}, got {activation!r}")
    for name, value in (("per_channel", per_channel), ("reduce_range", reduce_range)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    act = ACTIVATION_OBSERVERS[activation].with_args(dtype=torch.quint8, reduce_range=reduce_range)
    if per_channel:
        weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=act, weight=weight)


def qconfig_variants(*, engine: Optional[str] = None) -> "OrderedDict[str, QConfig]":
    """Qconfigs that each change ONE thing from the baseline (MinMax activations, per-tensor weights, 8-bit range).

    The last entry is the engine's default (``get_default_qconfig(engine)``),
    which changes several things at once.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    from torch.ao.quantization import get_default_qconfig

    engine = check_engine(engine)
    return OrderedDict(
        [
            ("baseline: minmax, per-tensor", make_qconfig("minmax", per_channel=False)),
            ("activations: moving average", make_qconfig("moving_average", per_channel=False)),
            ("activations: histogram", make_qconfig("histogram", per_channel=False)),
            ("weights: per-channel", make_qconfig("minmax", per_channel=True)),
            ("reduce_range=True", make_qconfig("minmax", per_channel=False, reduce_range=True)),
            (f"{engine} default qconfig", get_default_qconfig(engine)),
        ]
    )


def describe_qconfig(qconfig: QConfig) -> str:
    """One line: activation observer (+ reduce_range) / weight observer and qscheme.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    act, w = qconfig.activation(), qconfig.weight()
    rr = ", reduce_range" if getattr(act, "reduce_range", False) else ""
    return f"act {type(act).__name__}{rr} / weight {type(w).__name__} {str(w.qscheme).replace('torch.', '')}"


# --------------------------------------------------------------------------- the recipe


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def calibrate(prepared: nn.Module, calib_loader: Iterable, *, num_batches: Optional[int] = None) -> int:
    """Run ``prepared`` over the loader's inputs (batches ``x`` or ``(x, y)``) so its observers see them; returns images seen."""
    if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")
    seen = 0
    for i, batch in enumerate(calib_loader):
        if num_batches is not None and i >= num_batches:
            break
        x = _inputs(batch)
        prepared(x)
        seen += len(x)
    if seen == 0:
        raise ValueError("calib_loader yielded no data; give it at least one batch of representative inputs")
    return seen


def post_training_quantize(
    model: nn.Module,
    calib_loader: Iterable,
    *,
    engine: Optional[str] = None,
    per_channel: Optional[bool] = None,
    qconfig: Optional[QConfig] = None,
    float_modules: Sequence[str] = (),
    num_batches: Optional[int] = None,
) -> nn.Module:
    """Static PTQ of an eager-mode model with QuantStub/DeQuantStub; returns a new converted INT8 model.

    Steps: copy, fuse, set the qconfig, ``prepare`` (observers), calibrate on
    ``calib_loader``, ``convert``. The qconfig is ``qconfig`` if given,
    else histogram activations with per-channel (``per_channel`` None or True,
    the default as in ``qat_qconfig``) or per-tensor (False) symmetric
    weights, ``reduce_range`` as the engine needs it; giving both ``qconfig``
    and ``per_channel`` is a ``ValueError`` (one would be ignored).
    ``float_modules`` names modules of the *fused* model to leave in float
    (see ``keep_in_float``). ``engine`` (None: ``qh.default_engine()``) is
    active during ``convert`` and restored after; run the result with the
    same engine set (``with qh.engine(...)``). The result records it as
    ``quantized_engine``. ``model`` itself is not changed.

    Introduced in notebooks/00_start_here.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("model is in training mode; call model.eval() first (PTQ folds BatchNorm running statistics)")
    engine = check_engine(engine)
    if qconfig is not None and not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a torch.ao.quantization.QConfig or None, got {type(qconfig).__name__}")
    if per_channel is not None and not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True, False or None, got {per_channel!r}")
    if qconfig is not None and per_channel is not None:
        raise ValueError(
            f"give qconfig or per_channel, not both: per_channel={per_channel} would be ignored because qconfig sets the weight observer"
        )
    if qconfig is None:
        qconfig = make_qconfig("histogram", per_channel=per_channel is not False, reduce_range=engine in ("x86", "fbgemm"))
    q = fuse(model)
    q.qconfig = qconfig
    if float_modules:
        keep_in_float(q, float_modules)
    with use_engine(engine):
        prepare(q, inplace=True)
        calibrate(q, calib_loader, num_batches=num_batches)
        convert(q, inplace=True)
    q.quantized_engine = engine  # packed weights belong to this engine: run the model with it
    return q


# --------------------------------------------------------------------------- how much calibration data


@dataclass
class CalibrationDraws:
    """What ``calibration_draws`` measured: for each size ``n``, one ``(accuracy %, logit SQNR dB)`` per random draw;
    ``full`` is the same pair for all calibration images; ``margin_db`` the "close to the full set" margin."""

    sizes: tuple
    draws: dict
    full: tuple
    n_full: int
    margin_db: float

    def sqnr(self, n: int) -> list[float]:
        """The SQNRs of the draws of size ``n``, sorted from worst to best."""
        return sorted(s for _, s in self.draws[n])

    def accuracies(self, n: int) -> list[float]:
        return sorted(a for a, _ in self.draws[n])

    def close(self, n: int) -> int:
        """How many draws of size ``n`` are within ``margin_db`` of the full set's SQNR (or above it)."""
        return sum(s >= self.full[1] - self.margin_db for s in self.sqnr(n))

    def __str__(self) -> str:
        k = len(self.draws[self.sizes[0]])
        lines = [f"{'images':>6}  {'logit SQNR worst / median / best':>33}  {f'within {self.margin_db:g} dB':>13}  {'accuracy':>13}"]
        for n in self.sizes:
            s, a = self.sqnr(n), self.accuracies(n)
            lines.append(f"{n:>6}  {s[0]:>14.1f} / {s[k // 2]:5.1f} / {s[-1]:5.1f} dB  {self.close(n):>5} of {k:<5}  {a[0]:5.1f}..{a[-1]:.1f}%")
        lines.append(f"{self.n_full:>6}  {self.full[1]:>22.1f} dB {'':>15}  {self.full[0]:>11.1f}%   (all calibration images)")
        return "\n".join(lines)


@torch.no_grad()
def calibration_draws(
    model: nn.Module,
    calib_loader: Iterable,
    test_loader: Iterable,
    *,
    sizes: Sequence[int] = (1, 3, 10, 30, 100),
    draws: int = 8,
    seed: int = 0,
    engine: Optional[str] = None,
    margin_db: float = 3.0,
) -> CalibrationDraws:
    """PTQ (``post_training_quantize``'s default qconfig) calibrated on ``draws`` random subsets of ``n`` calibration
    images for each ``n`` in ``sizes``, and on all of them; each scored by test accuracy and by the SQNR of its test
    logits against ``model``'s (``qh.sqnr_db``). Subsets are drawn without replacement within a draw, independently
    across draws, from a generator seeded with ``seed``.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    images = torch.cat([_inputs(b) for b in calib_loader])
    x = torch.cat([_inputs(b) for b in test_loader])
    y = torch.cat([b[1] for b in test_loader])
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    bad = [n for n in sizes if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(images)]
    if bad or not sizes:
        raise ValueError(f"sizes must be ints from 1 to the {len(images)} calibration images, got {list(sizes)!r}")
    engine = check_engine(engine)
    with use_engine(engine):
        reference = model(x)

        def score(q: nn.Module) -> tuple[float, float]:
            logits = q(x)
            return 100.0 * int((logits.argmax(1) == y).sum()) / len(y), sqnr_db(reference, logits)

        full = score(post_training_quantize(model, calib_loader, engine=engine))
        generator = torch.Generator().manual_seed(seed)
        results = {}
        for n in sizes:
            results[n] = [
                score(post_training_quantize(model, [images[torch.randperm(len(images), generator=generator)[:n]]], engine=engine))
                for _ in range(draws)
            ]
    return CalibrationDraws(tuple(sizes), results, full, len(images), float(margin_db))


def plot_calibration_draws(result: CalibrationDraws, float_acc: Optional[float] = None) -> Any:
    """Accuracy and logit SQNR against the number of calibration images: the band of the draws (worst..best),
    their median, and the full set. Returns the two axes.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    k = len(result.draws[result.sizes[0]])
    for ax, values, full, label in ((axes[0], result.accuracies, result.full[0], "test accuracy (%)"),
                                    (axes[1], result.sqnr, result.full[1], "logit SQNR vs float (dB)")):
        rows = [values(n) for n in result.sizes]
        ax.fill_between(result.sizes, [r[0] for r in rows], [r[-1] for r in rows], alpha=0.3, label=f"worst..best of {k} draws")
        ax.semilogx(result.sizes, [r[k // 2] for r in rows], marker="o", label="median")
        ax.axhline(full, color="0.4", ls="--", label=f"all {result.n_full} images")
        ax.set_xlabel("calibration images (random draws)")
        ax.set_ylabel(label)
    if float_acc is not None:
        axes[0].axhline(float_acc, color="tab:green", ls=":", label="float")
        axes[0].set_ylim(float_acc - 3, float_acc + 1)
    axes[1].axhspan(result.full[1] - result.margin_db, result.full[1], color="tab:green", alpha=0.1, label=f"within {result.margin_db:g} dB")
    for ax in axes:
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return axes


def tensor_bytes(model: nn.Module) -> int:
    """Bytes of the tensors in ``model.state_dict()`` alone: elements times element size (1 for INT8), plus, for a
    per-channel quantized tensor, its float64 scales and int64 zero points (8 bytes each per channel).

    ``qh.model_size_bytes`` (the file ``torch.save`` writes) is larger by the container: each tensor is a record in a
    zip archive. Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    total = 0
    for value in model.state_dict().values():
        if not isinstance(value, torch.Tensor):
            continue
        total += value.numel() * value.element_size()
        if value.is_quantized and value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            total += 8 * (value.q_per_channel_scales().numel() + value.q_per_channel_zero_points().numel())
    return total


def keep_in_float(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Wrap each named module as ``DeQuantStub -> module (qconfig None) -> QuantStub``, in place, before ``prepare``.

    In eager mode a float module between quantized ones needs its input
    dequantized and its output quantized again; the wrapper does that.
    """
    if isinstance(names, str):
        names = [names]
    available = dict(model.named_modules())
    for name in names:
        if name not in available or name == "":
            raise ValueError(f"no module named {name!r} in the model; valid names include {list(available)[1:12]} ...")
        parent_name, _, child = name.rpartition(".")
        parent = available[parent_name] if parent_name else model
        module = available[name]
        module.qconfig = None
        setattr(parent, child, nn.Sequential(DeQuantStub(), module, QuantStub()))
    return model


# --------------------------------------------------------------------------- sensitivity


def _layer_name(key: str) -> str:
    for suffix in (".stats", "._packed_params._packed_params", ".weight"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def sensitivity_table(float_model: nn.Module, quantized_model: nn.Module, example: torch.Tensor) -> list[dict]:
    """Per-layer comparison with ``torch.ao.ns._numeric_suite``: rows ``{"layer", "weight_sqnr_db", "output_sqnr_db", "output_drop_db"}``.

    ``weight_sqnr_db``: float weights (after fusion, BN folded) vs their INT8
    version (``compare_weights``); nan for layers without weights.
    ``output_sqnr_db``: each layer's output in the float model vs the
    quantized model on ``example`` (``compare_model_outputs``); the error
    accumulates along the network, so a sudden drop marks a sensitive layer.
    ``output_drop_db``: how much the output SQNR fell at this layer (from the
    previous row with an output SQNR; nan without one). A layer whose
    weights have a few huge channels can keep a good *weight* SQNR (the big
    channels dominate the norm) while its output collapses: rank by the drop.
    Rows in the order the layers are registered. ``float_model`` must be the
    model ``quantized_model`` was made from. Neither model is changed.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    import torch.ao.ns._numeric_suite as ns
    from torch.ao.quantization.quantization_mappings import get_default_compare_output_module_list

    for name, value in (("float_model", float_model), ("quantized_model", quantized_model)):
        if not isinstance(value, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a torch.Tensor batch, got {type(example).__name__}")
    fused = fuse(float_model)
    weights = ns.compare_weights(fused.state_dict(), quantized_model.state_dict())
    allow = get_default_compare_output_module_list() | {nni.LinearReLU, nniq.LinearReLU}
    outputs = ns.compare_model_outputs(copy.deepcopy(fused), copy.deepcopy(quantized_model), example, allow_list=allow)
    rows: dict[str, dict] = {}
    for key, pair in weights.items():
        rows.setdefault(_layer_name(key), {})["weight_sqnr_db"] = sqnr_db(pair["float"], pair["quantized"])
    for key, pair in outputs.items():
        rows.setdefault(_layer_name(key), {})["output_sqnr_db"] = sqnr_db(pair["float"][0], pair["quantized"][0])
    order = [n for n, _ in quantized_model.named_modules()]
    result = []
    previous = math.nan
    for layer in sorted(rows, key=lambda n: order.index(n) if n in order else len(order)):
        out = rows[layer].get("output_sqnr_db", math.nan)
        result.append(
            {
                "layer": layer,
                "weight_sqnr_db": rows[layer].get("weight_sqnr_db", math.nan),
                "output_sqnr_db": out,
                "output_drop_db": previous - out,
            }
        )
        if not math.isnan(out):
            previous = out
    return result


# --------------------------------------------------------------------------- exercise checks


_FUSE_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm3d)


@_blank_safe
def check_fusable_groups(groups: Any, model: nn.Module) -> bool:
    """Exercise: the fusable groups of ``model`` (any order of groups; names in execution order within a group).

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    if not_filled(groups):
        raise NotFilledIn("fusable groups")
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, (list, tuple)) for g in groups):
        raise TypeError(f"groups must be a list of lists of module names, got {groups!r}")
    for g in groups:
        odd = [n for n in g if not isinstance(n, str)]
        if odd:
            return report(
                "fusable groups", False,
                f"{list(g)}: module names are strings, as model.named_modules() gives them (\"0\", not 0); fuse_modules calls name.split('.')",
            )
    used = [n for g in groups for n in g]
    repeated = sorted({n for n in used if used.count(n) > 1})
    if repeated:
        return report("fusable groups", False, f"module {repeated[0]!r} appears in more than one group (or twice in one): a module is fused once")
    expected = {tuple(g) for g in find_fusable_groups(model)}
    given = {tuple(g) for g in groups}
    if given == expected:
        return report("fusable groups", True)
    modules = dict(model.named_modules())
    for g in sorted(given - expected):
        unknown = [n for n in g if n not in modules or n == ""]
        if unknown:
            return report("fusable groups", False, f"{list(g)}: no module named {unknown[0]!r} in the model")
        if not isinstance(modules[g[0]], _FUSE_FIRST):
            return report(
                "fusable groups", False,
                f"{list(g)} starts with a {type(modules[g[0]]).__name__}: a group starts with a Conv, a Linear, or a "
                "BatchNorm2d/3d followed by a ReLU (a ReLU after pooling has nothing to fuse into, and torch has no fuser for "
                "BatchNorm1d+ReLU)",
            )
        if any(set(g) <= set(e) and g != e for e in expected):
            return report("fusable groups", False, f"{list(g)} is cut short: fuse the whole chain (is there a ReLU right after it?)")
        return report("fusable groups", False, f"{list(g)} is not a chain fuse_modules can fuse (wrong order, or a module in between)")
    missing = expected - given
    return report(
        "fusable groups", False,
        f"{len(missing)} fusable group(s) missing: a Conv+BatchNorm without a ReLU, and a Linear+ReLU, are groups too",
    )


_WEIGHT_SCHEMES = {
    True: (torch.per_channel_symmetric, "per-channel symmetric"),
    False: (torch.per_tensor_symmetric, "per-tensor symmetric"),
}


def _observer_instance(factory: Any, role: str) -> tuple[Optional[Any], str]:
    try:
        return factory(), ""
    except Exception as exc:  # a factory with arguments the observer refuses raises when called
        return None, f"the {role} factory fails when torch calls it: {type(exc).__name__}: {str(exc).splitlines()[0]}"


@_blank_safe
def check_qconfig(qconfig: Any, activation: str, per_channel: bool, reduce_range: bool = False) -> bool:
    """Exercise: ``qconfig`` has the named activation observer (quint8, affine, ``reduce_range``) and qint8
    symmetric weights over the full -128..127 range, per output channel (``ch_axis=0``) when ``per_channel``.

    Each factory is called the way ``prepare`` calls it; an argument torch refuses is reported, not raised.
    A moving average with ``averaging_constant=1`` is refused: torch treats that observer as memoryless and
    ``prepare`` then observes each module's *input* instead of its output.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    from torch.ao.quantization.qconfig import _activation_is_memoryless

    if activation not in ACTIVATION_OBSERVERS:
        raise ValueError(f"activation must be one of {list(ACTIVATION_OBSERVERS)}, got {activation!r}")
    if not_filled(qconfig):
        raise NotFilledIn("qconfig")
    if not isinstance(qconfig, QConfig):
        return report("qconfig", False, f"expected a torch.ao.quantization.QConfig(activation=..., weight=...), got {type(qconfig).__name__}")
    act, why = _observer_instance(qconfig.activation, "activation")
    w, why_w = _observer_instance(qconfig.weight, "weight") if act is not None else (None, "")
    if act is None or w is None:
        return report("qconfig", False, why or why_w)
    want_act = ACTIVATION_OBSERVERS[activation]
    if type(act) is not want_act:
        return report("qconfig", False, f"the activation observer is {type(act).__name__}, the exercise asks for {want_act.__name__}")
    if act.dtype != torch.quint8:
        return report("qconfig", False, f"activations are {act.dtype}: activations after a ReLU are non-negative, use torch.quint8")
    if act.qscheme != torch.per_tensor_affine:
        return report("qconfig", False, f"activation qscheme {str(act.qscheme).replace('torch.', '')}: activations use the default per_tensor_affine (a zero point)")
    if _activation_is_memoryless(QConfig(activation=qconfig.activation, weight=qconfig.weight)):
        return report(
            "qconfig", False,
            "averaging_constant=1 makes the moving average forget every batch but the last; torch then treats the observer as "
            "memoryless and prepare() puts it on each module's input, not its output: keep the default (0.01)",
        )
    want_range = (0, 127) if reduce_range else (0, 255)
    if (act.quant_min, act.quant_max) != want_range:
        if reduce_range and (act.quant_min, act.quant_max) == (0, 255):
            hint = "activation reduce_range is False, the exercise asks for True (codes 0..127)"
        elif not reduce_range and (act.quant_min, act.quant_max) == (0, 127):
            hint = "activation codes 0..127 (reduce_range or quant_max=127), the exercise asks for the full 0..255"
        else:
            hint = f"activation codes {act.quant_min}..{act.quant_max}, the exercise asks for {want_range[0]}..{want_range[1]}"
        return report("qconfig", False, hint)
    if w.dtype != torch.qint8:
        return report("qconfig", False, f"weights are {w.dtype}: weights are signed, use torch.qint8")
    scheme, words = _WEIGHT_SCHEMES[per_channel]
    if w.qscheme != scheme:
        why = (
            "symmetric or affine? pass qscheme explicitly: the observer's default is affine"
            if w.qscheme in (torch.per_channel_affine, torch.per_tensor_affine)
            else "per tensor or per channel? one scale per output channel needs a per-channel observer"
        )
        return report("qconfig", False, f"the weight qscheme is {str(w.qscheme).replace('torch.', '')}, the exercise asks for {words}: {why}")
    if per_channel and getattr(w, "ch_axis", 0) != 0:
        return report(
            "qconfig", False,
            f"ch_axis={w.ch_axis}: a conv weight is (out_channels, in_channels, kh, kw) and a Linear's (out, in); one scale "
            "per OUTPUT channel is axis 0 (the default)",
        )
    if (w.quant_min, w.quant_max) != (-128, 127):
        return report("qconfig", False, f"weight codes {w.quant_min}..{w.quant_max}: INT8 weights use the full -128..127 (the default)")
    return report("qconfig", True)


def _quantized_weights(model: nn.Module) -> list[torch.Tensor]:
    weights = []
    for m in model.modules():
        fn = getattr(m, "weight", None)
        if callable(fn) and type(m).__module__.startswith("torch.ao.nn") and ".quantized" in type(m).__module__:
            try:
                w = fn()
            except Exception:  # dynamic modules and others without a packed weight
                continue
            if isinstance(w, torch.Tensor) and w.is_quantized:
                weights.append(w)
    return weights


@_blank_safe
def check_engine_ptq(model: Any, sqnr: Any, float_model: nn.Module, calib_loader: Iterable, test_loader: Iterable, *, engine: str = "qnnpack") -> bool:
    """Exercise: ``model`` is PTQ for ``engine`` with that engine's default qconfig; ``sqnr`` its logit SQNR (dB) vs float.

    Checks the model itself (quantized, converted for ``engine``, weights with
    the granularity of ``get_default_qconfig(engine)``), then measures the SQNR
    of its logits on ``test_loader`` against ``float_model``'s (with ``engine``
    active) and the same for the helper's own PTQ; ``sqnr`` must match.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    from torch.ao.quantization import get_default_qconfig

    if not_filled(model):
        raise NotFilledIn("model")
    if not_filled(sqnr):
        raise NotFilledIn("SQNR")
    engine = check_engine(engine)
    if not isinstance(model, nn.Module):
        return report("model", False, f"expected the quantized model (an nn.Module), got {type(model).__name__}")
    weights = _quantized_weights(model)
    if not weights:
        return report("model", False, "this model has no INT8 layers: it is still the float model (quantize a copy with qh.post_training_quantize)")
    converted_for = getattr(model, "quantized_engine", None)
    if converted_for is None:
        return report("model", False, "make the model with qh.post_training_quantize(..., engine=...): it records the engine it packed the weights for")
    if converted_for != engine:
        return report("model", False, f"the weights were packed for the {converted_for!r} engine; the exercise asks for {engine!r} (pass engine=)")
    want = get_default_qconfig(engine).weight().qscheme
    want_per_channel = want in (torch.per_channel_symmetric, torch.per_channel_affine)
    got_per_channel = weights[0].qscheme() in (torch.per_channel_symmetric, torch.per_channel_affine)
    if got_per_channel != want_per_channel:
        return report(
            "model", False,
            f"weights are {'per channel' if got_per_channel else 'per tensor'}, but {engine}'s default qconfig quantizes them "
            f"{'per channel' if want_per_channel else 'per tensor'}: pass qconfig=get_default_qconfig({engine!r})",
        )
    ok_model = report("model", True)
    try:
        given = float(sqnr)
    except (TypeError, ValueError):
        report("SQNR", False, f"expected a number in dB, got {type(sqnr).__name__}")
        return False
    x = torch.cat([_inputs(b) for b in test_loader])
    with torch.no_grad(), use_engine(engine):
        reference_logits = float_model(x)
        measured = sqnr_db(reference_logits, model(x))
        helper = post_training_quantize(float_model, calib_loader, engine=engine, qconfig=get_default_qconfig(engine))
        expected = sqnr_db(reference_logits, helper(x))
    with torch.no_grad(), use_engine(engine):
        swapped = sqnr_db(model(x), reference_logits)
    if abs(given - measured) > 1e-3 and abs(given - swapped) <= 1e-3:
        report("SQNR", False, "reference and test are swapped: qh.sqnr_db(reference, test) takes the float model's logits first")
        return False
    if abs(given - measured) > 1e-3:
        if math.isinf(given) or given > 100:
            hint = "an infinite SQNR means no quantization error at all: you compared the float model with itself"
        elif 50 <= given <= 100 and measured < 50:
            hint = "that looks like an accuracy in percent: the exercise asks for the SQNR of the logits, in dB"
        else:
            hint = "that is not the SQNR of the model you made: compare its test logits with the float model's, its engine active"
        report("SQNR", False, hint)
        return False
    ok_sqnr = report(
        "SQNR", abs(measured - expected) <= 0.02,
        "your model's logits differ from this engine's PTQ on all of calib_loader: calibrate on calib_loader, every "
        "batch of it (a part of it, or other images, gives other ranges)",
    )
    return ok_model and ok_sqnr


@_blank_safe
def prediction_ready(name: str, low: Any, high: Any, *, max_width: float) -> bool:
    """Exercise (predict first), before measuring: True when ``(low, high)`` is a range ``check_prediction`` can judge.

    Otherwise shows why (blank, not two numbers, swapped, wider than ``max_width``) and returns False, so that a
    notebook measures, and prints, the answer only after a prediction is written.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    read_range(name, (low, high), max_width=max_width, unit="")
    return True


@_blank_safe
def check_prediction(name: str, low: Any, high: Any, measured: float, *, max_width: float, too_low: str = "", too_high: str = "") -> bool:
    """Exercise (predict first): the range ``[low, high]`` written before running contains ``measured``.

    A range wider than ``max_width`` is not a prediction and fails. ``too_low``
    and ``too_high`` are hints (naming the likely mistake, not the answer) for
    a range entirely below or above the measurement.

    The first range judged under ``name`` in this Python process is remembered (``_FIRST_PREDICTIONS``): a
    prediction that missed shows the measurement, so a *different* range given afterwards is not judged again
    but refused (the same range again gets the same verdict). A fresh kernel starts with no memory.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    lo, hi = read_range(name, (low, high), max_width=max_width, unit="")
    first = _FIRST_PREDICTIONS.get(name)
    if first is not None and not first[2] and (lo, hi) != first[:2]:
        return report(
            name, False,
            f"your first prediction, {first[0]:g} to {first[1]:g}, missed, and the measurement has been shown since: a range "
            "written after seeing it is not a prediction. Keep the first one and work out what it missed. "
            f"{too_high if first[3] else too_low}".strip(),
        )
    below, above = measured < lo, measured > hi
    _FIRST_PREDICTIONS.setdefault(name, (lo, hi, not (below or above), below))
    if below:
        return report(name, False, f"measured {measured:.3g}, below your range. {too_high}".strip())
    if above:
        return report(name, False, f"measured {measured:.3g}, above your range. {too_low}".strip())
    return report(name, True)


# name -> (low, high, whether it contained the measurement, whether the measurement was below it) of the first
# prediction check_prediction judged under that name in this process
_FIRST_PREDICTIONS: dict[str, tuple[float, float, bool, bool]] = {}
