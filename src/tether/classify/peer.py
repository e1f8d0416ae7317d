"""What a peer said: an HTTP answer that refused the upgrade, a close frame, a proxy. Pure.

:func:`classify_handshake` and :func:`classify_close` read the status or close
code (:mod:`tether.classify.status`), let the peer's own word refine it, gather
the peer's details (problem body, challenge, Retry-After, close reason),
cleaned and bounded, and word the result (:mod:`tether.classify.wording`). An
answer that came from something in front of the gateway
(:mod:`tether.classify.middlebox`) is read as that middlebox's and names it.
:func:`classify_proxy_refusal` and :func:`classify_proxy_unreachable` word a
forward proxy (``HTTPS_PROXY``) that refused the tunnel or could not be reached.
None of them raises: any input, however odd, gives a Failure with a sensible code.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable, Mapping

from tether import protocol
from tether.classify.httpparse import (
    FIELD_LIMIT,
    MAX_HEADER_VALUE,
    MAX_RETRY_AFTER,
    NAME_LIMIT,
    as_body_bytes,
    clean_peer,
    looks_like_html,
    optional_peer,
    parse_problem,
    parse_retry_after,
    parse_www_authenticate,
    safe_str,
)
from tether.classify.middlebox import PROGRAMS, from_in_between, identify, is_gateways
from tether.classify.status import (
    NO_CLOSE_FRAME,
    UNREADABLE_STATUS,
    Reading,
    read_close,
    read_middlebox,
    read_status,
)
from tether.classify.wording import Seen, build, host_of, redacted_url, sentence, words
from tether.errors import Code, Failure, Phase

_MAX_HEADERS = 256
_EXPIRED = re.compile(r"expired", re.IGNORECASE)
_REQUIRES = re.compile(r"\brequires?\s+(?:role\s+)?([A-Za-z][\w-]{0,31})")
_UNREADABLE = "(details could not be read)"


def _bounded_int(value: object, high: int) -> int | None:
    """``int(value)`` when it is a number from 0 to ``high``, else None (bools too)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number <= high else None


def _catalog_code(name: str | None) -> Code | None:
    if not name:
        return None
    try:
        return Code(name.strip().lower())
    except ValueError:
        return None


def _required_role(explicit: str | None, text: str | None, seen: Seen) -> str | None:
    """The role needed: the peer's word, then the reason's ``requires X``, then the catalog."""
    if explicit:
        return clean_peer(explicit, NAME_LIMIT) or None
    if text and (match := _REQUIRES.search(text)) and match.group(1) in protocol.ROLES:
        return match.group(1)
    command = seen.command
    if command not in protocol.MINIMUM_ROLES:
        return None
    if seen.role and protocol.role_allows(seen.role, command):
        return None  # the role suffices for the command: something else was denied
    return protocol.MINIMUM_ROLES[command]


def _worded(seen: Seen, reading: Reading, details: Callable[[Reading], Failure] | None) -> Failure:
    """The Failure ``details`` finds for what ``reading`` says, else the reading's own code.

    The parsers are tolerant; catching here is one more line of defence.
    """
    seen.read_as(reading)
    if details is not None:
        try:
            return details(reading)
        except Exception:
            seen.detail = _UNREADABLE
    return build(reading.code, seen)


# --- handshake -----------------------------------------------------------------------


def _header_items(headers: object) -> list[object]:
    """At most :data:`_MAX_HEADERS` items of a mapping or a list of pairs; none on error."""
    try:
        if isinstance(headers, Mapping):
            return list(itertools.islice(headers.items(), _MAX_HEADERS))
        if isinstance(headers, Iterable) and not isinstance(headers, str | bytes):
            return list(itertools.islice(headers, _MAX_HEADERS))
    except Exception:
        return []
    return []


def _header_text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, list | tuple):
        return ", ".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else None


def _headers(headers: object) -> dict[str, str]:
    """Headers as a dict of lowercased names; repeated names joined with ``, ``."""
    out: dict[str, str] = {}
    for item in _header_items(headers):
        if not isinstance(item, tuple | list) or len(item) != 2:
            continue
        name = item[0].decode("latin-1") if isinstance(item[0], bytes) else item[0]
        value = _header_text(item[1])
        if not isinstance(name, str) or value is None:
            continue
        key = name.strip().lower()
        value = value[:MAX_HEADER_VALUE]
        out[key] = f"{out[key]}, {value}"[:MAX_HEADER_VALUE] if key in out else value
    return out


_HTML_TITLE = re.compile(r"<title[^>]{0,100}>([^<]{0,300})", re.IGNORECASE)
_HTML_PARAGRAPH = re.compile(r"<p(?:\s[^>]{0,100})?>([^<]{1,600})", re.IGNORECASE)


def _body_words(body: bytes, content_type: str | None) -> tuple[str | None, str | None]:
    """(what the body is, its words) for a body that is not a problem object."""
    if not body.strip():
        return None, None
    text = body[:8192].decode("utf-8", errors="replace")
    if looks_like_html(text, content_type):
        match = _HTML_TITLE.search(text)
        title = clean_peer(match.group(1), 120) if match else ""
        return (f'an HTML page titled "{title}"' if title else "an HTML page"), None
    if text.lstrip()[:1] in "{[":
        return "a JSON document", None
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "text", words(first)


def _page_words(body: bytes, content_type: str | None) -> str | None:
    """The first paragraph of an HTML page (a proxy's own page says why there)."""
    text = body[:8192].decode("utf-8", errors="replace")
    if not looks_like_html(text, content_type):
        return None
    match = _HTML_PARAGRAPH.search(text)
    return words(match.group(1)) if match else None


def _in_between(status: int, raw: bytes, content_type: str | None, head: dict[str, str],
                seen: Seen) -> Reading | None:
    """The middlebox's reading when something in front of the gateway answered, else None."""
    if is_gateways(seen.problem):
        return None
    named = identify(head, raw)
    if not from_in_between(status, seen.problem, raw, content_type, named):
        return None
    host = host_of(seen.url)
    if named is None:
        kind = "the proxy" if status >= 300 else "the server"
        seen.answered_by = f"{kind} at {host}" if host else None
    else:
        seen.answered_by = f"{named} at {host}" if host and named in PROGRAMS else named
    seen.detail = seen.detail or _page_words(raw, content_type)
    html = looks_like_html(raw[:8192].decode("utf-8", errors="replace"), content_type)
    reading = read_middlebox(status, html=html and bool(raw.strip()))
    seen.reading = reading
    return reading


def classify_handshake(status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
                       body: bytes | None, *, url: str | None = None,
                       service: str | None = None, command: str | None = None,
                       role: str | None = None, gateway: str | None = None,
                       now: float | None = None) -> Failure:
    """The Failure for an HTTP answer that did not upgrade to a WebSocket."""
    seen = Seen.of(Phase.HANDSHAKE, service=service, command=command, role=role,
                   gateway=gateway, url=url)
    number = _bounded_int(status, 9999)
    if number is None:
        return _worded(seen, UNREADABLE_STATUS, None)
    seen.http_status = number
    return _worded(seen, read_status(number),
                   lambda reading: _handshake(number, reading, headers, body, seen, now=now))


def _handshake(status: int, reading: Reading, headers: object, body: object, seen: Seen, *,
               now: float | None) -> Failure:
    head = _headers(headers)
    raw = as_body_bytes(body)
    content_type = head.get("content-type")
    problem = parse_problem(raw, content_type)
    seen.problem = problem
    seen.request_id = optional_peer(head.get("x-request-id"), 200) or (
        problem.request_id if problem else None)
    if "retry-after" in head:
        seen.retry_after = parse_retry_after(head["retry-after"], time.time() if now is None
                                             else now)
    if problem is not None:
        if seen.retry_after is None and status in (429, 503):
            seen.retry_after = problem.retry_after
        seen.detail = words(problem.detail or problem.title)
        seen.services = problem.services
    else:
        seen.body_kind, seen.detail = _body_words(raw, content_type)
    middlebox = _in_between(status, raw, content_type, head, seen)
    if middlebox is not None:
        return build(_status_details(status, middlebox.code, head, raw, seen), seen)
    code = reading.refined(_catalog_code(problem.code if problem else None))
    return build(_status_details(status, code, head, raw, seen), seen)


def _status_details(status: int, code: Code, head: dict[str, str], raw: bytes,
                    seen: Seen) -> Code:
    """What the status's own headers add to ``seen``; the code, token-expired for a 401."""
    if status == 401:
        return _unauthorized(code, head, seen)
    if code is Code.PERMISSION_DENIED:
        seen.required_role = _required_role(seen.problem.required_role if seen.problem else None,
                                            seen.detail, seen)
    elif 300 <= status < 400:
        location = head.get("location")
        seen.location = redacted_url(location.strip()) if location else None
    elif 200 <= status < 300 and seen.body_kind is None and seen.problem is None:
        seen.body_kind = "an empty body" if not raw.strip() else None
    return code


def _unauthorized(code: Code, head: dict[str, str], seen: Seen) -> Code:
    """Token-expired when the bearer challenge or the peer's words say so."""
    bearer = next((c for c in parse_www_authenticate(head.get("www-authenticate", ""))
                   if c.scheme.lower() == "bearer"), None)
    description = words(bearer.get("error_description")) if bearer else None
    if seen.detail is None:
        seen.detail = description
    if code is not Code.UNAUTHORIZED:
        return code
    said_expired = bool(bearer is not None and bearer.get("error") == "invalid_token"
                        and description and _EXPIRED.search(description))
    if said_expired or (seen.detail and _EXPIRED.search(seen.detail)):
        return Code.TOKEN_EXPIRED
    return code


# --- close frames ----------------------------------------------------------------------

_AGENT_TIMEOUT = re.compile(
    r"timeout|timed out|exceeded for receiving agent response|while connecting to pod"
    r"|while setting up port forward|retry budget exhausted",
    re.IGNORECASE)
_RETRY_IN_REASON = re.compile(r"retry[- ]after[:= ]\s*(\d{1,6})", re.IGNORECASE)
_WAIT_CODES = frozenset({Code.RATE_LIMITED, Code.GATEWAY_UNAVAILABLE, Code.OVERLOADED})


def classify_close(code: int | None, reason: str | bytes | None, *, service: str | None = None,
                   command: str | None = None, role: str | None = None,
                   gateway: str | None = None, url: str | None = None,
                   port: int | None = None) -> Failure:
    """The Failure for a close frame (``code`` None: the connection ended without one)."""
    seen = Seen.of(Phase.SESSION, service=service, command=command, role=role,
                   gateway=gateway, url=url)
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        seen.port = port
    number = _bounded_int(code, 65535)
    if number is None:
        seen.what = "an unreadable close code" if code is not None else ""
        return _worded(seen, NO_CLOSE_FRAME, None)
    seen.close_code = number
    return _worded(seen, read_close(number),
                   lambda reading: _close(number, reading, reason, seen))


def _close(number: int, reading: Reading, reason: object, seen: Seen) -> Failure:
    text = clean_peer(reason, 1024) if reason is not None else ""
    seen.close_reason = text[:FIELD_LIMIT] or None
    prefix, said = protocol.parse_close_reason(text)
    seen.detail = words(said)
    named = _catalog_code(prefix)
    result = reading.refined(named)
    if named is None:
        result = _refined_by_words(number, result, text)
    if result is Code.PERMISSION_DENIED:
        seen.required_role = _required_role(None, text, seen)
    if result in _WAIT_CODES and (match := _RETRY_IN_REASON.search(text)):
        seen.retry_after = min(float(match.group(1)), MAX_RETRY_AFTER)
    return build(result, seen)


def _refined_by_words(number: int, code: Code, text: str) -> Code:
    """A close reason without a code prefix: its words may still say timeout or expiry."""
    if code is Code.BACKEND_UNAVAILABLE and _AGENT_TIMEOUT.search(text):
        return Code.AGENT_TIMEOUT
    if code is Code.UNAUTHORIZED and number in (1008, 4401) and _EXPIRED.search(text):
        return Code.TOKEN_EXPIRED
    return code


# --- a forward proxy (HTTPS_PROXY, HTTP_PROXY) ----------------------------------------------


def classify_proxy_refusal(status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]]
                           | None, body: bytes | None, *, proxy: str, source: str, target: str,
                           url: str | None = None) -> Failure:
    """The Failure for a forward proxy that answered CONNECT with something other than 200.

    ``proxy`` is its ``host:port``, ``source`` the variable that named it,
    ``target`` the ``host:port`` the tunnel was asked to. Always proxy-error.
    """
    head = _headers(headers)
    raw = as_body_bytes(body)
    named = identify(head, raw)
    where, variable = clean_peer(proxy, 200), clean_peer(source, 40)
    who = f"{named} at {where}" if named in PROGRAMS else f"the proxy at {where}"
    number = _bounded_int(status, 9999)
    shown = clean_peer(target, 300)
    if number == 407:
        seen = Seen.of(Phase.CONNECT, service=None, command=None, role=None, gateway=None,
                       url=url)
        seen.answered_by, seen.http_status = who, 407
        seen.read_as(read_status(407))
        return build(Code.PROXY_ERROR, seen).replace(hint=(
            f"Put the proxy's credentials in {variable} (http://USER:PASSWORD@HOST:PORT), or the "
            "gateway's host in NO_PROXY to go direct."))
    what = read_status(number).what if number else "an answer that is not HTTP"
    program = f"{named}, " if named in PROGRAMS else ""
    message = (f"The proxy at {where} ({program}named by {variable}) refused the tunnel "
               f"(CONNECT) to {shown}: {what}.")
    said = _page_words(raw, head.get("content-type")) or _body_words(
        raw, head.get("content-type"))[1]
    if said:
        message += " It says: " + sentence(said)
    port = shown.rpartition(":")[2]
    return Failure.of(
        Code.PROXY_ERROR, Phase.CONNECT, message, http_status=number or None,
        answered_by=who, url=redacted_url(url),
        hint=(f"The proxy does not open tunnels to {shown}: ask its operators to allow CONNECT "
              f"to port {port}, or put the gateway's host in NO_PROXY to go direct."))


def classify_proxy_unreachable(exc: BaseException, *, proxy: str, source: str,
                               url: str | None = None) -> Failure:
    """The Failure for a forward proxy that could not be connected to (down, or no route)."""
    where = f"{clean_peer(proxy, 200)} (named by {clean_peer(source, 40)})"
    why = clean_peer(getattr(exc, "strerror", None) or safe_str(exc), 120)
    lead = (f"Nothing accepts connections at the proxy {where}"
            if isinstance(exc, ConnectionRefusedError) else f"Could not connect to the proxy "
                                                             f"{where}")
    return Failure.of(
        Code.PROXY_ERROR, Phase.CONNECT, f"{lead}: {sentence(why)}" if why else f"{lead}.",
        url=redacted_url(url), cause=exc,
        hint=(f"Start the proxy or correct {clean_peer(source, 40)}; or put the gateway's host "
              "in NO_PROXY to go direct."))
