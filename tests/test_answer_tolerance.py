"""The self-checks' shared number handling (qhelpers.checks): one parser for a learner's number, one tolerance."""

from qhelpers.checks import ANSWER_REL_TOL, as_number, is_close


def test_the_one_answer_tolerance():
    """A printout's 4 significant digits pass; the 255-vs-256 slip (0.4 %) and a flipped sign do not."""
    exact = 6.0 / 255
    assert is_close(as_number(round(exact, 5), "scale"), exact) and is_close(float(f"{exact:.4g}"), exact)
    assert not is_close(6.0 / 256, exact) and not is_close(-exact, exact)
    assert is_close(0.0, 0.0) and not is_close(1e-6, 0.0)
    assert is_close(1.0 + 2 * ANSWER_REL_TOL, 1.0, rel=3 * ANSWER_REL_TOL)
