"""Notebook 00's predict-first self-checks: a predicted range of INT8 accuracy, and of how many test images INT8
changes the predicted class of, each judged against the measurement made after the prediction was written.

``int8_prediction_ready`` / ``changed_prediction_ready`` say whether a prediction is well-formed before the
notebook measures; ``check_int8_accuracy_prediction`` / ``check_changed_prediction`` judge it (the first
prediction judged in a process is the one scored: ``checks._first_prediction_scored``).
The tolerances are the module's constants (``ABOVE_FLOAT_PT``, ``NOISE_PT``, ``RULE_LOSS_PT``, ``CHANGED_MAX_WIDTH``).

Introduced in notebooks/00_start_here.ipynb.
"""

from __future__ import annotations

from typing import Any, Optional

from .checks import WrongAnswer, _blank_safe, _first_prediction_scored, read_range, report

__all__ = ["check_int8_accuracy_prediction", "int8_prediction_ready", "check_changed_prediction", "changed_prediction_ready"]

ABOVE_FLOAT_PT = 0.5  # how far above float a predicted INT8 accuracy may reach (5 of 1,000 test images)
NOISE_PT = 0.3  # a miss this small is a few test images: calibration draws and engines move INT8 by -0.3..+0.2 points
RULE_LOSS_PT = 1.0  # the least of the "at most 1-2 points" that 8-bit PTQ loses on ImageNet CNNs (the rule of notebook 00)


def _int8_prediction_problem(prediction: Any, float_acc: float, max_width: float) -> Optional[str]:
    """Why ``prediction`` is not yet a prediction that a measurement can judge (None when it is).

    Raises ``NotFilledIn`` / ``WrongAnswer`` (``read_range``) for a blank, one number, a non-pair, swapped or too
    wide bounds; returns a hint for a fraction, a range outside 0..100, one narrower than ``2 * NOISE_PT``, or one
    reaching more than ``ABOVE_FLOAT_PT`` above ``float_acc`` (the cap the exercise states)."""
    low, high = read_range("prediction", prediction, max_width=max_width, unit="points")
    if high <= 1.0 < float_acc:
        return f"({low:g}, {high:g}) looks like a fraction: write the accuracy in percent, like the float accuracy"
    if not (0.0 <= low <= 100.0 and 0.0 <= high <= 100.0):
        return f"accuracy is a percentage from 0 to 100, got ({low:g}, {high:g}); did you write a fraction?"
    eps = 1e-6  # printed one-decimal numbers: 98.8 + 0.5 is not exactly 99.3 in floats
    if high - low < 2 * NOISE_PT - eps:
        return (f"a range {high - low:.2g} points wide claims more than 1,000 test images can show (a few images move the "
                f"accuracy by {NOISE_PT:g} points either way): commit to a range at least {2 * NOISE_PT:g} points wide")
    if high > float_acc + ABOVE_FLOAT_PT + eps:
        return (f"your range reaches {high - float_acc:.1f} points above float ({float_acc:.1f} %); the exercise asks for a "
                f"range that reaches at most {ABOVE_FLOAT_PT:g} points above float (INT8 can land a few test images above "
                "float, not more)")
    return None


@_blank_safe
def int8_prediction_ready(prediction: Any, float_acc: float, *, max_width: float = 2.0) -> bool:
    """Exercise (notebook 00), before measuring: True when ``prediction`` is a range the measurement can judge.

    Otherwise shows why (blank, one number, swapped or too wide bounds, a fraction, narrower than
    ``2 * NOISE_PT``, reaching more than ``ABOVE_FLOAT_PT`` above float) and returns False, so that the notebook
    measures (and prints) the INT8 accuracy only after a well-formed prediction is written.

    Introduced in notebooks/00_start_here.ipynb.
    """
    problem = _int8_prediction_problem(prediction, float_acc, max_width)
    if problem:
        return report("prediction", False, problem)
    return True


def _images(points: float) -> str:
    n = round(abs(points) * 10)  # 1,000 test images: 0.1 point is one image
    return f"{n} test image{'s' if n != 1 else ''}"


@_blank_safe
@_first_prediction_scored(lambda float_acc, int8_acc, *, max_width=2.0: f"int8 accuracy against float {float_acc!r} %")
def check_int8_accuracy_prediction(prediction: Any, float_acc: float, int8_acc: float, *, max_width: float = 2.0) -> bool:
    """Exercise (notebook 00): a predicted ``(low, high)`` range of INT8 accuracy in percent, checked against the measurement.

    First the tests of ``int8_prediction_ready`` (a range of at least ``2 * NOISE_PT`` and at most ``max_width``
    points that reaches at most ``ABOVE_FLOAT_PT`` above ``float_acc``); then the range is judged against both
    measured values. A range is a hit when it holds ``int8_acc`` or misses it by at most ``NOISE_PT`` points
    (three of 1,000 test images: calibration draws and engines move INT8 by that much, and a difference that
    small is inside the test set's paired noise), whether it reaches ``float_acc`` or stops below it; but a range
    whose top stops two test images (0.2 points) or more below float predicts a loss, and is refused unless INT8
    itself measured at least ``NOISE_PT`` points below float (a range should reach float, within one image). The
    bounds are read to one decimal, as accuracies on 1,000 images are printed, so a bound cannot slip between two
    thresholds by a hundredth. Each miss gets a hint that names it in points and images. A hit is still refused when the
    range reaches within one test image (0.1 points) of a loss of ``RULE_LOSS_PT`` points (what carrying ImageNet's
    1-2 points over to this model gives, so that moving that range by one image does not dodge it) while INT8 lost less than that by more than the noise: such a range does not tell that reasoning
    from the right one (as ``check_sqnr_prediction`` refuses a range holding a wrong reasoning's value).

    The notebook prints the INT8 accuracy once a well-formed prediction is written, so the first prediction judged
    in this process is the one scored: after it missed, a different range is refused with a hint saying so.

    Introduced in notebooks/00_start_here.ipynb.
    """
    name = "prediction"
    problem = _int8_prediction_problem(prediction, float_acc, max_width)
    if problem:
        return report(name, False, problem)
    low, high = (round(float(v), 1) for v in prediction)  # one decimal: a tenth of a point is one of 1,000 images
    eps = 1e-6
    change = int8_acc - float_acc
    measured = (f"INT8 came out {_images(change)} {'above' if change > 0 else 'below'} float" if round(abs(change) * 10)
                else "INT8 matched float") + f" (measured {int8_acc:.1f} %, float {float_acc:.1f} %)"
    if high < float_acc - eps and int8_acc > high + NOISE_PT + eps:  # a predicted loss that INT8 does not have, beyond the noise
        return report(
            name,
            False,
            f"you expected INT8 to lose at least {float_acc - high:.1f} points ({_images(float_acc - high)}); {measured}. "
            "The 1-2 points of the rule bound the loss of ImageNet CNNs; on an easy task like this one INT8 often "
            "loses nothing measurable, so a range should reach float",
        )
    if high < float_acc - 0.1 - eps and int8_acc > float_acc - NOISE_PT + eps:  # a top two images or more below float, INT8 lost less
        return report(
            name,
            False,
            f"your range stops {float_acc - high:.1f} points ({_images(float_acc - high)}) below float, so it predicts "
            f"a loss; {measured}, above your range. On an easy task like this one INT8 often loses nothing "
            "measurable, so a range should reach float (its top at most 1 test image below it)",
        )
    if int8_acc > high + NOISE_PT + eps:  # the range reaches float, and INT8 beat it by more than the noise
        return report(
            name,
            False,
            f"you expected at most {high:.1f} %; {measured}, more than {NOISE_PT:g} points above your range: INT8 "
            f"can land above float as well as below, and a range may reach {ABOVE_FLOAT_PT:g} points above float",
        )
    if low > int8_acc + NOISE_PT + eps:
        return report(
            name,
            False,
            f"you expected at least {low:.1f} %; {measured}: on an easy model INT8 lands within a few test images of "
            "float, above as often as below, so a range should include float itself",
        )
    rule_loss = float_acc - RULE_LOSS_PT
    if low <= rule_loss + 0.1 + eps and int8_acc > rule_loss + NOISE_PT + eps:  # holds the measurement and (within an image) a wrong reasoning's value
        return report(
            name,
            False,
            f"{measured}; but your range also holds {rule_loss:.1f} %"
            + ("" if low <= rule_loss + eps else f" within one test image (it reaches {low:.1f} %)")
            + f", a loss of {RULE_LOSS_PT:g} point, what carrying "
            "ImageNet's 1-2 points over to this model gives (and INT8 lost less), so it does not tell that reasoning "
            "from the right one. How many of these test images are close calls, whose top two classes score nearly "
            "the same, for INT8's small rounding errors to flip? Narrow the range",
        )
    return report(name, True)


CHANGED_MAX_WIDTH = 10  # images: a predicted count of changed predictions at most this wide (a point of 1,000 images)


def _changed_band(changed: int) -> tuple[float, int]:
    """The middles a prediction may have to hit ``changed``: half of it (2.5 for 5: a factor of two exactly) to twice it (at least two images above it)."""
    return changed / 2, max(2 * changed, changed + 2)


def _read_count_range(prediction: Any, n_images: int) -> tuple[int, int]:
    """``read_range`` for a range of whole numbers of test images, from 0 to ``n_images``, at most ``CHANGED_MAX_WIDTH`` wide."""
    name = "changed prediction"
    low, high = read_range(name, prediction, max_width=CHANGED_MAX_WIDTH, unit="images")
    if low != int(low) or high != int(high):
        raise WrongAnswer(name, f"({low:g}, {high:g}): count test images, in whole numbers")
    if low < 0 or high > n_images:
        raise WrongAnswer(name, f"({low:g}, {high:g}): a count of the {n_images:,} test images goes from 0 to {n_images:,}")
    return int(low), int(high)


@_blank_safe
def changed_prediction_ready(prediction: Any, n_images: int) -> bool:
    """Exercise (notebook 00), before measuring: True when ``prediction`` is a range of changed predictions the measurement can judge.

    Two whole numbers ``(low, high)`` from 0 to ``n_images``, low first, at most ``CHANGED_MAX_WIDTH`` apart;
    otherwise shows what to change (or "not filled in yet") and returns False, so that the notebook measures only
    after a well-formed prediction is written.

    Introduced in notebooks/00_start_here.ipynb.
    """
    _read_count_range(prediction, n_images)
    return True


@_blank_safe
@_first_prediction_scored(lambda changed, n_images: f"int8 changed predictions of {n_images} test images", name="changed prediction")
def check_changed_prediction(prediction: Any, changed: int, n_images: int) -> bool:
    """Exercise (notebook 00): a predicted ``(low, high)`` count of the ``n_images`` test images whose predicted class
    INT8 changes, against ``changed``, the count measured (float and INT8 predictions compared image by image).

    The reasoning: INT8's rounding moves every score a little, so a predicted class changes only on a close call
    (an input whose top two scores nearly tie); an easy model has few, but equal accuracies do not mean equal
    predictions (images flip one way and the other). A range is a hit when its midpoint lies in the band from half
    of ``changed`` (2.5 for 5) to twice it (at least two images above it: calibration draws and engines move the
    count), and holds none of the values the typical wrong reasonings give: 0 ("the accuracy will not move, so
    nothing changes"; a wrong value wherever an image changed) and ``RULE_LOSS_PT`` percent of the images (ImageNet's
    1-2 points carried over: 10 of 1,000; a wrong value where the band stays below it). A range above the band
    ("every score moves, so many predictions change") or below it gets a hint naming the close calls.

    The notebook prints the count once a well-formed prediction is written, so the first prediction judged is the
    one scored (as for ``check_int8_accuracy_prediction``).

    Introduced in notebooks/00_start_here.ipynb.
    """
    name = "changed prediction"
    low, high = _read_count_range(prediction, n_images)
    changed = int(changed)
    lower, upper = _changed_band(changed)
    rule = round(RULE_LOSS_PT / 100 * n_images)
    measured = f"{changed} of the {n_images:,} test images changed their predicted digit"
    mid = (low + high) / 2  # the range's centre is the predicted count: a wide range cannot touch every count
    hit = lower <= mid <= upper  # 2 * mid >= changed: a middle of exactly half the count is within a factor of two
    if low == 0 and changed >= 1:
        hint = ("your range holds 0, no image changing: INT8's rounding moves every score a little, and equal "
                "accuracies do not mean equal predictions (an image can flip from right to wrong while another flips "
                "back); count the close calls, test images whose top two scores nearly tie")
    elif low <= rule <= high and upper < rule:
        hint = (f"your range reaches {rule} images, {RULE_LOSS_PT:g} point of accuracy: what carrying ImageNet's 1-2 "
                "points over to these images gives; INT8's small rounding errors flip only close calls, whose top two "
                "scores nearly tie, and a model this accurate on an easy task has few")
    elif hit:
        return report(name, True)
    elif mid > upper:
        hint = ("you expected more changes than INT8's small rounding errors make: every score moves a little, but a "
                "predicted digit changes only on a close call, whose top two scores nearly tie, and a model this "
                "accurate on an easy task has few")
    else:
        hint = ("you expected fewer changes: the close calls are not only the images the model gets wrong; an image "
                "it gets right by a small margin can flip too")
    if hit:  # right, and wrong too: the range does not tell the reasonings apart
        return report(name, False, f"{measured}, within a factor of two of your range's middle (or two images above it), but {hint}; narrow the range")
    return report(name, False, f"{measured}, and your range's middle ({mid:g}) is not within a factor of two of it (a hit "
                  f"needs a middle from {lower:g} to {upper:g}: half the count to twice it, or two images above it): {hint}")

