"""Notebook 09's probe of ONNX Runtime's integer convolution: does QLinearConv saturate u8 x s8 pair sums at 16 bits?

Usage: python scripts/probes/09_ort_conv.py   (a few seconds; ONNX Runtime only)

One QLinearConv node, 64 input channels, 1x1, every activation code 255, output scale 10,000: with every weight
code 127 the exact output is 255 x 64 x 127 / 10,000 = 207; if every pair sum is clamped at 32,767 it is
32 x 32,767 / 10,000 = 105. Weight codes of 127 and 0 alternating, and codes of 64, cannot overflow a pair (in
adjacent input channels). Printed with all graph optimizations and with none: (got, exact).
"""
import os


def run(cin, pattern, level):
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.array(pattern * (cin // len(pattern)), np.int8).reshape(1, cin, 1, 1).repeat(8, 0)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(1.0, np.float32), "xs"),
             numpy_helper.from_array(np.array(0, np.uint8), "xz"), numpy_helper.from_array(np.ones(8, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(8, np.int8), "wz"), numpy_helper.from_array(np.array(10000.0, np.float32), "ys"),
             numpy_helper.from_array(np.array(0, np.uint8), "yz")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, cin, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 8, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.graph_optimization_level = 1, level
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.full((1, cin, 4, 4), 255, np.uint8)})[0]
    return int(y.flat[0]), round(255 * int(w[0].astype(np.int64).sum()) / 10000)


def main(argv=None):
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        print(f"{level.name}: all 127 {run(64, [127], level)}, 127 and 0 alternating {run(64, [127, 0], level)}, "
              f"all 64 {run(64, [64], level)}  (got, exact)")


if __name__ == "__main__":
    main()
