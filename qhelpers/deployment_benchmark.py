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

Each latency is ``qh.measure_latency`` (warm-up, then at least ``qh.MIN_RUNS`` timed samples:
median and interquartile range). The headline numbers are ratios: float eager
median / path median, and float compiled median / path median. Compile and
lowering times (the first ``torch.compile`` call, ``to_edge_transform_and_lower``)
are a separate table. Writes ``results/bench[_quick].json``, ``.md`` and ``.png``
(``results/`` is git-ignored) and prints the markdown; ``--update-readme`` (full
runs only) rewrites README.md's results section between the bench markers. The
torchvision architectures have random weights (speed and size do not depend on the
values); the course model is the trained one, calibrated on the bundled split.

The models and paths are ``qhelpers.bench_models``, the measurements ``qhelpers.bench`` (one function
per path), the tables, figure, files and README section ``qhelpers.bench_report``; this module is the
command, and notebook 02's engine comparison (``compare_engines``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from .bench import run_bench
from .bench_models import MODELS, PATHS, QUICK_MODELS, build_float, build_int8, example_input
from .bench_models import check_model as _check_model
from .bench_report import markdown_table, plot_bench, readme_section, update_readme, write_results
from .files import course_root
from .latency import MIN_RUNS, measure_latency
from .metrics import model_size_bytes
from .versions import machine_info

__all__ = ["MODELS", "PATHS", "QUICK_MODELS", "MIN_SAMPLES", "build_float", "build_int8", "example_input", "run_bench", "markdown_table", "plot_bench", "compare_engines", "engines_markdown", "plot_engines", "write_results", "machine_info", "update_readme", "readme_section"]

MIN_SAMPLES = MIN_RUNS  # the older name of qh.MIN_RUNS, kept while notebook 02's engine comparison uses it


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


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.deployment_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"models {list(QUICK_MODELS)}, shorter timing (under 3 minutes)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="measure only these models")
    parser.add_argument("--paths", nargs="+", choices=[k for k, _ in PATHS], help="measure only these paths (float eager is always measured)")
    parser.add_argument("--threads", type=int, default=1, help="threads for every path (default: 1)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/ in the course folder, else in the current directory)")
    parser.add_argument("--update-readme", action="store_true", help="also write the tables into README.md's results section (full runs only)")
    args = parser.parse_args(argv)
    if args.update_readme and (args.quick or args.models or args.paths):
        parser.error("--update-readme needs a full run (no --quick, --models or --paths)")
    if args.threads < 1:
        parser.error(f"--threads must be a positive int, got {args.threads}")
    readme = None
    if args.update_readme:  # the course's README, found before the long run
        try:
            readme = course_root() / "README.md"
        except FileNotFoundError as exc:
            parser.error(f"--update-readme: {exc}")
    from .environment import silence_known_deprecations
    from .modern import silence_pt2e_noise

    silence_known_deprecations()
    silence_pt2e_noise()
    models = args.models or (QUICK_MODELS if args.quick else tuple(MODELS))
    timing = {"min_run_time": 0.1, "warmup": 1} if args.quick else {"min_run_time": 1.0, "warmup": 3}
    result = run_bench(models, paths=args.paths, threads=args.threads, **timing, progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    result["mode"] = "quick" if args.quick else "full"
    out = args.out if args.out is not None else (course_root(required=False) or Path.cwd()) / "results"
    paths = write_results(result, out, "bench_quick" if args.quick else "bench")
    print(markdown_table(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {result['seconds']} s")
    if args.update_readme:
        update_readme(markdown_table(result), readme)
        print("updated the results section of README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
