"""The PT2E numeric debugger of torchao, per node, and selective float in PT2E (notebook 07).

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

``pt2e_quantizer(..., float_modules=...)`` keeps chosen modules in float; ``pt2e_quantize`` prepares, calibrates
and converts; ``pt2e_node_sqnr`` compares each quantized node with its float twin. Part of the recovery flow of
``qhelpers.recovery``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from .environment import check_engine

__all__ = [
    "pt2e_quantizer",
    "pt2e_quantize",
    "pt2e_node_sqnr",
]


# --------------------------------------------------------------------------- PT2E: the numeric debugger and selective float


def pt2e_quantizer(*, engine: Optional[str] = None, per_channel: bool = True, float_modules: Sequence[str] = ()) -> Any:
    """The PT2E quantizer for ``engine``: ``X86InductorQuantizer`` (x86, fbgemm) or ``ArmInductorQuantizer`` (qnnpack).

    ``per_channel=False`` swaps the weight spec for a per-tensor symmetric
    min/max one (the patient of notebook 03); ``float_modules`` are left in
    float with ``set_module_name_qconfig(name, None)``, the PT2E twin of
    ``qh.keep_in_float``.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import arm_inductor_quantizer as aiq
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    engine = check_engine(engine)
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    if isinstance(float_modules, str):
        float_modules = [float_modules]
    if engine in ("x86", "fbgemm", "onednn"):
        quantizer, config = xiq.X86InductorQuantizer(), xiq.get_default_x86_inductor_quantization_config()
    elif engine == "qnnpack":
        quantizer, config = aiq.ArmInductorQuantizer(), aiq.get_default_arm_inductor_quantization_config()
    else:
        raise ValueError(f"engine {engine!r} has no PT2E quantizer here; use 'x86', 'fbgemm' or 'qnnpack'")
    w = config.weight
    if per_channel:
        w = dataclasses.replace(w, qscheme=torch.per_channel_symmetric, ch_axis=0, observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=2**-12))
    else:
        w = dataclasses.replace(w, qscheme=torch.per_tensor_symmetric, ch_axis=None, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    config = dataclasses.replace(config, weight=w)
    quantizer.set_global(config)
    for name in float_modules:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def pt2e_quantize(model: nn.Module, calib_loader: Iterable, example: torch.Tensor, quantizer: Any, *, num_batches: Optional[int] = None) -> torch.fx.GraphModule:
    """Export ``model`` (batch dimension dynamic), prepare with ``quantizer``, calibrate, convert: the PT2E Q/DQ graph module.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .ptq import calibrate

    exported = torch.export.export(copy.deepcopy(model).eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
    prepared = prepare_pt2e(exported, quantizer)
    calibrate(prepared, calib_loader, num_batches=num_batches)
    return convert_pt2e(prepared)


def pt2e_node_sqnr(
    model: nn.Module, calib_loader: Iterable, example: torch.Tensor, quantizer: Any, *, num_batches: Optional[int] = None
) -> tuple[list[dict], torch.fx.GraphModule]:
    """The PT2E numeric debugger: SQNR (dB) of every node's output, PT2E-quantized vs float, on ``example``.

    How torchao 0.18 pairs the nodes (``torchao/quantization/pt2e/_numeric_debugger.py``):
    ``torch.export`` and every FX pass after it record where each node came from
    in ``node.meta["from_node"]``; ``prepare_for_propagation_comparison`` puts an
    output logger after every node that comes from the original graph, keyed by
    its oldest ancestor (``_extract_node_source_debug_info`` follows
    ``from_node`` back to it: its name and graph id), in the float and in the
    quantized model alike; ``extract_results_from_loggers`` collects what the
    loggers saw and ``compare_results`` pairs the two models' entries with the
    same key. (``generate_numeric_debug_handle`` is not needed: in torchao 0.18
    nothing reads the handles it writes.) Rows ``{"node", "module", "sqnr_db"}`` for
    the ReLU and linear nodes (block outputs; a conv node's own output is not
    comparable, BatchNorm is folded into it only in the quantized graph), in graph order (errors accumulate along the graph, as
    in ``qh.sensitivity_table``), and the converted graph module itself.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torchao.quantization.pt2e import compare_results, extract_results_from_loggers, prepare_for_propagation_comparison
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .ptq import calibrate

    ep = torch.export.export(copy.deepcopy(model).eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    float_gm = ep.module()
    prepared = prepare_pt2e(copy.deepcopy(float_gm), quantizer)
    calibrate(prepared, calib_loader, num_batches=num_batches)
    quantized = convert_pt2e(prepared)
    ref_logged = prepare_for_propagation_comparison(float_gm)
    act_logged = prepare_for_propagation_comparison(quantized)
    with torch.no_grad():
        ref_logged(example)
        act_logged(example)
    comparison = compare_results(extract_results_from_loggers(ref_logged), extract_results_from_loggers(act_logged))
    order = {n.name: i for i, n in enumerate(float_gm.graph.nodes)}
    rows = []
    for info, summary in comparison.items():
        # block outputs: after the ReLU (BatchNorm is folded into the conv in the quantized graph only, so the
        # conv node's own output differs from the float conv's by the BatchNorm) and the classifier
        if not (summary.ref_node_name.startswith("relu") or summary.ref_node_name.startswith("linear")):
            continue
        sq = summary.results[0].sqnr
        rows.append({"node": summary.ref_node_name, "module": summary.ref_module_stack, "sqnr_db": float(sq)})
    rows.sort(key=lambda r: order.get(r["node"], len(order)))
    return rows, quantized
