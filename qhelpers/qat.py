"""Quantization-aware training (QAT): the training recipe, the convert step, the training history's plot.

Introduced in notebooks/04_quantization_aware_training.ipynb.

QAT inserts ``FakeQuantize`` modules (quantize then dequantize, in float) on
the weights and activations of a fused model (``qhelpers.fake_quant``), trains it so that the weights
adapt to the rounding, then converts it to a real INT8 model. Below 8 bits
(e.g. 4-bit weights and activations) the PyTorch CPU kernels cannot run the
result, so the trained fake-quant model, evaluated in eval mode, *is* the
low-bit model: a simulation of what low-bit hardware would compute.

The recipe follows torchvision's reference (``references/classification/
train_quantization.py``): a low learning rate, observers frozen after some
epochs (``disable_observer``), BatchNorm statistics frozen after some epochs
(``freeze_bn_stats``).

The rest of notebook 04's helpers: ``qhelpers.fake_quant`` (qconfigs, prepare, calibrate),
``qhelpers.fake_quant_repair`` (MSE ranges, bias correction, the error breakdown), ``qhelpers.straight_through``
(the STE demo) and ``qhelpers.qat_checks`` (the exercises' self-checks).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch
from torch import nn
from torch.ao.nn.intrinsic.qat import freeze_bn_stats
from torch.ao.quantization import QConfig, convert, disable_observer, enable_observer, get_default_qat_qconfig

from .environment import check_engine
from .environment import engine as use_engine
from .metrics import accuracy
from .training import train_one_epoch
from .fake_quant import (
    _never_observed, calibrate_fake_quant, fake_quant_modules, observers_frozen, prepare_qat_model, qat_qconfig,
)

__all__ = [
    "QATResult",
    "quantization_aware_training",
    "train_fake_quant",
    "convert_qat_model",
    "qat_finetune",
    "plot_qat_history",
]


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

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if qconfig is not None:
        given = [f"{n}={v!r}" for n, v in (("engine", engine), ("bits", bits), ("per_channel", per_channel)) if v is not None]
        if given:
            raise ValueError(f"give qconfig or {', '.join(given)}, not both: they only choose the default qconfig and would be ignored")
    else:
        qconfig = qat_qconfig(
            engine=check_engine(engine), bits=8 if bits is None else bits, per_channel=True if per_channel is None else per_channel
        )
    prepared = prepare_qat_model(model, qconfig, fuse_groups=fuse_groups)
    if calib_loader is not None:
        calibrate_fake_quant(prepared, calib_loader)
    return train_fake_quant(  # it checks epochs, lr, the freezes and the schedule
        prepared, train_loader, epochs, lr=lr, freeze_observers_after=freeze_observers_after, freeze_bn_after=freeze_bn_after,
        eval_loader=eval_loader, weight_decay=weight_decay, lr_schedule=lr_schedule, progress=progress,
        record_start=calib_loader is not None,
    )


def train_fake_quant(
    prepared: nn.Module,
    train_loader: Iterable,
    epochs: int,
    *,
    lr: float = 1e-4,
    freeze_observers_after: float = 2,
    freeze_bn_after: float = 1,
    eval_loader: Optional[Iterable] = None,
    weight_decay: float = 0.0,
    lr_schedule: str = "cosine",
    progress: bool = True,
    keep_activation_ranges: bool = False,
    record_start: bool = True,
) -> QATResult:
    """The training part of QAT, on an already prepared (and usually calibrated) fake-quant model, in place.

    Steps 3 and 4 of ``quantization_aware_training``: observers run (they are switched on) until
    ``freeze_observers_after`` epochs, BatchNorm statistics until ``freeze_bn_after`` epochs (0: frozen
    from the first step). ``keep_activation_ranges=True`` leaves every activation observer off from the
    start, so ranges chosen before training (``set_mse_activation_ranges``) stay as they are while the weight
    observers follow ``freeze_observers_after`` (a running min/max observer would pull a clipped range back
    towards the batch min/max). History entry 0 is the accuracy before training (when ``record_start``
    and ``eval_loader``). Returns the ``QATResult`` (its model is ``prepared``).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not fake_quant_modules(prepared):
        raise ValueError("prepared has no FakeQuantize modules; prepare it with prepare_qat_model first")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive float (QAT fine-tunes: 1e-4 to 1e-3 is typical), got {lr!r}")
    freeze_obs = _check_epochs_param(freeze_observers_after, "freeze_observers_after")
    freeze_bn = _check_epochs_param(freeze_bn_after, "freeze_bn_after")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    if not isinstance(keep_activation_ranges, bool):
        raise TypeError(f"keep_activation_ranges must be True or False, got {keep_activation_ranges!r}")
    result = QATResult(prepared)
    if freeze_obs > 0:
        prepared.apply(enable_observer)
    if keep_activation_ranges:
        for name, fq in fake_quant_modules(prepared).items():
            if not name.endswith("weight_fake_quant"):
                fq.disable_observer()
    if record_start:
        acc0 = _evaluate(prepared, eval_loader) if eval_loader is not None else None
        bn_frozen = [bool(m.freeze_bn) for m in prepared.modules() if hasattr(m, "freeze_bn")]
        result.history.append({"epoch": 0, "loss": None, "accuracy": acc0, "observers_frozen": observers_frozen(prepared),
                               "bn_frozen": bool(bn_frozen) and all(bn_frozen)})

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

    Same arguments and the same recipe as the notebook's self-contained
    ``qat_finetune`` (constant ``lr``, freezes at epoch boundaries, observers
    off before ``convert``, the engine's default QAT qconfig); on the same
    list of batches the two give the same INT8 model (tested). On a shuffling
    ``DataLoader`` they do not: ``train_one_epoch`` wraps the loader in
    ``tqdm.auto.tqdm``, which calls ``iter(loader)`` once more even when
    disabled, so the same seed gives another data order.
    Unlike the copyable cell it accepts the model in any mode.
    """
    engine = check_engine(engine)
    result = quantization_aware_training(
        copy.deepcopy(model).train(), train_loader, epochs, qconfig=get_default_qat_qconfig(engine), lr=lr,
        freeze_observers_after=freeze_observers_after, freeze_bn_after=freeze_bn_after,
        lr_schedule="constant", fuse_groups=fuse_groups, progress=False,
    )
    return convert_qat_model(result.model, engine=engine)


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
    styles = iter([("--", "black"), (":", "0.3"), ("-.", "0.45"), ((0, (5, 1)), "0.6")])  # greys: never a run's colour
    for name, value in lines.items():
        ls, color = next(styles, ("--", "0.5"))
        ax.axhline(value, ls=ls, color=color, lw=1.3, label=f"{name} ({value:.1f}%)")
    ax.set_xticks(range(max(len(v) for v in curves.values())))
    ax.set_xlabel("QAT epoch (0 = calibrated, before training)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax
