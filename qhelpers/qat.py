"""Quantization-aware training (QAT): fake quantization, the straight-through estimator, the training recipe.

Introduced in notebooks/04_quantization_aware_training.ipynb.

QAT inserts ``FakeQuantize`` modules (quantize then dequantize, in float) on
the weights and activations of a fused model, trains it so that the weights
adapt to the rounding, then converts it to a real INT8 model. Below 8 bits
(e.g. 4-bit weights and activations) the PyTorch CPU kernels cannot run the
result, so the trained fake-quant model, evaluated in eval mode, *is* the
low-bit model: a simulation of what low-bit hardware would compute.

The recipe follows torchvision's reference (``references/classification/
train_quantization.py``): a low learning rate, observers frozen after some
epochs (``disable_observer``), BatchNorm statistics frozen after some epochs
(``freeze_bn_stats``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch
from torch import nn
from torch.ao.nn.intrinsic.qat import freeze_bn_stats
from torch.ao.quantization import (
    FakeQuantizeBase,
    FakeQuantize,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
    convert,
    default_fused_per_channel_wt_fake_quant,
    default_fused_wt_fake_quant,
    disable_observer,
    enable_observer,
    fuse_modules_qat,
    get_default_qat_qconfig,
    prepare_qat,
)

from .checks import NotFilledIn, _blank_safe, not_filled, report
from .environment import check_engine
from .environment import engine as use_engine
from .ptq import calibrate
from .metrics import accuracy
from .training import train_one_epoch

__all__ = [
    "low_bit_qconfig",
    "qat_qconfig",
    "fused_scale_mismatch",
    "fake_quant_modules",
    "fake_quant_range",
    "prepare_qat_model",
    "calibrate_fake_quant",
    "fake_quant_ptq",
    "observers_frozen",
    "QATResult",
    "quantization_aware_training",
    "convert_qat_model",
    "qat_finetune",
    "SteDemo",
    "ste_demo",
    "plot_ste",
    "plot_qat_history",
    "check_ste",
    "check_low_bit_qconfig",
    "check_frozen",
]



# --------------------------------------------------------------------------- qconfigs


def _check_bits(bits: object, name: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"{name} must be an int from 2 to 8, got {bits!r}")
    return bits


def low_bit_qconfig(bits: int = 4, *, per_channel: bool = True, activation_bits: Optional[int] = None) -> QConfig:
    """A QAT qconfig that simulates ``bits``-bit weights and ``activation_bits``-bit activations (default: same).

    Weights: symmetric signed codes in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``
    (e.g. -7..7 for 4 bits), per output channel (``per_channel=True``, the
    default, as in ``post_training_quantize``) or per tensor. Activations:
    affine unsigned codes in ``[0, 2**activation_bits - 1]`` (0..15 for 4 bits).
    Both are plain ``FakeQuantize`` modules with moving-average min/max
    observers; the storage dtypes stay ``qint8``/``quint8``, only the range
    narrows. (``get_default_qat_qconfig`` uses ``FusedMovingAvgObsFakeQuantize``,
    one C++ op for both; for every symmetric range its kernel picks a scale that
    differs from its own observer's ``calculate_qparams``: 15/14 larger at
    -7..7, 127.5/127 at -128..127, see notebook 04 section 5. Plain
    ``FakeQuantize`` trains with the scale ``convert`` will use.)

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    _check_bits(bits)
    activation_bits = bits if activation_bits is None else _check_bits(activation_bits, "activation_bits")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    activation = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=2**activation_bits - 1,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    limit = 2 ** (bits - 1) - 1
    if per_channel:
        weight_kind = dict(observer=MovingAveragePerChannelMinMaxObserver, qscheme=torch.per_channel_symmetric, ch_axis=0)
    else:
        weight_kind = dict(observer=MovingAverageMinMaxObserver, qscheme=torch.per_tensor_symmetric)
    weight = FakeQuantize.with_args(quant_min=-limit, quant_max=limit, dtype=torch.qint8, **weight_kind)
    return QConfig(activation=activation, weight=weight)


def qat_qconfig(*, engine: Optional[str] = None, bits: int = 8, per_channel: bool = True) -> QConfig:
    """The QAT qconfig for ``bits``-bit weights and activations, per-channel weights by default (as in PTQ).

    At 8 bits (convertible to INT8 kernels): ``get_default_qat_qconfig(engine)``
    with its weight fake quant swapped for torch's per-channel or per-tensor
    fused one when the engine's default has the other granularity (x86's
    default is per channel, qnnpack's per tensor), so ``per_channel`` is always
    honoured. Below 8 bits: ``low_bit_qconfig(bits, per_channel=per_channel)``.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    engine = check_engine(engine)
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    if _check_bits(bits) < 8:
        return low_bit_qconfig(bits, per_channel=per_channel)
    qconfig = get_default_qat_qconfig(engine)
    is_per_channel = qconfig.weight().qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
    if is_per_channel != per_channel:
        weight = default_fused_per_channel_wt_fake_quant if per_channel else default_fused_wt_fake_quant
        qconfig = QConfig(activation=qconfig.activation, weight=weight)
    return qconfig


def fused_scale_mismatch(fake_quant: FakeQuantizeBase) -> torch.Tensor:
    """Ratio of the scale a fake quant trains with (its ``scale`` buffer) to the one ``convert`` will use.

    ``convert`` takes ``fake_quant.calculate_qparams()`` (the Python observer);
    training uses the ``scale`` buffer. For plain ``FakeQuantize`` both are the
    same (ratio 1). ``FusedMovingAvgObsFakeQuantize`` (torch's default QAT fake
    quant) writes its buffer from a C++ kernel that assumes a two's-complement
    range: ``max(|min| / (n + 1), |max| / n) * (2n + 1) / (quant_max - quant_min)``
    with ``n = (quant_max - quant_min) // 2``, where the observer uses
    ``max(|min|, |max|) / ((quant_max - quant_min) / 2)``. The ratio is 15/14
    at -7..7 and 127.5/127 at -128..127 when ``|max|`` dominates
    (pytorch/pytorch#180990, #194816; pytorch/ao#4345, #4824). Returns one
    ratio per scale (per channel or a single one).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(fake_quant, FakeQuantizeBase):
        raise TypeError(f"fake_quant must be a torch.ao.quantization FakeQuantize module, got {type(fake_quant).__name__}")
    trained = fake_quant.scale.detach().double().flatten()
    converted = fake_quant.calculate_qparams()[0].detach().double().flatten()
    if trained.shape != converted.shape:
        raise ValueError(f"fake_quant has {trained.numel()} trained scale(s) but {converted.numel()} observer scale(s): run data through it first")
    return trained / converted


# --------------------------------------------------------------------------- inspecting a prepared model


def fake_quant_modules(model: nn.Module) -> dict[str, FakeQuantizeBase]:
    """Every ``FakeQuantize`` module of a QAT-prepared model, by qualified name.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantizeBase)}


def fake_quant_range(fake_quant: FakeQuantizeBase) -> tuple[float, float]:
    """The float interval a per-tensor ``FakeQuantize`` can represent: ``((qmin - zp) * s, (qmax - zp) * s)``."""
    scale, zero_point = fake_quant.calculate_qparams()
    if scale.numel() != 1:
        raise ValueError(f"fake_quant must be per-tensor, it has {scale.numel()} scales (per-channel)")
    s, z = float(scale), int(zero_point)
    return (fake_quant.quant_min - z) * s, (fake_quant.quant_max - z) * s


def observers_frozen(model: nn.Module) -> bool:
    """True when every ``FakeQuantize`` of ``model`` has its observer disabled."""
    fqs = fake_quant_modules(model)
    if not fqs:
        raise ValueError("model has no FakeQuantize modules; prepare it with prepare_qat_model first")
    return all(int(fq.observer_enabled[0]) == 0 for fq in fqs.values())


def _never_observed(model: nn.Module) -> list[str]:
    """Names of fake quants whose observer has not seen a single batch (their scale is still the default 1.0)."""
    names = []
    for name, fq in fake_quant_modules(model).items():
        obs = getattr(fq, "activation_post_process", None)
        min_val = getattr(obs, "min_val", None)
        if isinstance(min_val, torch.Tensor) and (min_val.numel() == 0 or torch.isinf(min_val).any()):
            names.append(name)
    return names


# --------------------------------------------------------------------------- prepare, calibrate, train


def prepare_qat_model(
    model: nn.Module, qconfig: QConfig, inplace: bool = False, fuse_groups: Optional[list[list[str]]] = None
) -> nn.Module:
    """Fuse, attach ``qconfig``, ``prepare_qat``.

    Fusion uses ``fuse_modules_qat(model, fuse_groups)`` when ``fuse_groups``
    is given (e.g. ``[["conv", "bn", "relu"]]``), else ``model.fuse_model(is_qat=True)``
    when the model has that method.

    ``model`` must be in training mode: QAT fusion keeps BatchNorm as a
    separate, trainable part of ``ConvBn*`` modules, which only makes sense in
    training (an eval-mode model should be quantized with PTQ instead).
    Returns the prepared model (a copy unless ``inplace``), in training mode.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a torch.ao.quantization.QConfig, got {type(qconfig).__name__}")
    if not model.training:
        raise ValueError(
            "model is in eval mode, but prepare_qat needs a model in training mode: call model.train() first "
            "(for a model you will not train, use post-training quantization instead)"
        )
    if fake_quant_modules(model):
        raise ValueError("model already has FakeQuantize modules (it was prepared before); start from the float model")
    if not inplace:
        model = copy.deepcopy(model)
    if fuse_groups is not None:
        fuse_modules_qat(model, fuse_groups, inplace=True)
    elif hasattr(model, "fuse_model"):
        model.fuse_model(is_qat=True)
    model.qconfig = qconfig
    prepare_qat(model, inplace=True)
    return model


@torch.no_grad()
def calibrate_fake_quant(prepared: nn.Module, calib_loader: Iterable, *, num_batches: Optional[int] = None) -> nn.Module:
    """Run ``loader`` through a QAT-prepared model in eval mode with observers on, then freeze the observers.

    This sets each fake quant's range from data without changing a weight:
    the starting point of QAT, and on its own a post-training quantization
    simulated in fake quant. Returns ``prepared`` (eval mode, observers off).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not fake_quant_modules(prepared):
        raise ValueError("prepared has no FakeQuantize modules; prepare it with prepare_qat_model first")
    prepared.eval()
    prepared.apply(enable_observer)
    calibrate(prepared, calib_loader, num_batches=num_batches)  # the same loop as PTQ's calibration (notebook 03)
    prepared.apply(disable_observer)
    return prepared


def fake_quant_ptq(model: nn.Module, calib_loader: Iterable, qconfig: QConfig) -> nn.Module:
    """Post-training quantization simulated with fake quant: prepare a copy, calibrate, no training.

    The float ``model`` is left untouched (its mode does not matter). Use it
    to measure PTQ at bit widths the INT8 kernels cannot run; at 8 bits it
    matches a converted model up to rounding details.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    float_copy = copy.deepcopy(model).train()
    return calibrate_fake_quant(prepare_qat_model(float_copy, qconfig, inplace=True), calib_loader)


@torch.no_grad()
def _evaluate(prepared: nn.Module, loader: Iterable) -> float:
    """Accuracy of a prepared model without letting its observers see the evaluation data."""
    was_enabled = {n: int(fq.observer_enabled[0]) for n, fq in fake_quant_modules(prepared).items()}
    prepared.eval()
    prepared.apply(disable_observer)
    try:
        return accuracy(prepared, loader)
    finally:
        for name, fq in fake_quant_modules(prepared).items():
            if was_enabled[name]:
                fq.enable_observer()


@dataclass
class QATResult:
    """What ``quantization_aware_training`` returns.

    ``model`` is the trained fake-quant model in eval mode with observers
    frozen (convert it with ``convert_qat_model`` at 8 bits). ``history`` has
    one dict per epoch: ``epoch`` (0 = after calibration, before training),
    ``loss`` (mean training loss, None at 0), ``accuracy`` (percent, None
    without ``eval_loader``), ``observers_frozen``, ``bn_frozen``.
    ``seconds`` is the wall time of the training epochs.
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def accuracies(self) -> list[float]:
        return [h["accuracy"] for h in self.history]


def _check_epochs_param(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number of epochs >= 0 (may be fractional), got {value!r}")
    return float(value)


def quantization_aware_training(
    model: nn.Module,
    train_loader: Iterable,
    epochs: int,
    *,
    engine: Optional[str] = None,
    lr: float = 1e-4,
    freeze_observers_after: float = 2,
    freeze_bn_after: float = 1,
    bits: Optional[int] = None,
    per_channel: Optional[bool] = None,
    qconfig: Optional[QConfig] = None,
    calib_loader: Optional[Iterable] = None,
    eval_loader: Optional[Iterable] = None,
    weight_decay: float = 0.0,
    lr_schedule: str = "cosine",
    fuse_groups: Optional[list[list[str]]] = None,
    progress: bool = True,
) -> QATResult:
    """Quantization-aware fine-tuning of a trained float model; the float ``model`` itself is not changed.

    1. ``prepare_qat_model`` on a copy (``model`` must be in training mode),
       with ``qconfig`` or ``qat_qconfig(engine=engine, bits=bits, per_channel=per_channel)``
       (None: 8 bits, per-channel weights, the default engine); ``engine``,
       ``bits`` and ``per_channel`` only choose that default, so giving them
       together with ``qconfig`` is a ``ValueError``;
    2. optionally ``calibrate_fake_quant`` on ``calib_loader`` so that training
       starts from data-based ranges (epoch 0 of the history is then PTQ);
    3. ``epochs`` passes of ``train_one_epoch`` with AdamW at ``lr`` (``lr_schedule``
       ``"cosine"`` decays it to 0 over the run, ``"constant"`` keeps it); after
       ``freeze_observers_after`` epochs the observers stop moving the ranges,
       after ``freeze_bn_after`` epochs BatchNorm uses its running statistics
       (both may be fractional: they are applied after that many steps);
    4. the accuracy on ``eval_loader`` after each epoch, with observers
       disabled while measuring (``model.eval()`` alone does not stop them).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive float (QAT fine-tunes: 1e-4 to 1e-3 is typical), got {lr!r}")
    freeze_obs = _check_epochs_param(freeze_observers_after, "freeze_observers_after")
    freeze_bn = _check_epochs_param(freeze_bn_after, "freeze_bn_after")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    if qconfig is not None:
        given = [f"{n}={v!r}" for n, v in (("engine", engine), ("bits", bits), ("per_channel", per_channel)) if v is not None]
        if given:
            raise ValueError(f"give qconfig or {', '.join(given)}, not both: they only choose the default qconfig and would be ignored")
    else:
        qconfig = qat_qconfig(
            engine=check_engine(engine), bits=8 if bits is None else bits, per_channel=True if per_channel is None else per_channel
        )
    prepared = prepare_qat_model(model, qconfig, fuse_groups=fuse_groups)
    result = QATResult(prepared)
    if calib_loader is not None:
        calibrate_fake_quant(prepared, calib_loader)
        prepared.apply(enable_observer)
    acc0 = _evaluate(prepared, eval_loader) if eval_loader is not None and calib_loader is not None else None
    if calib_loader is not None:
        result.history.append({"epoch": 0, "loss": None, "accuracy": acc0, "observers_frozen": False, "bn_frozen": False})

    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise ValueError("train_loader yielded no batches")
    obs_step, bn_step = round(freeze_obs * steps_per_epoch), round(freeze_bn * steps_per_epoch)
    state = {"step": 0, "obs": False, "bn": False}

    def apply_freezes() -> None:
        if not state["obs"] and state["step"] >= obs_step:
            prepared.apply(disable_observer)
            state["obs"] = True
        if not state["bn"] and state["step"] >= bn_step:
            prepared.apply(freeze_bn_stats)
            state["bn"] = True

    def after_step() -> None:
        state["step"] += 1
        apply_freezes()

    optimizer = torch.optim.AdamW(prepared.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = None
    if lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        apply_freezes()  # freezes due at step 0 (or left over after evaluation)
        loss = train_one_epoch(
            prepared, train_loader, optimizer, scheduler, desc=f"QAT epoch {epoch}/{epochs}", progress=progress, after_step=after_step
        )
        acc = _evaluate(prepared, eval_loader) if eval_loader is not None else None
        result.history.append(
            {"epoch": epoch, "loss": loss, "accuracy": acc, "observers_frozen": state["obs"], "bn_frozen": state["bn"]}
        )
    result.seconds = time.perf_counter() - start
    prepared.eval()
    prepared.apply(disable_observer)
    return result


# --------------------------------------------------------------------------- convert


def convert_qat_model(prepared: nn.Module, *, engine: Optional[str] = None) -> nn.Module:
    """The INT8 model of a trained 8-bit QAT model (``convert`` on an eval-mode copy, for ``engine``).

    Refuses models that were never prepared, whose observers never saw data
    (their scale would still be the default 1.0 and the INT8 model would be
    silently wrong), or that simulate fewer than 8 bits (no INT8 kernel runs
    them: evaluate the fake-quant model in eval mode instead).
    """
    engine = check_engine(engine)
    fqs = fake_quant_modules(prepared)
    if not fqs:
        raise ValueError("prepared has no FakeQuantize modules: prepare it with prepare_qat_model and train it before convert")
    missing = _never_observed(prepared)
    if missing:
        raise ValueError(
            f"{len(missing)} fake quant(s) never saw data (e.g. {missing[0]!r}): their scale is still the default 1.0; "
            "train the model (or run calibrate_fake_quant) before convert"
        )
    # 7-bit activations (reduce_range=True, 0..127) are the x86 default; anything narrower is a low-bit simulation
    narrow = [n for n, fq in fqs.items() if fq.quant_max - fq.quant_min < 127]
    if narrow:
        fq = fqs[narrow[0]]
        raise ValueError(
            f"{narrow[0]!r} simulates a narrower range [{fq.quant_min}, {fq.quant_max}] than 8 bits; INT8 kernels would not "
            "run it at that width (no smaller weights, activations clamped at 8 bits instead): evaluate the fake-quant model in eval mode instead of converting"
        )
    model = copy.deepcopy(prepared).eval()
    with use_engine(engine):
        return convert(model, inplace=False)


def qat_finetune(
    model: nn.Module,
    train_loader: Iterable,
    epochs: int = 3,
    *,
    lr: float = 1e-4,
    freeze_observers_after: int = 2,
    freeze_bn_after: int = 1,
    engine: Optional[str] = None,
    fuse_groups: Optional[list[list[str]]] = None,
) -> nn.Module:
    """The recipe cell of notebook 04 built from the helpers above: QAT at 8 bits, then the INT8 model.

    Same arguments and same result as the notebook's self-contained
    ``qat_finetune`` (constant ``lr``, freezes at epoch boundaries, the
    engine's default QAT qconfig); the tests check that the two agree.
    Unlike the copyable cell it accepts the model in any mode.
    """
    engine = check_engine(engine)
    result = quantization_aware_training(
        copy.deepcopy(model).train(), train_loader, epochs, qconfig=get_default_qat_qconfig(engine), lr=lr,
        freeze_observers_after=freeze_observers_after, freeze_bn_after=freeze_bn_after,
        lr_schedule="constant", fuse_groups=fuse_groups, progress=False,
    )
    return convert_qat_model(result.model, engine=engine)


# --------------------------------------------------------------------------- the straight-through estimator


@dataclass(frozen=True)
class SteDemo:
    """Forward and backward of one per-tensor ``FakeQuantize`` on a 1-D tensor.

    ``x`` input (float32 (N,)), ``y`` its fake-quantized values, ``grad`` the
    gradient of ``y.sum()`` with respect to ``x``: 1 where ``round(x / scale) +
    zero_point`` lies in ``[quant_min, quant_max]`` (the representable range
    ``[low, high]`` widened by half a step), 0 where it was clamped.
    """

    x: torch.Tensor
    y: torch.Tensor
    grad: torch.Tensor
    low: float
    high: float
    scale: float
    zero_point: int


def ste_demo(x: torch.Tensor, fake_quant: FakeQuantizeBase) -> SteDemo:
    """Run ``x`` (float 1-D) forward and backward through ``fake_quant`` (its observer state is used as is).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 1:
        raise TypeError(f"x must be a 1-D float tensor, got {type(x).__name__} {getattr(x, 'shape', '')}")
    if not isinstance(fake_quant, FakeQuantizeBase):
        raise TypeError(f"fake_quant must be a torch.ao.quantization FakeQuantize module, got {type(fake_quant).__name__}")
    xr = x.detach().clone().requires_grad_(True)
    y = fake_quant(xr)
    y.sum().backward()
    scale, zero_point = fake_quant.calculate_qparams()
    low, high = fake_quant_range(fake_quant)
    return SteDemo(x.detach(), y.detach(), xr.grad.detach(), low, high, float(scale), int(zero_point))


def plot_ste(demo: SteDemo, axes: Optional[Any] = None) -> Any:
    """Two panels: the staircase ``y(x)`` with the identity line, and the STE gradient ``dy/dx``.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3))
    order = torch.argsort(demo.x)
    x, y, g = demo.x[order].numpy(), demo.y[order].numpy(), demo.grad[order].numpy()
    axes[0].plot(x, x, color="0.6", lw=1, ls="--", label="identity (float)")
    axes[0].step(x, y, where="mid", color="tab:blue", label="fake quantized")
    axes[0].set_title(f"forward: scale {demo.scale:.3g}, zero point {demo.zero_point}")
    axes[0].set_xlabel("x")
    axes[0].legend()
    axes[1].plot(x, g, color="tab:orange")
    axes[1].set_ylim(-0.1, 1.1)
    axes[1].set_title("backward: straight-through gradient dy/dx")
    axes[1].set_xlabel("x")
    for ax in axes:
        for edge in (demo.low, demo.high):
            ax.axvline(edge, color="tab:red", lw=1)
    return axes


def plot_qat_history(
    curves: dict[str, list[float]], lines: dict[str, float], ax: Optional[Any] = None, title: str = ""
) -> Any:
    """Accuracy per epoch (one curve per run) against horizontal reference lines (float, PTQ ...).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("curves is empty; give at least one run's accuracy per epoch")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    styles = iter([("--", "tab:green"), (":", "0.3"), ("-.", "tab:red"), ((0, (5, 1)), "tab:purple")])
    for name, value in lines.items():
        ls, color = next(styles, ("--", "0.5"))
        ax.axhline(value, ls=ls, color=color, lw=1.3, label=f"{name} ({value:.1f}%)")
    ax.set_xticks(range(max(len(v) for v in curves.values())))
    ax.set_xlabel("QAT epoch (0 = calibrated, before training)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax


# --------------------------------------------------------------------------- exercise self-checks


def _tensor_answer(value: Any, name: str) -> torch.Tensor:
    if not_filled(value):
        raise NotFilledIn(name)
    try:
        return torch.as_tensor(value).detach().double()
    except Exception as exc:
        raise TypeError(f"{name} must be a tensor or a list of numbers, got {type(value).__name__}") from exc


@_blank_safe
def check_ste(y: Any, grad: Any, x: torch.Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> bool:
    """Exercise: fake-quantized values ``y`` and STE gradient ``grad`` of ``x`` by hand, against torch's op.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    xr = x.detach().float().clone().requires_grad_(True)
    expected = torch.fake_quantize_per_tensor_affine(xr, scale, zero_point, quant_min, quant_max)
    expected.sum().backward()
    ya, ga = _tensor_answer(y, "y"), _tensor_answer(grad, "grad")
    xd = x.detach().double()
    codes = torch.round(xd / scale) + zero_point

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and torch.allclose(a, b.double(), atol=1e-6)

    ok_y = same(ya, expected.detach())
    if ok_y:
        report("fake-quantized values", True)
    elif same(ya, (codes - zero_point) * scale):
        report("fake-quantized values", False, "values outside the range must clamp to [quant_min, quant_max] before going back to float")
    elif same(ya, torch.clamp(torch.round(xd / scale), quant_min, quant_max) * scale) or same(ya, torch.clamp(codes, quant_min, quant_max) * scale):
        report("fake-quantized values", False, "the zero point is missing: add it to get the code, subtract it again to go back to float")
    elif same(ya, torch.clamp(codes, quant_min, quant_max)):
        report("fake-quantized values", False, "these are the integer codes: fake quantization returns floats, (code - zero_point) * scale")
    else:
        report("fake-quantized values", False, "round(x / scale) + zero_point, clamp to [quant_min, quant_max], then back to float")
    low, high = (quant_min - zero_point) * scale, (quant_max - zero_point) * scale
    expected_grad = xr.grad.double()
    ok_g = ga.shape == expected_grad.shape and torch.equal(ga, expected_grad)
    if ok_g:
        return report("STE gradient", True) and ok_y
    if ga.shape == expected_grad.shape and torch.equal(ga, ((xd >= low) & (xd <= high)).double()):
        hint = "torch decides on the rounded code, not on x: a value less than half a step outside the range still rounds inside"
    elif ga.shape == expected_grad.shape and torch.equal(ga, torch.ones_like(expected_grad)):
        hint = "that is the hand-written STE (gradient 1 everywhere): torch's STE is 0 where the code was clamped"
    else:
        hint = "1 where the code passes the clamp unchanged, 0 where it was clamped"
    report("STE gradient", False, hint)
    return False


def _fake_quant_instance(factory: Any, role: str) -> tuple[Optional[FakeQuantizeBase], str]:
    try:
        module = factory()
    except Exception as exc:  # a wrong with_args raises here
        return None, f"the {role} factory fails when called: {type(exc).__name__}: {exc}"
    if not isinstance(module, FakeQuantizeBase):
        return None, (
            f"the {role} is a {type(module).__name__}, an observer: QAT needs FakeQuantize.with_args(observer=..., ...), "
            "which rounds in the forward pass (an observer only watches)"
        )
    return module, ""


@_blank_safe
def check_low_bit_qconfig(qconfig: Any, bits: int, *, per_channel: bool = True) -> bool:
    """Exercise: a QConfig of ``FakeQuantize`` modules: signed symmetric ``bits``-bit weights, unsigned activations.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    _check_bits(bits)
    if not_filled(qconfig):
        raise NotFilledIn("qconfig")
    if not isinstance(qconfig, QConfig):
        return report("qconfig", False, f"expected a torch.ao.quantization.QConfig(activation=..., weight=...), got {type(qconfig).__name__}")
    weight, why_w = _fake_quant_instance(qconfig.weight, "weight")
    act, why_a = _fake_quant_instance(qconfig.activation, "activation")
    if weight is None or act is None:
        return report("qconfig", False, why_w or why_a)
    limit = 2 ** (bits - 1) - 1
    if (weight.quant_min, weight.quant_max) in ((-limit, limit), (-limit - 1, limit)):
        ok_w = report("weight range", True)
    elif weight.quant_min >= 0:
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] has no negative codes: weights are signed")
    else:
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] is not a signed {bits}-bit range: count the levels")
    scheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    if weight.qscheme == scheme:
        ok_s = report("weight qscheme", True)
    else:
        words = "per-channel symmetric" if per_channel else "per-tensor symmetric"
        why = "one scale per output channel needs a per-channel observer (and qscheme)" if per_channel != (
            weight.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)) else "pass qscheme explicitly: the default is affine"
        ok_s = report("weight qscheme", False, f"{str(weight.qscheme).replace('torch.', '')}, the exercise asks for {words}: {why}")
    if (act.quant_min, act.quant_max) == (0, 2**bits - 1):
        ok_a = report("activation range", True)
    elif act.quant_min < 0:
        ok_a = report("activation range", False, f"[{act.quant_min}, {act.quant_max}] is signed: activations use unsigned codes from 0")
    else:
        ok_a = report("activation range", False, f"[{act.quant_min}, {act.quant_max}] is not an unsigned {bits}-bit range: count the levels")
    return ok_w and ok_s and ok_a


@_blank_safe
def check_frozen(model: Any) -> bool:
    """Exercise: every observer of a prepared model disabled and every fused Conv-BN using frozen statistics.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not_filled(model):
        raise NotFilledIn("model")
    if not isinstance(model, nn.Module) or not fake_quant_modules(model):
        return report("frozen model", False, "expected the QAT-prepared model (with FakeQuantize modules)")
    fqs = fake_quant_modules(model).values()
    if any(int(fq.fake_quant_enabled[0]) == 0 for fq in fqs):
        return report(
            "frozen model", False, "fake quantization is switched off: disable_fake_quant is not a freeze, the model would train in float"
        )
    ok_obs = report(
        "observers frozen", observers_frozen(model),
        "some FakeQuantize still has its observer enabled (model.eval() does not stop observers): use disable_observer",
    )
    bns = [m for m in model.modules() if hasattr(m, "freeze_bn")]
    ok_bn = report(
        "BatchNorm frozen", bool(bns) and all(m.freeze_bn for m in bns),
        "some fused Conv-BN still updates its running statistics: disabling observers does not freeze BatchNorm",
    )
    return ok_obs and ok_bn
