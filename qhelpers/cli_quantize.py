"""``qhelpers quantize``: post-training static quantization of a float checkpoint (notebook 03's recipe) into a
TorchScript file, or with ``--target xnnpack`` an ExecuTorch ``.pte`` (notebook 08), each with a JSON report."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .cli_common import EXIT_OK, CLIError, UsageError, check_engine, out, read_image, run_info, to_json, torch_load, torchvision_arch

__all__ = ["cmd_quantize"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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

        arch = torchvision_arch(args.arch)
        model = tvm.get_model(arch, weights=None, quantize=False, num_classes=args.num_classes)
    if args.checkpoint is None:
        note = "random initialisation (weights=None): no --checkpoint given, so accuracy means nothing; the run shows the pipeline offline"
        return model.eval(), {"checkpoint": None, "weights": note}
    state = torch_load(args.checkpoint, "checkpoint")
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
    batch = [prep(read_image(p, prep.mode).unsqueeze(0)) for p in files]
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
    out(f"measuring latency (batch 1, {args.threads} thread{'s' if args.threads > 1 else ''}, {args.latency_seconds:g} s each)")
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


def _report(args: argparse.Namespace, target: str, engine: str, origin: dict, calib_info: dict, started: float,
            accuracy: dict, latency: dict, fields: dict, *versions: str) -> dict:
    """The JSON report of ``quantize``: what was asked, ``fields`` of the target, the measurements, versions and machine."""
    return {
        "command": "quantize",
        "target": target,
        "arch": args.arch if args.arch == "course" else torchvision_arch(args.arch).removeprefix("quantized_"),
        **origin,
        "engine": engine,
        "weight_quantization": args.weight_quant,
        "calibration": {**calib_info, "batch_size": args.batch_size},
        **fields,
        "accuracy": accuracy,
        "latency": latency,
        **run_info(*versions),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _write_artifact_and_report(output: Path, payload: bytes, report_path: Path, report: dict, *, wrote: str, size: str, float_name: str, int8_name: str) -> int:
    """Write the model file and its JSON report (each atomically), then the summary lines of ``quantize``."""
    from .files import atomic_write_bytes

    atomic_write_bytes(output, payload)
    atomic_write_bytes(report_path, (to_json(report) + "\n").encode())
    accuracy, latency = report["accuracy"], report["latency"]
    out(f"wrote {output} ({wrote}) and {report_path}")
    out(f"size: {size}")
    if "float_percent" in accuracy:
        out(f"accuracy on {accuracy['images']} test images: float {accuracy['float_percent']:.1f}% -> {int8_name} {accuracy['int8_percent']:.1f}%")
    else:
        out(f"accuracy: skipped ({accuracy['skipped']})")
    if "int8_ms" in latency:
        out(f"latency: {float_name} {latency['float_ms']:.3f} ms -> {int8_name} {latency['int8_ms']:.3f} ms ({latency['speedup']:.2f}x)")
    return EXIT_OK


def cmd_quantize(args: argparse.Namespace) -> int:
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
        torchvision_arch(args.arch)  # unknown names fail before anything slow
    _check_output_folders(output, report_path)
    engine = check_engine(args.engine)
    torch.manual_seed(args.seed)

    float_model, origin = _build_float_model(args)
    prep = _Preprocess(args.arch, args.image_size)
    calib, calib_info = _calibration_loader(args, prep)
    out(f"quantizing {args.arch} for engine {engine} ({args.weight_quant} weights), calibrating on {calib_info['images']} images ({calib_info['source']})")
    if origin["checkpoint"] is None:
        out(f"note: {origin['weights']}")

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
    report = _report(args, "torchscript", engine, origin, calib_info, started, accuracy, latency, {
        "qconfig": describe_qconfig(qconfig),
        "input_shape": list(next(iter(calib))[0].shape[1:]),
        "torchscript": str(output.resolve()),
        "torchscript_sha256": hashlib.sha256(ts_bytes).hexdigest(),
        "size_bytes": {
            "float_state_dict": float_sd,
            "int8_state_dict": int8_sd,
            "int8_torchscript": len(ts_bytes),
            "ratio_state_dict": round(float_sd / int8_sd, 3),
        },
    })
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
        torchvision_arch(args.arch)
    _check_output_folders(output, report_path)
    if not runtime.executorch_available():
        raise CLIError(f"--target xnnpack needs ExecuTorch, which is not installed: pip install {runtime.EXECUTORCH_PIN}")
    torch.manual_seed(args.seed)

    float_model, origin = _build_float_model(args)
    prep = _Preprocess(args.arch, args.image_size)
    calib, calib_info = _calibration_loader(args, prep)
    per_channel = args.weight_quant == "per-channel"
    out(f"quantizing {args.arch} for XNNPACK (ExecuTorch; {args.weight_quant} symmetric weights), calibrating on {calib_info['images']} images ({calib_info['source']})")
    if origin["checkpoint"] is None:
        out(f"note: {origin['weights']}")
    first = next(iter(calib))[0]
    example = first[:1]
    strict = args.arch.startswith(("resnet", "resnext", "wide_resnet"))  # shared ReLU modules: strict export (notebook 05)
    if calib_info["images"] >= 2:
        # the batch dimension is dynamic for calibration; batches of 1 become batches of 2 for the example
        example2 = first[:2] if len(first) >= 2 else torch.cat([first, first])
        qmodel = runtime.quantize_xnnpack(float_model, (example2,), calib, per_channel=per_channel, strict=strict)
    else:
        qmodel = runtime.quantize_xnnpack(float_model, (example,), calib, per_channel=per_channel, dynamic_batch=False, strict=strict)
    out("lowering to ExecuTorch with the XNNPACK partitioner")
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
    report = _report(args, "xnnpack", "xnnpack", origin, calib_info, started, accuracy, latency, {
        "quantizer": f"XNNPACKQuantizer, get_symmetric_quantization_config(is_per_channel={per_channel})",
        "input_shape": list(example.shape[1:]),
        "pte": str(output.resolve()),
        "pte_sha256": hashlib.sha256(pte_bytes).hexdigest(),
        "delegation": {"subgraphs": export.delegated_subgraphs, "delegated_nodes": export.delegated_nodes, "non_delegated_nodes": export.non_delegated_nodes},
        "size_bytes": {"float_state_dict": float_sd, "int8_pte": len(pte_bytes), "ratio": round(float_sd / len(pte_bytes), 3)},
    }, "executorch")
    return _write_artifact_and_report(
        output, pte_bytes, report_path, report,
        wrote=f"{len(pte_bytes):,} bytes, ExecuTorch program, {export.delegated_nodes} nodes delegated to XNNPACK, {export.non_delegated_nodes} not",
        size=f"float {float_sd:,} B state dict -> INT8 .pte {len(pte_bytes):,} B ({report['size_bytes']['ratio']:.2f}x smaller)",
        float_name="float eager", int8_name="INT8 .pte",
    )
