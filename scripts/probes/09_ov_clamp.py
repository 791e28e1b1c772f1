"""Notebook 09's probe of OpenVINO's INT8 convolution on this CPU: are u8 x s8 pair sums clamped at 16 bits?

Usage: python scripts/probes/09_ov_clamp.py   (six small NNCF quantizations: well under a minute)

One Conv2d (64 input channels, 8 outputs, 1x1, after a ReLU), quantized by NNCF and compiled by OpenVINO at f32 with
one thread, run on an input whose activation codes are all 255. Its output as a fraction of float: with 8-bit weight
codes of 127 everywhere and OverflowFix.DISABLE, a 16-bit clamp of every pair predicts 32 x 32,767 / (64 x 255 x 127)
= 0.5059; with OverflowFix.ENABLE (half-range weights) or with 127 on every other input only, nothing can overflow.
Then the course model's first-layer shape (1 input channel, 8 outputs, 3x3, K = 9), codes 255 x 127 again: a clamp
of four pairs of taps (the ninth with a zero) predicts (4 x 32,767 + 32,385) / (9 x 32,385) = 0.5608; a kernel that
pairs each tap with a zero-padded channel cannot overflow (1.0000).
"""
import os
import warnings


def main(argv=None):
    warnings.filterwarnings("ignore")
    import nncf
    import openvino as ov
    import rich
    import torch
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    rich.reconfigure(force_jupyter=False, quiet=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)

    class Conv(torch.nn.Module):
        def __init__(self, pattern, channels=64, k=1):
            super().__init__()
            self.c = torch.nn.Conv2d(channels, 8, k, bias=False)
            with torch.no_grad():
                self.c.weight.copy_(pattern.view(1, channels, k, k).expand(8, channels, k, k))

        def forward(self, x):
            return self.c(torch.relu(x))

    x = torch.ones(1, 64, 4, 4)
    calib = [torch.rand(1, 64, 4, 4) for _ in range(4)] + [x.clone()]
    print(f"openvino {ov.__version__.split('-')[0]}, nncf {nncf.__version__}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, pattern in (("weights all 127", torch.ones(64)), ("127 on every other input", torch.tensor([1.0, 0.0] * 32))):
        for fix in (OverflowFix.DISABLE, OverflowFix.ENABLE):
            m = Conv(pattern).eval()
            q = nncf.quantize(ov.convert_model(m, example_input=x), nncf.Dataset(calib), subset_size=5,
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix))
            compiled = ov.Core().compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
            with torch.no_grad():
                ratio = float(compiled(x.numpy())[0].mean() / m(x).numpy().mean())
            print(f"{name}, {fix}: INT8 / float = {ratio:.4f}", flush=True)
    print(f"a 16-bit clamp of every pair predicts {32 * 32767 / (64 * 255 * 127):.4f} for weights all 127")
    x1 = torch.ones(1, 1, 8, 8)
    calib1 = [torch.rand(1, 1, 8, 8) for _ in range(4)] + [x1.clone()]
    for fix in (OverflowFix.DISABLE, OverflowFix.ENABLE):
        m = Conv(torch.ones(9), channels=1, k=3).eval()
        q = nncf.quantize(ov.convert_model(m, example_input=x1), nncf.Dataset(calib1), subset_size=5,
                          advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix))
        compiled = ov.Core().compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
        with torch.no_grad():
            ratio = float(compiled(x1.numpy())[0].mean() / m(x1).numpy().mean())
        print(f"first-layer shape (1 channel, 3x3), weights all 127, {fix}: INT8 / float = {ratio:.4f}", flush=True)
    print(f"a clamp of four tap pairs predicts {(4 * 32767 + 255 * 127) / (9 * 255 * 127):.4f}; zero-padded channel pairs 1.0000")


if __name__ == "__main__":
    main()
