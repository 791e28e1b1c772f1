"""The benchmark command: every deployment path of the course, measured in one run on this machine.

Introduced in notebooks/02_pretrained_quantized_models.ipynb; the ExecuTorch rows
in notebooks/08_deploy_with_executorch.ipynb.

    python -m qhelpers.deployment_benchmark            # make bench: the course model, MobileNetV2, ResNet18, ResNet50
    python -m qhelpers.deployment_benchmark --quick    # make bench-quick: the course model only, shorter timing (under 3 minutes)

For each model, at batch 1 and a fixed thread count (``--threads``, default 1),
the paths (``PATHS``): float eager; float ``torch.compile`` (Inductor, freezing);
eager INT8 on each quantized engine of the model (x86/fbgemm, qnnpack); PT2E with
``X86InductorQuantizer``, not compiled and compiled (freezing); ExecuTorch with the
XNNPACK delegate, float and INT8 (``XNNPACKQuantizer``); ONNX Runtime float and static
QDQ INT8, and OpenVINO float and INT8 (``nncf.quantize``), both fed from the same PyTorch
model (``qhelpers.server_runtimes``; the ``server`` extra, ``requirements-server.txt``;
their conversion and quantization times in the second table). On the course model the INT8
and server rows also report accuracy on the test split and agreement with float (a third
table). A path that cannot run here (an engine this CPU lacks, ExecuTorch or a server
runtime not installed, a compile error) is a row that says why, never a crash.

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
import math
import statistics
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
from .latency import MIN_RUNS
from .metrics import model_size_bytes
from .versions import machine_info

__all__ = ["MODELS", "PATHS", "QUICK_MODELS", "MIN_SAMPLES", "build_float", "build_int8", "example_input", "run_bench", "markdown_table", "plot_bench", "compare_engines", "engines_markdown", "plot_engines", "paired_latency", "paired_ratio", "write_results", "machine_info", "update_readme", "readme_section"]

MIN_SAMPLES = MIN_RUNS  # the older name of qh.MIN_RUNS, kept while notebook 02's engine comparison uses it
SAMPLE_CPU_S = 0.010  # paired_latency: each sample lasts at least this much CPU time (seconds)


# --------------------------------------------------------------------------- notebook 02: float vs INT8 per engine


def _spread(values: list[float]) -> tuple[float, float]:
    """(median, interquartile range) of at least two values."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return median, q3 - q1


def paired_latency(
    configs: dict[str, tuple[Callable, Optional[str]]],
    example: torch.Tensor,
    *,
    threads: int = 1,
    rounds: int = 15,
    warmup: int = 3,
) -> dict[str, dict]:
    """Time several models on one input in interleaved rounds, so that their ratios come from one run.

    ``configs`` maps a name to ``(model, engine)``: the engine is made active
    while that model runs (``None``: leave the engine as it is, e.g. for a
    float model). Each model first gets ``warmup`` untimed calls (all of them
    before any timing, at ``threads`` threads). Then each of ``rounds``
    rounds times one sample of every model, in an order that rotates from
    round to round, so a drift of a shared machine slower than a round and the
    position in the round touch every model alike (a preemption inside one
    sample touches only that sample). A sample is the mean of enough
    back-to-back calls to last at least ``SAMPLE_CPU_S`` (10 ms) of CPU time,
    well above a scheduler time slice; the number of calls is sized from the
    median CPU time of three untimed calls, so that waiting for a core does
    not shrink the samples.

    Each sample is taken on two clocks: the wall clock (``time.perf_counter``,
    what a user waits) and the process's CPU time (``time.process_time``, the
    work done by all its threads). On a machine loaded beyond its cores a
    waiting thread adds to the wall clock but not to the CPU time, so the CPU
    time leaves out that waiting; it still moves with cache and memory
    contention from other processes, so on a busy machine repeat the whole
    measurement in a fresh process to see the spread between runs (the
    quartiles of one run describe its rounds only).

    Returns, per name: ``median_ms``, ``iqr_ms``, ``runs`` (= ``rounds``),
    ``warmup``, ``calls_per_run``, ``engine``, ``samples_ms`` (one per
    round, in round order; ``paired_ratio`` divides them round by round),
    and ``cpu_median_ms``, ``cpu_iqr_ms``, ``cpu_samples_ms`` (the same on the CPU clock).
    The thread count and the quantized engine are restored at the end.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    if not isinstance(configs, dict) or len(configs) < 1:
        raise ValueError(f"configs must be a non-empty dict name -> (model, engine), got {configs!r}")
    for name, value in configs.items():
        if not (isinstance(value, tuple) and len(value) == 2 and callable(value[0]) and (value[1] is None or isinstance(value[1], str))):
            raise ValueError(f"configs[{name!r}] must be (model, engine or None), got {value!r}")
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a torch.Tensor, got {type(example).__name__}")
    for arg, value, least in (("threads", threads, 1), ("rounds", rounds, MIN_SAMPLES), ("warmup", warmup, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{arg} must be an int >= {least}, got {value!r}")
    names = list(configs)
    samples: dict[str, list[float]] = {n: [] for n in names}
    cpu_samples: dict[str, list[float]] = {n: [] for n in names}
    calls: dict[str, int] = {}
    saved_threads, saved_engine = torch.get_num_threads(), torch.backends.quantized.engine
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for n in names:
                fn, engine = configs[n]
                if engine is not None:
                    torch.backends.quantized.engine = engine
                for _ in range(warmup):
                    fn(example)
                sizing = []
                for _ in range(3):  # three more untimed calls, to size the samples on the CPU clock
                    cpu_start = time.process_time()
                    fn(example)
                    sizing.append(time.process_time() - cpu_start)
                calls[n] = max(1, min(1000, math.ceil(SAMPLE_CPU_S / max(statistics.median(sizing), 1e-6))))
            for r in range(rounds):
                k = r % len(names)
                for n in names[k:] + names[:k]:
                    fn, engine = configs[n]
                    if engine is not None:
                        torch.backends.quantized.engine = engine
                    start, cpu_start = time.perf_counter(), time.process_time()
                    for _ in range(calls[n]):
                        fn(example)
                    cpu_samples[n].append((time.process_time() - cpu_start) / calls[n] * 1e3)
                    samples[n].append((time.perf_counter() - start) / calls[n] * 1e3)
    finally:
        torch.set_num_threads(saved_threads)
        torch.backends.quantized.engine = saved_engine
    out = {}
    for n in names:
        median, iqr = _spread(samples[n])
        cpu_median, cpu_iqr = _spread(cpu_samples[n])
        out[n] = {"median_ms": median, "iqr_ms": iqr, "runs": rounds, "warmup": warmup, "calls_per_run": calls[n],
                  "engine": configs[n][1], "samples_ms": samples[n],
                  "cpu_median_ms": cpu_median, "cpu_iqr_ms": cpu_iqr, "cpu_samples_ms": cpu_samples[n]}
    return out


def paired_ratio(numerator: dict, denominator: dict, *, clock: str = "wall") -> dict:
    """Median and IQR of the round-by-round ratio of two ``paired_latency`` entries (e.g. float time / INT8 time).

    ``clock``: ``"wall"`` (``samples_ms``) or ``"cpu"`` (``cpu_samples_ms``, the process's CPU time).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    key = "samples_ms" if clock == "wall" else "cpu_samples_ms"
    a, b = numerator.get(key), denominator.get(key)
    if not a or not b or len(a) != len(b):
        raise ValueError("both entries must come from one paired_latency call (the same rounds)")
    q1, ratio, q3 = statistics.quantiles([x / y for x, y in zip(a, b)], n=4, method="inclusive")
    return {"ratio": ratio, "iqr": q3 - q1, "q1": q1, "q3": q3, "rounds": len(a)}


def compare_engines(
    models: Sequence[str] = tuple(MODELS),
    engines: Optional[dict[str, Sequence[str]]] = None,
    batches: Optional[dict[str, Sequence[int]]] = None,
    threads: Sequence[int] = (1,),
    rounds: int = 15,
    warmup: int = 3,
    timing: bool = True,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Float vs eager INT8 per engine: a JSON-ready dict with ``machine``, ``sizes``, ``latency``, ``speedups``.

    The engine comparison of notebook 02 (``make bench`` measures every path
    with ``run_bench``). For each model, batch and thread count, the float
    model and its INT8 versions are timed together by ``paired_latency``
    (warm-up first, then ``rounds`` interleaved rounds), and each speedup is
    the median of the round-by-round ratios float time / INT8 time, with
    their IQR, on the wall clock (``speedup``) and on the process's CPU time
    (``cpu_speedup``, the fairer one when the machine is loaded beyond its cores). ``timing=False`` measures the sizes only (under a CPU emulator,
    where times mean nothing).

    ``engines``/``batches`` override ``MODELS[name]`` per model. Each INT8
    model runs with the engine it was quantized for. The active engine is
    restored at the end.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    for name in models:
        _check_model(name)
    if not threads or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in threads):
        raise ValueError(f"threads must be positive ints, got {threads!r}")
    engines, batches = engines or {}, batches or {}
    start, saved_engine = time.perf_counter(), torch.backends.quantized.engine
    result: dict = {"machine": machine_info(), "settings": {"threads": list(threads), "rounds": rounds, "warmup": warmup, "timing": timing},
                    "sizes": [], "latency": [], "speedups": []}
    say = progress or (lambda msg: None)
    try:
        for name in models:
            spec = MODELS[name]
            model_engines, model_batches = tuple(engines.get(name, spec["engines"])), tuple(batches.get(name, (1,)))
            float_model = build_float(name)
            int8_models = {e: build_int8(name, e) for e in model_engines}
            float_bytes = model_size_bytes(float_model)
            for engine, model in int8_models.items():
                int8_bytes = model_size_bytes(model)
                result["sizes"].append(
                    {"model": name, "engine": engine, "float_bytes": float_bytes, "int8_bytes": int8_bytes, "ratio": round(float_bytes / int8_bytes, 3)}
                )
            if not timing:
                continue
            for batch in model_batches:
                x = example_input(name, batch)
                for t in threads:
                    say(f"{name} batch {batch} threads {t}")
                    configs = {"float": (float_model, None), **{f"int8 {e}": (m, e) for e, m in int8_models.items()}}
                    timed = paired_latency(configs, x, threads=t, rounds=rounds, warmup=warmup)
                    for key, lat in timed.items():
                        result["latency"].append(
                            {"model": name, "kind": key.split()[0], "engine": lat["engine"], "batch": batch, "threads": t,
                             "median_ms": round(lat["median_ms"], 4), "iqr_ms": round(lat["iqr_ms"], 4), "runs": lat["runs"],
                             "cpu_median_ms": round(lat["cpu_median_ms"], 4), "cpu_iqr_ms": round(lat["cpu_iqr_ms"], 4)}
                        )
                    for engine in int8_models:
                        ratio = paired_ratio(timed["float"], timed[f"int8 {engine}"])
                        cpu = paired_ratio(timed["float"], timed[f"int8 {engine}"], clock="cpu")
                        result["speedups"].append(
                            {"model": name, "engine": engine, "batch": batch, "threads": t,
                             "float_ms": round(timed["float"]["median_ms"], 4), "int8_ms": round(timed[f"int8 {engine}"]["median_ms"], 4),
                             "speedup": round(ratio["ratio"], 3), "speedup_iqr": round(ratio["iqr"], 3),
                             "speedup_q1": round(ratio["q1"], 3), "speedup_q3": round(ratio["q3"], 3), "runs": ratio["rounds"],
                             "cpu_speedup": round(cpu["ratio"], 3), "cpu_speedup_q1": round(cpu["q1"], 3),
                             "cpu_speedup_q3": round(cpu["q3"], 3)}
                        )
    finally:
        torch.backends.quantized.engine = saved_engine
    result["machine"]["load_average_1min_end"] = machine_info()["load_average_1min"]
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def engines_markdown(result: dict) -> str:
    """``compare_engines``' result as markdown: a machine line, the size table and the latency/speedup table.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    m, st = result["machine"], result["settings"]
    lines = [
        f"Measured {m['date_utc']} UTC on {m['cpu']} ({m['cpu_count']} cores, {m['cpu_capability']}), torch {m['torch']}; "
        f"load average {m['load_average_1min']} at start, {m.get('load_average_1min_end')} at end. "
        + (
            f"Float and INT8 timed together: {st['warmup']} warm-up calls each, then {st['rounds']} interleaved rounds; "
            "times are wall-clock medians (IQR); the INT8 speedup is the median of the round-by-round ratios (IQR), "
            "on the wall clock and on the process's CPU time (which leaves out waiting for a core but still moves with "
            "other processes' cache and memory traffic: read it when the load average exceeds the cores, and repeat the "
            "run for the spread between runs; the quartiles describe the rounds of this run). Absolute times belong to "
            "this machine. "
            if result["speedups"] else "Sizes only (not timed). "
        )
        + "torchvision models have random weights.",
        "",
        "| model | engine | float MB | INT8 MB | size ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for s in result["sizes"]:
        lines.append(f"| {s['model']} | {s['engine']} | {s['float_bytes'] / 1e6:.3f} | {s['int8_bytes'] / 1e6:.3f} | {s['ratio']:.2f}x |")
    if result["speedups"]:
        iqr = {(r["model"], r["engine"], r["batch"], r["threads"], r["kind"]): r["iqr_ms"] for r in result["latency"]}
        lines += ["", "| model | engine | batch | threads | float ms (IQR) | INT8 ms (IQR) | rounds | INT8 speedup, wall (IQR) "
                  "| INT8 speedup, CPU time (quartiles) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in result["speedups"]:
            f_iqr = iqr[(s["model"], None, s["batch"], s["threads"], "float")]
            q_iqr = iqr[(s["model"], s["engine"], s["batch"], s["threads"], "int8")]
            lines.append(
                f"| {s['model']} | {s['engine']} | {s['batch']} | {s['threads']} | {s['float_ms']:.2f} ({f_iqr:.2f}) | "
                f"{s['int8_ms']:.2f} ({q_iqr:.2f}) | {s['runs']} | {s['speedup']:.2f}x ({s['speedup_iqr']:.2f}) | "
                f"{s['cpu_speedup']:.2f}x ({s['cpu_speedup_q1']:.2f}x to {s['cpu_speedup_q3']:.2f}x) |"
            )
    return "\n".join(lines) + "\n"


def plot_engines(result: dict):
    """``compare_engines``' result as one figure with two questions, each on a linear axis with readable ticks.

    Left: how many times faster is INT8 than float, per model and batch (one
    horizontal bar each, labelled on the axis; the line at 1x is "as fast as
    float"; whiskers span the quartiles of the round-by-round ratios). Right: how
    many times smaller is the INT8 state dict, per model (the dashed line is
    the 4x ceiling).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    speed = result["speedups"]
    sizes: dict[str, float] = {}
    for s in result["sizes"]:
        sizes.setdefault(s["model"], s["ratio"])
    fig, (ax_speed, ax_size) = plt.subplots(1, 2, figsize=(11, 0.45 * max(len(speed), len(sizes), 3) + 1.4),
                                            gridspec_kw={"width_ratios": [3, 2]})
    if speed:
        labels = [f"{s['model']}, batch {s['batch']}" + (f", {s['threads']} threads" if len(result["settings"]["threads"]) > 1 else "") for s in speed]
        cpu = all("cpu_speedup" in s for s in speed)  # the CPU-time ratios: they leave out waiting for a core
        prefix = "cpu_" if cpu else ""
        values = [s[f"{prefix}speedup"] for s in speed]
        q1 = [s.get(f"{prefix}speedup_q1", v) for s, v in zip(speed, values)]
        q3 = [s.get(f"{prefix}speedup_q3", v) for s, v in zip(speed, values)]
        ys = list(range(len(speed)))[::-1]
        ax_speed.barh(ys, values, color="tab:blue")
        ax_speed.errorbar(values, ys, xerr=[[v - lo for v, lo in zip(values, q1)], [hi - v for v, hi in zip(values, q3)]],
                          fmt="none", ecolor="black", capsize=3, lw=1)
        top = max(max(values), max(q3)) * 1.2 + 0.3
        for y, v, hi in zip(ys, values, q3):
            ax_speed.text(max(v, hi) + 0.02 * top, y, f"{v:.1f}x", va="center", fontsize=8)
        ax_speed.axvline(1.0, color="black", lw=0.8)
        ax_speed.set_yticks(ys, labels)
        ax_speed.set_xlim(0, top)
        ax_speed.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax_speed.xaxis.set_major_formatter(lambda v, _: f"{v:g}x")
        ax_speed.set_xlabel(f"float {'CPU ' if cpu else ''}time / INT8 {'CPU ' if cpu else ''}time (1x: as fast as float)")
        ax_speed.set_title("How much faster is INT8 here?", fontsize=10)
    else:
        ax_speed.axis("off")
        ax_speed.text(0.5, 0.5, "not timed", ha="center", va="center")
    ys = list(range(len(sizes)))[::-1]
    ax_size.barh(ys, list(sizes.values()), color="tab:gray")
    for y, v in zip(ys, sizes.values()):
        ax_size.text(v + 0.05, y, f"{v:.2f}x", va="center", fontsize=8)
    ax_size.axvline(4.0, color="black", lw=0.8, ls="--")
    ax_size.set_yticks(ys, list(sizes))
    ax_size.set_xlim(0, 4.8)
    ax_size.set_xticks(range(5))
    ax_size.xaxis.set_major_formatter(lambda v, _: f"{v:g}x")
    ax_size.set_xlabel("float MB / INT8 MB (dashed: the 4x ceiling)")
    ax_size.set_title("How much smaller is the INT8 file?", fontsize=10)
    fig.suptitle(f"{result['machine']['cpu']}, {result['machine']['date_utc']} UTC", fontsize=8)
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
    from .pt2e_export import silence_pt2e_noise

    silence_known_deprecations()
    silence_pt2e_noise()
    models = args.models or (QUICK_MODELS if args.quick else tuple(MODELS))
    # quick: shorter timing, and 100 calibration images for OpenVINO's NNCF instead of its default 300
    timing = {"min_run_time": 0.1, "warmup": 1, "server_subset": 100} if args.quick else {"min_run_time": 1.0, "warmup": 3, "server_subset": 300}
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
