"""Notebook 09's NNCF measurements made outside the notebook: bias correction, overflow fix, calibration draws.

Usage: python scripts/probes/09_nncf_variants.py [bias|overflow|draws ...]   (default: all three)

- bias: NNCF's fast bias correction (the default), the full one, none (disable_bias_correction), and the fast one
  with its threshold raised from 2 to 1000 (the full method's).
- overflow: OverflowFix DISABLE / FIRST_LAYER (default) / ENABLE under the fast and the full bias correction.
- draws: the fast and full bias correction on two random draws of 500 digits from the train split.

The course model, compiled at f32 with one thread; each INT8 model against float with the paired test on the
1,000 test digits. NNCF is deterministic: the same images give the same predictions. About 15-45 s per
quantization, depending on load.
"""
import os
import sys
import time
import warnings


def main(argv=None):
    which = (argv if argv is not None else sys.argv[1:]) or ["bias", "overflow", "draws"]
    warnings.filterwarnings("ignore")
    import nncf
    import openvino as ov
    import rich
    import torch
    from nncf.quantization.advanced_parameters import AdvancedBiasCorrectionParameters, AdvancedQuantizationParameters, OverflowFix

    import qhelpers as qh

    rich.reconfigure(force_jupyter=False, quiet=True)
    qh.setup(seed=0, threads=1)
    model = qh.load_course_model().eval()
    test_x, test_y = next(iter(qh.digits_loader("test", batch_size=1000)))
    calib_x = qh.digits_dataset("calib").tensors[0]
    with torch.no_grad():
        fp = model(test_x).argmax(1)

    def run(name, images, fast=True, **advanced):
        t = time.time()
        ov_model = ov.convert_model(model, example_input=test_x[:2].clone(), input=[(-1, 1, 28, 28)])
        params = AdvancedQuantizationParameters(**advanced) if advanced else None
        quantized = nncf.quantize(ov_model, nncf.Dataset(list(images.split(1))), subset_size=len(images),
                                  fast_bias_correction=fast, advanced_parameters=params)
        compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
        p = torch.from_numpy(compiled(test_x.numpy())[0].copy()).argmax(1)
        r = qh.paired_test(p, fp, test_y, names=("OpenVINO INT8", "float"))
        print(f"{name:44s} acc {(p == test_y).float().mean().item():.3f}, {(p != fp).sum().item():2d} disagreements with float, "
              f"p = {r.p_value:.2g} ({time.time() - t:.0f} s)", flush=True)

    print(f"float {(fp == test_y).float().mean().item():.3f}; nncf {nncf.__version__}, openvino {ov.__version__.split('-')[0]}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if "bias" in which:
        run("fast bias correction (default)", calib_x)
        run("full bias correction", calib_x, fast=False)
        run("no bias correction", calib_x, disable_bias_correction=True)
        run("fast, threshold 1000", calib_x, bias_correction_params=AdvancedBiasCorrectionParameters(threshold=1000))
    if "overflow" in which:
        for fast in (True, False):
            for fix in (OverflowFix.DISABLE, OverflowFix.FIRST_LAYER, OverflowFix.ENABLE):
                run(f"{'fast' if fast else 'full'} bias correction, {fix}", calib_x, fast=fast, overflow_fix=fix)
    if "draws" in which:
        train_x = qh.digits_dataset("train").tensors[0]
        g = torch.Generator().manual_seed(1)
        for k in range(2):
            images = train_x[torch.randperm(len(train_x), generator=g)[:500]]
            for fast in (True, False):
                run(f"train draw {k}, {'fast' if fast else 'full'} bias correction", images, fast=fast)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
