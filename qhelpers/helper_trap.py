"""The stand-in a course helper runs while one of notebook 06's self-checks calls the learner's function.

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

``qhelpers.linear_checks._forbid_helper`` swaps the code of the helper an exercise asks the learner not to call
(``pack_int4``, ``weight_storage_bytes``, ``linear_cost``, ``smoothquant_scales``) for ``_trap``'s code. That code
raises ``_UsedHelper`` by its global name, which is looked up in the module of the helper it runs as: so each
module that holds such a helper (``group_quant``, ``roofline``, ``smoothquant``) imports ``_UsedHelper`` from here.
"""

from __future__ import annotations

from typing import Any

__all__: list[str] = []


class _UsedHelper(Exception):
    """Raised by a stand-in for a ``qhelpers`` function that an exercise asks the learner not to call."""


def _trap(*_args: Any, **_kwargs: Any) -> Any:
    """The code a forbidden helper runs while a check calls the learner's function."""
    raise _UsedHelper()
