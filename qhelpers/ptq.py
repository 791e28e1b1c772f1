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
* ``tensor_bytes`` separates a state dict's tensors from the file's container;
  ``keep_in_float`` leaves chosen layers in float (used in notebook 07 too).
* ``qhelpers.ptq_analysis``: how much calibration data is enough (``calibration_draws``) and which layer loses
  accuracy (``sensitivity_table``); ``qhelpers.ptq_checks``: the self-checks of the notebook's exercises.

All of it uses ``torch.ao.quantization``, which warns that it is deprecated (the warning names 2.10 for its
removal; it still works in the pinned 2.14; see "API facts" in docs/REFERENCES.md).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.ao.nn.intrinsic as nni
from torch import nn
from torch.ao.quantization import (
    DeQuantStub, HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver, QConfig,
    QuantStub, convert, fuse_modules, fuse_modules_qat, prepare,
)

from .environment import check_engine
from .environment import engine as use_engine
from .models_depthwise import DepthwiseNet, depthwise_model_metadata, load_depthwise_model

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
    "keep_in_float",
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
    same engine set (``with qh.engine(...)``). To quantize for another
    engine, pass ``engine=``: ``None`` means ``qh.default_engine()`` even
    inside ``with qh.engine(...)``, whose engine this function does not read
    (``with qh.engine("qnnpack"):`` around a call without ``engine=`` still
    quantizes for the default engine). The result records the engine it used
    as ``quantized_engine``. ``model`` itself is not changed.

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
