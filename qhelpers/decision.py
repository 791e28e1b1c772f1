"""The course's decision tree: which quantization workflow, which engine.

Introduced in notebooks/00_start_here.ipynb (the interactive chooser is built on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from .checks import NotFilledIn, _blank_safe, not_filled, read_range, report

__all__ = [
    "Recommendation",
    "recommend",
    "DECISION_TREE_TEXT",
    "SCENARIOS",
    "MODEL_KINDS",
    "check_recommendation",
    "check_int8_accuracy_prediction",
]

ModelKind = Literal["conv", "linear"]
MODEL_KINDS = ("conv", "linear")

DECISION_TREE_TEXT = """\
1. Is there a pre-quantized model for your task (torchvision *_QuantizedWeights)?  -> use it (notebook 02).
2. Is the model mostly convolutions (a CNN) or mostly Linear/LSTM layers (an MLP, RNN, transformer)?
3. Do you have representative data (a few hundred inputs, no labels needed; training data counts)?
     yes                                  -> post-training static quantization, PTQ (notebook 03): try it first
     no, Linear/LSTM model                -> dynamic quantization (weights INT8, activations at run time; notebook 03)
     no, CNN                              -> collect a few hundred inputs first: quantize_dynamic leaves Conv2d
                                             in float, so it does nothing for a CNN; then PTQ
4. Is the accuracy drop after PTQ unacceptable?
     yes, and you can train               -> quantization-aware training, QAT (notebook 04)
     yes, but you cannot train            -> PTQ with per-channel weights, histogram observers and the most
                                             sensitive layers left in float (notebook 03)
5. Where does it run?
     x86 server or laptop                 -> eager engine 'x86' (FBGEMM and oneDNN kernels); or PT2E with
                                             X86InductorQuantizer and torch.compile (notebook 05)
     ARM phone or board                   -> ship with PT2E: XNNPACKQuantizer, lowered to ExecuTorch's
                                             XNNPACK backend (notebook 05); in eager mode 'qnnpack' is the
                                             engine that runs there"""

_DEPLOY = {
    "x86": "eager mode runs on engine 'x86'; the non-deprecated path is PT2E with X86InductorQuantizer and torch.compile (notebook 05)",
    "qnnpack": "eager mode runs on engine 'qnnpack'; to ship on a phone or board, quantize with PT2E's XNNPACKQuantizer "
    "and run the model with ExecuTorch's XNNPACK backend (notebook 05)",
}


@dataclass(frozen=True)
class Recommendation:
    """What to do (``method``), on which eager-mode engine, how to deploy, why, and the answers it came from."""

    method: str
    engine: str
    notebook: str
    reason: str
    deploy: str = ""
    answers: dict = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return f"{self.method} on engine '{self.engine}' ({self.notebook}): {self.reason}"


def recommend(
    has_calibration_data: bool,
    can_train: bool,
    ptq_drop_acceptable: Optional[bool] = None,
    arm_device: bool = False,
    *,
    model_kind: ModelKind = "conv",
) -> Recommendation:
    """Walk the decision tree.

    ``has_calibration_data``: a few hundred representative inputs exist (no
    labels needed). ``can_train``: there is training data and time to
    fine-tune; training data also calibrates PTQ, so PTQ still comes first.
    ``ptq_drop_acceptable`` is ``None`` when PTQ has not been tried yet.
    ``model_kind`` is ``"conv"`` for a CNN and ``"linear"`` for a model whose
    compute is in Linear/LSTM layers (MLP, RNN, transformer): dynamic
    quantization only converts those, so it is no answer for a CNN.

    Introduced in notebooks/00_start_here.ipynb.
    """
    for name, value in (("has_calibration_data", has_calibration_data), ("can_train", can_train), ("arm_device", arm_device)):
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
    )
    engine = "qnnpack" if arm_device else "x86"

    def rec(method: str, notebook: str, reason: str) -> Recommendation:
        return Recommendation(method, engine, notebook, reason, _DEPLOY[engine], answers)

    if ptq_drop_acceptable is False:
        if can_train:
            return rec("QAT", "notebook 04", "PTQ lost too much; training with fake quantization lets the model compensate")
        return rec(
            "PTQ, tuned",
            "notebook 03",
            "PTQ lost too much and you cannot train: use per-channel weights, histogram observers and keep the most sensitive layers in float",
        )
    if has_calibration_data:
        return rec("PTQ", "notebook 03", "calibration data and no training needed; try it first, it is minutes of work")
    if can_train:
        return rec(
            "PTQ",
            "notebook 03",
            "the training data calibrates PTQ too (a few hundred inputs, labels unused); try PTQ first and train (QAT) only if it loses too much",
        )
    if model_kind == "linear":
        return rec(
            "dynamic quantization",
            "notebook 03",
            "no data at all: quantize the Linear/LSTM weights ahead of time and the activations at run time",
        )
    return rec(
        "collect data, then PTQ",
        "notebook 03",
        "quantize_dynamic converts only Linear/LSTM/GRU layers and leaves Conv2d in float, so it does almost nothing for a CNN; "
        "a few hundred unlabelled inputs from where the model will run are enough to calibrate PTQ",
    )


# Exercise scenarios of notebooks/00_start_here.ipynb: the story a learner reads, the answers to the
# questions that the story implies, and for each question a hint that points at the words of the
# story that decide it (shown when the learner answers that question differently; never the answer).
SCENARIOS: dict[str, tuple[str, dict]] = {
    "camera": (
        "A server team has a CNN, 500 unlabelled frames from the production camera, and must ship it tomorrow on x86 servers.",
        dict(has_calibration_data=True, can_train=False, ptq_drop_acceptable=None, arm_device=False, model_kind="conv"),
    ),
    "phone": (
        "A phone app's CNN lost 4 accuracy points with PTQ; the team has the training set and a week of GPU time.",
        dict(has_calibration_data=True, can_train=True, ptq_drop_acceptable=False, arm_device=True, model_kind="conv"),
    ),
    "no_data": (
        "A vendor's LSTM model arrives with no data at all, to be served on an x86 CPU, with no way to retrain.",
        dict(has_calibration_data=False, can_train=False, ptq_drop_acceptable=None, arm_device=False, model_kind="linear"),
    ),
}

_HINTS: dict[str, str] = {
    "has_calibration_data": "does the story give you inputs to calibrate on? Unlabelled inputs count, and so does a training set",
    "can_train": "is there time and data to fine-tune? 'Ship tomorrow' or 'no way to retrain' says one thing, 'a week of GPU time' another",
    "ptq_drop_acceptable": "has PTQ been tried yet? Leave it None until the story says how PTQ did",
    "arm_device": "where does the model run: a server/x86 CPU or a phone?",
    "model_kind": "what is the model made of: convolutions (a CNN) or Linear/LSTM layers?",
}


def scenario_mistakes(scenario: str, answer: Any) -> list[tuple[str, str]]:
    """(question, hint) for each question of ``scenario`` that ``answer`` (a ``Recommendation``) answered differently."""
    expected = SCENARIOS[scenario][1]
    given = getattr(answer, "answers", {}) or {}
    return [(q, _HINTS[q]) for q, v in expected.items() if given.get(q, _default(q)) != v]


def _default(question: str) -> Any:
    return {"ptq_drop_acceptable": None, "arm_device": False, "model_kind": "conv"}.get(question)


# --------------------------------------------------------------------------- predict first (notebook 00)


@_blank_safe
def check_recommendation(scenario: str, answer: Any) -> bool:
    """Exercise (notebook 00): the ``qh.recommend(...)`` result for one of ``qh.SCENARIOS``.

    Compares the reasoning (the answer given to each question of the tree),
    not only the outcome: a right method reached from a wrong reading of the
    story fails, with a hint that names the question read wrongly.

    Introduced in notebooks/00_start_here.ipynb.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {list(SCENARIOS)}")
    if not_filled(answer):
        raise NotFilledIn(f"scenario {scenario!r}")
    name = f"scenario {scenario!r}"
    if not isinstance(answer, Recommendation):
        return report(name, False, f"expected the result of qh.recommend(...), got {type(answer).__name__}")
    expected = recommend(**SCENARIOS[scenario][1])
    mistakes = scenario_mistakes(scenario, answer)
    if not mistakes and (answer.method, answer.engine) == (expected.method, expected.engine):
        return report(name, True)
    if not mistakes:
        return report(name, False, "call qh.recommend(...) with the story's answers; do not build the result yourself")
    same = (answer.method, answer.engine) == (expected.method, expected.engine)
    lead = f"you got {answer.method} on {answer.engine}" + (", the right outcome for a wrong reason" if same else "")
    question, hint = mistakes[0]
    more = f" ({len(mistakes) - 1} more question(s) to re-read)" if len(mistakes) > 1 else ""
    return report(name, False, f"{lead}; re-read the story for {question}: {hint}{more}")


@_blank_safe
def check_int8_accuracy_prediction(prediction: Any, float_acc: float, int8_acc: float, *, max_width: float = 3.0) -> bool:
    """Exercise (notebook 00): a predicted ``(low, high)`` range of INT8 accuracy in percent, checked against the measurement.

    Accepts any range of at most ``max_width`` points that contains the
    measured ``int8_acc``; rejects a range that is too wide to predict
    anything, reversed bounds, and ranges on the wrong side of the
    measurement, with a hint about the reasoning.

    Introduced in notebooks/00_start_here.ipynb.
    """
    name = "prediction"
    low, high = read_range(name, prediction, max_width=max_width, unit="points")
    if high <= 1.0 < int8_acc:
        return report(name, False, f"({low:g}, {high:g}) looks like a fraction: write the accuracy in percent, like the measurement")
    if not (0.0 <= low <= 100.0 and 0.0 <= high <= 100.0):
        return report(name, False, f"accuracy is a percentage from 0 to 100, got ({low:g}, {high:g}); did you write a fraction?")
    if high < int8_acc:
        return report(
            name,
            False,
            f"you expected a larger loss than INT8 costs here (measured {int8_acc:.1f} %, float {float_acc:.1f} %): "
            "at 8 bits, PTQ with per-channel weights is usually within a point of float",
        )
    if low > int8_acc:
        return report(name, False, f"you expected more than INT8 gives here (measured {int8_acc:.1f} %): rounding adds noise, it rarely helps")
    return report(name, True)
