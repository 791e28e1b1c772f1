"""qhelpers: the helper package of the hands-on INT8 quantization course.

Every notebook starts with ``import qhelpers as qh``. Modules by topic:

* ``cpu``         what this CPU does with INT8 and torch.compile, measured by probing the kernels (00)
* ``environment`` setup, environment report, deprecation warnings (notebook 00)
* ``decision``    the decision tree: PTQ, QAT or dynamic, and which engine (00); ``int8_prediction_checks``:
  notebook 00's predict-first checks (INT8 accuracy, changed predictions)
* ``quantmath``   scale/zero point, quantize/dequantize on plain int tensors, errors (01);
  ``int8_arithmetic``: int8 linear with int32 accumulation, requantization (01)
* ``files``       the course folder, data/, checksums, atomic writes, checkpoints (00)
* ``data``        the bundled digits (01)
* ``models``      the course model and its checkpoint (01)
* ``metrics``     accuracy, size, parameter count (01)
* ``training``    training loops (01, 04)
* ``latency``     latency measured properly: threads, warm-up, median and IQR (01, 02)
* ``plotting``    histograms with the quantization grid, per-channel error (01)
* ``checks``      the self-check machinery: report, blanks, ranges, tolerance (01 onwards); ``tensor_checks``:
  notebook 01's self-checks
* ``widgets``     the explorer and the chooser (00, 01)
* ``pretrained``  pre-quantized models: torchvision offline, the course's INT8 weights enum, is_quantized (02);
  ``int8_size``: what an INT8 file is made of, counted (02);
  the benchmark command is ``python -m qhelpers.deployment_benchmark`` (02)
* ``ptq``         static PTQ: fusion finder, qconfig variants, the recipe; the depthwise model of
  ``models_depthwise`` is re-exported here; ``ptq_analysis``: calibration draws, sensitivity with torch.ao.ns (03)
* ``fake_quant``  low-bit fake-quant qconfigs, preparing and calibrating a fake-quant model;
  ``fake_quant_repair``: MSE ranges, bias correction, the error breakdown; ``straight_through``: the STE;
  ``qat``: the QAT recipe (04)
* beyond eager mode (05): ``deprecations`` (the deprecation map), ``plain_int8`` (plain-int8 inference),
  ``torchao_inspect`` (a ``quantize_``'d model's weights, SQNR, latency), ``pt2e_export`` (PT2E op counts,
  deployment files)
* ``transformer`` the digit transformer made of plain nn.Linear, its checkpoint and training (06)
* linear layers (06): ``group_quant`` (per-group and int4 weights, weight-only matmul), ``roofline``,
  ``layer_timing`` (a large layer timed as a model uses it), ``smoothquant``
* when INT8 loses accuracy (07): ``wa_simulation`` (W/A debugging), ``range_setting``, ``equalization`` (CLE),
  ``empirical_bias_correction``, ``adaptive_rounding`` (AdaRound), ``pt2e_debug`` (PT2E numeric debugger);
  ``recovery`` gathers them (``qh.recovery``)
* ``runtime``     deploy to a phone-class runtime: XNNPACKQuantizer, ExecuTorch ``.pte`` export, load and run (08)
* ``<topic>_checks`` the self-checks of a notebook's exercises: ``tensor_checks`` (01), ``pretrained_checks`` and ``speedup_checks`` (02),
  ``ptq_checks`` (03), ``qat_checks`` (04),
  ``beyond_eager_checks`` (05), ``linear_checks`` (06), ``recovery_checks`` (07), ``runtime_checks`` (08),
  ``server_checks`` (09: the exercises of the server runtimes notebook; ``server_runtimes`` itself is not star-imported)

Each helper's docstring names the notebook that introduced it. Not star-imported here (reach them as
``qhelpers.X``): ``registry`` (the ``ModelSpec`` of each model in ``data/``: load, metadata, train, rebuild),
``versions`` (the pins of requirements.txt, ``machine_info()``), and the tooling: ``qhelpers.cli`` with
``cli_common``/``cli_inspect``/``cli_quantize`` (the command-line tool, ``python -m qhelpers``),
``qhelpers.deployment_benchmark`` with ``bench_models``/``bench``/``bench_report`` (the benchmark command) and
``server_runtimes`` (its ONNX Runtime and OpenVINO rows: the ``server`` extra, ``requirements-server.txt``),
``qhelpers.notebooks`` (execute notebooks, hygiene checks, student copies), ``qhelpers.rebuild`` (rebuild
``data/``), ``qhelpers.doctor`` (the laptop check) and ``qhelpers.progress`` (the self-check log).

The modules sit in layers (foundations, platform, building blocks, models, lessons, tools, entry points), each
importing only from its own layer or below, with no cycles: the table is ``LAYERS`` in tests/test_layers.py,
which fails on an import that runs up or round.
"""

from .cpu import *  # noqa: F401,F403
from .environment import *  # noqa: F401,F403
from .decision import *  # noqa: F401,F403
from .int8_prediction_checks import *  # noqa: F401,F403
from .quantmath import *  # noqa: F401,F403
from .int8_arithmetic import *  # noqa: F401,F403
from .files import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
from .latency import *  # noqa: F401,F403
from .plotting import *  # noqa: F401,F403
from .checks import *  # noqa: F401,F403
from .tensor_checks import *  # noqa: F401,F403
from .widgets import *  # noqa: F401,F403

# Modules added by later notebooks (one line each, in course order):
# --- later modules below ---
from .pretrained import *  # noqa: F401,F403
from .int8_size import *  # noqa: F401,F403
from .pretrained_checks import *  # noqa: F401,F403
from .speedup_checks import *  # noqa: F401,F403
from .ptq import *  # noqa: F401,F403
from .ptq_analysis import *  # noqa: F401,F403
from .ptq_checks import *  # noqa: F401,F403
from .fake_quant import *  # noqa: F401,F403
from .fake_quant_repair import *  # noqa: F401,F403
from .qat import *  # noqa: F401,F403
from .straight_through import *  # noqa: F401,F403
from .qat_checks import *  # noqa: F401,F403
from .deprecations import *  # noqa: F401,F403
from .plain_int8 import *  # noqa: F401,F403
from .torchao_inspect import *  # noqa: F401,F403
from .pt2e_export import *  # noqa: F401,F403
from .beyond_eager_checks import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from .group_quant import *  # noqa: F401,F403
from .roofline import *  # noqa: F401,F403
from .layer_timing import *  # noqa: F401,F403
from .smoothquant import *  # noqa: F401,F403
from .linear_checks import *  # noqa: F401,F403
from .range_setting import *  # noqa: F401,F403
from .wa_simulation import *  # noqa: F401,F403
from .equalization import *  # noqa: F401,F403
from .empirical_bias_correction import *  # noqa: F401,F403
from .adaptive_rounding import *  # noqa: F401,F403
from .pt2e_debug import *  # noqa: F401,F403
from .recovery_checks import *  # noqa: F401,F403
from . import recovery  # noqa: F401  (notebook 07's flow gathered from the seven modules above: qh.recovery)
from .runtime import *  # noqa: F401,F403
from .runtime_checks import *  # noqa: F401,F403
from .server_checks import *  # noqa: F401,F403

__version__ = "0.1.0"
