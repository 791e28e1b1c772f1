"""``qhelpers tensor`` (manual tensor quantization, notebook 01) and ``qhelpers pretrained`` (a pre-quantized
model on one image, notebook 02)."""

from __future__ import annotations

import argparse

from .cli_common import EXIT_OK, CLIError, UsageError, check_engine, finite_or_none, fmt_list, out, read_image, run_info, to_json, torch_load, torchvision_arch

__all__ = ["cmd_tensor", "cmd_pretrained"]


def cmd_tensor(args: argparse.Namespace) -> int:
    import torch

    from . import quantmath as qm

    if args.values is not None and args.load is not None:
        raise UsageError("give either --values or --load, not both")
    if args.values is not None:
        x = torch.tensor(args.values, dtype=torch.float32)
        source = "given values"
    elif args.load is not None:
        x = torch_load(args.load, "tensor file")
        if not isinstance(x, torch.Tensor):
            raise CLIError(f"tensor file {args.load} holds a {type(x).__name__}, not a tensor")
        x = x.detach().float()
        source = str(args.load)
    else:
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.randn(*args.shape, generator=gen) * args.std
        source = f"random normal (seed {args.seed}, std {args.std})"
    try:
        qp = qm.qparams_from_tensor(
            x, bits=args.bits, signed=not args.unsigned, scheme=args.scheme, reduce_range=args.reduce_range, axis=args.axis
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc
    q = qm.quantize(x, qp)
    x_hat = qm.dequantize(q, qp)
    result = {
        "source": source,
        "shape": list(x.shape),
        "bits": args.bits,
        "signed": not args.unsigned,
        "scheme": args.scheme,
        "axis": args.axis,
        "quant_min": qp.quant_min,
        "quant_max": qp.quant_max,
        "dtype": str(qp.dtype).replace("torch.", ""),
        "scale": qp.scale.tolist(),
        "zero_point": qp.zero_point.tolist(),
        "values": x.tolist(),
        "codes": q.tolist(),
        "dequantized": x_hat.tolist(),
        "max_abs_error": qm.max_abs_error(x, x_hat),
        "mse": qm.mse(x, x_hat),
        "sqnr_db": finite_or_none(qm.sqnr_db(x, x_hat)),  # None: no error at all (infinite SQNR)
    }
    if args.json:
        out(to_json(result))
        return EXIT_OK
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)
    per = "per-tensor" if args.axis is None else f"per-channel along axis {args.axis}"
    sign = "unsigned" if args.unsigned else "signed"
    out(f"tensor: {source}, shape {tuple(x.shape)}")
    out(f"quantization: {args.bits}-bit {sign} {args.scheme}, {per}, codes {qp.quant_min}..{qp.quant_max} stored as {result['dtype']}")
    out(f"scale: {fmt_list(result['scale'], '.6g')}")
    out(f"zero_point: {fmt_list(result['zero_point'], 'd')}")
    out(f"values:\n{x}")
    out(f"integer codes:\n{q}")
    out(f"dequantized:\n{x_hat}")
    out(f"max abs error: {result['max_abs_error']:.6g} (scale/2 = {fmt_list([s / 2 for s in result['scale']], '.6g')})")
    out("SQNR: infinite (no error)" if result["sqnr_db"] is None else f"SQNR: {result['sqnr_db']:.2f} dB")
    return EXIT_OK


def cmd_pretrained(args: argparse.Namespace) -> int:
    import torch

    from . import pretrained as pt

    name = args.model
    if name == "course":
        weights = pt.CourseNet_QuantizedWeights.DEFAULT
        check_engine(weights.meta["backend"])
        image = read_image(args.image, "gray")
        model = pt.course_net(weights=weights, quantize=True)
        label = "course model (data/course_model_int8.pt)"
    else:
        import torchvision.models as tvm

        arch = torchvision_arch(name)
        weights = tvm.get_model_weights(arch).DEFAULT
        if not pt.weights_cached(weights):
            raise CLIError(
                f"{weights} is not in the local torch hub cache ({pt.hub_checkpoint_path(weights)}); this tool never downloads. "
                f"Fetch it once online with: python -c \"import torchvision; torchvision.models.get_model('{arch}', weights='DEFAULT', quantize=True)\""
            )
        check_engine(weights.meta["backend"])
        image = read_image(args.image, "rgb")
        try:
            model = tvm.get_model(arch, weights=weights, quantize=True).eval()
        except Exception as exc:
            raise CLIError(f"cannot load the cached weights {pt.hub_checkpoint_path(weights)}: {exc}") from exc
        label = f"torchvision {arch} ({weights})"
    categories = weights.meta["categories"]
    top = min(args.top, len(categories))
    with torch.inference_mode():
        probs = model(weights.transforms()(image).unsqueeze(0)).softmax(dim=1)[0]
    values, indices = probs.topk(top)
    predictions = [{"class": categories[i], "index": int(i), "probability": round(float(p), 6)} for p, i in zip(values, indices, strict=True)]
    result = {
        "model": label,
        "image": str(args.image),
        "engine": torch.backends.quantized.engine,
        "quantized": pt.is_quantized(model),
        "predictions": predictions,
        "versions": run_info()["versions"],
    }
    if args.json:
        out(to_json(result))
        return EXIT_OK
    out(f"model: {label}")
    out(f"engine: {result['engine']} (INT8 modules: {'yes' if result['quantized'] else 'NO, float model'})")
    out(f"image: {args.image}")
    width = max(len(p["class"]) for p in predictions)
    for rank, p in enumerate(predictions, 1):
        out(f"  {rank}. {p['class']:<{width}}  {100 * p['probability']:6.2f}%")
    return EXIT_OK
