"""Pre-quantized models: torchvision's weights enums offline, and the course's own INT8 model in the same API shape.

Introduced in notebooks/02_pretrained_quantized_models.ipynb.

* ``CourseNet_QuantizedWeights`` / ``course_net(weights=..., quantize=True)``
  mirror ``torchvision.models.quantization`` (``ResNet18_QuantizedWeights`` /
  ``resnet18(weights=..., quantize=True)``): ``.DEFAULT``, ``.transforms()``,
  ``.meta``. The INT8 artifact ships as ``data/course_model_int8.pt`` (the
  ``state_dict`` of the converted model) with ``data/course_model_int8.json``
  (sha256, test accuracy, backend, file size). Rebuild both with
  ``python -m qhelpers.rebuild int8`` (``make int8``).
* ``hub_checkpoint_path`` / ``weights_cached`` look for torchvision's weights
  in the torch hub cache without any network call.
* ``quantized_modules`` / ``is_quantized`` tell a converted model from a float
  one (torchvision's ``quantize=True, backend="x86"`` with ``weights=None``
  silently returns float; with real weights it raises ``ValueError``).
* ``qhelpers.int8_size``: ``int8_weight_bytes`` / ``int8_size_breakdown`` account for an INT8 file's
  size byte by byte; ``qhelpers.pretrained_checks``: the self-checks of the notebook's exercises.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import Weights, WeightsEnum

from . import data as _data
from .environment import check_engine, default_engine, set_engine, supported_engines
from .metrics import accuracy
from .models import CourseNet, load_course_model
from .registry import ModelSpec, model_metadata

__all__ = [
    "DigitsClassification",
    "CourseNet_QuantizedWeights",
    "course_net",
    "quantize_course_model",
    "rebuild_course_int8",
    "course_int8_metadata",
    "quantized_modules",
    "is_quantized",
    "hub_checkpoint_path",
    "weights_cached",
    "cached_hash_matches",
    "photo_path",
    "INT8_CHECKPOINT_NAME",
    "INT8_METADATA_NAME",
    "REBUILD_INT8_COMMAND",
    "PHOTO_NAME",
]


INT8_CHECKPOINT_NAME = "course_model_int8.pt"


INT8_METADATA_NAME = "course_model_int8.json"


REBUILD_INT8_COMMAND = "python -m qhelpers.rebuild int8"


PHOTO_NAME = "grace_hopper.jpg"


DEFAULT_ENGINE = "x86"


# Messages from inside torch/torchvision that say nothing about the learner's code; hidden by exact message,
# only around the calls that trigger them (the course's known deprecations are handled in qh.environment).
_INTERNAL_NOISE = (
    r"TypedStorage is deprecated",  # torch.load of quantized tensors (torch/_utils.py _rebuild_qtensor)
    r"Please use quant_min and quant_max to specify the range for observers",  # torch's own x86 default qconfig
    r"must run observer before calling calculate_qparams",  # torchvision MobileNetV2's unused FloatFunctional
)


@contextlib.contextmanager
def _quiet_torch_internals():
    with warnings.catch_warnings():
        for pattern in _INTERNAL_NOISE:
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        yield


# --------------------------------------------------------------------------- transforms


class DigitsClassification(nn.Module):
    """The course model's preprocessing, in the role of torchvision's ``ImageClassification``.

    Takes uint8 images (H, W), (1, H, W) or (N, 1, H, W) (or a grayscale PIL
    image), resizes to 28x28 if needed and returns float32 (…, 1, 28, 28)
    normalized with the MNIST mean and std.
    """

    def __init__(self, size: int = 28, mean: float = _data.MNIST_MEAN, std: float = _data.MNIST_STD) -> None:
        super().__init__()
        self.size, self.mean, self.std = size, mean, std

    def forward(self, img: Any) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        if not isinstance(img, torch.Tensor):
            img = F.pil_to_tensor(img.convert("L"))
        if img.dtype != torch.uint8:
            raise TypeError(f"img must be uint8 pixels 0..255, got dtype {img.dtype}")
        if img.ndim == 2:
            img = img.unsqueeze(0)
        if img.ndim not in (3, 4) or img.shape[-3] != 1:
            raise ValueError(f"img must be (H, W), (1, H, W) or (N, 1, H, W), got shape {tuple(img.shape)}")
        if tuple(img.shape[-2:]) != (self.size, self.size):
            img = F.resize(img, [self.size, self.size], antialias=True)
        return (img.float() / 255.0 - self.mean) / self.std

    def __repr__(self) -> str:
        return f"DigitsClassification(size={self.size}, mean={self.mean}, std={self.std})"


# --------------------------------------------------------------------------- the course's INT8 model


def quantize_course_model(
    model: nn.Module, calib_loader: Optional[Iterable] = None, *, engine: Optional[str] = None
) -> nn.Module:
    """Post-training static quantization of a ``CourseNet`` with the engine's default qconfig; returns a converted copy.

    ``qh.post_training_quantize`` (notebook 03: fuse, ``prepare``, calibrate,
    ``convert``) with ``get_default_qconfig(engine)``, calibrated on
    ``calib_loader`` (batches of ``(images, labels)``), or on one all-zeros image
    when None, which gives a skeleton to load a state dict into. ``engine``
    (None: ``qh.default_engine()``) packs the weights; the previous engine is
    restored after, so run the result inside ``with qh.engine(engine):``.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    if not isinstance(model, CourseNet):
        raise TypeError(f"model must be a qhelpers.CourseNet, got {type(model).__name__}")
    from torch.ao.quantization import get_default_qconfig

    from .ptq import post_training_quantize

    engine = check_engine(engine)
    data = [torch.zeros(1, 1, 28, 28)] if calib_loader is None else calib_loader
    with _quiet_torch_internals():
        return post_training_quantize(copy.deepcopy(model).eval(), data, engine=engine, qconfig=get_default_qconfig(engine)).eval()


def course_int8_metadata(data_dir: Optional[Path] = None) -> dict:
    """The metadata beside the INT8 artifact (sha256, test accuracy, backend, file size)."""
    return model_metadata(INT8_MODEL, data_dir)


def _load_int8_state_dict(data_dir: Optional[Path] = None) -> dict:
    directory = Path(data_dir) if data_dir is not None else _data.data_dir()
    with _quiet_torch_internals():
        state, _ = _data.load_checkpoint(directory, INT8_CHECKPOINT_NAME, INT8_METADATA_NAME, REBUILD_INT8_COMMAND)
    return state


def rebuild_course_int8(engine: str = DEFAULT_ENGINE, data_dir: Optional[Path] = None) -> dict:
    """Quantize the trained course model (calibration split), evaluate it on the test split, write artifact + metadata."""
    torch.set_num_threads(2)
    directory = Path(data_dir) if data_dir is not None else _data.data_dir()
    float_model = load_course_model()
    qmodel = quantize_course_model(float_model, _data.digits_loader("calib"), engine=engine)
    buf = io.BytesIO()
    torch.save(qmodel.state_dict(), buf)
    path = directory / INT8_CHECKPOINT_NAME
    _data.atomic_write_bytes(path, buf.getvalue())
    # Evaluate what a user gets: the file loaded back into a fresh skeleton.
    reloaded = _int8_from_state_dict(torch.load(path, map_location="cpu", weights_only=True), engine)
    test = _data.digits_loader("test")
    meta = {
        "model": "qhelpers.models.CourseNet, INT8 (eager post-training static quantization)",
        "backend": engine,
        "qconfig": f"torch.ao.quantization.get_default_qconfig({engine!r})",
        "calibration": f"calib split, {len(_data.digits_dataset('calib'))} images",
        "test_accuracy": round(accuracy(reloaded, test), 2),
        "float_test_accuracy": round(accuracy(float_model, test), 2),
        "test_images": len(_data.digits_dataset("test")),
        "file_size_bytes": path.stat().st_size,
        "float_file_size_bytes": (_data.data_dir() / "course_model.pt").stat().st_size,
        "rebuild_command": REBUILD_INT8_COMMAND,
        "torch": torch.__version__,
        "sha256": _data.sha256_file(path),
    }
    _data.atomic_write_bytes(directory / INT8_METADATA_NAME, (json.dumps(meta, indent=2) + "\n").encode())
    return meta


# The INT8 artifact in the registry of shipped models: quantized from the course model (not trained), so it
# rebuilds with rebuild_course_int8, and loads through course_net (which picks an engine this CPU has).
INT8_MODEL = ModelSpec(
    name="int8", checkpoint=INT8_CHECKPOINT_NAME, metadata=INT8_METADATA_NAME,
    label="qhelpers.models.CourseNet, INT8 (eager post-training static quantization)", rebuild=lambda epochs: rebuild_course_int8(),
)  # fmt: skip


def _int8_from_state_dict(state: dict, engine: str) -> nn.Module:
    skeleton = quantize_course_model(CourseNet(), None, engine=engine)
    skeleton.load_state_dict(state)
    return skeleton.eval()


_CATEGORIES = [str(d) for d in range(10)]


class CourseNet_QuantizedWeights(WeightsEnum):
    """The course model's INT8 weights, shaped like torchvision's ``ResNet18_QuantizedWeights``.

    ``url`` is a file name in ``qh.data_dir()``, not a web address. ``meta``
    reads the measured values (test accuracy, file size, backend) from the
    artifact's metadata file each time it is accessed, so it cannot drift
    from the artifact.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """

    DIGITS_X86_V1 = Weights(
        url=INT8_CHECKPOINT_NAME,
        transforms=DigitsClassification,
        meta={
            "categories": _CATEGORIES,
            "min_size": (28, 28),
            "recipe": REBUILD_INT8_COMMAND,
            "unquantized": "data/course_model.pt (qh.load_course_model())",
        },
    )
    DEFAULT = DIGITS_X86_V1

    @property
    def meta(self) -> dict:
        static = self.value.meta
        m = course_int8_metadata()
        return {
            **static,
            "backend": m["backend"],
            "num_params": sum(p.numel() for p in CourseNet().parameters()),
            "_metrics": {"digits test split": {"acc@1": m["test_accuracy"]}},
            "_file_size": round(m["file_size_bytes"] / 1e6, 3),
            "_docs": f"Post-training static quantization ({m['qconfig']}) calibrated on the {m['calibration']}.",
        }

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict:
        """The converted model's state dict from ``data/``, checksum verified, loaded with ``weights_only=True``."""
        return _load_int8_state_dict()


def course_net(
    weights: Optional[CourseNet_QuantizedWeights | str] = None, quantize: bool = False, **kwargs: Any
) -> nn.Module:
    """Build the course model like torchvision's quantized builders, in eval mode.

    * ``weights=DEFAULT, quantize=True``: the shipped INT8 model (sets
      ``torch.backends.quantized.engine`` to ``weights.meta["backend"]``, as
      torchvision's builders that go through ``quantize_model`` do; MobileNetV3's does not). On a machine without that engine (an ARM laptop has
      only ``qnnpack``) it prints why and loads the same state dict with
      ``qh.default_engine()`` active instead, which re-packs the weights for
      that engine (the integer weights and scales are the same).
    * ``weights=DEFAULT, quantize=False``: the trained float model.
    * ``weights=None``: the untrained architecture, converted to INT8 when
      ``quantize=True`` (with ``backend=`` in kwargs, default ``qh.default_engine()``).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    weights = CourseNet_QuantizedWeights.verify(weights)
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize must be True or False, got {quantize!r}")
    unknown = set(kwargs) - {"backend"}
    if unknown:
        raise TypeError(f"course_net got unexpected keyword arguments {sorted(unknown)}; only 'backend' is accepted")
    if weights is None:
        model = CourseNet().eval()
        if not quantize:
            return model
        backend = set_engine(kwargs.get("backend"))  # like most of torchvision's quantized builders
        return quantize_course_model(model, None, engine=backend)
    if not quantize:
        return load_course_model()
    backend = weights.meta["backend"]
    if kwargs.get("backend", backend) != backend:
        raise ValueError(f"backend {kwargs['backend']!r} differs from the weights' backend {backend!r}")
    run_on = backend
    if backend not in supported_engines():
        run_on = default_engine()
        print(
            f"The course's INT8 weights were quantized for the {backend!r} engine, which this machine does not offer "
            f"(available: {', '.join(supported_engines())}); loading them with {run_on!r} active, which re-packs them for {run_on!r}."
        )
    set_engine(run_on)  # like most of torchvision's quantized builders: the model runs on the engine it was packed for
    return _int8_from_state_dict(weights.get_state_dict(), run_on)


# --------------------------------------------------------------------------- is it really quantized?

_QUANTIZED_NAMESPACES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized", "torch.nn.quantized")


_NOT_QUANTIZED = ("FloatFunctional", "FXFloatFunctional", "LinearPackedParams", "EmbeddingPackedParams")


def quantized_modules(model: nn.Module) -> list[str]:
    """Names of the modules that run quantized kernels (converted Conv/Linear/Quantize/QFunctional, dynamic Linear ...).

    ``FloatFunctional`` lives in the same namespace but is the float
    placeholder, so it does not count; nor do the ``_packed_params`` holders
    inside a quantized Linear (their parent is already listed).

    Introduced in notebooks/00_start_here.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [
        name
        for name, mod in model.named_modules()
        if type(mod).__module__.startswith(_QUANTIZED_NAMESPACES) and type(mod).__name__ not in _NOT_QUANTIZED
    ]


def is_quantized(model: nn.Module) -> bool:
    """True when ``model`` contains at least one quantized module (see ``quantized_modules``).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    return bool(quantized_modules(model))


# --------------------------------------------------------------------------- torchvision's weights offline


def _weights_url(weights: Any) -> str:
    url = getattr(weights, "url", None)
    if not isinstance(url, str):
        raise TypeError(f"weights must be a torchvision weights enum member (with a .url), got {weights!r}")
    return url


def hub_checkpoint_path(weights: Any) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps ``weights``: ``torch.hub.get_dir()/checkpoints/<file name of the URL>``.

    No network call; honours ``TORCH_HOME``.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    name = os.path.basename(urlparse(_weights_url(weights)).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def weights_cached(weights: Any) -> bool:
    """True when the weights file is already in the torch hub cache (so ``weights=...`` will not download).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    return hub_checkpoint_path(weights).is_file()


def cached_hash_matches(weights: Any) -> Optional[bool]:
    """Does the cached file's sha256 start with the hash prefix in its name (``resnet18-f37072fd.pth``)?

    Uses torch's own pattern (``torch.hub.HASH_REGEX``, ``-<hex>.``). torch
    checks that prefix only while downloading (``check_hash=True``); a file
    already in the cache is loaded without any check. None when the name carries
    no prefix torch recognises (some of torchvision's quantized files, e.g.
    ``resnet18_fbgemm_16fa66dd.pth``, use an underscore, so they are never
    checked, even on download); ``FileNotFoundError`` when the file is not cached.
    """
    path = hub_checkpoint_path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is not in the torch hub cache {path.parent}")
    match = torch.hub.HASH_REGEX.search(path.name)
    if match is None:
        return None
    return _data.sha256_file(path).startswith(match.group(1))


def photo_path() -> Path:
    """``data/grace_hopper.jpg``: a public-domain US Navy photo (via matplotlib's sample data) for ImageNet inference.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    path = _data.data_dir() / PHOTO_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; copy matplotlib's mpl-data/sample_data/{PHOTO_NAME} there")
    return path
