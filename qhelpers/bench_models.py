"""The models and paths the benchmark measures (``make bench``, notebook 02's engine comparison): each model
built in float and in eager INT8 for an engine, with a seeded example input.

Introduced in notebooks/02_pretrained_quantized_models.ipynb.
"""

from __future__ import annotations

import torch
from torch import nn

from ._validate import positive_int
from .data import digits_dataset
from .models import load_course_model
from .environment import set_engine
from .pretrained import CourseNet_QuantizedWeights, _int8_from_state_dict, _quiet_torch_internals, course_net, is_quantized

__all__ = ["MODELS", "PATHS", "SERVER_PATHS", "server_calibration", "QUICK_MODELS", "TORCHVISION_ENGINES", "check_model", "build_float", "build_int8", "example_input", "calibration_images"]

TORCHVISION_ENGINES = ("fbgemm", "qnnpack")  # torchvision's quantize=True knows only these two
MODELS: dict[str, dict] = {
    "course": {"input": (1, 28, 28), "engines": ("x86", "qnnpack"), "strict": False},
    "mobilenet_v2": {"input": (3, 224, 224), "engines": TORCHVISION_ENGINES, "strict": False},
    # torchvision's ResNet blocks call one ReLU module twice: PT2E needs strict export (notebook 05)
    "resnet18": {"input": (3, 224, 224), "engines": TORCHVISION_ENGINES, "strict": True},
    "resnet50": {"input": (3, 224, 224), "engines": TORCHVISION_ENGINES, "strict": True},
}
QUICK_MODELS = ("course",)
# (key, label); "eager_int8" is one row per engine of the model
PATHS: tuple[tuple[str, str], ...] = (
    ("float", "float eager"),
    ("float_compiled", "float torch.compile"),
    ("eager_int8", "eager INT8"),
    ("pt2e", "PT2E x86, not compiled"),
    ("pt2e_compiled", "PT2E x86 + torch.compile"),
    ("et_float", "ExecuTorch XNNPACK float"),
    ("et_int8", "ExecuTorch XNNPACK INT8"),
    # the server CPU runtimes fed from the same PyTorch model (qhelpers.server_runtimes)
    ("ort_float", "ONNX Runtime float"),
    ("ort_int8", "ONNX Runtime INT8 (QDQ)"),
    ("ov_float", "OpenVINO float"),
    ("ov_int8", "OpenVINO INT8 (NNCF)"),
)
SERVER_PATHS = ("ort_float", "ort_int8", "ov_float", "ov_int8")
CALIB_IMAGES = 8  # calibration images for the PT2E paths (latency does not depend on calibration quality)


def check_model(name: str) -> dict:
    """``MODELS[name]``, or ``ValueError`` naming the models there are."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {name!r}")
    return MODELS[name]


def build_float(name: str) -> nn.Module:
    """The float model in eval mode: the trained course model, or torchvision's float architecture (random weights)."""
    check_model(name)
    if name == "course":
        return load_course_model()
    import torchvision

    return getattr(torchvision.models, name)(weights=None).eval()


def build_int8(name: str, engine: str) -> nn.Module:
    """The eager INT8 model quantized for ``engine`` (which is left active, as most of torchvision's builders do).

    course: the shipped INT8 weights on every engine, their state dict loaded
    with ``engine`` active (so packed for it; the integer weights and scales
    are the same), as ``course_net(weights=DEFAULT, quantize=True)`` does
    where the weights' own backend is missing: every engine times the same
    model. torchvision: ``weights=None,
    quantize=True, backend=engine`` (random weights, calibrated by torchvision
    on one random image). Raises ``RuntimeError`` if the result is not
    quantized (torchvision with ``backend="x86"``).
    """
    spec = check_model(name)
    if engine not in spec["engines"]:
        raise ValueError(f"engine for {name} must be one of {spec['engines']}, got {engine!r}")
    if name == "course":
        if engine == CourseNet_QuantizedWeights.DEFAULT.meta["backend"]:
            model = course_net(weights=CourseNet_QuantizedWeights.DEFAULT, quantize=True)
        else:  # the same state dict, packed for `engine` (not a model calibrated with that engine's qconfig)
            set_engine(engine)
            model = _int8_from_state_dict(CourseNet_QuantizedWeights.DEFAULT.get_state_dict(), engine)
    else:
        from torchvision.models import quantization as qmodels

        with _quiet_torch_internals():
            model = getattr(qmodels, name)(weights=None, quantize=True, backend=engine).eval()
    if not is_quantized(model):
        raise RuntimeError(f"{name} built for engine {engine!r} has no quantized modules")
    return model


def example_input(name: str, batch: int, seed: int = 0) -> torch.Tensor:
    """A seeded random input batch (N, C, H, W) float32 for ``name``."""
    spec = check_model(name)
    positive_int("batch", batch)
    return torch.randn((batch, *spec["input"]), generator=torch.Generator().manual_seed(seed))


def calibration_images(name: str) -> list[torch.Tensor]:
    """Single images for the PT2E paths (exported at batch 1): bundled calibration digits, or seeded noise."""
    if name == "course":
        images = digits_dataset("calib", CALIB_IMAGES)
        return [images[i][0].unsqueeze(0) for i in range(len(images))]
    return [example_input(name, 1, seed=1 + i) for i in range(2)]


def server_calibration(name: str) -> torch.Tensor:
    """Calibration images (N, C, H, W) for the ONNX Runtime and OpenVINO INT8 paths: the course's whole calibration
    split (500 digits), or the same seeded noise as ``calibration_images`` for a torchvision model (random weights)."""
    if name == "course":
        return digits_dataset("calib").tensors[0]
    return torch.cat(calibration_images(name))
