"""Notebook 09's probe of the global average pool: why ONNX Runtime leaves it in float in the course's files.

Usage: python scripts/probes/09_ort_global_pool.py   (several seconds; torch's ONNX exporter and ONNX Runtime)

A small Conv -> ReLU -> AdaptiveAvgPool2d(1) -> Linear model is exported as the notebook exports its models; the
exporter writes the pool as `ReduceMean`. The same graph with that node replaced by the equivalent
`GlobalAveragePool` (same float outputs, printed) is quantized the recipe's way (QDQ, per-channel, U8S8) and both
files are opened with ONNX Runtime's optimizations; the node types of each optimized graph are printed. Measured
2026-12-07 on the AVX2 EPYC: the `ReduceMean` file keeps the pool in float between a DequantizeLinear and a
QuantizeLinear; the `GlobalAveragePool` file gets the integer `QLinearGlobalAveragePool`.
"""
import collections
import os
import tempfile


def main(argv=None):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.p, self.f = torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.f(self.p(torch.relu(self.c(x))).flatten(1))

    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    reduce_path, gap_path = os.path.join(folder, "reducemean.onnx"), os.path.join(folder, "gap.onnx")
    torch.onnx.export(M().eval(), (torch.randn(2, 3, 16, 16),), dynamo=True, verbose=False).save(reduce_path)
    graph = onnx.load(reduce_path)
    for i, node in enumerate(graph.graph.node):
        if node.op_type == "ReduceMean":
            graph.graph.node[i].CopyFrom(helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name))
    onnx.save(graph, gap_path)
    data = [torch.randn(2, 3, 16, 16).numpy() for _ in range(3)]
    name = graph.graph.input[0].name
    s0, s1 = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (reduce_path, gap_path))
    print("same float outputs:", bool(np.allclose(s0.run(None, {name: data[0]})[0], s1.run(None, {name: data[0]})[0], atol=1e-5)))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(data)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    for label, path in (("ReduceMean (as exported)", reduce_path), ("GlobalAveragePool", gap_path)):
        quantized = path.replace(".onnx", "_int8.onnx")
        quantize_static(path, quantized, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath, options.log_severity_level = quantized + ".opt.onnx", 3
        ort.InferenceSession(quantized, options, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
        print(f"{label}, ORT_ENABLE_ALL: {dict(sorted(ops.items()))}")


if __name__ == "__main__":
    main()
