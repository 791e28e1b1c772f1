"""Notebook 00's exercise 4, measured from outside: how far 8-bit PTQ moves the course model's logits, and which
test images change their predicted digit.

Usage: python scripts/probes/00_logit_moves.py [x86 qnnpack ...]   (about ten seconds per engine, one thread)

Exercise 4's PTQ (``qh.post_training_quantize`` calibrated on the first 4 x 64 training images, after
``qh.setup(seed=0, threads=1)``) on each engine; for the 1,000 test images x 10 classes it prints the median,
99th percentile and largest |INT8 logit - float logit|, the share above 1, the number of predicted digits that
change, how many of those were right only in float or only in INT8 or are an exact tie of the top two INT8 logits
(argmax breaks a tie toward the lower class index), and each changed image's float gap between its top two logits.
"""
import sys
import warnings


def main(argv=None):
    warnings.filterwarnings("ignore")
    import torch

    import qhelpers as qh

    engines = (argv if argv is not None else sys.argv[1:]) or [e for e in ("x86", "qnnpack") if e in qh.supported_engines()]
    qh.setup(seed=0, threads=1)
    model = qh.load_course_model()
    test = qh.digits_loader("test", batch_size=256)
    labels = torch.cat([y for _, y in test])
    with torch.no_grad():
        float_logits = torch.cat([model(x) for x, _ in test])
    float_digits = float_logits.argmax(1)
    top_two = float_logits.topk(2, dim=1).values
    gap = top_two[:, 0] - top_two[:, 1]
    print(f"{torch.backends.cpu.get_cpu_capability()}, flags label {qh.cpu_flags_label()}; float gaps under 0.5 / 1: "
          f"{int((gap < 0.5).sum())} / {int((gap < 1).sum())} images")
    for engine in engines:
        qh.setup(seed=0, threads=1)
        int8 = qh.post_training_quantize(model, qh.digits_loader("train", batch_size=64), num_batches=4, engine=engine)
        with qh.engine(engine), torch.no_grad():
            logits = torch.cat([int8(x) for x, _ in test])
        moves = (logits - float_logits).abs().flatten()
        changed = torch.nonzero(logits.argmax(1) != float_digits).flatten().tolist()
        right_float = sum(int(float_digits[i] == labels[i]) for i in changed)
        right_int8 = sum(int(logits[i].argmax() == labels[i]) for i in changed)
        top = logits.topk(2, dim=1).values
        ties = sum(int(top[i, 0] == top[i, 1]) for i in changed)  # argmax breaks a tie toward the lower class index
        print(f"{engine}: |logit move| median {moves.median():.2f}, 99th percentile {moves.quantile(0.99):.2f}, largest "
              f"{moves.max():.2f}, {100 * (moves > 1).float().mean():.2f} % above 1; {len(changed)} predictions change "
              f"({right_float} right only in float, {right_int8} right only in INT8; {ties} an exact tie of the top two INT8 "
              f"logits), float gaps "
              f"{[round(float(gap[i]), 2) for i in changed]}")


if __name__ == "__main__":
    main()
