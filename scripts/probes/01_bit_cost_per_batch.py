"""Notebook 01's probe behind cell 40: what the lost activation bit (``reduce_range``, codes 0..127 instead of 0..255)
costs in SQNR on the course model's stem activation, for each test batch rather than the one batch cell 42 measures.

Usage: python scripts/probes/01_bit_cost_per_batch.py   (a few seconds, one thread)

For each batch of 256 test images (the last holds 232): the stem's float output, fake-quantized with its own min/max range to 8-bit
unsigned codes (0..255) and to 7-bit codes (0..127, ``reduce_range=True``), and the SQNR of each against the float
output (``qh.sqnr_db``, ``qh.fake_quantize``, ``qh.qparams_from_tensor``: the calls of cell 42). Run on 2026-12-07
(torch 2.14.1): costs of 8.18, 4.78, 7.50 and 4.60 dB on the four batches (values spread evenly across the steps
would cost about 6 dB).
"""
import warnings


def main(argv=None):
    warnings.filterwarnings("ignore")
    import torch

    import qhelpers as qh

    qh.setup(seed=0, threads=1)
    model = qh.load_course_model()
    costs = []
    with torch.no_grad():
        for i, (x, _) in enumerate(qh.digits_loader("test", batch_size=256)):
            a = model.stem(x)
            a8 = qh.sqnr_db(a, qh.fake_quantize(a, qh.qparams_from_tensor(a, 8, signed=False)))
            a7 = qh.sqnr_db(a, qh.fake_quantize(a, qh.qparams_from_tensor(a, 8, signed=False, reduce_range=True)))
            costs.append(a8 - a7)
            print(f"batch {i} ({len(x)} images): 0..255 {a8:.2f} dB, 0..127 {a7:.2f} dB, cost {a8 - a7:.2f} dB")
    print(f"cost from {min(costs):.2f} to {max(costs):.2f} dB over {len(costs)} batches")
    return costs


if __name__ == "__main__":
    main()
