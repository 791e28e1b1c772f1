"""What the exercise tests assert about a self-check's verdict (shared by tests/test_exercises_NN.py)."""

from __future__ import annotations


def rejected(capsys, ok, *words: str) -> str:
    """The check said "not yet" (false, ❌) and its printed hint names the mistake: every word appears, case-insensitive."""
    out = capsys.readouterr().out
    assert not ok, out
    assert "❌" in out, out
    for w in words:
        assert w.lower() in out.lower(), f"{w!r} not in {out!r}"
    return out
