"""Accuracy, model size and parameter count.

Introduced in notebooks/01_manual_tensor_quantization.ipynb.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = ["accuracy", "predict", "model_size_bytes", "count_parameters", "PairedTest", "paired_test", "compare_models"]


def _check_module(model: object) -> nn.Module:
    if not isinstance(model, (nn.Module, torch.jit.ScriptModule)):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and true labels (both int64 (N,)) over a loader of ``(images, labels)``.

    Introduced in notebooks/00_start_here.ipynb (exercise 4 compares float and INT8 predictions image by image).
    """
    _check_module(model)
    preds, labels = [], []
    for x, y in loader:
        preds.append(model(x).argmax(dim=1))
        labels.append(y)
    if not preds:
        raise ValueError("the loader yielded no batches")
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: nn.Module, loader: Iterable) -> float:
    """Top-1 accuracy in percent over a loader of ``(images, labels)``.

    The model should be in eval mode; a model left in training mode would
    update BatchNorm statistics and observers while it is being measured, so
    that is refused.

    Introduced in notebooks/00_start_here.ipynb.
    """
    _check_module(model)
    if isinstance(model, nn.Module) and not isinstance(model, torch.jit.ScriptModule) and model.training:
        raise ValueError("model is in training mode; call model.eval() before measuring accuracy")
    preds, labels = predict(model, loader)
    return 100.0 * int((preds == labels).sum()) / len(labels)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's serialized ``state_dict`` (what ``torch.save`` would write).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    _check_module(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def count_parameters(model: nn.Module) -> int:
    """Number of float parameters (a converted INT8 model keeps its weights in packed params, not here).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    _check_module(model)
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class PairedTest:
    """Two classifiers compared on the same images: exact McNemar test on the images where they disagree.

    ``n`` images; ``correct_a``/``correct_b`` right answers of each; ``only_a``
    images A gets right and B wrong, ``only_b`` the reverse. Images both get
    right or both get wrong say nothing about which is better, so the test
    uses only the ``only_a + only_b`` disagreements: under "equally good",
    each disagreement is a fair coin, and ``p_value`` is the exact two-sided
    binomial probability of a split at least as uneven (scipy's
    ``binomtest``). ``significant`` is ``p_value < alpha``.

    ``interval`` (printed as "95 % interval" at the default ``alpha``) is an
    approximate ``1 - alpha`` interval of the accuracy difference A − B in
    points: Bonett and Price's adjusted Wald interval for paired proportions
    (one image added to each kind of disagreement: ``p_a = (only_a + 1) / (n + 2)``,
    ``p_b = (only_b + 1) / (n + 2)``, ``d = p_a - p_b``, standard error
    ``sqrt((p_a + p_b - d**2) / (n + 2))``), clipped to ±100. Unlike an interval
    computed with the number of disagreements taken as fixed, it keeps its
    coverage when the disagreements are many and one-sided (exact coverage of
    ``100 * (p_a_only - p_b_only)`` at n = 1000, tested: 2 % vs 1 % disagreeing
    each way 0.95, 3 % vs 0.5 % 0.95, 19 % vs 0.4 % 0.95), and with no
    disagreement at all it is not (0, 0) but as wide as 0 of ``n`` images can
    rule out. The verdict comes from the exact test; near ``p = alpha`` the
    approximate interval can just exclude 0 while the exact test (which errs
    on the safe side) does not: ``str()`` then says "borderline".
    """

    name_a: str
    name_b: str
    n: int
    correct_a: int
    correct_b: int
    only_a: int
    only_b: int
    p_value: float
    alpha: float
    interval: tuple

    @property
    def accuracy_a(self) -> float:
        return 100.0 * self.correct_a / self.n

    @property
    def accuracy_b(self) -> float:
        return 100.0 * self.correct_b / self.n

    @property
    def difference(self) -> float:
        """Accuracy of A minus accuracy of B, in percentage points."""
        return self.accuracy_a - self.accuracy_b

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def borderline(self) -> bool:
        """The interval and the exact test disagree about 0 (only near ``p = alpha``)."""
        lo, hi = self.interval
        return (lo > 0 or hi < 0) != self.significant

    @property
    def verdict(self) -> str:
        """``'A better'``, ``'B better'`` or ``'inside the noise'`` (named with ``name_a``/``name_b``)."""
        if not self.significant:
            return "inside the noise"
        return f"{self.name_a} better" if self.only_a > self.only_b else f"{self.name_b} better"

    def __str__(self) -> str:
        lo, hi = self.interval
        return (
            f"{self.name_a} {self.accuracy_a:.1f} % vs {self.name_b} {self.accuracy_b:.1f} % on the same {self.n} images: "
            f"they disagree on {self.only_a + self.only_b} ({self.only_a} only {self.name_a} right, "
            f"{self.only_b} only {self.name_b} right); difference {self.difference:+.1f} points "
            f"({100 * (1 - self.alpha):g} % interval {lo:+.1f} to {hi:+.1f}), exact McNemar p = {self.p_value:.3g}: {self.verdict}"
            + (" (borderline: the approximate interval and the exact test disagree about 0; the verdict follows the test)"
               if self.borderline else "")
        )

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(accuracy_a=self.accuracy_a, accuracy_b=self.accuracy_b, difference=self.difference,
                 significant=self.significant, verdict=self.verdict)
        return d


def _as_label_tensor(value: object, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        t = torch.as_tensor(list(value))
    else:
        raise TypeError(f"{name} must be a 1-D tensor or list of class indices, got {type(value).__name__}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one class index per image), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype} (take .argmax(dim=1) of logits)")
    return t.long()


def _paired_difference_interval(only_a: int, only_b: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Bonett and Price's adjusted Wald ``1 - alpha`` interval of A's accuracy minus B's, in points (see ``PairedTest``).

    ``only_a``/``only_b``: images only A / only B gets right, of ``n``. Reference: D. G. Bonett and R. M. Price,
    "Adjusted Wald confidence interval for a difference of binomial proportions based on paired data", Journal of
    Educational and Behavioral Statistics 37(4), 2012.
    """
    from scipy.stats import norm

    if n <= 0 or only_a < 0 or only_b < 0 or only_a + only_b > n:
        raise ValueError(f"need 0 <= only_a + only_b <= n and n > 0, got only_a={only_a}, only_b={only_b}, n={n}")
    z = float(norm.ppf(1.0 - alpha / 2.0))
    p_a, p_b = (only_a + 1) / (n + 2), (only_b + 1) / (n + 2)
    d = p_a - p_b
    half = z * math.sqrt(max(p_a + p_b - d * d, 0.0) / (n + 2))
    return (max(-100.0, 100.0 * (d - half)), min(100.0, 100.0 * (d + half)))


def paired_test(
    pred_a: torch.Tensor,
    pred_b: torch.Tensor,
    labels: torch.Tensor,
    *,
    names: tuple[str, str] = ("A", "B"),
    alpha: float = 0.05,
) -> PairedTest:
    """Compare two models' predictions on the same images with the exact McNemar test (see ``PairedTest``).

    ``pred_a``, ``pred_b`` and ``labels`` are 1-D integer tensors of equal
    length (class indices, e.g. from ``qh.predict``). Two accuracies measured
    on the same images are not independent samples: most images are right
    (or wrong) for both models, and only the disagreements carry evidence.
    A ranking is meaningful only when ``result.significant``.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    from scipy.stats import binomtest

    a = _as_label_tensor(pred_a, "pred_a")
    b = _as_label_tensor(pred_b, "pred_b")
    y = _as_label_tensor(labels, "labels")
    if not (len(a) == len(b) == len(y)):
        raise ValueError(f"pred_a, pred_b and labels must have the same length, got {len(a)}, {len(b)} and {len(y)}")
    if len(y) == 0:
        raise ValueError("no images: pred_a, pred_b and labels are empty")
    if (
        not isinstance(names, (tuple, list))
        or len(names) != 2
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise ValueError(f"names must be two non-empty strings, got {names!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number between 0 and 1, got {alpha!r}")
    right_a, right_b = a == y, b == y
    only_a = int((right_a & ~right_b).sum())
    only_b = int((right_b & ~right_a).sum())
    n = len(y)
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5, alternative="two-sided").pvalue)
    interval = _paired_difference_interval(only_a, only_b, n, alpha)
    return PairedTest(
        name_a=str(names[0]), name_b=str(names[1]), n=n,
        correct_a=int(right_a.sum()), correct_b=int(right_b.sum()),
        only_a=only_a, only_b=only_b, p_value=p, alpha=float(alpha), interval=interval,
    )


def compare_models(
    model_a: nn.Module,
    model_b: nn.Module,
    loader: Iterable,
    *,
    names: tuple[str, str] = ("A", "B"),
    alpha: float = 0.05,
) -> PairedTest:
    """``paired_test`` of two models on one loader of ``(images, labels)`` (both in eval mode).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    for which, m in (("model_a", model_a), ("model_b", model_b)):
        _check_module(m)
        if isinstance(m, nn.Module) and not isinstance(m, torch.jit.ScriptModule) and m.training:
            raise ValueError(f"{which} is in training mode; call .eval() before comparing accuracies")
    batches = list(loader)  # one pass: both models see the same images, in the same order, even from a shuffling loader
    pa, labels = predict(model_a, batches)
    pb, _ = predict(model_b, batches)
    return paired_test(pa, pb, labels, names=names, alpha=alpha)
