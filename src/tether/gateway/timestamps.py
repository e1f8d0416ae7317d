"""Timestamps of log lines: found in the line when it has one, formatted as RFC 3339 UTC."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime

from tether.durations import parse_duration

_LEADING = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?(?:\s+|$)")
_JSON_KEYS = ("ts", "time", "timestamp", "@timestamp")
_CACHE_SIZE = 1024
_SCALE = (0, 100_000, 10_000, 1000, 100, 10, 1)  # digits of a fraction -> microseconds
_seconds: dict[tuple[str, str | None], tuple[int, str] | None] = {}  # (date and time, zone)
_prefixes: dict[int, str] = {}  # Unix seconds -> "2026-11-23T07:38:48."
Stamp = tuple[float, str]  # Unix time, and the same time as RFC 3339 UTC text


def parse_rfc3339(text: str) -> float | None:
    """Unix time of an RFC 3339 / ISO 8601 timestamp, or None; no zone means UTC."""
    match = _LEADING.fullmatch(text.strip() + " ") if text else None
    stamp = _from_match(match) if match is not None else None
    return stamp[0] if stamp is not None else None


def _from_match(match: re.Match[str]) -> Stamp | None:
    base, fraction, zone = match.group(1, 2, 3)
    try:
        whole = _seconds[(base, zone)]
    except KeyError:
        whole = _whole_seconds(base, zone)
        if len(_seconds) >= _CACHE_SIZE:
            _seconds.clear()
        _seconds[(base, zone)] = whole
    if whole is None:
        return None
    if not fraction:
        micros = 0
    elif (digits := fraction[1:7]).isascii():  # microseconds: more digits are dropped
        micros = int(digits) * _SCALE[len(digits)]
    else:
        return None
    seconds, prefix = whole
    # the division is as exact as datetime.timestamp()
    return (seconds * 1_000_000 + micros) / 1_000_000, f"{prefix}{micros:06d}Z"


def _whole_seconds(base: str, zone: str | None) -> tuple[int, str] | None:
    """Unix seconds of ``2026-11-23T07:38:48`` in ``zone`` (Z, +01:00, -0530, none: UTC), and
    the start of its RFC 3339 UTC text; None when it is not a time."""
    zone = "+00:00" if zone in (None, "Z", "z") else zone
    if len(zone) == 5:  # +0100
        zone = zone[:3] + ":" + zone[3:]
    try:
        seconds = int(datetime.fromisoformat(base.replace(" ", "T") + zone).timestamp())
        return seconds, _prefix(seconds)
    except (ValueError, OverflowError):  # not a date, or out of datetime's range in UTC
        return None


def line_time(line: str) -> tuple[Stamp | None, str]:
    """The time a log line carries, and its message.

    A JSON object line keeps its whole text as message and gives its ``ts``,
    ``time``, ``timestamp`` or ``@timestamp`` field; a line that starts with an
    RFC 3339 timestamp gives it and keeps the rest as message. Otherwise no time.
    """
    first = line[:1]
    if first.isdigit():
        match = _LEADING.match(line)
        if match is not None and (stamp := _from_match(match)) is not None:
            return stamp, line[match.end():]
        return None, line
    if first == "{":
        try:
            body = json.loads(line)
        except (ValueError, RecursionError):
            return None, line
        if isinstance(body, dict):
            for key in _JSON_KEYS:
                value = body.get(key)
                match = _LEADING.fullmatch(value.strip() + " ") if isinstance(value, str) else None
                if match is not None and (stamp := _from_match(match)) is not None:
                    return stamp, line
    return None, line


def format_ts(stamp: float) -> str:
    """``2026-11-23T07:38:48.123456Z``, rounded to the microsecond as ``datetime`` does."""
    fraction, whole = math.modf(stamp)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return f"{_prefix(int(whole))}{micros:06d}Z"


def _prefix(seconds: int) -> str:
    """``2026-11-23T07:38:48.`` of a whole Unix second."""
    prefix = _prefixes.get(seconds)
    if prefix is None:
        prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        if len(_prefixes) >= _CACHE_SIZE:
            _prefixes.clear()
        _prefixes[seconds] = prefix
    return prefix


def parse_since(text: str, *, now: float | None = None) -> float:
    """Unix time from ``since``: an RFC 3339 time, or a duration back from now (15m, 2h).

    Raises ValueError saying what is expected.
    """
    stamp = parse_rfc3339(text)
    if stamp is not None:
        return stamp
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ValueError("since: expected an RFC 3339 time (2026-01-02T03:04:05Z) or a "
                         "duration (30s, 15m, 2h)") from None
    return (time.time() if now is None else now) - seconds
