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
import os
import re
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from .cli_common import (
    EXIT_FAILURE, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, CLIError, Terminated, UsageError,
    float_list_arg, non_negative_float_arg, positive_int_arg,
)  # fmt: skip
from .cli_inspect import cmd_pretrained, cmd_tensor
from .cli_quantize import cmd_quantize
from .environment import ENGINES

__all__ = ["main", "build_parser", "CLIError", "UsageError", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]

PROG = "qhelpers"

# Deprecation messages a CLI user cannot act on; hidden (by message) unless --verbose, on top of
# environment.KNOWN_DEPRECATIONS (silence_known_deprecations). The notebooks explain those they meet.
_QUIET_WARNINGS = (
    (r"`torch\.jit\.(script|save|load|trace)` is deprecated", FutureWarning),
    (r"TypedStorage is deprecated", UserWarning),
)


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import deployment_benchmark as bench

    try:
        code = bench.main(list(args.bench_args))
    except SystemExit as exc:  # its --help (0) and usage errors (2), already printed by its argparse
        code = exc.code if isinstance(exc.code, int) or exc.code is None else EXIT_USAGE
    return EXIT_OK if code is None else int(code)


# --------------------------------------------------------------------------- parser and main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``qhelpers --help``)."""
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
    src.add_argument("--values", type=float_list_arg, metavar="LIST", help="numbers, e.g. '0.1,-2.5,3' (a 1-D tensor)")
    src.add_argument("--load", type=Path, metavar="FILE", help="a tensor saved with torch.save (loaded with weights_only=True)")
    src.add_argument("--shape", type=positive_int_arg, nargs="+", default=[4, 8], metavar="N", help="shape of the random tensor (default: 4 8)")
    src.add_argument("--seed", type=int, default=0, help="seed of the random tensor (default: 0)")
    src.add_argument("--std", type=float, default=1.0, help="standard deviation of the random tensor (default: 1)")
    p.add_argument("--bits", type=int, default=8, help="bits per code, 2..16 (default: 8)")
    p.add_argument("--scheme", choices=["affine", "symmetric"], default="affine", help="default: affine")
    p.add_argument("--unsigned", action="store_true", help="unsigned codes (0..255 for 8 bits) instead of signed (-128..127)")
    p.add_argument("--axis", type=int, default=None, help="per-channel quantization along this dimension (default: per-tensor)")
    p.add_argument("--reduce-range", action="store_true", help="drop one bit of range, as torch's fbgemm/x86 activation observers do")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_tensor)

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
    p.add_argument("--top", type=positive_int_arg, default=5, help="how many predictions to print (default: 5)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_pretrained)

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
    p.add_argument("--calib-limit", type=positive_int_arg, metavar="N", help="use only the first N calibration images")
    p.add_argument("--batch-size", type=positive_int_arg, default=32, help="calibration batch size (default: 32)")
    p.add_argument("--engine", choices=ENGINES, help="quantized engine (default: qh.default_engine(): QHELPERS_ENGINE if set, else x86 where this CPU has it, else qnnpack)")
    p.add_argument("--weight-quant", choices=["per-channel", "per-tensor"], default="per-channel", help="weight observer (default: per-channel)")
    p.add_argument("--eval", choices=["bundled", "none"], default="bundled", help="evaluate float and INT8 accuracy on the bundled test split (default) or not")
    p.add_argument("--eval-limit", type=positive_int_arg, metavar="N", help="evaluate on the first N test images only")
    p.add_argument("--latency-seconds", type=non_negative_float_arg, default=0.5, metavar="S", help="seconds of timed runs per model; 0 skips latency (default: 0.5)")
    p.add_argument("--threads", type=positive_int_arg, default=1, help="threads for the latency measurement (default: 1)")
    p.add_argument("--image-size", type=positive_int_arg, default=224, help="input size for torchvision architectures (default: 224)")
    p.add_argument("--num-classes", type=positive_int_arg, default=1000, help="classes of a torchvision architecture (default: 1000; 10 to evaluate on the digits)")
    p.add_argument("--seed", type=int, default=0, help="seed for random initialisation (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_quantize)

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
    p.add_argument("--hub", metavar="DIR", help="a classroom server's folder (make hub's HUB_DIR): every learner's log in it, live")
    p.add_argument("--watch", metavar="SECONDS", help="with --hub: print the table again every SECONDS until Ctrl+C")
    p.set_defaults(func=lambda args: _run_module_main(
        "progress", [*(["--hub", args.hub] if args.hub else []), *(["--watch", args.watch] if args.watch else []), *args.paths]))
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
        raise Terminated()

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
    except Terminated:
        _error(args.command, "terminated (no partial output files are left)")
        return EXIT_SIGTERM
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if verbose:
            traceback.print_exc()
        code = exc.exit_code if isinstance(exc, CLIError) else EXIT_FAILURE
        _error(args.command, _one_line(exc, verbose))
        return code
