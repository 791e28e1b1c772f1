"""Notebook 09's ONNX Runtime measurements made outside the notebook: S8S8 against U8S8, and per-tensor weights.

Usage: python scripts/probes/09_ort_formats.py [rounds]   (timing rounds, default 5)

The course model exported as in notebook 09, calibrated on the 500 calibration digits (batches of 100), and
quantized (QDQ) four ways: the recipe's U8S8 (per-channel, reduce_range as the probe decides), S8S8 with the same
weights, and 8-bit per-tensor weights as U8S8 and as U8U8 (uint8 weights: no saturating VPMADDUBSW path). For each:
accuracy and disagreements with float on the 1,000 test digits with all graph optimizations (the integer kernels)
and with none (float Conv/Gemm on dequantized values), the convolutions left unfused at ORT_ENABLE_EXTENDED, and for
U8S8 and S8S8 the latency of one digit at one thread (best median of `rounds` interleaved rounds, with the load).
"""
import collections
import os
import sys
import tempfile
import warnings
from pathlib import Path


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    rounds = int(argv[0]) if argv else 5
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
    rr = sr.onnxruntime_pairs_saturate()
    print(f"onnxruntime {ort.__version__}; its U8S8 pair sums saturate here: {rr}; float {(fp == test_y).float().mean().item():.3f}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    d = Path(tempfile.mkdtemp(prefix="qh09probe_"))
    sr.export_onnx(model, test_x[:2].clone(), d / "course.onnx")
    quant_pre_process(str(d / "course.onnx"), str(d / "course_pre.onnx"))
    name = onnx.load(str(d / "course_pre.onnx")).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calib_x.split(100))

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {name: b.numpy()}

    def session(path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, save=None):
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads, o.graph_optimization_level, o.log_severity_level = 1, 1, level, 3
        if save:
            o.optimized_model_filepath = save
        return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])

    def fn(s):
        return lambda x: torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x.numpy()})[0])

    variants = {  # name: (activation type, weight type, per_channel, reduce_range)
        "U8S8 per-channel (the recipe)": (QuantType.QUInt8, QuantType.QInt8, True, rr),
        "S8S8 per-channel": (QuantType.QInt8, QuantType.QInt8, True, rr),
        "U8S8 per-tensor 8-bit": (QuantType.QUInt8, QuantType.QInt8, False, False),
        "U8U8 per-tensor 8-bit": (QuantType.QUInt8, QuantType.QUInt8, False, False),
    }
    sessions = {}
    for tag, (act, wt, pc, reduce) in variants.items():
        out = str(d / (tag.split(" (")[0].replace(" ", "_") + ".onnx"))
        quantize_static(str(d / "course_pre.onnx"), out, Reader(), quant_format=QuantFormat.QDQ, per_channel=pc,
                        reduce_range=reduce, activation_type=act, weight_type=wt)
        session(out, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, save=out + ".ext.onnx")
        ops = collections.Counter(n.op_type for n in onnx.load(out + ".ext.onnx").graph.node)
        row = []
        for label, level in (("all optimizations", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                             ("optimizations off", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
            s = session(out, level)
            p = fn(s)(test_x).argmax(1)
            r = qh.paired_test(p, fp, test_y, names=(tag, "float"))
            row.append(f"{label}: acc {(p == test_y).float().mean().item():.3f}, paired test against float: "
                       f"{r.only_a + r.only_b} disagreements ({r.only_a} only INT8 right, {r.only_b} only float right), "
                       f"p = {r.p_value:.2g}, {(p != fp).sum().item()} predictions differ")
            if level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL:
                sessions[tag] = fn(s)
        print(f"{tag} (reduce_range={reduce}): " + "; ".join(row) +
              f"; at ORT_ENABLE_EXTENDED {ops['QLinearConv']} QLinearConv, {ops['Conv']} float Conv", flush=True)
    timed = {k: sessions[k] for k in ("U8S8 per-channel (the recipe)", "S8S8 per-channel")}
    ms = qh.interleaved_latency(timed, test_x[:1].clone(), rounds=rounds)
    print("latency, one digit, one thread, best median of", rounds, "interleaved rounds:",
          ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items()), f"(load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
