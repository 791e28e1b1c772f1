"""Argument checks shared by the package: each raises a ``ValueError`` (or ``TypeError``) that names the argument,
the value and what would be valid, and returns the value, so a check reads ``n = positive_int("n", n)``.

``bool`` is refused where a number is asked for (``True`` is an ``int`` to Python, never a count to a learner).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

__all__ = ["int_in_range", "positive_int", "positive_ints", "positive_number"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_in_range(name: str, value: Any, low: int, high: Optional[int] = None, *, allow_none: bool = False) -> Any:
    """``value`` if it is an int with ``low <= value`` (and ``<= high`` when given); ``None`` too with ``allow_none``."""
    if value is None and allow_none:
        return value
    if not _is_int(value) or value < low or (high is not None and value > high):
        valid = f"an int in {low}..{high}" if high is not None else ("a positive int" if low == 1 else f"an int >= {low}")
        raise ValueError(f"{name} must be {valid}{' or None' if allow_none else ''}, got {value!r}")
    return value


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """``value`` if it is an int >= 1 (or None with ``allow_none``); ``ValueError`` naming ``name`` otherwise."""
    return int_in_range(name, value, 1, allow_none=allow_none)


def positive_ints(name: str, values: Sequence[Any]) -> Sequence[Any]:
    """``values`` if it is a non-empty sequence of ints >= 1; ``ValueError`` naming ``name`` otherwise."""
    if not values or any(not _is_int(v) or v < 1 for v in values):
        raise ValueError(f"{name} must be positive ints, got {values!r}")
    return values


def positive_number(name: str, value: Any) -> Any:
    """``value`` if it is an int or float > 0; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value
