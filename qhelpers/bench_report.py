"""The benchmark's result as a report: the ratios, a markdown table, a figure, the result files, and the results
section of the course's README.md (``make bench``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from .bench_models import PATHS
from .files import atomic_write_bytes

__all__ = ["add_ratios", "fastest_paths", "machine_line", "markdown_table", "plot_bench", "log_ratio_axis", "write_results", "update_readme", "readme_section", "README_START", "README_END"]

def add_ratios(rows: list[dict]) -> None:
    """``vs_float_eager`` and ``vs_float_compiled`` (float median / row median) and ``size_ratio`` on each measured row."""
    base = {r["path"]: r for r in rows if r["path"] in ("float", "float_compiled") and "median_ms" in r}
    for r in rows:
        if "median_ms" not in r:
            continue
        for key, path in (("vs_float_eager", "float"), ("vs_float_compiled", "float_compiled")):
            r[key] = round(base[path]["median_ms"] / r["median_ms"], 3) if path in base else None
        float_size, size = base.get("float", {}).get("size_bytes"), r.get("size_bytes")
        r["size_ratio"] = round(float_size / size, 3) if float_size and size else None


def fastest_paths(result: dict) -> dict[str, dict]:
    """Per model, the measured row with the lowest median (the path a deployment on this machine would pick for speed)."""
    fastest: dict[str, dict] = {}
    for r in result["rows"]:
        if "median_ms" in r and (r["model"] not in fastest or r["median_ms"] < fastest[r["model"]]["median_ms"]):
            fastest[r["model"]] = r
    return fastest


def _load_warning(machine: dict) -> str:
    """A sentence when the load average (at start or end) exceeded the cores: other programs shared them during the run."""
    loads = [machine.get(k) for k in ("load_average_1min", "load_average_1min_end")]
    loads = [v for v in loads if isinstance(v, (int, float))]
    cores = machine.get("cpu_count")
    if not loads or not cores or max(loads) <= cores:
        return ""
    return (f" The load average ({max(loads):g}) exceeded the {cores} cores: other programs competed for them during this run, so "
            "each time carries that noise (see the IQR) and a ratio can be off by more than the difference it shows; "
            "rerun `make bench` on a quiet machine before relying on one.")


def _ratio(value: Optional[float]) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def machine_line(machine: dict, settings: str = "") -> str:
    """The first line of a result's markdown: when and where it was measured (``versions.machine_info()``), the
    ``settings`` text, and the load average at start and end."""
    m = machine
    return (
        f"Measured {m['date_utc']} UTC on {m['cpu']} ({m['cpu_count']} cores, {m['cpu_capability']}), torch {m['torch']}; "
        f"{settings + '; ' if settings else ''}load average {m['load_average_1min']} at start, {m.get('load_average_1min_end')} at end."
    )


def log_ratio_axis(ax, ylabel: str) -> None:
    """A bar chart's y axis for ratios: log scale (2x faster and 2x slower sit at the same distance from 1), ticks
    at 1, 2, 5 per decade labelled ``2x``, and a line at 1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(ylabel)


def markdown_table(result: dict) -> str:
    """The result as markdown: a machine line, the latency table with the ratios, the compile-time table, and the
    accuracy and agreement with float of the rows that have them (the course model's INT8 and server rows)."""
    st = result["settings"]
    lines = [
        machine_line(result["machine"], f"batch {st['batch']}, {st['threads']} thread(s), at least {st['min_samples']} timed samples per cell")
        + " The ratios are the headline (float median / path median: above 1x is faster); absolute times belong to this machine. "
        "torchvision models have random weights." + _load_warning(result["machine"]),
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
    fastest = fastest_paths(result)
    if fastest:
        lines += ["", "Fastest path per model on this machine (lowest median): " + "; ".join(
            f"{model}: {r['label']} ({_ratio(r.get('vs_float_eager'))} float eager)" for model, r in fastest.items()) + "."]
    if result["compile"]:
        lines += ["", "Compile and lowering times (paid once, not in the latencies above; a cold compile: Inductor's on-disk cache is off while the benchmark compiles):", "", "| model | step | seconds |", "|---|---|---:|"]
        lines += [f"| {c['model']} | {c['step']} | {c['seconds']:.1f} |" for c in result["compile"]]
    agreement = [r for r in result["rows"] if "agreement_pct" in r]
    if agreement:
        lines += ["", f"<details><summary>{SPOILER_NOTE}</summary>", "",
                  "Accuracy on the course model's test split (1,000 digits; torchvision models have random weights, so no accuracy), "
                  "and the share of predictions that agree with float's:", "",
                  "| model | path | accuracy % | float accuracy % | agrees with float % |", "|---|---|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['label']} | {r['accuracy_pct']:.1f} | {r['float_accuracy_pct']:.1f} | {r['agreement_pct']:.1f} |" for r in agreement]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def plot_bench(result: dict):
    """A figure: speed against float eager for every measured path of every model (log scale)."""
    import matplotlib.pyplot as plt

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
    log_ratio_axis(ax, "float eager time / path time")
    ax.set_xticks(range(len(models)), models)
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
    atomic_write_bytes(paths["json"], (json.dumps(result, indent=2) + "\n").encode())
    atomic_write_bytes(paths["md"], markdown_table(result).encode())
    fig = plot_bench(result)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(paths["png"], buf.getvalue())
    return paths


# The accuracy table answers notebook 00's exercise 4 (INT8 against float, predictions changed): folded away behind this.
SPOILER_NOTE = ("Accuracy of the course model's INT8 paths: a spoiler for notebook 00's exercise 4 (predict there first, "
                "then open)")

README_START = "<!-- bench:start (written by `make bench`; do not edit by hand) -->"
README_END = "<!-- bench:end -->"


def _digest(table: str) -> str:
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
    atomic_write_bytes(Path(readme), f"{head}{README_START}\n{section}\n{README_END}{tail}".encode())


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
