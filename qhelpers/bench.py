"""The benchmark command: float vs INT8 size and latency, measured in one run on this machine.

Introduced in notebooks/02_pretrained_quantized_models.ipynb.

    python -m qhelpers.bench            # make bench: all models, engines, batch sizes, 1 and 2 threads
    python -m qhelpers.bench --quick    # make bench-quick: no ResNet50, batch 4 not 8, shorter timing (under 2 minutes)

Writes ``results/bench[_quick].json``, ``.md`` and ``.png`` (``results/`` is
git-ignored) and prints the markdown table. The headline numbers are ratios
(INT8 speedup = float median / INT8 median; size ratio = float bytes / INT8
bytes); absolute times are labelled with the machine they came from. The
torchvision architectures have random weights (speed and size do not depend on
the values); the course model is the trained one and its shipped INT8 artifact.
Latency is ``qh.measure_latency`` (torch.utils.benchmark: warm-up, fixed
threads, median and interquartile range).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from . import data as _data
from .benchmark import measure_latency
from .metrics import model_size_bytes
from .models import load_course_model
from .pretrained import CourseNet_QuantizedWeights, _quiet_torch_internals, course_net, is_quantized, quantize_course_model

__all__ = ["MODELS", "build_float", "build_int8", "example_input", "run_bench", "markdown_table", "plot_bench", "write_results", "machine_info"]

TORCHVISION_ENGINES = ("fbgemm", "qnnpack")  # torchvision's quantize=True knows only these two
MODELS: dict[str, dict] = {
    "course": {"input": (1, 28, 28), "batches": (1, 64), "engines": ("x86", "fbgemm", "qnnpack")},
    "resnet18": {"input": (3, 224, 224), "batches": (1, 8), "engines": TORCHVISION_ENGINES},
    "mobilenet_v2": {"input": (3, 224, 224), "batches": (1, 8), "engines": TORCHVISION_ENGINES},
    "resnet50": {"input": (3, 224, 224), "batches": (1, 8), "engines": TORCHVISION_ENGINES},
}
QUICK_MODELS = ("course", "resnet18", "mobilenet_v2")
QUICK_LARGER_BATCH = 4  # quick mode's larger batch for the ImageNet models (the full run uses 8)


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
    """The INT8 model quantized for ``engine`` (which is left active, as torchvision's builders do).

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


def run_bench(
    models: Sequence[str] = tuple(MODELS),
    engines: Optional[dict[str, Sequence[str]]] = None,
    batches: Optional[dict[str, Sequence[int]]] = None,
    threads: Sequence[int] = (1, 2),
    min_run_time: float = 0.5,
    warmup: int = 2,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Measure sizes and latencies; returns a JSON-ready dict with ``machine``, ``sizes``, ``latency``, ``speedups``.

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
            model_engines, model_batches = tuple(engines.get(name, spec["engines"])), tuple(batches.get(name, spec["batches"]))
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
    result["speedups"] = _speedups(result["latency"])
    result["machine"]["load_average_1min_end"] = machine_info()["load_average_1min"]
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _speedups(rows: list[dict]) -> list[dict]:
    floats = {(r["model"], r["batch"], r["threads"]): r["median_ms"] for r in rows if r["kind"] == "float"}
    out = []
    for r in rows:
        if r["kind"] != "int8":
            continue
        f = floats[(r["model"], r["batch"], r["threads"])]
        out.append({"model": r["model"], "engine": r["engine"], "batch": r["batch"], "threads": r["threads"],
                    "float_ms": f, "int8_ms": r["median_ms"], "speedup": round(f / r["median_ms"], 3)})
    return out


def markdown_table(result: dict) -> str:
    """The result as markdown: a machine line, the size table and the latency/speedup table."""
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


def plot_bench(result: dict):
    """A figure: INT8 speedup per model (bars per engine and thread count), batch 1 and the larger batch, and size ratios."""
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


def update_readme(table: str, readme: Path) -> None:
    """Replace the text between the bench markers in ``readme`` with ``table`` (atomically).

    This is how the README's results section gets its numbers: from one
    benchmark run on one machine, never copied by hand.
    """
    text = Path(readme).read_text()
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise ValueError(f"{readme} must contain the markers {README_START!r} and {README_END!r} once each")
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    _data.atomic_write_bytes(Path(readme), f"{head}{README_START}\n{table.strip()}\n{README_END}{tail}".encode())


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"models {list(QUICK_MODELS)}, larger batch {QUICK_LARGER_BATCH}, shorter timing (under 2 minutes)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="measure only these models")
    parser.add_argument("--out", type=Path, default=_data.repo_dir() / "results", help="output folder (default: results/)")
    parser.add_argument("--update-readme", action="store_true", help="also write the tables into README.md's results section (full runs only)")
    args = parser.parse_args(argv)
    if args.update_readme and (args.quick or args.models):
        parser.error("--update-readme needs a full run (no --quick, no --models)")
    from .environment import silence_known_deprecations

    silence_known_deprecations()
    models = args.models or (QUICK_MODELS if args.quick else tuple(MODELS))
    timing = {"min_run_time": 0.1, "warmup": 1} if args.quick else {"min_run_time": 1.0, "warmup": 3}
    batches = {name: (MODELS[name]["batches"][0], QUICK_LARGER_BATCH) for name in models if name != "course"} if args.quick else None
    result = run_bench(models, batches=batches, **timing, progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
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
