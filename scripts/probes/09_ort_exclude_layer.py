"""Notebook 09's probe of where ONNX Runtime's 8-bit-weight loss sits: one weighted layer at a time left in float.

Usage: python scripts/probes/09_ort_exclude_layer.py   (nine small quantizations: about a minute, longer under load)

The course model exported as in notebook 09, calibrated on the 500 calibration digits (batches of 100) and quantized
(QDQ) the recipe's way with 8-bit weights: U8S8, per-channel, reduce_range=False. Then again with one Conv/Gemm
node at a time excluded from quantization (`nodes_to_exclude`, it stays float), and once with all layers quantized
but the first convolution's weights alone on half range (a per-tensor `"reduce_range": True` in the
`TensorQuantOverrides` extra option, read by onnxruntime/quantization/base_quantizer.py). For each: accuracy on the
1,000 test digits and how many predictions differ from float, with all graph optimizations (the integer kernels) at
one thread. If the loss sat in a count of large weight codes spread over the model, no single exclusion would remove
it; if one does, the loss sits in that layer.
"""
import os
import tempfile
import warnings
from pathlib import Path


def main(argv=None):
    warnings.filterwarnings("ignore")
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import qhelpers as qh
    from qhelpers import server_runtimes as sr

    qh.setup(seed=0, threads=1)
    model = qh.load_course_model().eval()
    calib_x = qh.digits_dataset("calib").tensors[0]
    test_x, test_y = next(iter(qh.digits_loader("test", batch_size=1000)))
    with torch.no_grad():
        fp = model(test_x).argmax(1)
    print(f"onnxruntime {ort.__version__}; its U8S8 pair sums saturate here: {sr.onnxruntime_pairs_saturate()}; "
          f"float acc {(fp == test_y).float().mean().item():.3f}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    d = Path(tempfile.mkdtemp(prefix="qh09probe_"))
    sr.export_onnx(model, test_x[:2].clone(), d / "course.onnx")
    quant_pre_process(str(d / "course.onnx"), str(d / "course_pre.onnx"))
    graph = onnx.load(str(d / "course_pre.onnx")).graph
    name = graph.input[0].name
    weighted = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calib_x.split(100))

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {name: b.numpy()}

    def measure(label, **kwargs):
        out = str(d / "q.onnx")
        quantize_static(str(d / "course_pre.onnx"), out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **kwargs)
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = 1, 1, 3
        s = ort.InferenceSession(out, o, providers=["CPUExecutionProvider"])
        p = torch.from_numpy(s.run(None, {name: test_x.numpy()})[0]).argmax(1)
        print(f"{label}: acc {(p == test_y).float().mean().item():.3f}, {(p != fp).sum().item()} predictions differ from float",
              flush=True)

    measure("all layers 8-bit")
    for n in weighted:
        measure(f"{n.name} ({n.op_type}, weights {n.input[1]}) left in float", nodes_to_exclude=[n.name])
    first = weighted[0]
    channels = next(i for i in graph.initializer if i.name == first.input[1]).dims[0]
    measure(f"all layers 8-bit, {first.name}'s weights alone on half range (TensorQuantOverrides)",
            extra_options={"TensorQuantOverrides": {first.input[1]: [{"axis": 0, "reduce_range": True}]
                                                    + [{"reduce_range": True}] * (channels - 1)}})
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
