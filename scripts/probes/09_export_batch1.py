"""Does torch.onnx.export (dynamo) keep the batch dimension dynamic when the example batch is 1?

Usage: python scripts/probes/09_export_batch1.py   (ten seconds or so)

Exports the course model from a batch-1 example with a dynamic batch dimension, as notebook 09's recipe does, and
runs the file on 50 digits against PyTorch. (Older torch versions specialised a batch of 1; 2.14.1 does not.)
"""
import os
import tempfile
import warnings
from pathlib import Path


def main(argv=None):
    warnings.filterwarnings("ignore")
    import onnxruntime as ort
    import torch

    import qhelpers as qh

    qh.setup(seed=0, threads=1)
    model = qh.load_course_model().eval()
    x = qh.digits_dataset("calib").tensors[0][:50]
    path = Path(tempfile.mkdtemp(prefix="qh09probe_")) / "b1.onnx"
    program = torch.onnx.export(model, (x[:1].clone(),), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ref = model(x)
    print(f"torch {torch.__version__.split('+')[0]}: exported from a batch of 1, input shape {session.get_inputs()[0].shape}; "
          f"on a batch of {len(x)}: output {tuple(out.shape)}, SQNR {qh.sqnr_db(ref, out):.1f} dB against PyTorch "
          f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
