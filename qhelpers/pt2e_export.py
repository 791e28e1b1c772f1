"""PT2E graphs and deployment files: quantize/dequantize op counts, a graph's accuracy, files written atomically.

Introduced in notebooks/05_beyond_eager_mode.ipynb.

* ``count_quant_ops`` counts the quantize/dequantize nodes of a PT2E graph; ``graph_accuracy`` evaluates one;
  ``strip_unused_weights`` drops the float weights a converted graph no longer uses.
* ``save_torchscript`` / ``save_exported`` write deployment files atomically.
* ``silence_pt2e_noise`` hides, by message, three lines that torch and
  torchao print on the PT2E path and that teach nothing (listed in
  ``PT2E_NOISE``).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import atomic_write_bytes
from .environment import KNOWN_DEPRECATIONS, _DropByMessage, silence_known_deprecations

__all__ = [
    "PT2E_NOISE",
    "silence_pt2e_noise",
    "count_quant_ops",
    "graph_accuracy",
    "strip_unused_weights",
    "save_torchscript",
    "save_exported",
]


# --------------------------------------------------------------------------- noise on the PT2E path

# What ``silence_pt2e_noise`` hides, each by its message and nothing else:
PT2E_NOISE: dict[str, str] = {
    # Logged (with a timestamp and process id) by torch.utils._pytree when torchao is imported: torchao
    # registers an Enum with an API torch 2.14 deprecates for Enums. A torchao internal; nothing to act on.
    "torchao enum registration log": r"<enum '\w+'> is an Enum subclass and is now natively supported",
    # UserWarning from torch/_inductor/mkldnn_lowerings.py while torch.compile lowers quantized convolutions
    # (torch copies a tensor with torch.tensor(t)). A torch internal; nothing to act on.
    "inductor tensor copy": r"To copy construct from a tensor, it is recommended to use sourceTensor",
    # UserWarning from torch.ao observers built with reduce_range=True (the x86/fbgemm default qconfig).
    # Notebook 03 explains reduce_range; the hint itself asks for an API change the course does not need.
    "observer reduce_range hint": KNOWN_DEPRECATIONS["reduce_range"][0],
}


def silence_pt2e_noise() -> list[str]:
    """Hide exactly the messages in ``PT2E_NOISE``; every other warning and log line still shows.

    Call it before importing torchao (the first import logs the Enum line).
    Returns the names hidden. Calling it twice adds nothing twice.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    logger = logging.getLogger("torch.utils._pytree")
    pattern = PT2E_NOISE["torchao enum registration log"]
    if not any(isinstance(f, _DropByMessage) and f.pattern.pattern == pattern for f in logger.filters):
        logger.addFilter(_DropByMessage(pattern))
    warnings.filterwarnings("ignore", message=PT2E_NOISE["inductor tensor copy"], category=UserWarning)
    silence_known_deprecations("reduce_range")
    return list(PT2E_NOISE)


# --------------------------------------------------------------------------- PT2E graphs and deployment


def count_quant_ops(graph_module: torch.fx.GraphModule) -> Counter:
    """How many quantize / dequantize calls a PT2E graph holds, by op name (e.g. ``'quantize_per_tensor'``).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(graph_module, torch.fx.GraphModule):
        raise TypeError(f"graph_module must be a torch.fx.GraphModule (from convert_pt2e), got {type(graph_module).__name__}")
    counts: Counter = Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if name.startswith(("quantize_per", "dequantize_per")):
            counts[name] += 1
    return counts


def graph_accuracy(graph_module: torch.fx.GraphModule, loader: Any) -> float:
    """Top-1 accuracy in percent of an exported (PT2E) graph over a loader of ``(images, labels)``.

    ``qh.accuracy`` refuses a model whose ``.training`` flag is set; an exported
    graph keeps that flag at True and refuses ``.eval()``, because its train/eval
    behaviour was fixed at export (``move_exported_model_to_eval`` switches it).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from .metrics import predict

    if not isinstance(graph_module, torch.fx.GraphModule):
        raise TypeError(f"graph_module must be a torch.fx.GraphModule (from torch.export / convert_pt2e), got {type(graph_module).__name__}")
    preds, labels = predict(graph_module, loader)
    return 100.0 * int((preds == labels).sum()) / len(labels)


def strip_unused_weights(graph_module: torch.fx.GraphModule) -> int:
    """Delete parameters and buffers that no node of the graph reads; returns the bytes removed.

    ``convert_pt2e`` adds the int8 weights as new constants but leaves the
    original float weights attached to the module, unused; saved as they are,
    the "INT8" file would hold both. Changes ``graph_module`` in place.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(graph_module, torch.fx.GraphModule):
        raise TypeError(f"graph_module must be a torch.fx.GraphModule, got {type(graph_module).__name__}")
    used = {str(n.target) for n in graph_module.graph.nodes if n.op == "get_attr"}
    removed = 0
    named = list(graph_module.named_parameters(remove_duplicate=False)) + list(graph_module.named_buffers(remove_duplicate=False))
    for name, tensor in named:
        if name in used:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
        if hasattr(owner, attr):
            delattr(owner, attr)
            removed += tensor.numel() * tensor.element_size()
    return removed


def save_torchscript(model: nn.Module, path: Path | str) -> int:
    """Script ``model`` with ``torch.jit.script`` and write it as TorchScript to ``path`` atomically; returns the file size in bytes.

    ``torch.jit.script`` and ``torch.jit.save`` are deprecated in torch 2.14
    (they warn) but remain the only single-file format for an eager INT8 model.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    scripted = torch.jit.script(model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return len(buf.getvalue())


def save_exported(program: torch.export.ExportedProgram, path: Path | str) -> int:
    """Write an ``ExportedProgram`` (``torch.export.export``) to ``path`` atomically; returns the file size in bytes.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(program, torch.export.ExportedProgram):
        raise TypeError(f"program must be a torch.export.ExportedProgram (re-export the converted model), got {type(program).__name__}")
    buf = io.BytesIO()
    torch.export.save(program, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return len(buf.getvalue())
