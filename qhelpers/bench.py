"""The benchmark's measurements (``make bench``): every deployment path of each model, one function per path.

``run_bench`` builds a ``_ModelRun`` per model (its input, float model, calibration images and the rows
measured so far) and hands it to ``_bench_float``, ``_bench_eager_int8``, ``_bench_pt2e`` and
``_bench_executorch`` and ``_bench_server`` (ONNX Runtime, OpenVINO) in turn; each appends rows (a measured latency, or ``skipped`` with the reason)
and compile times. The command, its options and the result files are ``qhelpers.deployment_benchmark``.
"""

from __future__ import annotations

import contextlib
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ._validate import positive_int
from .bench_models import MODELS, PATHS, SERVER_PATHS, build_float, build_int8, calibration_images, check_model, example_input, server_calibration
from .bench_report import add_ratios
from .cpu import is_x86_machine
from .environment import supported_engines
from .latency import MIN_RUNS, measure_latency
from .metrics import model_size_bytes
from .versions import machine_info, pip_spec

__all__ = ["run_bench"]

LABELS = dict(PATHS)


@dataclass
class _ModelRun:
    """One model's run: what every path of it needs, and what they found."""

    name: str
    x: torch.Tensor
    float_model: nn.Module
    calib: list[torch.Tensor]
    threads: int
    min_run_time: float
    warmup: int
    say: Callable[[str], None]
    tmp: Path
    rows: list[dict] = field(default_factory=list)
    compile: list[dict] = field(default_factory=list)

    def row(self, path: str, engine: Optional[str] = None, **fields: Any) -> dict:
        r = {"model": self.name, "path": path, "label": LABELS[path] + (f" ({engine})" if engine else ""), "engine": engine, **fields}
        self.rows.append(r)
        return r

    def timed(self, path: str, fn: Callable, engine: Optional[str] = None, size: Optional[int] = None) -> Optional[dict]:
        """Measure ``fn`` on this model's input: a row with the latency, or with the reason it failed."""
        self.say(f"{self.name}: {LABELS[path]}{' ' + engine if engine else ''}")
        try:
            lat = measure_latency(fn, self.x, threads=self.threads, min_run_time=self.min_run_time, warmup=self.warmup, min_runs=MIN_RUNS)
        except Exception as exc:  # a path that fails here is reported, the others still run
            self.row(path, engine, skipped=_skip_reason(exc))
            return None
        return self.row(path, engine, size_bytes=size, median_ms=round(lat.median_ms, 4), iqr_ms=round(lat.iqr_ms, 4), runs=lat.runs)

    def compiled(self, path: str, model: nn.Module, step: str) -> Optional[Callable]:
        """``torch.compile(model)`` called once (a cold compile, timed into ``compile``), or None with a skipped row."""
        torch._dynamo.reset()
        try:
            t0 = time.perf_counter()
            with _inductor_freezing(), torch.inference_mode():
                fn = torch.compile(model)
                torch.set_num_threads(self.threads)  # a compiled program is specialised for the thread count
                fn(self.x)
            self.compile.append({"model": self.name, "step": step, "seconds": round(time.perf_counter() - t0, 2)})
            return fn
        except Exception as exc:
            self.row(path, skipped=_skip_reason(exc))
            return None


@contextlib.contextmanager
def _inductor_freezing() -> Any:
    """Inductor with freezing, and a cold compile: the on-disk caches of earlier runs are not read or written."""
    import torch._inductor.config as inductor_config

    # freezing: weights as constants, so Inductor pre-packs them (INT8 needs it); no FX graph cache: the
    # compile time in the table is what a learner's first run pays, not a cache hit from the last benchmark
    with inductor_config.patch(freezing=True, fx_graph_cache=False, autotune_local_cache=False):
        yield


def _executorch_pool(threads: int) -> Optional[int]:
    """Size ExecuTorch's own thread pool (XNNPACK ignores torch.set_num_threads) to ``threads`` if no program has
    been loaded in this process yet (resizing under a loaded program crashes it); returns the pool's size."""
    from . import runtime

    try:
        from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool
    except ImportError:
        return None
    with runtime._native_stderr([]):  # the pool's creation logs the cpuinfo lines (runtime.RUNTIME_LOG_NOISE)
        if _threadpool_get_thread_count() != threads and runtime._programs_loaded == 0:
            _unsafe_reset_threadpool(threads)
        return int(_threadpool_get_thread_count())


def _skip_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}"


def _pt2e_x86(model: nn.Module, x: torch.Tensor, calib: list[torch.Tensor], strict: bool) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer, get_default_x86_inductor_quantization_config

    exported = torch.export.export(model, (x,), strict=strict).module()
    prepared = prepare_pt2e(exported, X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))
    with torch.no_grad():
        for image in calib:
            prepared(image)
    return convert_pt2e(prepared)


# --------------------------------------------------------------------------- one function per path


def _bench_float(run: _ModelRun, chosen: Sequence[str]) -> None:
    """Float eager (always: every ratio is against it), and float ``torch.compile`` when chosen."""
    run.timed("float", run.float_model, size=model_size_bytes(run.float_model))
    if "float_compiled" in chosen:
        fn = run.compiled("float_compiled", run.float_model, "torch.compile float (first call)")
        if fn is not None:
            run.timed("float_compiled", fn)


def _bench_eager_int8(run: _ModelRun, engines: Sequence[str]) -> None:
    """Eager INT8, one row per engine; an engine the course does not offer on this machine is a skipped row."""
    available = supported_engines()
    saved = torch.backends.quantized.engine
    for engine in engines:
        if engine not in available:
            run.row("eager_int8", engine, skipped=f"engine {engine!r} is not available on this CPU (available: {sorted(available)})")
            continue
        try:
            int8 = build_int8(run.name, engine)
        except Exception as exc:
            run.row("eager_int8", engine, skipped=_skip_reason(exc))
            continue
        torch.backends.quantized.engine = engine
        try:
            _agreement(run, run.timed("eager_int8", int8, engine, size=model_size_bytes(int8)), int8)
        finally:
            torch.backends.quantized.engine = saved


def _bench_pt2e(run: _ModelRun, chosen: Sequence[str], strict: bool) -> None:
    """PT2E with ``X86InductorQuantizer``: the converted graph, not compiled and compiled (x86 CPUs only)."""
    paths = [p for p in ("pt2e", "pt2e_compiled") if p in chosen]
    if not is_x86_machine():
        for p in paths:
            run.row(p, skipped=f"X86InductorQuantizer targets x86 CPUs; this machine is {platform.machine()}")
        return
    run.say(f"{run.name}: PT2E x86 quantization")
    try:
        pt2e = _pt2e_x86(run.float_model, run.x, run.calib, strict)
    except Exception as exc:
        for p in paths:
            run.row(p, skipped=_skip_reason(exc))
        return
    if "pt2e" in paths:
        run.timed("pt2e", pt2e)
    if "pt2e_compiled" in paths:
        fn = run.compiled("pt2e_compiled", pt2e, "torch.compile PT2E x86 (first call)")
        if fn is not None:
            run.timed("pt2e_compiled", fn)


def _bench_executorch(run: _ModelRun, path: str, strict: bool, pool_threads: Optional[int]) -> None:
    """ExecuTorch with the XNNPACK delegate, float (``et_float``) or INT8 with ``XNNPACKQuantizer`` (``et_int8``):
    lowered to a ``.pte`` (timed into ``compile``), loaded and run; ``pool_threads`` is ExecuTorch's pool size."""
    from .runtime import executorch_available, export_pte, load_pte, quantize_xnnpack

    if not executorch_available():
        run.row(path, skipped=f"ExecuTorch is not installed (pip install {pip_spec('executorch')})")
        return
    run.say(f"{run.name}: {LABELS[path]}: lowering")
    try:
        t0 = time.perf_counter()
        model = run.float_model if path == "et_float" else quantize_xnnpack(run.float_model, (run.x,), run.calib, dynamic_batch=False, strict=strict)
        export = export_pte(model, (run.x,), run.tmp / f"{run.name}_{path}.pte")
        step = "ExecuTorch float: export + lower" if path == "et_float" else "ExecuTorch INT8: quantize + export + lower"
        run.compile.append({"model": run.name, "step": step, "seconds": round(time.perf_counter() - t0, 2)})
        pte = load_pte(export.path)
    except Exception as exc:
        run.row(path, skipped=_skip_reason(exc))
        return
    r = run.timed(path, pte, size=export.bytes)
    if r is not None:
        r.update(delegated_nodes=export.delegated_nodes, non_delegated_nodes=export.non_delegated_nodes, threads=pool_threads)
        if pool_threads != run.threads:
            r["label"] += f" [{pool_threads} threads]"


def _agreement(run: _ModelRun, row: Optional[dict], model: nn.Module) -> None:
    """On the course model: ``row``'s accuracy on the test split and how many of its predictions agree with float's."""
    if row is None or run.name != "course":
        return
    from .data import digits_dataset

    images, labels = digits_dataset("test").tensors
    with torch.inference_mode():
        reference = run.float_model(images).argmax(1)
        preds = torch.cat([model(images[i : i + 250]) for i in range(0, len(images), 250)]).argmax(1)
    row.update(accuracy_pct=round(100.0 * int((preds == labels).sum()) / len(labels), 2),
               float_accuracy_pct=round(100.0 * int((reference == labels).sum()) / len(labels), 2),
               agreement_pct=round(100.0 * int((preds == reference).sum()) / len(labels), 2))


def _bench_server(run: _ModelRun, path: str, subset_size: int) -> None:
    """ONNX Runtime (``torch.onnx.export`` + static QDQ INT8) or OpenVINO (``convert_model`` + ``nncf.quantize``), float
    or INT8 (``qhelpers.server_runtimes``): built (timed into ``compile``), timed, and on the course model its
    accuracy and agreement with float on the test split. ``subset_size``: OpenVINO's calibration images."""
    from . import server_runtimes as sr

    runtime = "onnxruntime" if path.startswith("ort") else "openvino"
    if not sr.server_runtimes_available()[runtime]:
        run.row(path, skipped=f"{runtime} is not installed ({sr.server_install_command()})")
        return
    run.say(f"{run.name}: {LABELS[path]}: building")
    calib = server_calibration(run.name) if path.endswith("int8") else None
    try:
        if path == "ort_float":
            model = sr.onnxruntime_float(run.float_model, run.x, run.tmp, threads=run.threads, name=f"{run.name}_ort")
        elif path == "ort_int8":
            model = sr.onnxruntime_int8(run.float_model, run.x, calib, run.tmp, threads=run.threads, name=f"{run.name}_ort")
        else:
            model = sr.openvino_model(run.float_model, run.x, calib, threads=run.threads, subset_size=subset_size)
    except Exception as exc:
        run.row(path, skipped=_skip_reason(exc))
        return
    step = {"ort_float": "ONNX Runtime float: torch.onnx.export + session",
            "ort_int8": "ONNX Runtime INT8: export + quantize_static (QDQ) + session",
            "ov_float": "OpenVINO float: convert_model + compile",
            "ov_int8": "OpenVINO INT8: convert_model + nncf.quantize + compile"}[path]
    run.compile.append({"model": run.name, "step": step, "seconds": round(model.seconds, 2)})
    r = run.timed(path, model, size=model.size_bytes)
    _agreement(run, r, model)


def _chosen_paths(paths: Optional[Sequence[str]]) -> list[str]:
    keys = [k for k, _ in PATHS]
    chosen = list(paths) if paths is not None else keys
    if not chosen or any(p not in keys for p in chosen):
        raise ValueError(f"paths must be a non-empty subset of {keys}, got {paths!r}")
    return chosen if "float" in chosen else ["float", *chosen]  # every ratio is against float eager


def run_bench(
    models: Sequence[str] = tuple(MODELS),
    engines: Optional[dict[str, Sequence[str]]] = None,
    paths: Optional[Sequence[str]] = None,
    threads: int = 1,
    min_run_time: float = 0.5,
    warmup: int = 2,
    progress: Optional[Callable[[str], None]] = None,
    server_subset: int = 300,
) -> dict:
    """Measure every path of ``PATHS`` (or the keys in ``paths``) for each model; returns a JSON-ready dict.

    ``rows``: one per (model, path[, engine]) with ``median_ms``, ``iqr_ms``,
    ``runs`` (at least ``qh.MIN_RUNS``), ``size_bytes`` (where a file or state_dict exists), the ratios
    ``vs_float_eager`` and ``vs_float_compiled`` (float median / this median;
    above 1 is faster), or ``skipped`` with the reason; on the course model the eager INT8 and server rows
    also have ``accuracy_pct``, ``float_accuracy_pct`` and ``agreement_pct`` (the test split's predictions that
    agree with float's). ``server_subset``: OpenVINO INT8's calibration images (NNCF's default 300). ``compile``: seconds
    spent compiling or lowering, per model and step. ``engines`` overrides the
    eager INT8 engines per model. The quantized engine, Inductor's freezing flag,
    torch's and ExecuTorch's thread counts are restored at the end.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    for name in models:
        check_model(name)
    chosen = _chosen_paths(paths)
    positive_int("threads", threads)
    engines = engines or {}
    say = progress or (lambda msg: None)
    start, saved_engine, saved_threads = time.perf_counter(), torch.backends.quantized.engine, torch.get_num_threads()
    settings = {"batch": 1, "threads": threads, "min_run_time_s": min_run_time, "warmup": warmup, "min_samples": MIN_RUNS}
    result: dict = {"machine": machine_info(), "settings": settings, "rows": [], "compile": []}
    pool_threads: Optional[int] = None
    try:
        with tempfile.TemporaryDirectory(prefix="qh_bench_") as tmp:
            for name in models:
                spec = MODELS[name]
                run = _ModelRun(name, example_input(name, 1), build_float(name), calibration_images(name), threads, min_run_time, warmup, say, Path(tmp))
                _bench_float(run, chosen)
                if "eager_int8" in chosen:
                    _bench_eager_int8(run, engines.get(name, spec["engines"]))
                if "pt2e" in chosen or "pt2e_compiled" in chosen:
                    _bench_pt2e(run, chosen, spec["strict"])
                for path in ("et_float", "et_int8"):
                    if path in chosen:
                        if pool_threads is None:
                            pool_threads = _executorch_pool(threads)  # once, before the first program is loaded
                        _bench_executorch(run, path, spec["strict"], pool_threads)
                for path in SERVER_PATHS:
                    if path in chosen:
                        _bench_server(run, path, server_subset)
                torch._dynamo.reset()
                add_ratios(run.rows)
                result["rows"].extend(run.rows)
                result["compile"].extend(run.compile)
    finally:
        torch.backends.quantized.engine = saved_engine
        torch.set_num_threads(saved_threads)
    result["machine"]["load_average_1min_end"] = machine_info()["load_average_1min"]
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result
