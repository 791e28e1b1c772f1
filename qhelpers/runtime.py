"""Deploy to a phone-class runtime: ExecuTorch ``.pte`` files with the XNNPACK delegate.

Introduced in notebooks/08_deploy_with_executorch.ipynb.

* ``quantize_xnnpack`` quantizes a float model with PT2E and ExecuTorch's
  ``XNNPACKQuantizer`` (8-bit symmetric weights, per channel by default; 8-bit
  activations), calibrated on ``calib_loader``.
* ``export_pte`` exports a model (float, or the PT2E graph from
  ``quantize_xnnpack``), lowers it with ``to_edge_transform_and_lower`` and the
  ``XnnpackPartitioner``, writes the ``.pte`` file atomically and returns a
  ``PteExport`` (size, delegated and non-delegated node counts).
* ``load_pte`` loads a ``.pte`` with the ExecuTorch runtime (``executorch.runtime``)
  into a callable ``PteModule``; ``run_pte`` runs it on tensors.

The runtime's C++ code logs a few lines when the XNNPACK delegate starts its
thread pool (``[cpuinfo_utils.cpp:71] Reading file ...``: it looks for Arm
CPU identification files to count big and little cores, which an x86 machine
does not have). They are written by C++ to the process's stderr, below Python,
so ``load_pte`` redirects file descriptor 2 while it loads, drops exactly the
lines matching ``RUNTIME_LOG_NOISE`` and passes every other line on (and puts
them into the error message when loading fails).

ExecuTorch is a separate package (``pip install executorch==1.5.1``, pinned in
requirements.txt). Without it every function here raises ``ModuleNotFoundError``
saying so; ``executorch_available()`` asks first.

The self-checks of the notebook's exercises are in ``qhelpers.runtime_checks``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import nn

from .data import atomic_write_bytes
from .versions import pip_spec

__all__ = [
    "EXECUTORCH_PIN",
    "RUNTIME_LOG_NOISE",
    "executorch_available",
    "quantize_xnnpack",
    "PteExport",
    "export_pte",
    "PteModule",
    "load_pte",
    "run_pte",
    "set_executorch_threads",
    "pte_operators",
]


EXECUTORCH_PIN = pip_spec("executorch")  # from requirements-deploy.txt (qhelpers.versions)


# What load_pte drops from the runtime's C++ log, each by its pattern and nothing else:
RUNTIME_LOG_NOISE: dict[str, str] = {
    # ExecuTorch's thread-pool sizing reads Arm CPU identification files (midr_el1, soc0/image_version) to
    # count performance cores; on x86 they do not exist and it says so, once per process. Nothing to act on.
    "cpuinfo core-count probe": r"^\[cpuinfo_utils\.cpp:\d+\] ",
    # Logged when set_executorch_threads resizes the pool: it says what the call asked for. Nothing to act on.
    "thread-pool resize": r"^\[threadpool\.cpp:\d+\] Resetting threadpool to \d+ threads",
}


_NOISE = [re.compile(p) for p in RUNTIME_LOG_NOISE.values()]


# How many programs load_pte has loaded in this process: ExecuTorch's thread pool may be resized only before the
# first (a loaded XNNPACK program keeps using the pool it started with; resizing under it crashes the process).
_programs_loaded = 0


# ExecuTorch's ScalarType codes (c10 numbering) for the dtypes a course model takes
_SCALAR_TYPES = {0: torch.uint8, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64, 5: torch.float16, 6: torch.float32, 7: torch.float64, 11: torch.bool, 15: torch.bfloat16}


def executorch_available() -> bool:
    """True when the ExecuTorch package (with its runtime and the XNNPACK backend) can be imported.

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    try:
        _require()
    except ModuleNotFoundError:
        return False
    return True


def _require() -> None:
    try:
        import executorch.exir  # noqa: F401
        import executorch.runtime  # noqa: F401
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"ExecuTorch is not installed (import failed: {exc}); install the course's pin with: pip install {EXECUTORCH_PIN}"
        ) from exc


@contextlib.contextmanager
def _native_stderr(captured: list[str], drop: Optional[list[re.Pattern]] = None) -> Iterator[None]:
    """Capture what the runtime writes to stderr; afterwards put its lines into ``captured`` and write the
    lines that are not ``RUNTIME_LOG_NOISE`` to ``sys.stderr`` (so Jupyter shows them).

    ``drop``: the patterns of lines not to pass on (default ``RUNTIME_LOG_NOISE``).
    Both levels are captured: file descriptor 2 (C/C++ ``stderr``) and Python's
    ``sys.stderr``, because ExecuTorch's Python bindings forward the C++ log to
    ``sys.stderr`` during a call (pybind11's stream redirect), which in Jupyter
    is the notebook's output, not file descriptor 2.
    """
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved_fd, saved_py = os.dup(2), sys.stderr
    buffer = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = buffer
        try:
            yield
        finally:
            sys.stderr = saved_py
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            tmp.seek(0)
            lines = tmp.read().decode(errors="replace").splitlines() + buffer.getvalue().splitlines()
            captured.extend(lines)
            kept = [line for line in lines if not any(p.search(line) for p in (_NOISE if drop is None else drop))]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def _check_inputs(example_inputs: Any, name: str = "example_inputs") -> tuple[torch.Tensor, ...]:
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)) or not example_inputs or not all(isinstance(t, torch.Tensor) for t in example_inputs):
        raise TypeError(f"{name} must be a tensor or a non-empty tuple of tensors, got {type(example_inputs).__name__}")
    return tuple(example_inputs)


def quantize_xnnpack(
    model: nn.Module,
    example_inputs: Any,
    calib_loader: Iterable,
    *,
    per_channel: bool = True,
    dynamic_batch: bool = True,
    strict: bool = False,
) -> torch.fx.GraphModule:
    """Static INT8 PTQ with PT2E and ``XNNPACKQuantizer``; returns the converted Q/DQ graph (``convert_pt2e``).

    ``example_inputs``: a tensor or tuple (batch >= 2 when ``dynamic_batch``, so
    that one graph calibrates on batches and runs on one image).
    ``calib_loader``: batches of tensors or ``(images, labels)``.
    ``per_channel``: one weight scale per output channel (symmetric int8
    weights either way). ``strict=True`` exports with TorchDynamo (needed for
    torchvision's ResNets, see notebook 05).
    """
    _require()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    example_inputs = _check_inputs(example_inputs)
    if dynamic_batch and example_inputs[0].shape[0] < 2:
        raise ValueError(f"dynamic_batch needs an example batch of at least 2 (torch.export specialises a batch of 1), got {example_inputs[0].shape[0]}")
    model = model.eval()
    dynamic_shapes = tuple({0: torch.export.Dim("batch")} for _ in example_inputs) if dynamic_batch else None
    exported = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes, strict=strict).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    prepared = prepare_pt2e(exported, quantizer)
    seen = 0
    with torch.no_grad():
        for batch in calib_loader:
            prepared(batch[0] if isinstance(batch, (list, tuple)) else batch)
            seen += 1
    if seen == 0:
        raise ValueError("calib_loader yielded no batches; calibration needs at least one")
    return convert_pt2e(prepared)


@dataclass(frozen=True)
class PteExport:
    """What ``export_pte`` wrote: the file, its size, and what the XNNPACK partitioner took.

    ``delegated_nodes``: graph nodes that run inside XNNPACK; ``non_delegated_nodes``:
    nodes left to ExecuTorch's portable kernels; ``by_operator``: op name ->
    (delegated, non-delegated).
    """

    path: Path
    bytes: int
    delegated_subgraphs: int
    delegated_nodes: int
    non_delegated_nodes: int
    by_operator: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def delegated_fraction(self) -> float:
        total = self.delegated_nodes + self.non_delegated_nodes
        return self.delegated_nodes / total if total else 0.0

    def __str__(self) -> str:
        return (f"{Path(self.path).name}: {self.bytes / 1e6:.3f} MB, {self.delegated_nodes} nodes delegated to XNNPACK "
                f"in {self.delegated_subgraphs} subgraph(s), {self.non_delegated_nodes} not delegated")


def export_pte(model: nn.Module, example_inputs: Any, path: Path | str, *, delegate: bool = True) -> PteExport:
    """Export ``model`` for ``example_inputs`` (a fixed shape), lower it to ExecuTorch and write ``path`` atomically.

    ``model``: a float ``nn.Module`` or a converted PT2E graph (``quantize_xnnpack``);
    it is exported with ``torch.export`` for exactly the shapes of
    ``example_inputs`` (a ``.pte`` has static shapes unless exported with
    dynamic ones). ``delegate=True`` hands every supported part to XNNPACK
    (``XnnpackPartitioner``); ``False`` keeps everything on ExecuTorch's
    portable (reference) kernels.

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    _require()
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a PT2E GraphModule, got {type(model).__name__}")
    example_inputs = _check_inputs(example_inputs)
    path = Path(path)
    if path.suffix != ".pte":
        raise ValueError(f"path must end in .pte (the ExecuTorch program format), got {str(path)!r}")
    partitioner = []
    if delegate:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = [XnnpackPartitioner()]
    if not isinstance(model, torch.fx.GraphModule):
        model = model.eval()
    program = torch.export.export(model, example_inputs)
    edge = to_edge_transform_and_lower(program, partitioner=partitioner)
    info = get_delegation_info(edge.exported_program().graph_module)
    payload = edge.to_executorch().buffer
    atomic_write_bytes(path, payload)
    by_operator = {name: (b.delegated, b.non_delegated) for name, b in sorted(info.delegation_by_operator.items())}
    return PteExport(path, len(payload), info.num_delegated_subgraphs, info.num_delegated_nodes, info.num_non_delegated_nodes, by_operator)


class PteModule:
    """A loaded ``.pte`` method, callable like a model: ``pte(x)`` returns the output tensor (a tuple if several).

    ``input_shapes``/``input_dtypes`` are what the program was exported for;
    ``run_pte`` checks inputs against them before calling the runtime.
    """

    def __init__(self, path: Path, program: Any, method: Any, name: str) -> None:
        self.path, self.method_name = path, name
        self._program, self._method = program, method
        meta = program.metadata(name)
        infos = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        self.input_shapes = [tuple(t.sizes()) for t in infos]
        self.input_dtypes = [_SCALAR_TYPES.get(int(t.dtype()), None) for t in infos]
        self.num_outputs = meta.num_outputs()

    def __call__(self, *inputs: torch.Tensor) -> Any:
        return run_pte(self, *inputs)

    def __repr__(self) -> str:
        return f"PteModule({Path(self.path).name!r}, method={self.method_name!r}, inputs={self.input_shapes})"


def load_pte(path: Path | str, *, method: str = "forward") -> PteModule:
    """Load a ``.pte`` file with the ExecuTorch runtime; returns a callable ``PteModule``.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for a file
    that is not a valid ExecuTorch program (truncated, corrupt, another format)
    or has no method ``method``, and ``ModuleNotFoundError`` when ExecuTorch is
    not installed. The runtime's cpuinfo log lines are dropped (module docstring).

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .pte file at {path} (write one with qh.export_pte or `qhelpers quantize --target xnnpack`)")
    _require()
    from executorch.runtime import Runtime

    log: list[str] = []
    try:
        with _native_stderr(log):
            program = Runtime.get().load_program(path)
            if method not in program.method_names:
                raise ValueError(f"{path} has no method {method!r}; it has {sorted(program.method_names)}")
            loaded = program.load_method(method)
    except RuntimeError as exc:
        said = "; ".join(line for line in log if not any(p.search(line) for p in _NOISE))
        raise ValueError(f"{path} is not a valid ExecuTorch program (.pte): {exc}{' (runtime: ' + said + ')' if said else ''}") from exc
    global _programs_loaded
    _programs_loaded += 1
    return PteModule(path, program, loaded, method)


def run_pte(pte: PteModule | Path | str, *inputs: torch.Tensor, check_shapes: bool = True) -> Any:
    """Run a loaded ``.pte`` (or load ``pte`` as a path first) on ``inputs``; returns the output tensor (a tuple if several).

    Inputs must have the shapes and dtypes the program was exported for
    (``pte.input_shapes``); with ``check_shapes=True`` a mismatch raises this
    course's ``ValueError`` naming both. ``check_shapes=False`` hands the inputs
    to the runtime as they are, as an app on a phone would: the runtime then
    logs its own message and raises ``RuntimeError``.

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    if isinstance(pte, (str, Path)):
        pte = load_pte(pte)
    if not isinstance(pte, PteModule):
        raise TypeError(f"pte must be a PteModule (from qh.load_pte) or a path to a .pte file, got {type(pte).__name__}")
    if not isinstance(check_shapes, bool):
        raise TypeError(f"check_shapes must be True or False, got {check_shapes!r}")
    if len(inputs) != len(pte.input_shapes):
        raise ValueError(f"{Path(pte.path).name} takes {len(pte.input_shapes)} input(s), got {len(inputs)}")
    for i, (x, shape, dtype) in enumerate(zip(inputs, pte.input_shapes, pte.input_dtypes)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input {i} must be a torch.Tensor, got {type(x).__name__}")
        if check_shapes and (tuple(x.shape) != shape or (dtype is not None and x.dtype != dtype)):
            raise ValueError(f"input {i} has shape {tuple(x.shape)} and dtype {x.dtype}; {Path(pte.path).name} was exported for shape {shape}, dtype {dtype} (re-export for another shape)")
    if check_shapes:
        outputs = pte._method.execute(inputs)
    else:
        log: list[str] = []
        with _native_stderr(log):  # the runtime's own complaint is printed (minus RUNTIME_LOG_NOISE), then raised
            outputs = pte._method.execute(inputs)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def set_executorch_threads(threads: int) -> int:
    """Size the thread pool that ExecuTorch's XNNPACK delegate runs on (it ignores ``torch.set_num_threads``); returns its size.

    Must be called before the first ``.pte`` is loaded in this process: a loaded XNNPACK
    program keeps the pool it started with, and resizing it then crashes the process,
    so a later call with another size raises ``RuntimeError``. Wraps ExecuTorch's
    Python-binding functions ``_threadpool_get_thread_count`` / ``_unsafe_reset_threadpool``,
    which ExecuTorch 1.5 marks private and experimental; an app on a phone sizes the pool
    with its runtime's own options instead (e.g. ``numThreads`` of Android's ``Module.load``).

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    _require()
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    with _native_stderr([]):  # the pool's creation logs the cpuinfo lines (RUNTIME_LOG_NOISE)
        current = int(_threadpool_get_thread_count())
        if current != threads:
            if _programs_loaded:
                raise RuntimeError(f"ExecuTorch's thread pool has {current} threads and a program is already loaded; "
                                   "set the size before the first qh.load_pte (restart the kernel)")
            _unsafe_reset_threadpool(threads)
        return int(_threadpool_get_thread_count())


def pte_operators(path: Path | str) -> dict[str, list[str]]:
    """What a ``.pte`` asks of the runtime that links it: ``{"operators": [...], "delegates": [...]}`` for its ``forward``.

    ``operators`` are the kernels it calls outside any delegate (each must be linked
    into the app: portable or optimized kernel libraries); ``delegates`` are the
    backends it needs registered (e.g. ``XnnpackBackend``). Read from the file's
    execution plan with ExecuTorch's flatbuffer deserializer (``executorch.exir._serialize``,
    a private module of ExecuTorch 1.5).

    Introduced in notebooks/08_deploy_with_executorch.ipynb.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .pte file at {path}")
    _require()
    from executorch.exir._serialize._program import deserialize_pte_binary

    try:
        program = deserialize_pte_binary(path.read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path} is not a valid ExecuTorch program (.pte): {type(exc).__name__}: {exc}") from exc
    program = getattr(program, "program", program)
    plan = next((p for p in program.execution_plan if p.name == "forward"), program.execution_plan[0])
    return {"operators": [op.name for op in plan.operators], "delegates": [d.id for d in plan.delegates]}
