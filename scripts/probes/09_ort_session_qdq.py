"""Notebook 09's probe of the Q/DQ nodes an ONNX Runtime session adds to the course model's INT8 file (section 6's table).

Usage: python scripts/probes/09_ort_session_qdq.py   (one quantization and two sessions: well under a minute)

The course model exported and quantized (QDQ, U8S8, per-channel, reduce_range as ONNX Runtime's probe decides) as in
notebook 09; then sessions at ORT_DISABLE_ALL and ORT_ENABLE_BASIC save the graph they run. Each Quantize/Dequantize
node is described by what makes its input and what reads its output; the script prints the descriptions a session's
graph has that the file has not (added) and the other way round (removed), and the chain after the average pool.
"""
import collections
import tempfile
import warnings
from pathlib import Path


def main(argv=None):
    warnings.filterwarnings("ignore")
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import qhelpers as qh
    from qhelpers import server_runtimes as sr

    qh.setup(seed=0, threads=1)
    model = qh.load_course_model().eval()
    calib_x = qh.digits_dataset("calib").tensors[0]
    test_x, _ = next(iter(qh.digits_loader("test", batch_size=1000)))
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

    q = str(d / "q.onnx")
    quantize_static(str(d / "course_pre.onnx"), q, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=sr.onnxruntime_pairs_saturate(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)

    def describe(path):
        g = onnx.load(path).graph
        made = {o: n.op_type for n in g.node for o in n.output}
        inits = {i.name for i in g.initializer}
        readers = collections.defaultdict(list)
        for n in g.node:
            for i in n.input:
                readers[i].append(n)
        qdq = collections.Counter(
            f"{made.get(n.input[0], 'initializer' if n.input[0] in inits else 'input')} -> {n.op_type} -> "
            f"{'+'.join(r.op_type for r in readers[n.output[0]]) or 'output'}"
            for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
        node, chain = next(n for n in g.node if n.op_type == "ReduceMean"), ["ReduceMean"]
        while readers.get(node.output[0]) and len(chain) < 6:
            node = readers[node.output[0]][0]
            chain.append(node.op_type)
        return qdq, " -> ".join(chain)

    base, chain = describe(q)
    print(f"onnxruntime {ort.__version__}; in the file: {sum(base.values())} Q/DQ nodes; after the pool: {chain}")
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC"):
        o = ort.SessionOptions()
        o.graph_optimization_level, o.log_severity_level = getattr(ort.GraphOptimizationLevel, level), 3
        o.optimized_model_filepath = str(d / f"{level}.onnx")
        ort.InferenceSession(q, o, providers=["CPUExecutionProvider"])
        got, chain = describe(o.optimized_model_filepath)
        print(f"{level}: {sum(got.values())} Q/DQ nodes; added {dict(got - base)}; removed {dict(base - got)}; after the pool: {chain}")


if __name__ == "__main__":
    main()
