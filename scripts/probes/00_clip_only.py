"""Notebook 00's probe behind cell 36: do exercise 4's changed predictions come from clipping or from rounding?

Usage: python scripts/probes/00_clip_only.py [x86|qnnpack ...]   (about ten seconds per engine, one thread)

Exercise 4's PTQ (``qh.post_training_quantize``'s steps: fuse, the histogram qconfig, prepare, calibrate on the
first 4 x 64 training images, after ``qh.setup(seed=0, threads=1)``), on each engine. From the calibrated model
(before ``convert``) it builds two float models whose every observed activation (the quant stub's output, each
fused convolution/Linear's output, the residual add's) is clamped but not rounded, weights left in float:
- ``clip 0..255``: clamped to what its INT8 tensor can represent, codes 0..255 at the calibrated scale and zero
  point (what the INT8 model clips to; on ``x86`` the observer maps its range to 0..127, so a value above it still
  gets a code up to 255);
- ``clip calibrated``: clamped to the observer's own code range (0..127 on ``x86``, 0..255 on ``qnnpack``).
It prints, for the 1,000 test images, how many predicted digits each differs from the float model's, and the INT8
model's count (convert of the same calibrated model): flips that a clip-only model shares with INT8 come from
clipping, the others from rounding (of weights and activations).
"""
import copy
import sys
import warnings




def main(argv=None):
    warnings.filterwarnings("ignore")
    import torch
    from torch import nn
    from torch.ao.quantization import convert, prepare

    import qhelpers as qh
    from qhelpers.ptq import calibrate, fuse, make_qconfig

    class Clamp(nn.Module):
        def __init__(self, lo, hi):
            super().__init__()
            self.lo, self.hi = lo, hi
            self.clamped = 0  # values outside the range, counted so that the clamp is seen to act

        def forward(self, x):
            self.clamped += int(((x < self.lo) | (x > self.hi)).sum())
            return x.clamp(self.lo, self.hi)

    engines = list(argv if argv is not None else sys.argv[1:]) or ["x86", "qnnpack"]
    qh.setup(seed=0, threads=1)
    model = qh.load_course_model().eval()
    test = qh.digits_loader("test", batch_size=256)
    with torch.no_grad():
        float_digits, labels = qh.predict(model, test)
    print(f"float: accuracy {100 * float((float_digits == labels).float().mean()):.1f} %")
    for engine in engines:
        with qh.engine(engine):
            q = fuse(model)
            q.qconfig = make_qconfig("histogram", per_channel=True, reduce_range=engine in ("x86", "fbgemm"))
            prepare(q, inplace=True)
            calibrate(q, qh.digits_loader("train", batch_size=64), num_batches=4)
            variants = {}
            for label, codes in (("clip 0..255", lambda obs: (0, 255)), ("clip calibrated", lambda obs: (obs.quant_min, obs.quant_max))):
                m = copy.deepcopy(q)
                n = 0
                for mod in list(m.modules()):
                    obs = getattr(mod, "activation_post_process", None)
                    if obs is None or isinstance(obs, Clamp):
                        continue
                    scale, zp = (float(v) for v in obs.calculate_qparams())
                    qmin, qmax = codes(obs)
                    mod.activation_post_process = Clamp((qmin - zp) * scale, (qmax - zp) * scale)
                    n += 1
                variants[label] = (m, n)
            int8 = convert(copy.deepcopy(q))
            with torch.no_grad():
                results = {label: (qh.predict(m, test)[0], n, m) for label, (m, n) in variants.items()}
                int8_digits = qh.predict(int8, test)[0]
        int8_flips = int8_digits != float_digits
        print(f"{engine}: INT8 accuracy {100 * float((int8_digits == labels).float().mean()):.1f} %, "
              f"{int(int8_flips.sum())} predictions changed")
        for label, (digits, n, m) in results.items():
            flips = digits != float_digits
            clamped = sum(mod.clamped for mod in m.modules() if isinstance(mod, Clamp))
            print(f"  {label} ({n} activations clamped, {clamped:,} values clipped on the test images; weights float, "
                  f"no rounding): {int(flips.sum())} changed, "
                  f"{int((flips & int8_flips).sum())} of them among INT8's")


if __name__ == "__main__":
    main()
