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


def depthwise_output(engine, groups, k=3, padding=None, code=255, out_scale=0.5):
    """Centre output of a k x k depthwise conv, input codes ``code`` (values 1.0), weight codes 127 (values 1.0)."""
    import torch
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    torch.backends.quantized.engine = engine
    padding = k // 2 if padding is None else padding
    conv = QuantizedConv2d(groups, groups, k, padding=padding, groups=groups)
    conv.set_weight_bias(torch.quantize_per_tensor(torch.ones(groups, 1, k, k), 1 / 127, 0, torch.qint8), None)
    conv.scale, conv.zero_point = out_scale, 0
    x = torch.quantize_per_tensor(torch.ones(1, groups, k, k), 1 / code, 0, torch.quint8)
    with torch.no_grad():
        y = conv(x).dequantize()
        return float(y[0, 0, y.shape[2] // 2, y.shape[3] // 2])


def raw_depthwise_code(engine, groups, code):
    """Output code of a 3x3 depthwise conv (padding 1) on scale-1 codes: input ``code``, weight 127, output scale 2000."""
    import torch
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    torch.backends.quantized.engine = engine
    conv = QuantizedConv2d(groups, groups, 3, padding=1, groups=groups)
    conv.set_weight_bias(torch.quantize_per_tensor(torch.full((groups, 1, 3, 3), 127.0), 1.0, 0, torch.qint8), None)
    conv.scale, conv.zero_point = 2000.0, 0
    x = torch.quantize_per_tensor(torch.full((1, groups, 3, 3), float(code)), 1.0, 0, torch.quint8)
    with torch.no_grad():
        return int(conv(x).int_repr()[0, 0, 1, 1])


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

    print("part 1b: other shapes (exact k*k; saturated 5x5 gives 13.0, 7x7 25.5), all codes at their maximum")
    for engine in engines:
        rows = {"16 groups 5x5": depthwise_output(engine, 16, 5), "16 groups 7x7": depthwise_output(engine, 16, 7),
                "12 groups 3x3": depthwise_output(engine, 12, 3), "12 groups 5x5": depthwise_output(engine, 12, 5),
                "12 groups 7x7": depthwise_output(engine, 12, 7), "16 groups 3x3 padding 0": depthwise_output(engine, 16, 3, 0)}
        print(f"  {engine:<8} " + ", ".join(f"{k}: {v:.1f}" for k, v in rows.items()))
    print("part 1c: 128 groups, output scale 2000, as output codes (exact 146 for input codes 255, 73 for 127)")
    for engine in engines:
        codes = {c: raw_depthwise_code(engine, 128, c) for c in (255, 127)}
        print(f"  {engine:<8} input codes 255: code {codes[255]}; input codes 127: code {codes[127]}")

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
