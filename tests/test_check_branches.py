"""Wrong-answer branches of the self-checks that the per-notebook exercise tests do not reach, each with its hint.

The coverage gate (``make test-checks``, tests/checks_coverage.py) runs these with tests/test_exercises_NN.py
and fails on any branch of a self-check that no test runs. The cases live here, not in the per-notebook
files, so that the gate's tests stay apart from the notebooks' own; each asserts the hint with
``verdicts.rejected``.
"""

from __future__ import annotations
