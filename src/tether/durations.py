"""Durations as people write them: ``500ms``, ``30s``, ``5m``, ``1h``, or plain seconds. Pure."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_FORM = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|m|h)?")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit (ms, s, m, h); no unit means seconds.

    Raises ValueError, saying what is expected, for anything else (negative,
    empty, unknown unit, not finite).
    """
    cleaned = text.strip().lower()
    match = _FORM.fullmatch(cleaned)
    if match is None:
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise ValueError(f"invalid duration {shown!r}: expected a number of seconds, or a number "
                         "followed by ms, s, m or h (500ms, 30s, 5m, 1h)")
    seconds = float(match["number"]) * _UNITS[match["unit"] or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r}: too large")
    return seconds
