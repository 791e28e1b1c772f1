"""Notebook 02's probe behind cell 4: can a published float-vs-INT8 top-1 gap be inside the paired noise?

Usage: python scripts/probes/02_imagenet_bound.py   (about 15 s, most of it importing torchvision; reads only its weights metadata)

torchvision publishes two top-1 accuracies on the 50,000 ImageNet validation images, not the paired counts. They
still bound them: b (float right, INT8 wrong) is at most INT8's error count, c (INT8 right, float wrong) is at most
float's error count, and b - c is the gap in images. For each quantized weights it prints:
- the pairing with the most disagreements these bounds allow, and the exact McNemar p-value there (the binomial
  test ``qh.paired_test`` uses); a gap significant at that pairing is significant under every pairing;
- the smallest number of disagreeing images (b + c) at which the gap would stop being significant (p > 0.05).
"""
import sys

N = 50_000


def bound(float_top1, int8_top1, n=N, alpha=0.05):
    """(gap in images, largest b, its c, p at that pairing, fewest disagreements that make p > alpha)."""
    from scipy.stats import binomtest

    gap = round((float_top1 - int8_top1) / 100 * n)
    b = min(round((100 - int8_top1) / 100 * n), round((100 - float_top1) / 100 * n) + gap)
    c = b - gap
    p_max = binomtest(min(b, c), b + c, 0.5).pvalue
    # b + c = |gap| + 2k with k the smaller count; p grows with k at a fixed gap: bisect for the first k above alpha
    lo, hi = 0, n
    while lo < hi:
        k = (lo + hi) // 2
        if binomtest(k, abs(gap) + 2 * k, 0.5).pvalue > alpha:
            hi = k
        else:
            lo = k + 1
    return gap, b, c, p_max, abs(gap) + 2 * lo


def main(argv=None):
    from torchvision.models import quantization as qmodels

    names = argv if argv else ["ResNet18", "ResNet50", "MobileNet_V2", "GoogLeNet", "MobileNet_V3_Large"]
    for name in names:
        weights = getattr(qmodels, f"{name}_QuantizedWeights").DEFAULT
        q = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        fp = weights.meta["unquantized"].meta["_metrics"]["ImageNet-1K"]["acc@1"]
        gap, b, c, p_max, d = bound(fp, q)
        noise = (f"inside the noise only if >= {d} images disagree ({100 * d / N:.1f} %)" if d <= b + c else
                 f"inside the noise only if >= {d} images disagree: more than the errors allow, so never")
        print(f"{name:<19} float {fp:.3f} INT8 {q:.3f}: gap {gap:4d} images ({fp - q:+.3f} points); "
              f"most disagreeing pairing b={b} c={c}: p={p_max:.3g}; {noise}")


if __name__ == "__main__":
    main(sys.argv[1:])
