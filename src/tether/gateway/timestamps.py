"""Timestamps of log lines: found in the line when it has one, formatted as RFC 3339 UTC."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

from tether.ws.durations import parse_duration

_LEADING = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:?\d{2})?(?:\s+|$)")
_JSON_KEYS = ("ts", "time", "timestamp", "@timestamp")


def parse_rfc3339(text: str) -> float | None:
    """Unix time of an RFC 3339 / ISO 8601 timestamp, or None; no zone means UTC."""
    match = _LEADING.fullmatch(text.strip() + " ") if text else None
    if match is None:
        return None
    return _from_match(match)


def _from_match(match: re.Match[str]) -> float | None:
    base, fraction, zone = match.group(1), match.group(2) or "", match.group(3) or "Z"
    zone = "+00:00" if zone in ("Z", "z") else zone
    if len(zone) == 5:  # +0100
        zone = zone[:3] + ":" + zone[3:]
    try:
        moment = datetime.fromisoformat(base.replace(" ", "T") + fraction[:7] + zone)
    except ValueError:
        return None
    return moment.timestamp()


def line_time(line: str) -> tuple[float | None, str]:
    """The time a log line carries, and its message.

    A JSON object line keeps its whole text as message and gives its ``ts``,
    ``time``, ``timestamp`` or ``@timestamp`` field; a line that starts with an
    RFC 3339 timestamp gives it and keeps the rest as message. Otherwise no time.
    """
    if line.startswith("{"):
        try:
            body = json.loads(line)
        except (ValueError, RecursionError):
            return None, line
        if isinstance(body, dict):
            for key in _JSON_KEYS:
                value = body.get(key)
                if isinstance(value, str) and (stamp := parse_rfc3339(value)) is not None:
                    return stamp, line
        return None, line
    if line[:1].isdigit():
        match = _LEADING.match(line)
        if match is not None and (stamp := _from_match(match)) is not None:
            return stamp, line[match.end():]
    return None, line


def format_ts(stamp: float) -> str:
    """``2026-11-23T07:38:48.123456Z``."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
