"""Notebook 00's predict-first self-checks: a predicted range of INT8 accuracy, and of how many test images INT8
changes the predicted class of, each judged against the measurement made after the prediction was written.

``int8_prediction_ready`` / ``changed_prediction_ready`` say whether a prediction is well-formed before the
notebook measures; ``check_int8_accuracy_prediction`` / ``check_changed_prediction`` judge it (the first
prediction judged in a process is the one scored: ``checks._first_prediction_scored``).
The tolerances are the module's constants (``ABOVE_FLOAT_PT``, ``NOISE_PT``, ``ACC_WINDOW_PT``, ``RULE_LOSS_PT``,
``CHANGED_MAX_WIDTH``). Both ranges follow one rule: a range may miss its measurement by half of what it is narrower
than its window (``ACC_WINDOW_PT`` points, ``CHANGED_MAX_WIDTH`` images), so that no range accepts more than that
window, and a range as wide as the window must hold the measurement itself.

Introduced in notebooks/00_start_here.ipynb.
"""

from __future__ import annotations

from typing import Any, Optional

from .checks import WrongAnswer, _blank_safe, _first_prediction_scored, read_range, report

__all__ = ["check_int8_accuracy_prediction", "int8_prediction_ready", "check_changed_prediction", "changed_prediction_ready"]

ABOVE_FLOAT_PT = 0.5  # how far above float a predicted INT8 accuracy may reach (5 of 1,000 test images)
NOISE_PT = 0.3  # a miss this small is a few test images: calibration draws and engines move INT8 by a few images either way
ACC_WINDOW_PT = 1.0  # the widest range, and the most a range with its slack accepts (10 test images; see _acc_slack)
RULE_LOSS_PT = 1.0  # the least of the "at most 1-2 points" that 8-bit PTQ loses on ImageNet CNNs (the rule of notebook 00)


def _acc_slack(low: float, high: float) -> float:
    """How far (points) a range holding float may miss the measured INT8 accuracy: half of what it is narrower than
    ``ACC_WINDOW_PT``, in whole test images (0.6 points wide: 0.2; 0.8: 0.1; 0.9 or 1: none, the range must hold it).

    Why 1 point: calibration draws and engines put INT8 a few test images below or above float (the measured
    spread, narrower than ``2 * NOISE_PT``, is in docs/ANSWERS.md, with the exercise's answer); the narrowest range
    the check takes is ``2 * NOISE_PT`` = 0.6 points, so a window the size of the spread would leave no width to
    choose; 1 point lets the narrowest range miss by 2 images, as a count
    range 0 or 1 wide may, and a range 1 point wide (ten of the 1,000 images) must hold the measurement."""
    width_images = round((high - low) * 10)
    return max(0, (round(ACC_WINDOW_PT * 10) - width_images) // 2) / 10


def _int8_prediction_problem(prediction: Any, float_acc: float, max_width: float) -> Optional[str]:
    """Why ``prediction`` is not yet a prediction that a measurement can judge (None when it is).

    Raises ``NotFilledIn`` / ``WrongAnswer`` (``read_range``) for a blank, one number, a non-pair or swapped bounds;
    returns a hint for a range wider than ``max_width``, a fraction, a range outside 0..100, one narrower than
    ``2 * NOISE_PT``, or one reaching more than ``ABOVE_FLOAT_PT`` above ``float_acc`` (the cap the exercise states)."""
    low, high = read_range("prediction", prediction, max_width=100.0, unit="points")
    if high <= 1.0 < float_acc:
        return f"({low:g}, {high:g}) looks like a fraction: write the accuracy in percent, like the float accuracy"
    if not (0.0 <= low <= 100.0 and 0.0 <= high <= 100.0):
        return f"accuracy is a percentage from 0 to 100, got ({low:g}, {high:g}); did you write a fraction?"
    eps = 1e-6  # printed one-decimal numbers: a bound such as float_acc + 0.5 need not be exact in floats
    if high - low > max_width + eps:
        return (f"a range {high - low:.2g} points wide predicts little: commit to a range at most {max_width:g} "
                f"point{'s' if max_width != 1 else ''} wide")
    if high - low < 2 * NOISE_PT - eps:
        return (f"a range {high - low:.2g} points wide claims more than 1,000 test images can show (a few images move the "
                f"accuracy by {NOISE_PT:g} points either way): commit to a range at least {2 * NOISE_PT:g} points wide")
    if high > float_acc + ABOVE_FLOAT_PT + eps:
        return (f"your range reaches {high - float_acc:.1f} points above float ({float_acc:.1f} %); the exercise asks for a "
                f"range that reaches at most {ABOVE_FLOAT_PT:g} points above float (INT8 can land a few test images above "
                "float, not more)")
    return None


@_blank_safe
def int8_prediction_ready(prediction: Any, float_acc: float, *, max_width: float = ACC_WINDOW_PT) -> bool:
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
@_first_prediction_scored(lambda float_acc, int8_acc, *, max_width=ACC_WINDOW_PT: f"int8 accuracy against float {float_acc!r} %")
def check_int8_accuracy_prediction(prediction: Any, float_acc: float, int8_acc: float, *, max_width: float = ACC_WINDOW_PT) -> bool:
    """Exercise (notebook 00): a predicted ``(low, high)`` range of INT8 accuracy in percent, checked against the measurement.

    First the tests of ``int8_prediction_ready`` (a range of at least ``2 * NOISE_PT`` and at most ``max_width``
    points that reaches at most ``ABOVE_FLOAT_PT`` above ``float_acc``); then the range is judged against both
    measured values. A range is a hit when it holds ``float_acc`` or ``int8_acc``, and reaches ``int8_acc`` within
    ``_acc_slack`` (half of what the range is narrower than ``ACC_WINDOW_PT``, in whole images: 0.2 points for a
    range 0.6 wide, none for one 0.9 or 1 wide; calibration draws and engines move INT8 by a few images): a range
    that holds float may miss the measurement by that much, one that holds neither value is refused however close
    it comes (with float and INT8 both at F %, ``(F - 0.7, F - 0.1)`` predicts a loss
    of 1 to 7 images: a miss). The bounds are read to one decimal, as
    accuracies on 1,000 images are printed, so a bound cannot slip between two thresholds by a hundredth. Each miss
    gets a hint that names it in points and images. A hit is still refused when the range reaches within one test
    image (0.1 points) of a loss of ``RULE_LOSS_PT`` points (what carrying ImageNet's 1-2 points over to this model
    gives, so that moving that range by one image does not dodge it) while INT8 lost less than that by more than
    the noise: such a range does not tell that reasoning from the right one (as ``check_sqnr_prediction`` refuses a
    range holding a wrong reasoning's value).

    When INT8 lands within ``NOISE_PT`` of float (either side), a hit must also hold values on both sides of float
    (``low < float_acc < high``): a range that stops at float, such as ``(F - 0.6, F)`` or ``(F - 0.8, F)`` with
    float at F %, says INT8 can only lose, while INT8 lands above float as well as below.

    This half of exercise 4 checks only the scale of the change (a few test images, not points): the form alone
    (0.6 to 1 point wide, at most ``ABOVE_FLOAT_PT`` above float) leaves little to choose, and one answer passes
    without reasoning: a constant band around the printed float accuracy, such as float +- 0.5, which passes
    whenever INT8 lands within half a point of float. The count half (``check_changed_prediction``) is where the
    close-call reasoning is judged, as notebook 00's exercise says.

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
    slack = _acc_slack(low, high)
    change = int8_acc - float_acc
    measured = (f"INT8 came out {_images(change)} {'above' if change > 0 else 'below'} float" if round(abs(change) * 10)
                else "INT8 matched float") + f" (measured {int8_acc:.1f} %, float {float_acc:.1f} %)"
    if int8_acc > high + slack + eps:  # INT8 above the range by more than the range's slack
        if high < float_acc - eps:  # ... and the range predicted a loss
            hint = (f"you expected INT8 to lose at least {float_acc - high:.1f} points ({_images(float_acc - high)}); "
                    f"{measured}. The 1-2 points of the rule bound the loss of ImageNet CNNs; on an easy task like this "
                    "one INT8 often loses nothing measurable, so a range should hold float")
        else:
            hint = (f"you expected at most {high:.1f} %; {measured}, {int8_acc - high:.1f} points above your range: "
                    f"INT8 can land above float as well as below, and a range may reach {ABOVE_FLOAT_PT:g} points above float")
        return report(name, False, hint)
    if low > int8_acc + slack + eps:  # INT8 below the range by more than the range's slack
        return report(
            name,
            False,
            f"you expected at least {low:.1f} %; {measured}: on an easy model INT8 lands within a few test images of "
            "float, above as often as below, so a range should include float itself",
        )
    holds = lambda value: low - eps <= value <= high + eps  # noqa: E731
    if not (holds(float_acc) or holds(int8_acc)):  # within the noise of the measurement, but holding neither value
        # such a range lies below float: one above it would start above float and end at most ABOVE_FLOAT_PT above it,
        # narrower than the 2 * NOISE_PT that int8_prediction_ready requires (a slack needs a range narrower than 1 point)
        near, far = float_acc - high, float_acc - low
        side = f"a loss of {near:.1f} to {far:.1f} points ({round(near * 10)} to {round(far * 10)} test images)"
        return report(
            name,
            False,
            f"{measured}; your range holds neither the float accuracy nor the INT8 accuracy measured: it predicts "
            f"{side}. A hit holds one of the two (a range holding float may then miss INT8 by half of what it is "
            f"narrower than {ACC_WINDOW_PT:g} point, in whole images); on an easy task like this one INT8 often lands within a few "
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
    if abs(change) <= NOISE_PT + eps and high <= float_acc + eps:  # INT8 within the noise of float: hold both sides
        # low < float always holds here: a range at least 2 * NOISE_PT wide reaches at most ABOVE_FLOAT_PT above float
        top = "stops at float" if round(high * 10) == round(float_acc * 10) else f"stops {_images(float_acc - high)} below float"
        return report(
            name,
            False,
            f"{measured}; your range {top} ({high:.1f} %): it says INT8 can only lose. INT8 can land above float as "
            f"well as below: within {NOISE_PT:g} points ({_images(NOISE_PT)}) of float, calibration draws and engines "
            f"put it either side, so a range should hold values on both sides of float: reach above {float_acc:.1f} %",
        )
    return report(name, True)


CHANGED_MAX_WIDTH = 5  # images: the widest spread of the count over nine calibration draws on one engine (docs/ANSWERS.md)
CHANGED_SLACK = CHANGED_MAX_WIDTH // 2  # the most a count range may miss by (one 0 or 1 wide); see _changed_slack


def _changed_slack(low: int, high: int) -> int:
    """Images a count range may miss the measured count by: half of what it is narrower than ``CHANGED_MAX_WIDTH``
    (0 or 1 wide: 2; 2 or 3 wide: 1; 4 or 5 wide: none, it must hold the count), so that no range accepts more than
    six counts, about the spread of the count over the calibration draws on one engine (docs/ANSWERS.md)."""
    return max(0, (CHANGED_MAX_WIDTH - (high - low)) // 2)


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
            f"({low:g}, {high:g}) is {high - low:g} images wide: commit to a range at most {CHANGED_MAX_WIDTH} apart; "
            "a wider one predicts less than reasoning about the model can",
        )
    return int(low), int(high)


@_blank_safe
def changed_prediction_ready(prediction: Any, n_images: int) -> bool:
    """Exercise (notebook 00), before measuring: True when ``prediction`` is a range of changed predictions the measurement can judge.

    Two whole numbers ``(low, high)`` from 0 to ``n_images``, low first, at most ``CHANGED_MAX_WIDTH`` apart (the
    widest spread of the count that nine calibration draws gave on one engine); otherwise shows what to change (or "not filled in yet") and returns False, so that the notebook measures
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
    ``_changed_slack`` images, half of what it is narrower than ``CHANGED_MAX_WIDTH`` (a range 0 or 1 wide may miss
    by 2, one 4 or 5 wide must hold the count; calibration draws and engines move the count by a few images; the
    measured spread is in docs/ANSWERS.md, with the exercise's answer), and does not reach ``RULE_LOSS_PT`` percent of the images (ImageNet's 1-2
    points carried over: 10 of 1,000) while the count is more than ``CHANGED_SLACK`` below that value.
    No fixed range passes every measured draw: the check judges the learner's own
    run's count, against the range that the close-call reasoning gives. A range
    above the count ("every score moves, so many predictions change") or below it gets a hint naming the close
    calls; one below it that holds 0 ("the accuracy will not move, so nothing changes") is told that flips both
    ways cancel in the accuracy. A range holding 0 is refused with that hint too when it holds the count (or
    reaches it within its slack) but the count is more than ``CHANGED_SLACK`` (as the rule value 10 is treated):
    with k changed, k more than ``CHANGED_SLACK``, a range ``(0, h)`` holding k does not tell that reasoning from the
    right one. 0 alone is no mistake: a run can change no image, and a run with 0 to ``CHANGED_SLACK`` changed
    accepts a range holding 0.

    The notebook prints the count once a well-formed prediction is written, so the first prediction judged is the
    one scored (as for ``check_int8_accuracy_prediction``).

    Introduced in notebooks/00_start_here.ipynb.
    """
    name = "changed prediction"
    low, high = _read_count_range(prediction, n_images)
    changed = int(changed)
    rule = round(RULE_LOSS_PT / 100 * n_images)
    measured = f"{changed} of the {n_images:,} test images changed their predicted digit"
    allowed = _changed_slack(low, high)
    if changed < low - allowed:
        miss = f"{measured}, {low - changed} image{'s' if low - changed != 1 else ''} below your range"
    elif changed > high + allowed:
        miss = f"{measured}, {changed - high} image{'s' if changed - high != 1 else ''} above your range"
    else:
        miss = ""
    slack = (f" (a range {high - low} wide may miss the count by {allowed} image{'s' if allowed != 1 else ''}: half of "
             f"what it is narrower than {CHANGED_MAX_WIDTH}, as calibration draws and engines move the count a little)"
             if allowed else f" (a range {high - low} wide must hold the count)")
    if low <= rule <= high and changed < rule - CHANGED_SLACK:  # holds a wrong reasoning's value, far from the count
        hint = (f"your range reaches {rule} images, {RULE_LOSS_PT:g} point of accuracy: what carrying ImageNet's 1-2 "
                "points over to these images gives; INT8's small rounding errors flip only close calls, whose top two "
                "scores nearly tie, and a model this accurate on an easy task has few")
        if not miss:  # right, and wrong too: the range does not tell the reasonings apart
            where = "inside your range" if low <= changed <= high else f"within {allowed} image{'s' if allowed != 1 else ''} of your range"
            return report(name, False, f"{measured}, {where}, but {hint}; narrow the range")
        return report(name, False, f"{miss}{slack}: {hint}")
    zero_hint = ("your range holds 0, no image changing: INT8's rounding moves every score a little, and equal "
                 "accuracies do not mean equal predictions (an image can flip from right to wrong while another flips "
                 "back); count the close calls, test images whose top two scores nearly tie")
    if not miss and low == 0 and changed > CHANGED_SLACK:  # holds the count and 0, a wrong reasoning's value, far from it
        where = "inside your range" if changed <= high else f"within {allowed} image{'s' if allowed != 1 else ''} of your range"
        return report(name, False, f"{measured}, {where}, but {zero_hint}; with {changed} changed, 0 is more than "
                                   f"{CHANGED_SLACK} images off, so the range does not tell that reasoning from the "
                                   "right one: narrow the range")
    if not miss:
        return report(name, True)
    if changed < low:
        hint = ("you expected more changes than INT8's small rounding errors make: every score moves a little, but a "
                "predicted digit changes only on a close call, whose top two scores nearly tie, and a model this "
                "accurate on an easy task has few")
    elif low == 0:
        hint = zero_hint
    else:
        hint = ("you expected fewer changes: the close calls are not only the images the model gets wrong; an image "
                "it gets right by a small margin can flip too")
    return report(name, False, f"{miss}{slack}: {hint}")
