"""The course's command-line tool: ``python -m qhelpers`` (installed as ``qhelpers``).

Introduced in the README ("Command-line tools"); it runs, outside the
notebooks, what notebooks 01 (manual tensor quantization), 02 (pre-quantized
models, benchmark) and 03 (post-training static quantization) teach.

Subcommands::

    qhelpers tensor      quantize a given or random tensor, print scale, zero point, codes and error
    qhelpers pretrained  run a pre-quantized model (the course's, or torchvision's from the local cache) on an image
    qhelpers quantize    post-training static quantization of a float checkpoint -> TorchScript file + JSON report;
                         with --target xnnpack an ExecuTorch .pte for phones (notebook 08)
    qhelpers bench       the benchmark command (``python -m qhelpers.deployment_benchmark``)

Conventions: exit code 0 on success, 2 for usage errors (argparse's own, and
values no run could accept such as an unknown architecture), 1 for failures
(missing or unreadable files, an engine this CPU lacks ...); each error is one
line on stderr, with the traceback only under ``--verbose``; an interrupted
run (Ctrl-C, SIGTERM) exits 130/143 and leaves no half-written output, because
every file is written to a temporary name and renamed (``qh.atomic_write_bytes``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from .environment import ENGINES

__all__ = ["main", "build_parser", "CLIError", "UsageError", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
PROG = "qhelpers"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Deprecation messages a CLI user cannot act on; hidden (by message) unless --verbose. The notebooks explain them.
_QUIET_WARNINGS = (
    (r"`torch\.jit\.(script|save|load|trace)` is deprecated", FutureWarning),
    (r"Please use quant_min and quant_max to specify the range for observers", UserWarning),
    (r"TypedStorage is deprecated", UserWarning),
)


class CLIError(Exception):
    """A failure reported as one line on stderr; exit code 1."""

    exit_code = EXIT_FAILURE


class UsageError(CLIError):
    """A value no run could accept (unknown architecture, contradictory options); exit code 2."""

    exit_code = EXIT_USAGE


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that ``finally``/cleanup code runs, like ``KeyboardInterrupt``."""


# --------------------------------------------------------------------------- small helpers


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _out(text: str = "") -> None:
    print(text, flush=True)


def _versions() -> dict:
    import torch
    import torchvision

    from . import __version__

    return {
        "qhelpers": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def _machine() -> dict:
    import torch

    return {
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
    }


def _check_engine(engine: Optional[str]) -> str:
    """Make ``engine`` the active quantized engine (None: the course's default here, ``qh.default_engine()``,
    which honours ``QHELPERS_ENGINE`` and the engines a non-x86 CPU lacks), or fail with one line naming what
    this CPU offers."""
    from .environment import set_engine

    try:
        return set_engine(engine)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from exc


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise CLIError(f"{what} not found: {path}")
    if not path.is_file():
        raise CLIError(f"{what} is not a file: {path}")
    return path


def _torch_load(path: Path, what: str) -> Any:
    import torch

    _existing_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, not a torch file ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(f"cannot read {what} {path}: {first}") from exc


def _read_image(path: Path, mode: str) -> "Any":
    """uint8 (C, H, W) image from a PNG/JPEG file; ``mode`` 'gray' (C=1) or 'rgb' (C=3)."""
    from torchvision.io import ImageReadMode, decode_image

    _existing_file(path, "image")
    try:
        return decode_image(str(path), mode=ImageReadMode.GRAY if mode == "gray" else ImageReadMode.RGB)
    except Exception as exc:
        text = str(exc).strip()
        if "Unsupported image file" in text or not text:
            text = "not a PNG or JPEG image"
        raise CLIError(f"cannot read image {path}: {text.splitlines()[0]}") from exc


# --------------------------------------------------------------------------- tensor


def _cmd_tensor(args: argparse.Namespace) -> int:
    import torch

    from . import quantmath as qm

    if args.values is not None and args.load is not None:
        raise UsageError("give either --values or --load, not both")
    if args.values is not None:
        x = torch.tensor(args.values, dtype=torch.float32)
        source = "given values"
    elif args.load is not None:
        x = _torch_load(args.load, "tensor file")
        if not isinstance(x, torch.Tensor):
            raise CLIError(f"tensor file {args.load} holds a {type(x).__name__}, not a tensor")
        x = x.detach().float()
        source = str(args.load)
    else:
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.randn(*args.shape, generator=gen) * args.std
        source = f"random normal (seed {args.seed}, std {args.std})"
    try:
        qp = qm.qparams_from_tensor(
            x, bits=args.bits, signed=not args.unsigned, scheme=args.scheme, reduce_range=args.reduce_range, axis=args.axis
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc
    q = qm.quantize(x, qp)
    x_hat = qm.dequantize(q, qp)
    result = {
        "source": source,
        "shape": list(x.shape),
        "bits": args.bits,
        "signed": not args.unsigned,
        "scheme": args.scheme,
        "axis": args.axis,
        "quant_min": qp.quant_min,
        "quant_max": qp.quant_max,
        "dtype": str(qp.dtype).replace("torch.", ""),
        "scale": qp.scale.tolist(),
        "zero_point": qp.zero_point.tolist(),
        "values": x.tolist(),
        "codes": q.tolist(),
        "dequantized": x_hat.tolist(),
        "max_abs_error": qm.max_abs_error(x, x_hat),
        "mse": qm.mse(x, x_hat),
        "sqnr_db": _finite_or_none(qm.sqnr_db(x, x_hat)),  # None: no error at all (infinite SQNR)
    }
    if args.json:
        _out(_json(result))
        return EXIT_OK
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)
    per = "per-tensor" if args.axis is None else f"per-channel along axis {args.axis}"
    sign = "unsigned" if args.unsigned else "signed"
    _out(f"tensor: {source}, shape {tuple(x.shape)}")
    _out(f"quantization: {args.bits}-bit {sign} {args.scheme}, {per}, codes {qp.quant_min}..{qp.quant_max} stored as {result['dtype']}")
    _out(f"scale: {_fmt_list(result['scale'], '.6g')}")
    _out(f"zero_point: {_fmt_list(result['zero_point'], 'd')}")
    _out(f"values:\n{x}")
    _out(f"integer codes:\n{q}")
    _out(f"dequantized:\n{x_hat}")
    _out(f"max abs error: {result['max_abs_error']:.6g} (scale/2 = {_fmt_list([s / 2 for s in result['scale']], '.6g')})")
    _out("SQNR: infinite (no error)" if result["sqnr_db"] is None else f"SQNR: {result['sqnr_db']:.2f} dB")
    return EXIT_OK


def _finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def _json(obj: Any) -> str:
    """Strict JSON (no NaN/Infinity, which JavaScript's JSON.parse rejects)."""
    return json.dumps(obj, indent=2, allow_nan=False)


def _fmt_list(values: list, spec: str) -> str:
    """One number as itself, several as ``[a, b, ...]``."""
    if len(values) == 1:
        return format(values[0], spec)
    return "[" + ", ".join(format(v, spec) for v in values) + "]"


# --------------------------------------------------------------------------- pretrained


def _cmd_pretrained(args: argparse.Namespace) -> int:
    import torch

    from . import pretrained as pt

    name = args.model
    if name == "course":
        weights = pt.CourseNet_QuantizedWeights.DEFAULT
        _check_engine(weights.meta["backend"])
        image = _read_image(args.image, "gray")
        model = pt.course_net(weights=weights, quantize=True)
        label = "course model (data/course_model_int8.pt)"
    else:
        import torchvision.models as tvm

        arch = _torchvision_arch(name)
        weights = tvm.get_model_weights(arch).DEFAULT
        if not pt.weights_cached(weights):
            raise CLIError(
                f"{weights} is not in the local torch hub cache ({pt.hub_checkpoint_path(weights)}); this tool never downloads. "
                f"Fetch it once online with: python -c \"import torchvision; torchvision.models.get_model('{arch}', weights='DEFAULT', quantize=True)\""
            )
        _check_engine(weights.meta["backend"])
        image = _read_image(args.image, "rgb")
        try:
            model = tvm.get_model(arch, weights=weights, quantize=True).eval()
        except Exception as exc:
            raise CLIError(f"cannot load the cached weights {pt.hub_checkpoint_path(weights)}: {exc}") from exc
        label = f"torchvision {arch} ({weights})"
    categories = weights.meta["categories"]
    top = min(args.top, len(categories))
    with torch.inference_mode():
        probs = model(weights.transforms()(image).unsqueeze(0)).softmax(dim=1)[0]
    values, indices = probs.topk(top)
    predictions = [{"class": categories[i], "index": int(i), "probability": round(float(p), 6)} for p, i in zip(values, indices)]
    result = {
        "model": label,
        "image": str(args.image),
        "engine": torch.backends.quantized.engine,
        "quantized": pt.is_quantized(model),
        "predictions": predictions,
        "versions": _versions(),
    }
    if args.json:
        _out(_json(result))
        return EXIT_OK
    _out(f"model: {label}")
    _out(f"engine: {result['engine']} (INT8 modules: {'yes' if result['quantized'] else 'NO, float model'})")
    _out(f"image: {args.image}")
    width = max(len(p["class"]) for p in predictions)
    for rank, p in enumerate(predictions, 1):
        _out(f"  {rank}. {p['class']:<{width}}  {100 * p['probability']:6.2f}%")
    return EXIT_OK


def _torchvision_arch(name: str) -> str:
    """``resnet18`` or ``quantized_resnet18`` -> ``quantized_resnet18``; unknown names are a usage error."""
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm.quantization)
    arch = name if name.startswith("quantized_") else f"quantized_{name}"
    if arch not in known:
        names = ", ".join(["course"] + [k.removeprefix("quantized_") for k in known])
        raise UsageError(f"unknown architecture {name!r}; known: {names}")
    return arch


# --------------------------------------------------------------------------- quantize


def _build_float_model(args: argparse.Namespace) -> tuple[Any, dict]:
    """The float model in eval mode and what the report says about where its weights came from."""
    from torch import nn

    from . import data, models

    if args.arch == "course":
        if args.checkpoint is None:
            try:
                checkpoint = str(data.data_dir() / models.CHECKPOINT_NAME)
                return models.load_course_model(), {"checkpoint": checkpoint, "weights": "trained course model"}
            except (FileNotFoundError, ValueError) as exc:
                raise CLIError(str(exc)) from exc
        model: nn.Module = models.CourseNet()
    else:
        import torchvision.models as tvm

        arch = _torchvision_arch(args.arch)
        model = tvm.get_model(arch, weights=None, quantize=False, num_classes=args.num_classes)
    if args.checkpoint is None:
        note = "random initialisation (weights=None): no --checkpoint given, so accuracy means nothing; the run shows the pipeline offline"
        return model.eval(), {"checkpoint": None, "weights": note}
    state = _torch_load(args.checkpoint, "checkpoint")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CLIError(f"checkpoint {args.checkpoint} holds a {type(state).__name__}, not a state_dict")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise CLIError(f"checkpoint {args.checkpoint} does not fit {args.arch}: {lines[-1] if lines else exc}") from exc
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CLIError(f"checkpoint {args.checkpoint} does not fit {args.arch}: {', '.join(parts)}")
    return model.eval(), {"checkpoint": str(Path(args.checkpoint).resolve()), "weights": "loaded from checkpoint"}


class _Preprocess:
    """Turns uint8 grayscale (N, 28, 28) digits or uint8 (C, H, W) images into the model's float input."""

    def __init__(self, arch: str, image_size: int) -> None:
        self.course = arch == "course"
        self.size = 28 if self.course else image_size

    @property
    def mode(self) -> str:
        return "gray" if self.course else "rgb"

    def __call__(self, images: Any) -> Any:
        """uint8 (N, C, H, W) -> float32 (N, C', size, size), normalized."""
        import torch
        from torchvision.transforms.v2 import functional as F

        from . import data

        if tuple(images.shape[-2:]) != (self.size, self.size):
            images = F.resize(images, [self.size, self.size], antialias=True)
        x = images.float() / 255.0
        if self.course:
            return (x - data.MNIST_MEAN) / data.MNIST_STD
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x - mean) / std


def _bundled_loader(split: str, limit: Optional[int], batch_size: int, prep: _Preprocess) -> Any:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from . import data

    images, labels = data.load_digits()[split]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = prep(torch.from_numpy(images).unsqueeze(1))
    return DataLoader(TensorDataset(x, torch.from_numpy(labels).long()), batch_size=batch_size)


def _folder_loader(folder: Path, limit: Optional[int], batch_size: int, prep: _Preprocess) -> tuple[Any, int]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if not folder.exists():
        raise CLIError(f"calibration folder not found: {folder}")
    if not folder.is_dir():
        raise CLIError(f"--calib must be 'bundled' or a folder of PNG/JPEG images; {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CLIError(f"no PNG/JPEG images in calibration folder {folder}")
    files = files[:limit] if limit is not None else files
    batch = [prep(_read_image(p, prep.mode).unsqueeze(0)) for p in files]
    x = torch.cat(batch)
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch_size), len(files)


def _quantize_model(float_model: Any, calib: Any, engine: str, qconfig: Any, progress: bool) -> Any:
    """``qh.post_training_quantize`` (notebook 03's recipe), its calibration loop wrapped in a tqdm bar on stderr."""
    from tqdm import tqdm

    from .ptq import post_training_quantize

    bar = tqdm(calib, desc="calibrating", unit="batch", file=sys.stderr, disable=not progress)
    return post_training_quantize(float_model, bar, engine=engine, qconfig=qconfig).eval()


def _report_path(output: Path, report: Optional[Path]) -> Path:
    if report is not None:
        return report
    return output.with_suffix(".json")


def _check_output_folders(*paths: Path) -> None:
    for path in paths:
        if path.parent.exists() and not path.parent.is_dir():
            raise CLIError(f"cannot write {path}: {path.parent} is not a folder")


def _calibration_loader(args: argparse.Namespace, prep: "_Preprocess") -> tuple[Any, dict]:
    """The calibration batches (``--calib``: the bundled split or an image folder) and what the report says of them."""
    if args.calib == "bundled":
        calib = _bundled_loader("calib", args.calib_limit, args.batch_size, prep)
        return calib, {"source": "bundled calib split", "images": len(calib.dataset)}
    calib, n = _folder_loader(Path(args.calib), args.calib_limit, args.batch_size, prep)
    return calib, {"source": str(Path(args.calib).resolve()), "images": n}


def _accuracy_section(args: argparse.Namespace, prep: "_Preprocess", float_model: Any, int8_logits: Callable) -> dict:
    """The report's ``accuracy``: float vs the INT8 artifact (``int8_logits(images)``) on the bundled test split, or why it was skipped."""
    import torch

    from . import metrics

    if args.eval == "none":
        return {"skipped": "--eval none"}
    if not (args.arch == "course" or args.num_classes == 10):
        return {"skipped": f"no labelled data for a {args.num_classes}-class model; the bundled test split has 10 digit classes (use --num-classes 10)"}
    test = _bundled_loader("test", args.eval_limit, 250, prep)
    acc_f = metrics.accuracy(float_model, test)
    with torch.no_grad():
        correct = sum(int((int8_logits(images).argmax(dim=1) == labels).sum()) for images, labels in test)
    acc_q = 100.0 * correct / len(test.dataset)
    return {"data": "bundled test split", "images": len(test.dataset), "float_percent": acc_f, "int8_percent": acc_q, "drop_points": round(acc_f - acc_q, 4)}


def _latency_section(args: argparse.Namespace, float_fn: Callable[[], Callable], int8_fn: Callable, example: Any, measured: str) -> dict:
    """The report's ``latency``: batch-1 medians of float and INT8 with ``qh.measure_latency``, or why it was skipped."""
    from .latency import measure_latency

    if args.latency_seconds <= 0:
        return {"skipped": "--latency-seconds 0"}
    _out(f"measuring latency (batch 1, {args.threads} thread{'s' if args.threads > 1 else ''}, {args.latency_seconds:g} s each)")
    lat_f = measure_latency(float_fn(), example, threads=args.threads, min_run_time=args.latency_seconds)
    lat_q = measure_latency(int8_fn, example, threads=args.threads, min_run_time=args.latency_seconds)
    return {
        "batch": 1,
        "threads": args.threads,
        "float_ms": round(lat_f.median_ms, 4),
        "float_iqr_ms": round(lat_f.iqr_ms, 4),
        "int8_ms": round(lat_q.median_ms, 4),
        "int8_iqr_ms": round(lat_q.iqr_ms, 4),
        "speedup": round(lat_f.median_ms / lat_q.median_ms, 3),
        "measured": measured,
    }


def _write_artifact_and_report(output: Path, payload: bytes, report_path: Path, report: dict, *, wrote: str, size: str, float_name: str, int8_name: str) -> int:
    """Write the model file and its JSON report (each atomically), then the summary lines of ``quantize``."""
    from . import data

    data.atomic_write_bytes(output, payload)
    data.atomic_write_bytes(report_path, (_json(report) + "\n").encode())
    accuracy, latency = report["accuracy"], report["latency"]
    _out(f"wrote {output} ({wrote}) and {report_path}")
    _out(f"size: {size}")
    if "float_percent" in accuracy:
        _out(f"accuracy on {accuracy['images']} test images: float {accuracy['float_percent']:.1f}% -> {int8_name} {accuracy['int8_percent']:.1f}%")
    else:
        _out(f"accuracy: skipped ({accuracy['skipped']})")
    if "int8_ms" in latency:
        _out(f"latency: {float_name} {latency['float_ms']:.3f} ms -> {int8_name} {latency['int8_ms']:.3f} ms ({latency['speedup']:.2f}x)")
    return EXIT_OK


def _cmd_quantize(args: argparse.Namespace) -> int:
    import io

    import torch

    from . import metrics
    from .ptq import describe_qconfig, make_qconfig

    started = time.perf_counter()
    output: Path = args.output
    report_path = _report_path(output, args.report)
    if output.suffix.lower() == ".json" or report_path.resolve() == output.resolve():
        raise UsageError(f"--output {output} would collide with the JSON report {report_path}; give the model a .pt name or pass --report")
    if args.target == "xnnpack":
        return _cmd_quantize_xnnpack(args, output, report_path, started)
    if output.suffix.lower() == ".pte":
        raise UsageError(f"--output {output} is an ExecuTorch file name; add --target xnnpack, or name the TorchScript file .pt")
    if args.arch != "course":
        _torchvision_arch(args.arch)  # unknown names fail before anything slow
    _check_output_folders(output, report_path)
    engine = _check_engine(args.engine)
    torch.manual_seed(args.seed)

    float_model, origin = _build_float_model(args)
    prep = _Preprocess(args.arch, args.image_size)
    calib, calib_info = _calibration_loader(args, prep)
    _out(f"quantizing {args.arch} for engine {engine} ({args.weight_quant} weights), calibrating on {calib_info['images']} images ({calib_info['source']})")
    if origin["checkpoint"] is None:
        _out(f"note: {origin['weights']}")

    # notebook 03's default: histogram activations (7-bit on x86/fbgemm), symmetric per-channel or per-tensor weights
    qconfig = make_qconfig("histogram", per_channel=args.weight_quant == "per-channel", reduce_range=engine in ("x86", "fbgemm"))
    qmodel = _quantize_model(float_model, calib, engine, qconfig, progress=not args.no_progress)
    scripted = torch.jit.script(qmodel)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    ts_bytes = buf.getvalue()
    # Everything below describes the artifact as written: the TorchScript bytes loaded back.
    artifact = torch.jit.load(io.BytesIO(ts_bytes), map_location="cpu").eval()

    accuracy = _accuracy_section(args, prep, float_model, artifact)

    # both as TorchScript, so that the ratio is INT8 vs float and not TorchScript vs Python overhead
    latency = _latency_section(
        args, lambda: torch.jit.script(float_model), artifact, next(iter(calib))[0][:1],
        "qh.measure_latency (torch.utils.benchmark median after warm-up); the float model scripted vs the INT8 TorchScript file",
    )

    float_sd = metrics.model_size_bytes(float_model)
    int8_sd = metrics.model_size_bytes(qmodel)
    report = {
        "command": "quantize",
        "target": "torchscript",
        "arch": args.arch if args.arch == "course" else _torchvision_arch(args.arch).removeprefix("quantized_"),
        **origin,
        "engine": engine,
        "weight_quantization": args.weight_quant,
        "qconfig": describe_qconfig(qconfig),
        "calibration": {**calib_info, "batch_size": args.batch_size},
        "input_shape": list(next(iter(calib))[0].shape[1:]),
        "torchscript": str(output.resolve()),
        "torchscript_sha256": hashlib.sha256(ts_bytes).hexdigest(),
        "size_bytes": {
            "float_state_dict": float_sd,
            "int8_state_dict": int8_sd,
            "int8_torchscript": len(ts_bytes),
            "ratio_state_dict": round(float_sd / int8_sd, 3),
        },
        "accuracy": accuracy,
        "latency": latency,
        "versions": _versions(),
        "machine": _machine(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return _write_artifact_and_report(
        output, ts_bytes, report_path, report,
        wrote=f"{len(ts_bytes):,} bytes, TorchScript",
        size=f"float {float_sd:,} B -> INT8 {int8_sd:,} B state dict ({report['size_bytes']['ratio_state_dict']:.2f}x smaller)",
        float_name="float", int8_name="INT8",
    )


def _cmd_quantize_xnnpack(args: argparse.Namespace, output: Path, report_path: Path, started: float) -> int:
    """``quantize --target xnnpack``: PT2E with XNNPACKQuantizer, lowered to an ExecuTorch ``.pte`` (notebook 08)."""
    import tempfile

    import torch

    from . import metrics, runtime

    if output.suffix.lower() != ".pte":
        raise UsageError(f"--target xnnpack writes an ExecuTorch program: name the output .pte, got {output}")
    if args.engine is not None:
        raise UsageError("--engine chooses an eager quantized engine (--target torchscript); --target xnnpack always targets XNNPACK")
    if args.arch != "course":
        _torchvision_arch(args.arch)
    _check_output_folders(output, report_path)
    if not runtime.executorch_available():
        raise CLIError(f"--target xnnpack needs ExecuTorch, which is not installed: pip install {runtime.EXECUTORCH_PIN}")
    torch.manual_seed(args.seed)

    float_model, origin = _build_float_model(args)
    prep = _Preprocess(args.arch, args.image_size)
    calib, calib_info = _calibration_loader(args, prep)
    per_channel = args.weight_quant == "per-channel"
    _out(f"quantizing {args.arch} for XNNPACK (ExecuTorch; {args.weight_quant} symmetric weights), calibrating on {calib_info['images']} images ({calib_info['source']})")
    if origin["checkpoint"] is None:
        _out(f"note: {origin['weights']}")
    first = next(iter(calib))[0]
    example = first[:1]
    strict = args.arch.startswith(("resnet", "resnext", "wide_resnet"))  # shared ReLU modules: strict export (notebook 05)
    if calib_info["images"] >= 2:
        # the batch dimension is dynamic for calibration; batches of 1 become batches of 2 for the example
        example2 = first[:2] if len(first) >= 2 else torch.cat([first, first])
        qmodel = runtime.quantize_xnnpack(float_model, (example2,), calib, per_channel=per_channel, strict=strict)
    else:
        qmodel = runtime.quantize_xnnpack(float_model, (example,), calib, per_channel=per_channel, dynamic_batch=False, strict=strict)
    _out("lowering to ExecuTorch with the XNNPACK partitioner")
    with tempfile.TemporaryDirectory(prefix=".qhelpers_pte_", dir=output.parent if output.parent.is_dir() else None) as tmp:
        export = runtime.export_pte(qmodel, (example,), Path(tmp) / "model.pte")
        pte_bytes = export.path.read_bytes()
        # Everything below describes the artifact as written: the .pte loaded back by the ExecuTorch runtime.
        artifact = runtime.load_pte(export.path)

        # the .pte was exported for batch 1: the INT8 side runs image by image
        accuracy = _accuracy_section(args, prep, float_model, lambda images: torch.cat([artifact(images[i : i + 1]) for i in range(len(images))]))

        latency = _latency_section(
            args, lambda: float_model, artifact, example,
            "qh.measure_latency (median after warm-up); the float model in eager PyTorch vs the INT8 .pte in the ExecuTorch runtime (its own thread pool)",
        )

    float_sd = metrics.model_size_bytes(float_model)
    report = {
        "command": "quantize",
        "target": "xnnpack",
        "arch": args.arch if args.arch == "course" else _torchvision_arch(args.arch).removeprefix("quantized_"),
        **origin,
        "engine": "xnnpack",
        "weight_quantization": args.weight_quant,
        "quantizer": f"XNNPACKQuantizer, get_symmetric_quantization_config(is_per_channel={per_channel})",
        "calibration": {**calib_info, "batch_size": args.batch_size},
        "input_shape": list(example.shape[1:]),
        "pte": str(output.resolve()),
        "pte_sha256": hashlib.sha256(pte_bytes).hexdigest(),
        "delegation": {"subgraphs": export.delegated_subgraphs, "delegated_nodes": export.delegated_nodes, "non_delegated_nodes": export.non_delegated_nodes},
        "size_bytes": {"float_state_dict": float_sd, "int8_pte": len(pte_bytes), "ratio": round(float_sd / len(pte_bytes), 3)},
        "accuracy": accuracy,
        "latency": latency,
        "versions": {**_versions(), "executorch": _executorch_version()},
        "machine": _machine(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return _write_artifact_and_report(
        output, pte_bytes, report_path, report,
        wrote=f"{len(pte_bytes):,} bytes, ExecuTorch program, {export.delegated_nodes} nodes delegated to XNNPACK, {export.non_delegated_nodes} not",
        size=f"float {float_sd:,} B state dict -> INT8 .pte {len(pte_bytes):,} B ({report['size_bytes']['ratio']:.2f}x smaller)",
        float_name="float eager", int8_name="INT8 .pte",
    )


def _executorch_version() -> Optional[str]:
    try:
        from executorch.version import __version__

        return __version__
    except ImportError:
        return None


# --------------------------------------------------------------------------- bench


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import deployment_benchmark as bench

    try:
        code = bench.main(list(args.bench_args))
    except SystemExit as exc:  # its --help (0) and usage errors (2), already printed by its argparse
        code = exc.code if isinstance(exc.code, int) or exc.code is None else EXIT_USAGE
    return EXIT_OK if code is None else int(code)


# --------------------------------------------------------------------------- parser and main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``qhelpers --help``); building it imports nothing heavy."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library warnings")

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="INT8 quantization tools of the course (tensor demo, pre-quantized models, PTQ, benchmark, laptop check, progress).",
        epilog="Exit codes: 0 success, 1 failure, 2 usage error, 130/143 interrupted. Run `qhelpers COMMAND --help` for details.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "tensor",
        parents=[common],
        help="quantize a tensor by hand: scale, zero point, integer codes, error",
        description="Manual tensor quantization (notebook 01): scale and zero point from the tensor's range, "
        "integer codes, the dequantized values and the error. Bit-exact with torch.quantize_per_tensor/per_channel.",
    )
    src = p.add_argument_group("the tensor (default: random normal of --shape)")
    src.add_argument("--values", type=_float_list, metavar="LIST", help="numbers, e.g. '0.1,-2.5,3' (a 1-D tensor)")
    src.add_argument("--load", type=Path, metavar="FILE", help="a tensor saved with torch.save (loaded with weights_only=True)")
    src.add_argument("--shape", type=_positive_int, nargs="+", default=[4, 8], metavar="N", help="shape of the random tensor (default: 4 8)")
    src.add_argument("--seed", type=int, default=0, help="seed of the random tensor (default: 0)")
    src.add_argument("--std", type=float, default=1.0, help="standard deviation of the random tensor (default: 1)")
    p.add_argument("--bits", type=int, default=8, help="bits per code, 2..16 (default: 8)")
    p.add_argument("--scheme", choices=["affine", "symmetric"], default="affine", help="default: affine")
    p.add_argument("--unsigned", action="store_true", help="unsigned codes (0..255 for 8 bits) instead of signed (-128..127)")
    p.add_argument("--axis", type=int, default=None, help="per-channel quantization along this dimension (default: per-tensor)")
    p.add_argument("--reduce-range", action="store_true", help="drop one bit of range, as torch's fbgemm/x86 activation observers do")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_tensor)

    p = sub.add_parser(
        "pretrained",
        parents=[common],
        help="run a pre-quantized model on an image and print its top predictions",
        description="Load a pre-quantized model the torchvision way (weights enum, quantize=True) and classify an image. "
        "'course' is the course's own INT8 digits model (data/course_model_int8.pt, always offline); any other name is a "
        "torchvision quantized architecture whose weights must already be in the torch hub cache (nothing is downloaded).",
    )
    p.add_argument("image", type=Path, help="a PNG or JPEG file (a digit, white on black, for the course model)")
    p.add_argument("--model", default="course", help="'course' (default) or a torchvision name such as resnet18, mobilenet_v2")
    p.add_argument("--top", type=_positive_int, default=5, help="how many predictions to print (default: 5)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_pretrained)

    p = sub.add_parser(
        "quantize",
        parents=[common],
        help="post-training static quantization -> TorchScript file (or ExecuTorch .pte) + JSON report",
        description="Post-training static quantization (notebook 03) of a float model: fuse, observe on a calibration set, "
        "convert. Writes the INT8 model as TorchScript and a JSON report (sizes, accuracy where labels exist, latency, "
        "engine, versions). With --target xnnpack: PT2E with XNNPACKQuantizer, lowered to an ExecuTorch .pte for the "
        "XNNPACK delegate (notebook 08); accuracy and latency are measured on the .pte loaded back by the ExecuTorch runtime. "
        "Both files are written atomically (temporary name, then rename).",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the file to write: TorchScript (.pt, e.g. course_int8.pt) or, with --target xnnpack, an ExecuTorch program (.pte)")
    p.add_argument("--target", choices=["torchscript", "xnnpack"], default="torchscript",
                   help="torchscript (default): eager INT8 for --engine, saved as TorchScript; xnnpack: PT2E with XNNPACKQuantizer, lowered to an ExecuTorch .pte for phones (notebook 08)")
    p.add_argument("--report", type=Path, help="the JSON report (default: the output's name with .json)")
    p.add_argument("--arch", default="course", help="'course' (default) or a torchvision quantizable architecture: resnet18, mobilenet_v2, ...")
    p.add_argument("--checkpoint", type=Path, help="float state_dict to load (default: the trained course model for 'course'; none, i.e. weights=None, for torchvision)")
    p.add_argument("--calib", default="bundled", metavar="bundled|FOLDER", help="calibration data: the bundled calib split (default) or a folder of PNG/JPEG images")
    p.add_argument("--calib-limit", type=_positive_int, metavar="N", help="use only the first N calibration images")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="calibration batch size (default: 32)")
    p.add_argument("--engine", choices=ENGINES, help="quantized engine (default: qh.default_engine(): QHELPERS_ENGINE if set, else x86 where this CPU has it, else qnnpack)")
    p.add_argument("--weight-quant", choices=["per-channel", "per-tensor"], default="per-channel", help="weight observer (default: per-channel)")
    p.add_argument("--eval", choices=["bundled", "none"], default="bundled", help="evaluate float and INT8 accuracy on the bundled test split (default) or not")
    p.add_argument("--eval-limit", type=_positive_int, metavar="N", help="evaluate on the first N test images only")
    p.add_argument("--latency-seconds", type=_non_negative_float, default=0.5, metavar="S", help="seconds of timed runs per model; 0 skips latency (default: 0.5)")
    p.add_argument("--threads", type=_positive_int, default=1, help="threads for the latency measurement (default: 1)")
    p.add_argument("--image-size", type=_positive_int, default=224, help="input size for torchvision architectures (default: 224)")
    p.add_argument("--num-classes", type=_positive_int, default=1000, help="classes of a torchvision architecture (default: 1000; 10 to evaluate on the digits)")
    p.add_argument("--seed", type=int, default=0, help="seed for random initialisation (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser(
        "bench",
        parents=[common],
        add_help=False,
        help="float vs INT8 speed and size benchmark (python -m qhelpers.deployment_benchmark); `qhelpers bench --help` for its options",
        description="The benchmark command; every argument is passed to python -m qhelpers.deployment_benchmark.",
    )
    p.set_defaults(func=_cmd_bench, bench_args=[])  # main() hands it the arguments it does not know

    p = sub.add_parser(
        "doctor",
        parents=[common],
        help="the 2-minute laptop check of a workshop morning (python -m qhelpers.doctor)",
        description="Checks Python, the pinned packages, engines, the CPU (AVX2/VNNI/ARM), disk, data checksums and one "
        "INT8 layer; says OK or what is wrong and how to fix it.",
    )
    p.set_defaults(func=lambda args: _run_module_main("doctor", []))

    p = sub.add_parser(
        "progress",
        parents=[common],
        help="a learner's self-check results as a table (python -m qhelpers.progress)",
        description="Reads progress/*.jsonl (or the files and folders given) and prints each learner's table.",
    )
    p.add_argument("paths", nargs="*", help="progress files or folders (default: the course's progress/ folder)")
    p.set_defaults(func=lambda args: _run_module_main("progress", list(args.paths)))
    return parser


def _run_module_main(module: str, argv: list[str]) -> int:
    """``qhelpers doctor`` / ``qhelpers progress``: the module's own ``main`` (one implementation each)."""
    import importlib

    code = importlib.import_module(f"qhelpers.{module}").main(argv)
    return EXIT_OK if code is None else int(code)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception while a command runs, so temporary files are removed (main thread only)."""
    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException, verbose: bool) -> str:
    """The line that says what went wrong (TorchScript puts its own traceback between its headline and the error)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and "TorchScript interpreter" in lines[0]:
        lines = lines[-1:]
    message = lines[0] if lines else type(exc).__name__
    if not isinstance(exc, (CLIError, OSError, ValueError)) and not re.match(r"\w+(Error|Exception)\b", message):
        message = f"{type(exc).__name__}: {message}"
    if not isinstance(exc, CLIError) and not verbose:
        message += " (--verbose shows the traceback)"
    return message


def _error(command: Optional[str], message: str) -> None:
    where = f"{PROG} {command}" if command else PROG
    print(f"{where}: error: {message}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); returns the exit code instead of exiting."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, unknown = parser.parse_known_args(argv)
        if args.command == "bench":
            args.bench_args = unknown
        elif unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    verbose = getattr(args, "verbose", False)
    try:
        with _sigterm_raises(), warnings.catch_warnings():
            if not verbose:
                from .environment import silence_known_deprecations

                silence_known_deprecations()
                for message, category in _QUIET_WARNINGS:
                    warnings.filterwarnings("ignore", message=message, category=category)
            return args.func(args)
    except BrokenPipeError:  # `qhelpers tensor | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _error(args.command, "interrupted (no partial output files are left)")
        return EXIT_SIGINT
    except _Terminated:
        _error(args.command, "terminated (no partial output files are left)")
        return EXIT_SIGTERM
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if verbose:
            traceback.print_exc()
        code = exc.exit_code if isinstance(exc, CLIError) else EXIT_FAILURE
        _error(args.command, _one_line(exc, verbose))
        return code
