"""Notebook 00's predict-first self-checks: a predicted range of INT8 accuracy, and of how many test images INT8
changes the predicted class of, each judged against the measurement made after the prediction was written.

``int8_prediction_ready`` / ``changed_prediction_ready`` say whether a prediction is well-formed before the
notebook measures; ``check_int8_accuracy_prediction`` / ``check_changed_prediction`` judge it (the first
prediction judged in a process is the one scored: ``checks._first_prediction_scored``).
The tolerances are the module's constants (``ABOVE_FLOAT_PT``, ``NOISE_PT``, ``RULE_LOSS_PT``, ``CHANGED_MAX_WIDTH``,
``CHANGED_SLACK``).

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
    measured values. A range is a hit when it holds ``float_acc`` or ``int8_acc``, and reaches ``int8_acc`` within
    ``NOISE_PT`` points (three of 1,000 test images: calibration draws and engines move INT8 by that much, and a
    difference that small is inside the test set's paired noise): a range that holds float may miss the measurement
    by that much, one that holds neither value is refused however close it comes (``(98.1, 98.7)`` predicts a loss
    of 1 to 7 images; with float and INT8 both at 98.8 % it is a miss). The bounds are read to one decimal, as
    accuracies on 1,000 images are printed, so a bound cannot slip between two thresholds by a hundredth. Each miss
    gets a hint that names it in points and images. A hit is still refused when the range reaches within one test
    image (0.1 points) of a loss of ``RULE_LOSS_PT`` points (what carrying ImageNet's 1-2 points over to this model
    gives, so that moving that range by one image does not dodge it) while INT8 lost less than that by more than
    the noise: such a range does not tell that reasoning from the right one (as ``check_sqnr_prediction`` refuses a
    range holding a wrong reasoning's value).

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
    if int8_acc > high + NOISE_PT + eps:  # INT8 above the range by more than the noise
        if high < float_acc - eps:  # ... and the range predicted a loss
            hint = (f"you expected INT8 to lose at least {float_acc - high:.1f} points ({_images(float_acc - high)}); "
                    f"{measured}. The 1-2 points of the rule bound the loss of ImageNet CNNs; on an easy task like this "
                    "one INT8 often loses nothing measurable, so a range should hold float")
        else:
            hint = (f"you expected at most {high:.1f} %; {measured}, more than {NOISE_PT:g} points above your range: "
                    f"INT8 can land above float as well as below, and a range may reach {ABOVE_FLOAT_PT:g} points above float")
        return report(name, False, hint)
    if low > int8_acc + NOISE_PT + eps:  # INT8 below the range by more than the noise
        return report(
            name,
            False,
            f"you expected at least {low:.1f} %; {measured}: on an easy model INT8 lands within a few test images of "
            "float, above as often as below, so a range should include float itself",
        )
    holds = lambda value: low - eps <= value <= high + eps  # noqa: E731
    if not (holds(float_acc) or holds(int8_acc)):  # within the noise of the measurement, but holding neither value
        # such a range lies below float: one above it would start above float and end at most ABOVE_FLOAT_PT above it,
        # narrower than the 2 * NOISE_PT that int8_prediction_ready requires
        near, far = float_acc - high, float_acc - low
        side = f"a loss of {near:.1f} to {far:.1f} points ({round(near * 10)} to {round(far * 10)} test images)"
        return report(
            name,
            False,
            f"{measured}; your range holds neither the float accuracy nor the INT8 accuracy measured: it predicts "
            f"{side}. A hit holds one of the two (a range holding float may then miss INT8 by {NOISE_PT:g} points, "
            "as much as the calibration draw moves it); on an easy task like this one INT8 often lands within a few "
            "test images of float, either side, so a range should hold float",
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


CHANGED_MAX_WIDTH = 5  # images: the widest spread of the count over nine calibration draws on one engine (x86: 1 to 6)
CHANGED_SLACK = 2  # images a predicted count may miss the measured one by: draws and engines move the count by about that


def _read_count_range(prediction: Any, n_images: int) -> tuple[int, int]:
    """``read_range`` for a range of whole numbers of test images, from 0 to ``n_images``, at most ``CHANGED_MAX_WIDTH`` wide."""
    name = "changed prediction"
    low, high = read_range(name, prediction, max_width=n_images, unit="images")
    if low != int(low) or high != int(high):
        raise WrongAnswer(name, f"({low:g}, {high:g}): count test images, in whole numbers")
    if low < 0 or high > n_images:
        raise WrongAnswer(name, f"({low:g}, {high:g}): a count of the {n_images:,} test images goes from 0 to {n_images:,}")
    if high - low > CHANGED_MAX_WIDTH:
        raise WrongAnswer(
            name,
            f"({low:g}, {high:g}) is {high - low:g} images wide: commit to a range at most {CHANGED_MAX_WIDTH} apart. "
            f"Nine calibration draws of this PTQ moved the count over at most {CHANGED_MAX_WIDTH} images on one engine, "
            "so a range that wide can hold every draw, and a wider one predicts less than knowing the model would "
            f"(the check also lets a range miss the count by {CHANGED_SLACK} images)",
        )
    return int(low), int(high)


@_blank_safe
def changed_prediction_ready(prediction: Any, n_images: int) -> bool:
    """Exercise (notebook 00), before measuring: True when ``prediction`` is a range of changed predictions the measurement can judge.

    Two whole numbers ``(low, high)`` from 0 to ``n_images``, low first, at most ``CHANGED_MAX_WIDTH`` apart (the
    widest spread of the count that nine calibration draws gave on one engine, so a range that wide can hold every
    draw); otherwise shows what to change (or "not filled in yet") and returns False, so that the notebook measures
    only after a well-formed prediction is written.

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
    (an input whose top two scores nearly tie); an easy model has few, and equal accuracies do not mean equal
    predictions (images flip one way and the other). A range (at most ``CHANGED_MAX_WIDTH`` wide, as
    ``changed_prediction_ready`` requires) is a hit when it holds ``changed`` or misses it by at most
    ``CHANGED_SLACK`` images (calibration draws and engines move the count by about that much: nine draws gave 1 to
    6 on ``x86``, 0 to 3 on ``qnnpack``), and does not reach ``RULE_LOSS_PT`` percent of the images (ImageNet's
    1-2 points carried over: 10 of 1,000) while the count is more than ``CHANGED_SLACK`` below that value. A range
    above the count ("every score moves, so many predictions change") or below it gets a hint naming the close
    calls; one below it that holds 0 ("the accuracy will not move, so nothing changes") is told that flips both
    ways cancel in the accuracy. 0 alone is no mistake: some ``qnnpack`` draws change no image.

    The notebook prints the count once a well-formed prediction is written, so the first prediction judged is the
    one scored (as for ``check_int8_accuracy_prediction``).

    Introduced in notebooks/00_start_here.ipynb.
    """
    name = "changed prediction"
    low, high = _read_count_range(prediction, n_images)
    changed = int(changed)
    rule = round(RULE_LOSS_PT / 100 * n_images)
    measured = f"{changed} of the {n_images:,} test images changed their predicted digit"
    if changed < low - CHANGED_SLACK:
        miss = f"{measured}, {low - changed} images below your range"
    elif changed > high + CHANGED_SLACK:
        miss = f"{measured}, {changed - high} images above your range"
    else:
        miss = ""
    slack = (f" (a hit may miss the count by at most {CHANGED_SLACK} images: calibration draws and engines move it by "
             "about that much either side)")
    if low <= rule <= high and changed < rule - CHANGED_SLACK:  # holds a wrong reasoning's value, far from the count
        hint = (f"your range reaches {rule} images, {RULE_LOSS_PT:g} point of accuracy: what carrying ImageNet's 1-2 "
                "points over to these images gives; INT8's small rounding errors flip only close calls, whose top two "
                "scores nearly tie, and a model this accurate on an easy task has few")
        if not miss:  # right, and wrong too: the range does not tell the reasonings apart
            return report(name, False, f"{measured}, within {CHANGED_SLACK} images of your range, but {hint}; narrow the range")
        return report(name, False, f"{miss}{slack}: {hint}")
    if not miss:
        return report(name, True)
    if changed < low:
        hint = ("you expected more changes than INT8's small rounding errors make: every score moves a little, but a "
                "predicted digit changes only on a close call, whose top two scores nearly tie, and a model this "
                "accurate on an easy task has few")
    elif low == 0:
        hint = ("your range holds 0, no image changing: INT8's rounding moves every score a little, and equal "
                "accuracies do not mean equal predictions (an image can flip from right to wrong while another flips "
                "back); count the close calls, test images whose top two scores nearly tie")
    else:
        hint = ("you expected fewer changes: the close calls are not only the images the model gets wrong; an image "
                "it gets right by a small margin can flip too")
    return report(name, False, f"{miss}{slack}: {hint}")
