"""The course's decision tree: which quantization workflow, which engine, which notebook.

Introduced in notebooks/00_start_here.ipynb (the interactive chooser is built on it).

The tree is data: ``DEPLOY_TARGETS`` holds where a model can run (engine, how to ship it, which notebook),
``recommend`` walks the questions, and ``DECISION_TREE_TEXT`` prints the same tree. A new runtime is a new
row of ``DEPLOY_TARGETS`` (and a line of the text); the questions before it do not change.

Notebook 00's predict-first checks (INT8 accuracy, changed predictions) are in ``qhelpers.int8_prediction_checks``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Optional

from .checks import _FIRST_JUDGED, NotFilledIn, _blank_safe, not_filled, report
from .prediction_memory import recall, remember

__all__ = [
    "Recommendation",
    "recommend",
    "DECISION_TREE_TEXT",
    "DEPLOY_TARGETS",
    "SCENARIOS",
    "MODEL_KINDS",
    "check_recommendation",
]

ModelKind = Literal["conv", "linear"]
MODEL_KINDS = ("conv", "linear")

DECISION_TREE_TEXT = """\
1. Is there a pre-quantized model for your task (torchvision *_QuantizedWeights), to run on x86, or in eager mode on
   ARM with 'qnnpack' weights (not through ExecuTorch)?
     yes                                  -> use it (notebook 02)
2. What is the model made of?
     mostly Linear/LSTM layers            -> INT8 weights first, no calibration (notebook 06): dynamic INT8. On x86,
       (an MLP, LSTM/GRU, transformer)       eager quantize_dynamic (deprecated), or torchao's dynamic INT8 compiled
                                             with torch.compile (needs a C++ compiler: qh.compile_available();
                                             fast only with AVX512-VNNI, notebook 05). Measure the speed: in
                                             one 10-round run of notebook 06 (AVX512-VNNI CPU) eager
                                             quantize_dynamic was slower than float for one input on a small
                                             transformer and faster at batch 256 (its rounds spread widely:
                                             one run, not a rule), and faster at batch 1 and 64 on an LLM-size
                                             layer.
                                             An LSTM: only torch.ao's deprecated APIs, dynamic (eager
                                             quantize_dynamic, or FX) or static PTQ (prepare/convert map nn.LSTM
                                             to its quantized LSTM by default); a GRU: dynamic only; torchao's
                                             quantize_ leaves both float. On an ARM device: Linear layers via
                                             PT2E with XNNPACKQuantizer (is_dynamic=True, notebook 08), which
                                             leaves an LSTM/GRU float; an LSTM/GRU via eager quantize_dynamic
                                             on 'qnnpack'.
                                             Weight-only INT8 for size. Static INT8 only where it measures better
     mostly convolutions (a CNN)          -> go on to 3
3. A CNN: do you have representative inputs (a hundred or more, no labels needed; training data counts)?
     yes                                  -> post-training static quantization, PTQ (notebook 03): try it first
     no                                   -> collect a few hundred unlabelled ones if you can (quantize_dynamic
                                             leaves Conv2d in float), then PTQ. Without any, no recipe in this
                                             course quantizes a CNN's convolutions: dynamic or weight-only INT8
                                             reach only its Linear layers (notebook 06); cross-layer equalization
                                             (notebook 07) needs no data but sets weight ranges, not activation ranges
4. Did quantizing lose too much accuracy?
     yes, a CNN, and you can train        -> quantization-aware training, QAT (notebook 04)
     yes, a CNN, but you cannot train     -> find the cause and recover it without training (notebook 07): range
                                             setting, equalization, bias correction, AdaRound, layers left in float
     yes, a Linear/LSTM model             -> for Linear layers: per-group scales, outlier handling (SmoothQuant);
                                             for any layer: the most sensitive layers left in float (notebook 06)
5. Where does it run?
     x86 server or laptop                 -> eager engine 'x86' (x86 CPUs with AVX2; older ones: 'qnnpack', and
                                             'onednn', which the course does not use); or PT2E with
                                             X86InductorQuantizer and torch.compile (notebook 05; needs a C++
                                             compiler; without AVX512-VNNI: reduce_range=True)
     ARM phone or board                   -> PTQ (or QAT) in PT2E with XNNPACKQuantizer (notebook 05 teaches PT2E),
                                             lowered to ExecuTorch's XNNPACK backend (notebook 08); in eager mode
                                             'qnnpack' is the engine the course uses there (ARM Linux also offers
                                             'onednn', which the course does not use)
     Arm server (Graviton, Axion, Cobalt) -> eager engine 'qnnpack' (qh.recommend: arm_device=True, its ExecuTorch
                                             line aside), or ONNX Runtime static QDQ INT8 (notebook 09); OpenVINO's
                                             CPU plugin lists INT8 for x86-64 only"""

# Where a model runs: the eager engine there, how to ship it, and the notebook that does it.
DEPLOY_TARGETS: dict[str, dict[str, str]] = {
    "x86": {
        "engine": "x86",
        "notebook": "notebook 05",
        "deploy": "eager mode runs on engine 'x86' (on x86 CPUs with AVX2; older x86 CPUs have only 'qnnpack' and "
        "'onednn'); the non-deprecated path is PT2E with X86InductorQuantizer and torch.compile (notebook 05)",
    },
    "arm": {
        "engine": "qnnpack",
        "notebook": "notebook 08",
        "deploy": "eager mode runs on engine 'qnnpack'; to ship on a phone or board, quantize with PT2E's "
        "XNNPACKQuantizer and run the model with ExecuTorch's XNNPACK backend (notebook 08)",
    },
}


@dataclass(frozen=True)
class Recommendation:
    """What to do (``method``), on which eager-mode engine, in which notebook, how to deploy, why, and the answers it came from.

    On an ARM device, PTQ and QAT are done in PT2E with ``XNNPACKQuantizer`` (the form ExecuTorch lowers);
    ``engine`` is then the eager engine that runs there (``qnnpack``), for the eager-mode notebooks.
    ``given`` names the arguments the ``recommend(...)`` call passed (the others took their defaults); None for a
    ``Recommendation`` not made by ``recommend``.
    """

    method: str
    engine: str
    notebook: str
    reason: str
    deploy: str = ""
    answers: dict = field(default_factory=dict, compare=False)
    given: Optional[frozenset] = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        where = "" if "PT2E" in self.method else f" on engine '{self.engine}'"  # PT2E does not run on an eager engine
        return f"{self.method}{where} ({self.notebook}): {self.reason}"


def _records_given(walk: Any) -> Any:
    """``recommend`` with the names of the arguments its caller passed kept in ``Recommendation.given``."""
    signature = inspect.signature(walk)

    @functools.wraps(walk)
    def recommend(*args: Any, **kwargs: Any) -> Recommendation:
        given = frozenset(signature.bind(*args, **kwargs).arguments)  # a wrong call raises TypeError, as the call would
        return replace(walk(*args, **kwargs), given=given)

    return recommend


@_records_given
def recommend(
    has_calibration_data: bool,
    can_train: bool,
    ptq_drop_acceptable: Optional[bool] = None,
    arm_device: bool = False,
    *,
    model_kind: ModelKind = "conv",
    pre_quantized: bool = False,
) -> Recommendation:
    """Walk the decision tree (``DECISION_TREE_TEXT``) and return a ``Recommendation``.

    ``has_calibration_data``: representative inputs exist (a hundred or more; no
    labels needed). ``can_train``: there is training data and time to
    fine-tune; training data also calibrates PTQ, so PTQ still comes first.
    ``ptq_drop_acceptable``: how the first post-training INT8 model did
    (``None`` when it has not been tried yet, ``False`` when it lost too
    much). ``arm_device``: the model runs on an ARM CPU, a phone or board
    (else an x86 server or laptop; see ``DEPLOY_TARGETS``); on an Arm server
    its engine ``qnnpack`` holds but its ExecuTorch line does not: ONNX
    Runtime static INT8 is the other path there (notebook 09). ``model_kind``: ``"conv"``
    for a CNN, ``"linear"`` for a model whose compute is in Linear/LSTM layers
    (MLP, LSTM/GRU, transformer; a plain nn.RNN stays float), which goes to dynamic INT8 first
    whether or not there is data (PyTorch's quantization docs recommend
    dynamic quantization for LSTM and transformer models, static for CNNs;
    see docs/REFERENCES.md). ``pre_quantized``: a ready-made INT8 model for
    the task exists (torchvision's ``*_QuantizedWeights``); it is used before
    PTQ has been tried (one that lost too much is not the answer); on ARM it runs
    in eager mode on ``qnnpack`` (an eager model cannot be lowered to ExecuTorch,
    which the reason says). On ARM a Linear/LSTM model gets ``"dynamic INT8"`` (unless INT8 lost too much:
    then, as on x86, finer scales or outlier handling, deployed the same way):
    PT2E's XNNPACKQuantizer for Linear layers, eager ``quantize_dynamic`` on
    ``qnnpack`` for an LSTM/GRU (XNNPACKQuantizer leaves ``aten.lstm`` float). A
    ``ptq_drop_acceptable`` that is not None means PTQ ran, so data existed.
    The result records which arguments were passed (``Recommendation.given``): ``check_recommendation`` wants
    all six answered, none left to its default.

    Introduced in notebooks/00_start_here.ipynb.
    """
    for name, value in (
        ("has_calibration_data", has_calibration_data),
        ("can_train", can_train),
        ("arm_device", arm_device),
        ("pre_quantized", pre_quantized),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if ptq_drop_acceptable is not None and not isinstance(ptq_drop_acceptable, bool):
        raise TypeError(f"ptq_drop_acceptable must be True, False or None, got {ptq_drop_acceptable!r}")
    if model_kind not in MODEL_KINDS:
        raise ValueError(f"model_kind must be 'conv' (a CNN) or 'linear' (Linear/LSTM layers), got {model_kind!r}")
    answers = dict(
        has_calibration_data=has_calibration_data,
        can_train=can_train,
        ptq_drop_acceptable=ptq_drop_acceptable,
        arm_device=arm_device,
        model_kind=model_kind,
        pre_quantized=pre_quantized,
    )
    target = DEPLOY_TARGETS["arm" if arm_device else "x86"]

    def rec(method: str, notebook: str, reason: str) -> Recommendation:
        if arm_device and method.endswith(("PTQ", "QAT")):
            method += " in PT2E with XNNPACKQuantizer"  # the form ExecuTorch can lower (an eager INT8 model cannot be)
        return Recommendation(method, target["engine"], notebook, reason, target["deploy"], answers)

    def _notebooks(*numbers: str) -> str:
        nums = [n for n in numbers if n]
        return f"notebook {nums[0]}" if len(nums) == 1 else f"notebooks {', '.join(nums[:-1])} and {nums[-1]}"

    # On a phone the model ships through the target's own notebook (08), after PT2E (05); on x86 the eager
    # engine runs what notebook 03/04 make.
    ship = "" if not arm_device else target["notebook"].removeprefix("notebook ")
    if pre_quantized and ptq_drop_acceptable is None:
        return rec(
            "use the pre-quantized model",
            "notebook 02",
            "someone has already quantized and evaluated it: load it with quantize=True, check it is really quantized "
            "and measure it on your data; quantize yourself only if it does not fit"
            + ("; on ARM it runs in eager mode on 'qnnpack' where torchvision ships weights for it (e.g. "
               "MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1); an eager model cannot be lowered to ExecuTorch, "
               "so for an ExecuTorch app quantize yourself in PT2E (answer pre_quantized=False)" if arm_device else ""),
        )
    if model_kind == "linear":
        arm_how = ("on a phone or board, Linear layers go through PT2E with XNNPACKQuantizer's dynamic config "
                   "(get_symmetric_quantization_config(is_dynamic=True)), run by ExecuTorch's XNNPACK backend (notebook 08); "
                   "XNNPACKQuantizer's default patterns do not quantize LSTM/GRU and leave those layers float, so an LSTM/GRU is quantized by "
                   "eager quantize_dynamic on engine 'qnnpack' (notebook 06), or rewritten with nn.Linear gates; measure "
                   "it on the device")
        if ptq_drop_acceptable is True:  # INT8 was tried and kept the accuracy
            return rec("dynamic INT8", "notebook 06" if not arm_device else "notebooks 06 and 08",
                       "INT8 kept the accuracy you need: keep it, and deploy it as below" + (f"; {arm_how}" if arm_device else ""))
        if ptq_drop_acceptable is False:  # before the ARM answer: dynamic INT8 is what just lost too much
            return rec(
                "finer scales or outlier handling",
                "notebook 06" if not arm_device else "notebooks 06 and 08",
                "INT8 lost too much on a Linear/LSTM model: for Linear layers, per-group weight scales or SmoothQuant for "
                "activation outliers (both act on nn.Linear only); for any layer, the most sensitive ones left in float; "
                "QAT only if that is not enough and you can train"
                + (f"; then deploy as below: {arm_how}" if arm_device else ""),
            )
        if arm_device:
            return rec("dynamic INT8", "notebooks 06 and 08", f"INT8 weights need no calibration and are 4x smaller; {arm_how}")
        return rec(
            "dynamic INT8",
            "notebook 06",
            "INT8 weights need no calibration and are 4x smaller; speed needs a kernel that reads the int8 weights "
            "directly: on x86, eager quantize_dynamic (deprecated) and torchao's dynamic INT8 compiled with torch.compile "
            "(notebook 06, one 10-round run on an AVX512-VNNI CPU: eager quantize_dynamic slower than float for one input "
            "on a small transformer and faster at batch 256, with widely spread rounds, and faster at batch 1 and 64 on an LLM-size layer; torchao's eager paths "
            "slower: measure yours; torch.compile needs a C++ compiler, see qh.compile_available(): without one, eager "
            "quantize_dynamic; torchao's compiled path is fast only with AVX512-VNNI: without it torch._int_mm is an "
            "exact but slow loop, notebook 05, or, compiled with Inductor's freezing in a process that has imported "
            "x86_inductor_quantizer (both needed), oneDNN's kernel, which can saturate: reduce_range=True); an LSTM is converted only by torch.ao's deprecated "
            "APIs, dynamic quantization (eager quantize_dynamic, or FX graph mode) or static PTQ (prepare/convert map "
            "nn.LSTM to its quantized LSTM by default), a GRU only by dynamic quantization; static INT8 only where it "
            "measures better",
        )
    if ptq_drop_acceptable is False:
        if can_train:
            return rec(
                "QAT",
                _notebooks("04", "05" if ship else "", ship),
                "PTQ lost too much; training with fake quantization lets the model compensate"
                + ("; notebook 04 teaches QAT in eager mode, notebook 05 runs it in PT2E (with the x86 quantizer: use "
                   "XNNPACKQuantizer's QAT config instead), notebook 08 lowers the result to ExecuTorch" if ship else ""),
            )
        return rec(
            "recover without training",
            _notebooks("07", ship),
            "PTQ lost too much and you cannot train: find whether weights or activations cause it, then try range "
            "setting, cross-layer equalization, bias correction, AdaRound, or the most sensitive layers left in float"
            + ("; for a phone, apply the fix to the float model or in PT2E (notebook 07 uses PT2E's numeric debugger "
               "and leaves a layer float with set_module_name_qconfig), then lower with XNNPACKQuantizer "
               "(notebook 08)" if ship else ""),
        )
    ptq_notebooks = _notebooks("03", "05" if ship else "", ship)
    if ptq_drop_acceptable is True:  # PTQ was tried, so there was data
        return rec("PTQ", ptq_notebooks, "PTQ kept the accuracy you need: keep it, and deploy it as below")
    if can_train:  # (before has_calibration_data: a team that can train is told why PTQ still comes first)
        return rec(
            "PTQ",
            ptq_notebooks,
            "the training data calibrates PTQ too (a hundred or more inputs, labels unused); try PTQ first and train (QAT) "
            "only if it loses too much",
        )
    if has_calibration_data:
        return rec("PTQ", ptq_notebooks, "a CNN with calibration data: try PTQ first, it is minutes of work")
    return rec(
        "collect data, then PTQ",
        ptq_notebooks,
        "quantize_dynamic converts, by default, Linear and recurrent layers only (LSTM, GRU, LSTMCell, GRUCell, RNNCell) and leaves Conv2d in float, so it leaves a CNN's compute "
        "in float; a few hundred unlabelled inputs from where the model will run are enough to calibrate PTQ (with thirty, "
        "8 of 8 draws came at most 3 dB of SQNR below the full set in notebook 03's run, asserted at least six; a hundred is a safe margin). Without any inputs, no recipe in this course quantizes a CNN's "
        "convolutions: dynamic or weight-only INT8 (notebook 06) reach only its Linear layers (a small share of a CNN's "
        "multiply-adds; notebook 00 counts it), and cross-layer equalization (notebook 07) needs no data but sets "
        "weight ranges, not the activation ranges PTQ calibrates",
    )


# Exercise scenarios of notebooks/00_start_here.ipynb: the story a learner reads. The answers the story
# implies are kept only as digests (``_EXPECTED``), so that printing an object shows no answer; each question has
# only two or three possible values, so a learner who reads this file can still recover an answer by hashing the
# candidates: the key keeps answers out of sight, it does not resist reading the package (any offline key over so
# small an answer space can be enumerated);
# for each question a hint points at the words of the story that decide it (shown when the learner answers
# that question differently; never the answer).
SCENARIOS: dict[str, str] = {
    "camera": "A server team has a CNN, 500 unlabelled frames from the production camera, and must ship it tomorrow on x86 servers.",
    "phone": "A phone app's CNN lost 4 accuracy points with PTQ; the team has the training set and a week of GPU time.",
    "lstm": "A vendor's LSTM language model is to be served on x86 CPUs; the team has a few thousand logged requests "
    "and no way to retrain it.",
}

QUESTIONS = ("pre_quantized", "model_kind", "has_calibration_data", "can_train", "ptq_drop_acceptable", "arm_device")
_DEFAULTS: dict[str, Any] = {"ptq_drop_acceptable": None, "arm_device": False, "model_kind": "conv", "pre_quantized": False}


def _digest(scenario: str, question: str, value: Any) -> str:
    return hashlib.sha256(f"{scenario}|{question}|{value!r}".encode()).hexdigest()[:16]


_EXPECTED: dict[str, dict[str, str]] = {
    "camera": {
        "pre_quantized": "708f6388daf93ccc",
        "model_kind": "7e913037ab4978db",
        "has_calibration_data": "03bf1bdc1dd4fad9",
        "can_train": "741d4f18c77bd789",
        "ptq_drop_acceptable": "3d9e518162570ebc",
        "arm_device": "97120129b2877b39",
        "outcome": "04090e38c80c0a86",
    },
    "phone": {
        "pre_quantized": "5b7881e46cc48abb",
        "model_kind": "e57d40d24beb03cb",
        "has_calibration_data": "d55395ef918fb5e8",
        "can_train": "3a93eb4e7560de8e",
        "ptq_drop_acceptable": "4f0890fc79de7dae",
        "arm_device": "2161499a6064356e",
        "outcome": "202c1ceabab85f79",
    },
    "lstm": {
        "pre_quantized": "6d3d65e725297246",
        "model_kind": "3ae88e80da2284c7",
        "has_calibration_data": "29204b3829632739",
        "can_train": "cbd42c4883746e11",
        "ptq_drop_acceptable": "cd8929013889e502",
        "arm_device": "f972169ef52ad311",
        "outcome": "440fe4512af29bea",
    },
}

_HINTS: dict[str, str] = {
    "pre_quantized": "does the story mention a ready-made INT8 model for this task, one you can download or already have?",
    "has_calibration_data": "does the story give you representative inputs, whatever the method then does with them? Unlabelled inputs count, so does a training set, and so do inputs kept to measure accuracy (split them: calibrate on one part, measure on the rest)",
    "can_train": "is there time and data to fine-tune before the model ships? Read what the story says about its deadline and about training",
    "ptq_drop_acceptable": "has PTQ been tried yet, and if so, did its loss stay within what the application tolerates (in these stories, the 1-2 points PTQ usually costs)? help(qh.recommend) says what this question takes in each case",
    "arm_device": "where does the model run: on an x86 CPU, or on an Arm one (a phone, a board or an Arm server)?",
    "model_kind": "what is the model made of: convolutions (a CNN) or Linear/LSTM layers?",
}


def outcome_matches(scenario: str, answer: Any) -> bool:
    """True when ``answer`` (a ``Recommendation``) has the method, engine and notebook the story leads to."""
    outcome = (getattr(answer, "method", None), getattr(answer, "engine", None), getattr(answer, "notebook", None))
    return _digest(scenario, "outcome", outcome) == _EXPECTED[scenario]["outcome"]


def scenario_mistakes(scenario: str, answer: Any) -> list[tuple[str, str]]:
    """(question, hint) for each question of ``scenario`` that ``answer`` (a ``Recommendation``) answered differently."""
    expected = _EXPECTED[scenario]
    given = getattr(answer, "answers", {}) or {}
    return [(q, _HINTS[q]) for q in QUESTIONS if _digest(scenario, q, given.get(q, _DEFAULTS.get(q))) != expected[q]]


@_blank_safe
def check_recommendation(scenario: str, answer: Any) -> bool:
    """Exercise (notebook 00): the ``qh.recommend(...)`` result for one of ``qh.SCENARIOS``.

    Compares the reasoning (the answer given to each question of the tree),
    not only the outcome: a right method reached from a wrong reading of the
    story fails, with a hint that names the question read wrongly. The first
    complete answer per story is the one scored (kept beside the progress log,
    as exercise 4's predictions are, so a restart keeps it): a later, different
    answer is still said right or wrong, with its hint, but a story whose first
    answer missed stays ❌. All six
    questions must be answered in the call (``QUESTIONS``): one left to
    ``recommend``'s default is refused, naming it. On a pass it prints the
    recommendation.

    Introduced in notebooks/00_start_here.ipynb.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {list(SCENARIOS)}")
    if not_filled(answer):
        raise NotFilledIn(f"scenario {scenario!r}")
    name = f"scenario {scenario!r}"
    if not isinstance(answer, Recommendation):
        return report(name, False, f"expected the result of qh.recommend(...), got {type(answer).__name__}")
    mistakes = scenario_mistakes(scenario, answer)
    try:
        recomputed = recommend(**answer.answers)
    except Exception:  # answers that recommend() would refuse: the result was not made by it
        recomputed = None
    if answer.given is None or recomputed is None or (answer.method, answer.engine, answer.notebook) != (recomputed.method, recomputed.engine, recomputed.notebook):
        return report(name, False, "call qh.recommend(...) with the story's answers; do not build the result yourself")
    missing = [q for q in inspect.signature(recommend).parameters if q not in answer.given]  # in the order of the call
    if missing:  # a default that happens to fit the story is not a reading of it
        return report(name, False, f"answer all six questions: pass {', '.join(missing)} too (read each off the story; "
                      "a default is not an answer)")
    # the first complete answer per story is the one scored (as exercise 4's predictions): the hint names a question,
    # so toggling the named one until a pass would otherwise pass every story without reading it
    given = {q: answer.answers.get(q) for q in QUESTIONS}
    memory = f"recommendation for scenario {scenario}"
    first = recall(_FIRST_JUDGED, memory)
    if first is None or first[0] == given:
        remember(_FIRST_JUDGED, memory, [given, not mistakes, mistakes[0][0] if mistakes else ""])
        first = None  # the first answer itself (or the same again): judged as usual
    if not mistakes:
        if first is not None and not first[1]:
            print(f"   the tree's recommendation: {answer}")
            return report(name, False, f"this reading of the story is right, but the story was scored on your first "
                          f"complete answer, which was ❌ (it read {first[2]} wrongly); this one came after its hint")
        result = report(name, True)
        print(f"   the tree's recommendation: {answer}" + (f"\n   deploy: {answer.deploy}" if answer.deploy else ""))
        return result
    lead = f"you got {answer.method} on {answer.engine}" + (", the right outcome for a wrong reason" if outcome_matches(scenario, answer) else "")
    question, hint = mistakes[0]
    more = f" ({len(mistakes) - 1} more question(s) to re-read)" if len(mistakes) > 1 else ""
    scored = ""
    if first is not None:
        scored = ("; the story was scored on your first complete answer, which was "
                  + ("✅ and stays scored" if first[1] else f"❌ (it read {first[2]} wrongly)"))
    return report(name, False, f"{lead}; re-read the story for {question}: {hint}{more}{scored}")
