"""Durations as people write them: ``500ms``, ``30s``, ``5m``, ``1h30m``, or plain seconds. Pure."""

from __future__ import annotations

import math
import re

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN = re.compile(_NUMBER)
#: One term per unit, largest first, each at most once: ``1h30m``, ``2m30s``, ``1s500ms``.
_FORM = re.compile(rf"(?:(?P<h>{_NUMBER})\s*h)?\s*(?:(?P<m>{_NUMBER})\s*m(?!s))?"
                   rf"\s*(?:(?P<s>{_NUMBER})\s*s)?\s*(?:(?P<ms>{_NUMBER})\s*ms)?")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: plain seconds, or numbers with units largest first (``1h30m``).

    Units are ms, s, m and h. Raises ValueError, saying what is expected, for
    anything else (negative, empty, unknown unit, units out of order, not finite).
    """
    cleaned = text.strip().lower()
    if _PLAIN.fullmatch(cleaned):
        seconds = float(cleaned)
    else:
        match = _FORM.fullmatch(cleaned)
        terms = {unit: value for unit, value in (match.groupdict() if match else {}).items()
                 if value is not None}
        if not terms:
            shown = text if len(text) <= 40 else text[:39] + "…"
            raise ValueError(f"invalid duration {shown!r}: expected a number of seconds, or "
                             "numbers with units ms, s, m, h, largest first (500ms, 30s, 5m, "
                             "1h30m, 2m30s)")
        seconds = sum(float(value) * _UNITS[unit] for unit, value in terms.items())
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text[:40]!r}: too large")
    return seconds
