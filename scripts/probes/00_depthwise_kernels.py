"""Which engines' depthwise convolutions add 16-bit pairs on this CPU, and what that does to DepthwiseNet.

Usage: python scripts/probes/00_depthwise_kernels.py   (about half a minute on two cores)

Part 1, the kernels: a 3x3 depthwise quantized Conv2d (stride 1, padding 1, a shape FBGEMM's depthwise kernel
takes), every input code 255 and every weight code 127, one scale per tensor, on each engine the course offers
here, with 16, 32 and 128 groups (``qh.depthwise_pairs_saturate`` probes 16 and 128). The centre output's exact value is
9 x 255 x 127 x (1/255) x (1/127) = 9.0; 16-bit pair sums that saturate give 5.0 (four pairs of 32,767/32,385 and
one single product, on an output scale of 0.5). On the ``x86`` engine, torch sends a convolution to oneDNN only on
Linux with AVX512-VNNI, at most 100 groups and symmetric weights (``should_use_onednn_quant``,
ATen/native/quantized/cpu/OnednnUtils.h), else to FBGEMM; the ``fbgemm`` engine always uses FBGEMM. So on a Linux
AVX512-VNNI CPU the ``fbgemm`` rows show what ``x86`` does on the same CPU under Windows or macOS.

Part 2, the course's depthwise model: DepthwiseNet (notebook 03 section 6) and its dead-channel variant (notebook 07's
patient 1, ``qh.make_dead_channel_model``), quantized with ``qh.make_qconfig("minmax")`` (0..255 activations,
per-tensor and per-channel weights) on 500 calibration images, on each engine; accuracy on the 1,000 test images
and a paired test of each engine against ``qnnpack`` (exact sums on every CPU).
"""
import warnings


def depthwise_output(engine, groups):
    import torch
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    torch.backends.quantized.engine = engine
    conv = QuantizedConv2d(groups, groups, 3, padding=1, groups=groups)
    conv.set_weight_bias(torch.quantize_per_tensor(torch.ones(groups, 1, 3, 3), 1 / 127, 0, torch.qint8), None)
    conv.scale, conv.zero_point = 0.5, 0
    x = torch.quantize_per_tensor(torch.ones(1, groups, 3, 3), 1 / 255, 0, torch.quint8)
    with torch.no_grad():
        return float(conv(x).dequantize()[0, 0, 1, 1])


def main(argv=None):
    warnings.filterwarnings("ignore")
    import platform

    import torch

    import qhelpers as qh

    engines = qh.supported_engines()
    print(f"{platform.system()} {platform.machine()}, torch {torch.__version__}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, flags label {qh.cpu_flags_label()}")
    print("part 1: centre output of a 3x3 depthwise conv, all codes at their maximum (exact 9.0, saturated 5.0)")
    for engine in engines:
        outs = {g: depthwise_output(engine, g) for g in (16, 32, 128)}
        print(f"  {engine:<8} " + ", ".join(f"{g} groups: {v:.1f}" for g, v in outs.items()))

    qh.setup(seed=0, threads=min(2, torch.get_num_threads()))
    calib, test = qh.digits_loader("calib"), qh.digits_loader("test")
    labels = torch.cat([y for _, y in test])
    dw = qh.load_depthwise_model()
    models = {"DepthwiseNet": dw, "dead-channel DepthwiseNet": qh.make_dead_channel_model(dw, calib)}
    print("part 2: qh.make_qconfig('minmax') (0..255 activations), accuracy on 1,000 test images, paired vs qnnpack")
    for name, model in models.items():
        for per_channel in (False, True):
            qconfig = qh.make_qconfig("minmax", per_channel=per_channel)
            preds = {}
            for engine in engines:
                q = qh.post_training_quantize(model, calib, engine=engine, qconfig=qconfig)
                torch.backends.quantized.engine = engine
                with torch.no_grad():
                    preds[engine] = torch.cat([q(x).argmax(1) for x, _ in test])
            weights = "per-channel" if per_channel else "per-tensor"
            for engine in engines:
                if engine == "qnnpack" or "qnnpack" not in preds:
                    continue
                print(f"  {name}, {weights}: {qh.paired_test(preds[engine], preds['qnnpack'], labels, names=(engine, 'qnnpack'))}")


if __name__ == "__main__":
    main()
