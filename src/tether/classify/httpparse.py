"""Tolerant parsers of what an HTTP peer sends back: problem bodies, challenges, Retry-After.

Pure and never raising: :func:`parse_problem` (RFC 9457),
:func:`parse_www_authenticate` (RFC 9110 section 11.6.1, RFC 6750) and
:func:`parse_retry_after` (RFC 9110 section 10.2.3). Every piece of peer text
they keep is cleaned (:func:`clean_peer`) and bounded.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from tether.text import strip_control

#: At most this much of a refusal body is looked at.
MAX_BODY = 64 * 1024
#: Retry-After values are capped at one day.
MAX_RETRY_AFTER = 86400.0
FIELD_LIMIT = 1000  # peer text kept in a field
NAME_LIMIT = 100  # a service, role or command name
MAX_HEADER_VALUE = 8192
_MAX_SERVICES = 50
_MAX_PORTS = 100


_RUNS = re.compile(r"\s{2,}")


def safe_str(value: object) -> str:
    """``str(value)``, or an empty string when that raises."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        return ""
    return text


def clean_peer(value: object, limit: int = FIELD_LIMIT) -> str:
    """Peer text made safe to show: valid Unicode, no control characters, bounded."""
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value[: limit * 4]).decode("utf-8", errors="replace")
    else:
        text = safe_str(value)[: limit * 4]
    text = text.encode("utf-8", errors="replace").decode("utf-8", errors="replace")
    return _RUNS.sub(" ", strip_control(text, limit=limit)).strip()


def optional_peer(value: object, limit: int = FIELD_LIMIT) -> str | None:
    """:func:`clean_peer` for an optional string field: None when absent or empty."""
    if value is None:
        return None
    text = clean_peer(value, limit)
    return text or None


@dataclass(frozen=True)
class Problem:
    """The fields of an RFC 9457 problem body that tether reads; all peer text, cleaned."""

    type: str | None = None
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None
    code: str | None = None
    required_role: str | None = None
    request_id: str | None = None
    retry_after: float | None = None
    services: tuple[str, ...] = ()
    port: int | None = None  # the port asked for (port-not-forwarded)
    ports: tuple[int, ...] = ()  # the ports open for forwarding (port-not-forwarded)


def as_body_bytes(body: object) -> bytes:
    if isinstance(body, bytes):
        return body[:MAX_BODY]
    if isinstance(body, bytearray | memoryview):
        return bytes(body[:MAX_BODY])
    if isinstance(body, str):
        return body[:MAX_BODY].encode("utf-8", errors="replace")[:MAX_BODY]
    return b""


def looks_like_html(text: str, content_type: str | None) -> bool:
    ctype = (content_type or "").lower()
    return "html" in ctype or text.lstrip()[:1] == "<"


def _services(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names: list[str] = []
    for item in value[:_MAX_SERVICES]:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and (cleaned := clean_peer(name, NAME_LIMIT)):
            names.append(cleaned)
    return tuple(names)


def _port(value: object) -> int | None:
    return value if type(value) is int and 0 < value < 65536 else None


def _ports(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    found = (_port(item) for item in value[:_MAX_PORTS])
    return tuple(port for port in found if port is not None)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0:
        return None
    return min(number, MAX_RETRY_AFTER)


def parse_problem(body: bytes | None, content_type: str | None) -> Problem | None:
    """The problem object in ``body`` (RFC 9457), or None when it holds none.

    Reads at most :data:`MAX_BODY` bytes. Tolerant: any JSON content type, or
    none, is tried when the body looks like a JSON object; HTML is not. Fields
    of the wrong type are ignored; text fields are cleaned and bounded.
    """
    raw = as_body_bytes(body)
    if not raw.strip():
        return None
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    ctype = content_type if isinstance(content_type, str) else None
    if not text.startswith("{") or looks_like_html(text, ctype):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None

    def text_field(name: str, limit: int = FIELD_LIMIT) -> str | None:
        value = data.get(name)
        return optional_peer(value, limit) if isinstance(value, str) else None

    status = data.get("status")
    code = text_field("code", 64)
    return Problem(
        type=text_field("type"),
        title=text_field("title"),
        status=status if type(status) is int and 100 <= status <= 999 else None,
        detail=text_field("detail"),
        instance=text_field("instance"),
        code=code.lower() if code else None,
        required_role=text_field("required_role", NAME_LIMIT),
        request_id=text_field("request_id", 200),
        retry_after=_number(data.get("retry_after")),
        services=_services(data.get("services")),
        port=_port(data.get("port")),
        ports=_ports(data.get("ports")),
    )


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: a scheme and its parameters or its token68."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()  # names lowercased, in order
    token68: str | None = None

    def get(self, name: str) -> str | None:
        """The first value of parameter ``name`` (case-insensitive), or None."""
        key = name.lower()
        return next((value for param, value in self.params if param == key), None)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MAX_CHALLENGES = 32
_MAX_PARAMS = 64


def _skip(value: str, pos: int, chars: str = " \t,") -> int:
    """The first position from ``pos`` whose character is not one of ``chars``."""
    while pos < len(value) and value[pos] in chars:
        pos += 1
    return pos


def _quoted(value: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at ``pos`` (on the quote); unterminated runs to the end."""
    out: list[str] = []
    i = pos + 1
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    return "".join(out), i


def _token68(value: str, pos: int) -> tuple[str | None, int]:
    """A token68 after a scheme ending at ``pos`` when it ends the challenge; where to go on."""
    after_scheme = _skip(value, pos, " \t")
    if after_scheme == pos:
        return None, pos
    found = _TOKEN68.match(value, after_scheme)
    if found:
        stop = _skip(value, found.end(), " \t")
        if stop >= len(value) or value[stop] == ",":
            return found.group(), stop
    return None, after_scheme


def _param_value(value: str, pos: int) -> tuple[str, int]:
    """A parameter's value after its ``=``: a quoted-string or a token; and the end of it."""
    pos = _skip(value, pos, " \t")
    if pos < len(value) and value[pos] == '"':
        return _quoted(value, pos)
    stop = pos
    while stop < len(value) and value[stop] not in ", \t":
        stop += 1
    return value[pos:stop], stop


def _params(value: str, pos: int) -> tuple[list[tuple[str, str]], int]:
    """The ``name=value`` parameters from ``pos``, and where the next challenge's scheme is."""
    params: list[tuple[str, str]] = []
    end = len(value)
    while pos < end and len(params) < _MAX_PARAMS:
        look = _skip(value, pos)
        name = _TOKEN.match(value, look)
        if not name:
            if look >= end:
                return params, look
            nxt = value.find(",", look)  # junk: skip to the next comma
            if nxt < 0:
                return params, end
            pos = nxt
            continue
        equals = _skip(value, name.end(), " \t")
        if equals >= end or value[equals] != "=":
            return params, pos  # a token without "=": the next challenge's scheme
        param_value, pos = _param_value(value, equals + 1)
        params.append((name.group().lower(), param_value))
    return params, pos


def parse_www_authenticate(value: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` value (RFC 9110 section 11.6.1).

    Several challenges, parameters with token or quoted-string values (with
    backslash escapes), token68. Malformed parts are skipped, never raised on.
    """
    if not isinstance(value, str):
        return []
    value = value[:MAX_HEADER_VALUE]
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(value) and len(challenges) < _MAX_CHALLENGES:
        pos = _skip(value, pos)
        scheme = _TOKEN.match(value, pos)
        if not scheme:
            pos += 1  # a stray character: skip it
            continue
        token68, pos = _token68(value, scheme.end())
        params: list[tuple[str, str]] = []
        if token68 is None:
            params, pos = _params(value, pos)
        challenges.append(Challenge(scheme.group(), tuple(params), token68))
    return challenges


_DELTA = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Never negative (a past date is 0), capped at :data:`MAX_RETRY_AFTER`; None
    for anything else.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()[:200]
    if not text:
        return None
    if _DELTA.fullmatch(text):
        if len(text.partition(".")[0]) > 9:
            return MAX_RETRY_AFTER
        return min(float(text), MAX_RETRY_AFTER)
    if not any(c.isalpha() for c in text):
        return None  # a negative number or other junk; not a date either
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = when.timestamp() - float(now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if not math.isfinite(delta):
        return None
    return max(0.0, min(delta, MAX_RETRY_AFTER))
