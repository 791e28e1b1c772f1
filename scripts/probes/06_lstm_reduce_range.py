"""Notebook 06 section 7's quantize_dynamic LSTM, piece by piece, on each engine of this CPU.

Usage: python scripts/probes/06_lstm_reduce_range.py [--onednn-lstm]   (about ten seconds natively; under
``scripts/cpu_kind.sh haswell bash -c '$QEMU_PY scripts/probes/06_lstm_reduce_range.py'`` about a minute more)

The notebook's ``TinyLSTM`` (``torch.manual_seed(0)``, untrained) on its first 256 test images, one thread. For
each engine: the output SQNR of ``quantize_dynamic({nn.LSTM, nn.Linear})`` against float, of the LSTM alone (its
28 steps' outputs and the last one) and of the head alone; then ``reduce_range`` alone: the same quantized weights
with the activations on 0..127 (``True``, what ``torch/ao/nn/quantized/dynamic/modules/linear.py`` and ``rnn.py``
pass) or on 0..255 (``False``), for the LSTM's cell params (``make_quantized_cell_params_dynamic``) and for the
head (``linear_dynamic`` on the float LSTM's last state); and a 64-input ``linear_dynamic`` with every input and
weight at its largest code (exact 63.75; 16-bit pair sums that saturate give about half).

The float reference runs on ATen's LSTM kernel (``torch.backends.mkldnn.enabled = False``): under qemu's Haswell
oneDNN's float LSTM kernel crashes a fresh process. ``--onednn-lstm`` only compares oneDNN's float LSTM with
ATen's (run it natively, e.g. with ``ONEDNN_MAX_CPU_ISA=AVX2 ONEDNN_VERBOSE=1`` to see the AVX2 kernel).
"""
import copy
import sys
import warnings


def build():
    import torch
    from torch import nn

    import qhelpers as qh

    class TinyLSTM(nn.Module):  # notebook 06, cell 64
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(28, 64, batch_first=True)
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            out, _ = self.lstm(x.squeeze(1))
            return self.head(out[:, -1])

    qh.setup(seed=0, threads=1)
    test_x, _ = next(iter(qh.digits_loader("test", batch_size=1000)))
    torch.manual_seed(0)
    return TinyLSTM().eval(), test_x[:256]


def lstm_with_reduce_range(qlstm, f, reduce_range):
    """A copy of the dynamic LSTM ``qlstm`` whose cell params are rebuilt from the float LSTM ``f`` as ``from_float``
    builds them, with ``reduce_range`` as given."""
    import torch
    from torch import nn
    from torch.ao.nn.quantized.dynamic.modules.rnn import PackedParameter
    from torch.ao.nn.quantized.modules.utils import _quantize_weight

    def pack(w, b):
        observer = torch.ao.quantization.default_dynamic_qconfig.weight()
        observer(w)
        return torch.ops.quantized.linear_prepack(_quantize_weight(w.float(), observer), b)

    m = copy.deepcopy(qlstm)
    params = torch.ops.quantized.make_quantized_cell_params_dynamic(
        pack(f.weight_ih_l0, f.bias_ih_l0), pack(f.weight_hh_l0, f.bias_hh_l0), f.bias_ih_l0, f.bias_hh_l0, reduce_range)
    m._all_weight_values = nn.ModuleList([PackedParameter(params)])
    return m


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    import torch
    from torch import nn

    import qhelpers as qh

    warnings.filterwarnings("ignore")
    rnn, x = build()
    seq = x.squeeze(1)
    if "--onednn-lstm" in argv:
        with torch.no_grad():
            a, _ = rnn.lstm(seq)
            torch.backends.mkldnn.enabled = False
            b, _ = rnn.lstm(seq)
        print(f"oneDNN against ATen's float LSTM: SQNR {qh.sqnr_db(b, a):.1f} dB, max abs difference {float((a - b).abs().max()):.3g}")
        return
    torch.backends.mkldnn.enabled = False
    print(f"CPU vector ISA {torch.backends.cpu.get_cpu_capability()}, emulated {qh.emulated()}, "
          f"int8_pairs_saturate {({e: qh.int8_pairs_saturate(e) for e in qh.supported_engines()})}")
    with torch.no_grad():
        ref = rnn(x)
        ref_out, _ = rnn.lstm(seq)
    print(f"float output sum {float(ref.sum()):.2f}")
    for engine in qh.supported_engines():
        torch.backends.quantized.engine = engine
        with torch.no_grad():
            full = torch.ao.quantization.quantize_dynamic(copy.deepcopy(rnn), {nn.LSTM, nn.Linear}, dtype=torch.qint8)
            lstm_only = torch.ao.quantization.quantize_dynamic(copy.deepcopy(rnn), {nn.LSTM}, dtype=torch.qint8)
            head_only = torch.ao.quantization.quantize_dynamic(copy.deepcopy(rnn), {nn.Linear}, dtype=torch.qint8)
            q_out, _ = lstm_only.lstm(seq)
            packed_head = full.head._packed_params._packed_params
            head_rr = {rr: qh.sqnr_db(ref, torch.ops.quantized.linear_dynamic(ref_out[:, -1], packed_head, reduce_range=rr))
                       for rr in (True, False)}
            lstm_rr = {rr: qh.sqnr_db(ref_out, lstm_with_reduce_range(full.lstm, rnn.lstm, rr)(seq)[0]) for rr in (True, False)}
            probe_w = torch.ops.quantized.linear_prepack(torch.quantize_per_tensor(torch.ones(1, 64), 1 / 127.5, 0, torch.qint8), None)
            probe = {rr: float(torch.ops.quantized.linear_dynamic(torch.ones(1, 64), probe_w, reduce_range=rr)) for rr in (True, False)}
            print(f"{engine:8s} model {qh.sqnr_db(ref, full(x)):.1f} dB | LSTM alone {qh.sqnr_db(ref_out, q_out):.1f} dB "
                  f"(last step {qh.sqnr_db(ref_out[:, -1], q_out[:, -1]):.1f}) | head alone {qh.sqnr_db(ref, head_only(x)):.1f} dB")
            print(f"{'':8s} reduce_range True / False: LSTM {lstm_rr[True]:.1f} / {lstm_rr[False]:.1f} dB, "
                  f"head {head_rr[True]:.1f} / {head_rr[False]:.1f} dB, probe (exact 63.75) {probe[True]:.2f} / {probe[False]:.2f}")


if __name__ == "__main__":
    main()
