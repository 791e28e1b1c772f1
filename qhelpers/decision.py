"""The course's decision tree: which quantization workflow, which engine.

Introduced in notebooks/00_start_here.ipynb (the interactive chooser is built on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["Recommendation", "recommend", "DECISION_TREE_TEXT", "SCENARIOS"]

DECISION_TREE_TEXT = """\
1. Is there a pre-quantized model for your task (torchvision *_QuantizedWeights)?  -> use it (notebook 02).
2. Do you have representative calibration data (a few hundred inputs, no labels needed)?
     yes, and no time to train            -> post-training static quantization, PTQ (notebook 03)
     no, and no training either           -> dynamic quantization (weights INT8, activations at run time; notebook 03)
3. Is the accuracy drop after PTQ unacceptable?
     yes, and you can train               -> quantization-aware training, QAT (notebook 04)
     yes, but you cannot train            -> PTQ with per-channel weights, histogram observers and the most
                                             sensitive layers left in float (notebook 03)
4. Where does it run?
     x86 server or laptop                 -> engine 'x86' (fbgemm)
     ARM phone or board                   -> engine 'qnnpack'  (torch.backends.quantized.engine = 'qnnpack')"""


@dataclass(frozen=True)
class Recommendation:
    """What to do (``method``), on which quantized engine, and why."""

    method: str
    engine: str
    notebook: str
    reason: str

    def __str__(self) -> str:
        return f"{self.method} on engine '{self.engine}' ({self.notebook}): {self.reason}"


def recommend(
    has_calibration_data: bool, can_train: bool, ptq_drop_acceptable: Optional[bool] = None, arm_device: bool = False
) -> Recommendation:
    """Walk the decision tree.

    ``ptq_drop_acceptable`` is ``None`` when PTQ has not been tried yet.
    """
    for name, value in (("has_calibration_data", has_calibration_data), ("can_train", can_train), ("arm_device", arm_device)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if ptq_drop_acceptable is not None and not isinstance(ptq_drop_acceptable, bool):
        raise TypeError(f"ptq_drop_acceptable must be True, False or None, got {ptq_drop_acceptable!r}")
    engine = "qnnpack" if arm_device else "x86"
    if ptq_drop_acceptable is False:
        if can_train:
            return Recommendation("QAT", engine, "notebook 04", "PTQ lost too much; training with fake quantization lets the model compensate")
        return Recommendation(
            "PTQ, tuned",
            engine,
            "notebook 03",
            "PTQ lost too much and you cannot train: use per-channel weights, histogram observers and keep the most sensitive layers in float",
        )
    if has_calibration_data:
        return Recommendation("PTQ", engine, "notebook 03", "calibration data and no training needed; try it first, it is minutes of work")
    if can_train:
        return Recommendation("QAT", engine, "notebook 04", "no separate calibration set, but the training data calibrates while you fine-tune")
    return Recommendation(
        "dynamic quantization",
        engine,
        "notebook 03",
        "no data at all: quantize weights ahead of time and activations at run time (best for Linear/LSTM-heavy models)",
    )


# Exercise scenarios of notebooks/00_start_here.ipynb: the story a learner reads, and the answers
# to the four questions that the story implies (the self-check compares the learner's recommendation
# with the one these answers give).
SCENARIOS: dict[str, tuple[str, dict]] = {
    "camera": (
        "A server team has 500 unlabelled frames from the production camera and must ship tomorrow on x86 servers.",
        dict(has_calibration_data=True, can_train=False, ptq_drop_acceptable=None, arm_device=False),
    ),
    "phone": (
        "A phone app's model lost 4 accuracy points with PTQ; the team has the training set and a week of GPU time.",
        dict(has_calibration_data=True, can_train=True, ptq_drop_acceptable=False, arm_device=True),
    ),
    "no_data": (
        "A vendor's LSTM model arrives with no data at all, to be served on an x86 CPU, with no way to retrain.",
        dict(has_calibration_data=False, can_train=False, ptq_drop_acceptable=None, arm_device=False),
    ),
}
