"""The benchmark command: every deployment path of the course, measured in one run on this machine.

Introduced in notebooks/02_pretrained_quantized_models.ipynb; the ExecuTorch rows
in notebooks/08_deploy_with_executorch.ipynb.

    python -m qhelpers.deployment_benchmark            # make bench: the course model, MobileNetV2, ResNet18, ResNet50
    python -m qhelpers.deployment_benchmark --quick    # make bench-quick: the course model only, shorter timing (under 3 minutes)

For each model, at batch 1 and a fixed thread count (``--threads``, default 1),
the paths (``PATHS``): float eager; float ``torch.compile`` (Inductor, freezing);
eager INT8 on each quantized engine of the model (x86/fbgemm, qnnpack); PT2E with
``X86InductorQuantizer``, not compiled and compiled (freezing); ExecuTorch with the
XNNPACK delegate, float and INT8 (``XNNPACKQuantizer``). A path that cannot run here
(an engine this CPU lacks, ExecuTorch not installed, a compile error) is a row that
says why, never a crash.

Each latency is ``qh.measure_latency`` (warm-up, then at least 10 timed samples:
median and interquartile range). The headline numbers are ratios: float eager
median / path median, and float compiled median / path median. Compile and
lowering times (the first ``torch.compile`` call, ``to_edge_transform_and_lower``)
are a separate table. Writes ``results/bench[_quick].json``, ``.md`` and ``.png``
(``results/`` is git-ignored) and prints the markdown; ``--update-readme`` (full
runs only) rewrites README.md's results section between the bench markers. The
torchvision architectures have random weights (speed and size do not depend on the
values); the course model is the trained one, calibrated on the bundled split.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from . import data as _data
from .latency import measure_latency
from .metrics import model_size_bytes
from .models import load_course_model
from .pretrained import CourseNet_QuantizedWeights, _quiet_torch_internals, course_net, is_quantized, quantize_course_model

__all__ = ["MODELS", "PATHS", "QUICK_MODELS", "MIN_SAMPLES", "build_float", "build_int8", "example_input", "run_bench", "markdown_table", "plot_bench", "compare_engines", "engines_markdown", "plot_engines", "write_results", "machine_info", "update_readme", "readme_section"]

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
)
MIN_SAMPLES = 10  # timed samples per cell at least (median and IQR need several)
CALIB_IMAGES = 8  # calibration images for the PT2E paths (latency does not depend on calibration quality)


def _check_model(name: str) -> dict:
    if name not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {name!r}")
    return MODELS[name]


def build_float(name: str) -> nn.Module:
    """The float model in eval mode: the trained course model, or torchvision's float architecture (random weights)."""
    _check_model(name)
    if name == "course":
        return load_course_model()
    import torchvision

    return getattr(torchvision.models, name)(weights=None).eval()


def build_int8(name: str, engine: str) -> nn.Module:
    """The eager INT8 model quantized for ``engine`` (which is left active, as torchvision's builders do).

    course: the shipped artifact for its backend, otherwise the trained model
    quantized on the calibration split. torchvision: ``weights=None,
    quantize=True, backend=engine`` (random weights, calibrated by torchvision
    on one random image). Raises ``RuntimeError`` if the result is not
    quantized (torchvision with ``backend="x86"``).
    """
    spec = _check_model(name)
    if engine not in spec["engines"]:
        raise ValueError(f"engine for {name} must be one of {spec['engines']}, got {engine!r}")
    if name == "course":
        if engine == CourseNet_QuantizedWeights.DEFAULT.meta["backend"]:
            model = course_net(weights=CourseNet_QuantizedWeights.DEFAULT, quantize=True)
        else:
            model = quantize_course_model(load_course_model(), _data.digits_loader("calib"), engine=engine)
    else:
        from torchvision.models import quantization as qmodels

        with _quiet_torch_internals():
            model = getattr(qmodels, name)(weights=None, quantize=True, backend=engine).eval()
    if not is_quantized(model):
        raise RuntimeError(f"{name} built for engine {engine!r} has no quantized modules")
    return model


def example_input(name: str, batch: int, seed: int = 0) -> torch.Tensor:
    """A seeded random input batch (N, C, H, W) float32 for ``name``."""
    spec = _check_model(name)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return torch.randn((batch, *spec["input"]), generator=torch.Generator().manual_seed(seed))


def _calibration(name: str) -> list[torch.Tensor]:
    """Single images for the PT2E paths (exported at batch 1): bundled calibration digits, or seeded noise."""
    if name == "course":
        images = _data.digits_dataset("calib", CALIB_IMAGES)
        return [images[i][0].unsqueeze(0) for i in range(len(images))]
    return [example_input(name, 1, seed=1 + i) for i in range(2)]


def machine_info() -> dict:
    """What the absolute times depend on: CPU, capability, cores, versions, load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "quantized_engines": [e for e in torch.backends.quantized.supported_engines if e != "none"],
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }


def _latency(fn: Callable, x: torch.Tensor, threads: int, min_run_time: float, warmup: int) -> dict:
    """``measure_latency`` with at least ``MIN_SAMPLES`` samples (asked for when it takes ``min_runs``; checked either way)."""
    kwargs: dict[str, Any] = {"threads": threads, "min_run_time": min_run_time, "warmup": warmup}
    if "min_runs" in inspect.signature(measure_latency).parameters:
        kwargs["min_runs"] = MIN_SAMPLES
    lat = measure_latency(fn, x, **kwargs)
    tries = 1
    while lat.runs < MIN_SAMPLES and tries < 4:  # an older measure_latency: give it more time until it has enough samples
        kwargs["min_run_time"] *= 2 * MIN_SAMPLES / max(1, lat.runs)
        lat, tries = measure_latency(fn, x, **kwargs), tries + 1
    return {"median_ms": round(lat.median_ms, 4), "iqr_ms": round(lat.iqr_ms, 4), "runs": lat.runs}


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
    been loaded in this process yet (``runtime.set_executorch_threads``); returns the pool's size."""
    from . import runtime

    try:
        return runtime.set_executorch_threads(threads)
    except ModuleNotFoundError:
        return None
    except RuntimeError:  # a program is already loaded: the pool keeps its size
        from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

        return int(_threadpool_get_thread_count())


def _skip_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}"


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def _pt2e_x86(model: nn.Module, x: torch.Tensor, calib: list[torch.Tensor], strict: bool) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer, get_default_x86_inductor_quantization_config

    exported = torch.export.export(model, (x,), strict=strict).module()
    prepared = prepare_pt2e(exported, X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))
    with torch.no_grad():
        for image in calib:
            prepared(image)
    return convert_pt2e(prepared)


def run_bench(
    models: Sequence[str] = tuple(MODELS),
    engines: Optional[dict[str, Sequence[str]]] = None,
    paths: Optional[Sequence[str]] = None,
    threads: int = 1,
    min_run_time: float = 0.5,
    warmup: int = 2,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Measure every path of ``PATHS`` (or the keys in ``paths``) for each model; returns a JSON-ready dict.

    ``rows``: one per (model, path[, engine]) with ``median_ms``, ``iqr_ms``,
    ``runs``, ``size_bytes`` (where a file or state_dict exists), the ratios
    ``vs_float_eager`` and ``vs_float_compiled`` (float median / this median;
    above 1 is faster), or ``skipped`` with the reason. ``compile``: seconds
    spent compiling or lowering, per model and step. ``engines`` overrides the
    eager INT8 engines per model. The quantized engine, Inductor's freezing flag,
    torch's and ExecuTorch's thread counts are restored at the end.
    """
    for name in models:
        _check_model(name)
    keys = [k for k, _ in PATHS]
    chosen = list(paths) if paths is not None else keys
    unknown = [p for p in chosen if p not in keys]
    if unknown or not chosen:
        raise ValueError(f"paths must be a non-empty subset of {keys}, got {paths!r}")
    if "float" not in chosen:
        chosen.insert(0, "float")  # every ratio is against float eager
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    engines = engines or {}
    say = progress or (lambda msg: None)
    labels = dict(PATHS)
    start, saved_engine, saved_threads = time.perf_counter(), torch.backends.quantized.engine, torch.get_num_threads()
    result: dict = {"machine": machine_info(), "settings": {"batch": 1, "threads": threads, "min_run_time_s": min_run_time, "warmup": warmup, "min_samples": MIN_SAMPLES},
                    "rows": [], "compile": []}
    from .runtime import executorch_available, export_pte, load_pte, quantize_xnnpack

    have_et = executorch_available()
    et_threads: Optional[int] = None
    available_engines = set(torch.backends.quantized.supported_engines)
    tmp = tempfile.TemporaryDirectory(prefix="qh_bench_")
    try:
        for name in models:
            spec = MODELS[name]
            x = example_input(name, 1)
            float_model = build_float(name)
            calib = _calibration(name)
            model_rows: list[dict] = []

            def row(path: str, engine: Optional[str] = None, **fields: Any) -> dict:
                r = {"model": name, "path": path, "label": labels[path] + (f" ({engine})" if engine else ""), "engine": engine, **fields}
                model_rows.append(r)
                return r

            def timed(path: str, fn: Callable, engine: Optional[str] = None, size: Optional[int] = None) -> None:
                say(f"{name}: {labels[path]}{' ' + engine if engine else ''}")
                try:
                    row(path, engine, size_bytes=size, **_latency(fn, x, threads, min_run_time, warmup))
                except Exception as exc:  # a path that fails here is reported, the others still run
                    row(path, engine, skipped=_skip_reason(exc))

            def compiled(path: str, model: nn.Module, step: str) -> Optional[Callable]:
                torch._dynamo.reset()
                try:
                    t0 = time.perf_counter()
                    with _inductor_freezing(), torch.inference_mode():
                        fn = torch.compile(model)
                        torch.set_num_threads(threads)  # a compiled program is specialised for the thread count
                        fn(x)
                    result["compile"].append({"model": name, "step": step, "seconds": round(time.perf_counter() - t0, 2)})
                    return fn
                except Exception as exc:
                    row(path, skipped=_skip_reason(exc))
                    return None

            timed("float", float_model, size=model_size_bytes(float_model))
            if "float_compiled" in chosen:
                fn = compiled("float_compiled", float_model, "torch.compile float (first call)")
                if fn is not None:
                    timed("float_compiled", fn)
            if "eager_int8" in chosen:
                for engine in engines.get(name, spec["engines"]):
                    if engine not in available_engines:
                        row("eager_int8", engine, skipped=f"engine {engine!r} is not available on this CPU (available: {sorted(available_engines - {'none'})})")
                        continue
                    try:
                        int8 = build_int8(name, engine)
                    except Exception as exc:
                        row("eager_int8", engine, skipped=_skip_reason(exc))
                        continue
                    torch.backends.quantized.engine = engine
                    timed("eager_int8", int8, engine, size=model_size_bytes(int8))
                    torch.backends.quantized.engine = saved_engine
            if "pt2e" in chosen or "pt2e_compiled" in chosen:
                pt2e = None
                if not _is_x86():
                    for p in ("pt2e", "pt2e_compiled"):
                        if p in chosen:
                            row(p, skipped=f"X86InductorQuantizer targets x86 CPUs; this machine is {platform.machine()}")
                else:
                    say(f"{name}: PT2E x86 quantization")
                    try:
                        pt2e = _pt2e_x86(float_model, x, calib, spec["strict"])
                    except Exception as exc:
                        for p in ("pt2e", "pt2e_compiled"):
                            if p in chosen:
                                row(p, skipped=_skip_reason(exc))
                if pt2e is not None and "pt2e" in chosen:
                    timed("pt2e", pt2e)
                if pt2e is not None and "pt2e_compiled" in chosen:
                    fn = compiled("pt2e_compiled", pt2e, "torch.compile PT2E x86 (first call)")
                    if fn is not None:
                        timed("pt2e_compiled", fn)
            for path in ("et_float", "et_int8"):
                if path not in chosen:
                    continue
                if not have_et:
                    row(path, skipped="ExecuTorch is not installed (pip install executorch==1.5.1)")
                    continue
                say(f"{name}: {labels[path]}: lowering")
                try:
                    if et_threads is None:
                        et_threads = _executorch_pool(threads)  # once, before the first program is loaded
                    t0 = time.perf_counter()
                    model = float_model if path == "et_float" else quantize_xnnpack(float_model, (x,), calib, dynamic_batch=False, strict=spec["strict"])
                    export = export_pte(model, (x,), Path(tmp.name) / f"{name}_{path}.pte")
                    step = "ExecuTorch float: export + lower" if path == "et_float" else "ExecuTorch INT8: quantize + export + lower"
                    result["compile"].append({"model": name, "step": step, "seconds": round(time.perf_counter() - t0, 2)})
                    pte = load_pte(export.path)
                except Exception as exc:
                    row(path, skipped=_skip_reason(exc))
                    continue
                timed(path, pte, size=export.bytes)
                model_rows[-1].update(delegated_nodes=export.delegated_nodes, non_delegated_nodes=export.non_delegated_nodes, threads=et_threads)
                if et_threads != threads:
                    model_rows[-1]["label"] += f" [{et_threads} threads]"
            torch._dynamo.reset()
            _add_ratios(model_rows)
            result["rows"].extend(model_rows)
    finally:
        tmp.cleanup()
        torch.backends.quantized.engine = saved_engine
        torch.set_num_threads(saved_threads)
    result["machine"]["load_average_1min_end"] = machine_info()["load_average_1min"]
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


# --------------------------------------------------------------------------- notebook 02: float vs INT8 per engine


def compare_engines(
    models: Sequence[str] = tuple(MODELS),
    engines: Optional[dict[str, Sequence[str]]] = None,
    batches: Optional[dict[str, Sequence[int]]] = None,
    threads: Sequence[int] = (1, 2),
    min_run_time: float = 0.5,
    warmup: int = 2,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Float vs eager INT8 per engine, back to back: a JSON-ready dict with ``machine``, ``sizes``, ``latency``, ``speedups``.

    The engine comparison of notebook 02 (``make bench`` measures every path
    with ``run_bench``). Every latency has at least ``qh.MIN_RUNS`` samples.

    ``engines``/``batches`` override ``MODELS[name]`` per model. Each INT8
    model runs with the engine it was quantized for. The active engine is
    restored at the end.
    """
    for name in models:
        _check_model(name)
    if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
        raise ValueError(f"threads must be positive ints, got {threads!r}")
    engines, batches = engines or {}, batches or {}
    start, saved_engine = time.perf_counter(), torch.backends.quantized.engine
    result: dict = {"machine": machine_info(), "settings": {"threads": list(threads), "min_run_time_s": min_run_time, "warmup": warmup}, "sizes": [], "latency": []}
    say = progress or (lambda msg: None)
    try:
        for name in models:
            spec = MODELS[name]
            model_engines, model_batches = tuple(engines.get(name, spec["engines"])), tuple(batches.get(name, (1,)))
            variants = [("float", None, build_float(name))] + [("int8", e, build_int8(name, e)) for e in model_engines]
            float_bytes = model_size_bytes(variants[0][2])
            for kind, engine, model in variants[1:]:
                int8_bytes = model_size_bytes(model)
                result["sizes"].append(
                    {"model": name, "engine": engine, "float_bytes": float_bytes, "int8_bytes": int8_bytes, "ratio": round(float_bytes / int8_bytes, 3)}
                )
            # Float and INT8 are measured back to back for each (batch, threads), so slow drifts in the
            # machine's load touch both sides of a ratio alike.
            for batch in model_batches:
                x = example_input(name, batch)
                for t in threads:
                    for kind, engine, model in variants:
                        if engine is not None:
                            torch.backends.quantized.engine = engine
                        say(f"{name} {kind} {engine or ''} batch {batch} threads {t}")
                        lat = measure_latency(model, x, threads=t, min_run_time=min_run_time, warmup=warmup)
                        result["latency"].append(
                            {"model": name, "kind": kind, "engine": engine, "batch": batch, "threads": t,
                             "median_ms": round(lat.median_ms, 4), "iqr_ms": round(lat.iqr_ms, 4), "runs": lat.runs}
                        )
    finally:
        torch.backends.quantized.engine = saved_engine
    result["speedups"] = _engine_speedups(result["latency"])
    result["machine"]["load_average_1min_end"] = machine_info()["load_average_1min"]
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _engine_speedups(rows: list[dict]) -> list[dict]:
    floats = {(r["model"], r["batch"], r["threads"]): r["median_ms"] for r in rows if r["kind"] == "float"}
    out = []
    for r in rows:
        if r["kind"] != "int8":
            continue
        f = floats[(r["model"], r["batch"], r["threads"])]
        out.append({"model": r["model"], "engine": r["engine"], "batch": r["batch"], "threads": r["threads"],
                    "float_ms": f, "int8_ms": r["median_ms"], "speedup": round(f / r["median_ms"], 3)})
    return out


def engines_markdown(result: dict) -> str:
    """``compare_engines``' result as markdown: a machine line, the size table and the latency/speedup table."""
    m = result["machine"]
    lines = [
        f"Measured {m['date_utc']} UTC on {m['cpu']} ({m['cpu_count']} cores, {m['cpu_capability']}), torch {m['torch']}; "
        f"load average {m['load_average_1min']} at start, {m.get('load_average_1min_end')} at end. "
        "Ratios are the headline; absolute times belong to this machine. torchvision models have random weights.",
        "",
        "| model | engine | float MB | INT8 MB | size ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for s in result["sizes"]:
        lines.append(f"| {s['model']} | {s['engine']} | {s['float_bytes'] / 1e6:.3f} | {s['int8_bytes'] / 1e6:.3f} | {s['ratio']:.2f}x |")
    lines += ["", "| model | engine | batch | threads | float ms | INT8 ms | INT8 speedup |", "|---|---|---:|---:|---:|---:|---:|"]
    for s in result["speedups"]:
        lines.append(f"| {s['model']} | {s['engine']} | {s['batch']} | {s['threads']} | {s['float_ms']:.2f} | {s['int8_ms']:.2f} | {s['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot_engines(result: dict):
    """``compare_engines``' result as a figure: INT8 speedup per model (bars per engine and thread count), batch 1 and the larger batch, and size ratios."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ratio_label = FuncFormatter(lambda v, _: f"{v:g}x")
    speed = result["speedups"]
    models = list(dict.fromkeys(s["model"] for s in speed))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [2, 2, 1]})
    for ax, which in zip(axes[:2], ("batch 1", "larger batch")):
        keys = list(dict.fromkeys((s["engine"], s["threads"]) for s in speed))
        width = 0.8 / max(1, len(keys))
        for k, (engine, t) in enumerate(keys):
            xs, ys = [], []
            for i, name in enumerate(models):
                rows = [s for s in speed if s["model"] == name and s["engine"] == engine and s["threads"] == t]
                rows = [r for r in rows if (r["batch"] == 1) == (which == "batch 1")]
                if rows:
                    xs.append(i + (k - (len(keys) - 1) / 2) * width)
                    ys.append(rows[0]["speedup"])
            ax.bar(xs, ys, width, label=f"{engine}, {t} thr")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")  # ratios: 2x faster and 2x slower sit at the same distance from 1
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ratio_label)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(range(len(models)), models)
        ax.set_title(f"INT8 speedup, {which} (log scale)")
        ax.set_ylabel("float time / INT8 time")
    axes[0].legend(fontsize=7)
    sizes = {}
    for s in result["sizes"]:
        sizes.setdefault(s["model"], s["ratio"])
    axes[2].bar(list(sizes), list(sizes.values()), color="tab:gray")
    axes[2].axhline(4.0, color="black", lw=0.8, ls="--")
    axes[2].set_title("size ratio (float / INT8)")
    axes[2].tick_params(axis="x", rotation=30)
    fig.suptitle(f"{result['machine']['cpu']}, {result['machine']['date_utc']} UTC", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- make bench: every path


def _add_ratios(rows: list[dict]) -> None:
    """``vs_float_eager`` and ``vs_float_compiled`` (float median / row median) and ``size_ratio`` on each measured row."""
    base = {r["path"]: r for r in rows if r["path"] in ("float", "float_compiled") and "median_ms" in r}
    for r in rows:
        if "median_ms" not in r:
            continue
        for key, path in (("vs_float_eager", "float"), ("vs_float_compiled", "float_compiled")):
            r[key] = round(base[path]["median_ms"] / r["median_ms"], 3) if path in base else None
        float_size, size = base.get("float", {}).get("size_bytes"), r.get("size_bytes")
        r["size_ratio"] = round(float_size / size, 3) if float_size and size else None


def _ratio(value: Optional[float]) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def markdown_table(result: dict) -> str:
    """The result as markdown: a machine line, the latency table with the ratios, and the compile-time table."""
    m, st = result["machine"], result["settings"]
    lines = [
        f"Measured {m['date_utc']} UTC on {m['cpu']} ({m['cpu_count']} cores, {m['cpu_capability']}), torch {m['torch']}; "
        f"batch {st['batch']}, {st['threads']} thread(s), at least {st['min_samples']} timed samples per cell; "
        f"load average {m['load_average_1min']} at start, {m.get('load_average_1min_end')} at end. "
        "The ratios are the headline (float median / path median: above 1x is faster); absolute times belong to this machine. "
        "torchvision models have random weights.",
        "",
        "| model | path | median ms | IQR ms | samples | vs float eager | vs float compiled | MB | size ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['label']} | skipped: {r['skipped'].replace('|', '/')} | | | | | | |")
            continue
        mb = f"{r['size_bytes'] / 1e6:.3f}" if r.get("size_bytes") else "-"
        lines.append(f"| {r['model']} | {r['label']} | {r['median_ms']:.3f} | {r['iqr_ms']:.3f} | {r['runs']} | "
                     f"{_ratio(r.get('vs_float_eager'))} | {_ratio(r.get('vs_float_compiled'))} | {mb} | {_ratio(r.get('size_ratio'))} |")
    if result["compile"]:
        lines += ["", "Compile and lowering times (paid once, not in the latencies above; a cold compile: Inductor's on-disk cache is off while the benchmark compiles):", "", "| model | step | seconds |", "|---|---|---:|"]
        lines += [f"| {c['model']} | {c['step']} | {c['seconds']:.1f} |" for c in result["compile"]]
    return "\n".join(lines) + "\n"


def plot_bench(result: dict):
    """A figure: speed against float eager for every measured path of every model (log scale)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def bar_label(r: dict) -> str:  # x86 and fbgemm are the same family of kernels: one colour for both
        if r["path"] == "eager_int8" and r.get("engine") in ("x86", "fbgemm"):
            return f"{dict(PATHS)['eager_int8']} (x86/fbgemm)"
        return r["label"].split(" [")[0]

    order = [k for k, _ in PATHS]
    rows = sorted((r for r in result["rows"] if r.get("vs_float_eager")), key=lambda r: (order.index(r["path"]), r.get("engine") == "qnnpack"))
    rows = [{**r, "label": bar_label(r)} for r in rows]
    models = list(dict.fromkeys(r["model"] for r in result["rows"]))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 2.5 * len(models) + 4), 5.5))
    width = 0.8 / max(1, len(labels))
    for k, label in enumerate(labels):
        xs, ys = [], []
        for i, name in enumerate(models):
            found = [r for r in rows if r["model"] == name and r["label"] == label]
            if found:
                xs.append(i + (k - (len(labels) - 1) / 2) * width)
                ys.append(found[0]["vs_float_eager"])
        ax.bar(xs, ys, width, label=label)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")  # ratios: 2x faster and 2x slower sit at the same distance from 1
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("float eager time / path time")
    ax.set_title(f"speed against float eager, batch {result['settings']['batch']}, {result['settings']['threads']} thread(s) (log scale)")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1))  # below the axes: no bar hidden
    fig.suptitle(f"{result['machine']['cpu']}, {result['machine']['date_utc']} UTC", fontsize=9)
    fig.tight_layout()
    return fig


def write_results(result: dict, out_dir: Path, stem: str = "bench") -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``out_dir`` (atomically); returns the paths."""
    import io

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("json", "md", "png")}
    _data.atomic_write_bytes(paths["json"], (json.dumps(result, indent=2) + "\n").encode())
    _data.atomic_write_bytes(paths["md"], markdown_table(result).encode())
    fig = plot_bench(result)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    _data.atomic_write_bytes(paths["png"], buf.getvalue())
    return paths


README_START = "<!-- bench:start (written by `make bench`; do not edit by hand) -->"
README_END = "<!-- bench:end -->"


def _digest(table: str) -> str:
    import hashlib

    return hashlib.sha256(table.strip().encode()).hexdigest()[:16]


def update_readme(table: str, readme: Path) -> None:
    """Replace the text between the bench markers in ``readme`` with ``table`` and its fingerprint (atomically).

    This is how the README's results section gets its numbers: from one
    benchmark run on one machine, never copied by hand. The last line of the
    section, ``<!-- bench:sha256 ... -->``, is a digest of the table, so a
    hand edit shows (``readme_section`` checks it).
    """
    text = Path(readme).read_text()
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise ValueError(f"{readme} must contain the markers {README_START!r} and {README_END!r} once each")
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    section = f"{table.strip()}\n<!-- bench:sha256 {_digest(table)} -->"
    _data.atomic_write_bytes(Path(readme), f"{head}{README_START}\n{section}\n{README_END}{tail}".encode())


def readme_section(readme: Path) -> tuple[str, Optional[bool]]:
    """The table between the bench markers of ``readme``, and whether its digest matches (None: no digest line)."""
    text = Path(readme).read_text()
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise ValueError(f"{readme} must contain the markers {README_START!r} and {README_END!r} once each")
    section = text.split(README_START)[1].split(README_END)[0].strip()
    lines = section.splitlines()
    if not lines or not lines[-1].startswith("<!-- bench:sha256 "):
        return section, None
    table = "\n".join(lines[:-1])
    return table, lines[-1] == f"<!-- bench:sha256 {_digest(table)} -->"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.deployment_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"models {list(QUICK_MODELS)}, shorter timing (under 3 minutes)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="measure only these models")
    parser.add_argument("--paths", nargs="+", choices=[k for k, _ in PATHS], help="measure only these paths (float eager is always measured)")
    parser.add_argument("--threads", type=int, default=1, help="threads for every path (default: 1)")
    parser.add_argument("--out", type=Path, default=_data.repo_dir() / "results", help="output folder (default: results/)")
    parser.add_argument("--update-readme", action="store_true", help="also write the tables into README.md's results section (full runs only)")
    args = parser.parse_args(argv)
    if args.update_readme and (args.quick or args.models or args.paths):
        parser.error("--update-readme needs a full run (no --quick, --models or --paths)")
    if args.threads < 1:
        parser.error(f"--threads must be a positive int, got {args.threads}")
    from .environment import silence_known_deprecations
    from .modern import silence_pt2e_noise

    silence_known_deprecations()
    silence_pt2e_noise()
    models = args.models or (QUICK_MODELS if args.quick else tuple(MODELS))
    timing = {"min_run_time": 0.1, "warmup": 1} if args.quick else {"min_run_time": 1.0, "warmup": 3}
    result = run_bench(models, paths=args.paths, threads=args.threads, **timing, progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    result["mode"] = "quick" if args.quick else "full"
    paths = write_results(result, args.out, "bench_quick" if args.quick else "bench")
    print(markdown_table(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {result['seconds']} s")
    if args.update_readme:
        update_readme(markdown_table(result), _data.repo_dir() / "README.md")
        print("updated the results section of README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
