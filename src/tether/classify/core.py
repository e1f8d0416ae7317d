"""Turn what the peer or the network did into one :class:`~tether.errors.Failure`. Pure.

Three entry points, one per way a dial or a session can end badly:

- :func:`classify_handshake`: an HTTP answer that refused the upgrade (status,
  headers, body);
- :func:`classify_close`: a close frame after the upgrade (code, reason);
- :func:`classify_exception`: an exception from the socket, TLS or
  websocket-client, unwrapped along its ``__cause__``/``__context__`` chain.

None of them does I/O and none of them raises: any input, however odd, gives a
Failure with a sensible code. Peer text (problem details, close reasons,
header values) is passed through :func:`~tether.text.strip_control` and cut to
a bounded length before it is stored; URLs are redacted. The parsers of
problem bodies, ``WWW-Authenticate`` and ``Retry-After`` live in
:mod:`tether.classify.httpparse` and are re-exported here.

HTTP statuses (handshake phase)::

    101                     protocol-error       switched protocols, but not to a valid WebSocket
    1xx other               unexpected-status
    2xx                     protocol-error       "not a WebSocket endpoint" (HTML title shown)
    3xx                     unexpected-status    names the Location: maybe a login page or proxy
    400                     invalid-request
    401                     unauthorized         token-expired when invalid_token's description
                                                 or the body's detail says "expired"
    403                     permission-denied    names the role needed and the role held
    404                     not-found            lists the services the body names
    407                     proxy-error
    429                     rate-limited         retry_after from Retry-After, or the body
    500                     gateway-error
    502, 504                backend-unavailable  cluster-health hint
    503                     gateway-unavailable  retry_after when given
    other                   unexpected-status

A problem body's ``code`` refines the mapping when it names a catalog code that
fits the status (401 -> token-expired; 502/504 -> agent-timeout or
target-unreachable; 503 -> gateway-restarting or overloaded).

Close codes (session phase)::

    None (no close frame)   connection-lost
    0-999                   protocol-error       not a valid close code
    1000                    connection-lost      the gateway ended the session before it was done
    1001, 1012              gateway-restarting
    1002, 1003, 1010        protocol-error
    1004, 1016-2999         protocol-error       reserved codes no peer should send
    1005, 1006              connection-lost      local-only codes, if a peer sends them anyway
    1007                    permission-denied
    1008                    unauthorized         token-expired when the reason says "expired"
    1009                    message-too-big
    1011                    backend-unavailable  agent-timeout on a timeout reason;
                                                 target-unreachable on that reason code
    1013                    overloaded
    1014                    backend-unavailable  refined like 1011 (so are 4502 and 4504)
    1015                    tls-error            local-only
    3000-3999               connection-lost      registered library codes tether does not know:
                                                 transient, so the next dial can say more
    4400-4599               as HTTP status - 4000 (4401 unauthorized, 4403 permission-denied,
                                                 4404 not-found, 4429 rate-limited, 4500, 4502,
                                                 4503, 4504; unlisted ones unexpected-status)
    4000-4399, 4600-4999    protocol-error       private codes outside the tether.v1 scheme
    5000-65535              protocol-error       not a valid close code

A reason written ``code: text`` (PROTOCOL.md section 3) refines the mapping when
``code`` is a catalog code that fits the close code (1008 ``token-expired``,
1011 ``agent-timeout``); for codes tether does not know (3000-4999 outside the
mirrored range) any code a peer may name is taken. 1000 and the local-only
codes are never refined.

Exceptions (connect phase unless another is given)::

    TetherError                           its own Failure
    WebSocketBadStatusException           classify_handshake(status, headers, body[:64 KiB])
    WebSocketAddressException             dns-failure, refined by the gaierror inside it
    socket.gaierror                       dns-failure: EAI_NONAME/EAI_NODATA "does not exist",
                                          EAI_AGAIN/EAI_FAIL "no DNS server answered"
    WebSocketTimeoutException,            connect-timeout; keepalive-timeout in the session
      TimeoutError, ETIMEDOUT
    ConnectionRefusedError, ECONNREFUSED  connection-refused
    ENETUNREACH, EHOSTUNREACH, ENETDOWN,  network-unreachable
      EHOSTDOWN, EADDRNOTAVAIL
    ConnectionReset/Aborted, BrokenPipe,  connection-lost
      EOFError, WebSocketConnectionClosedException
    ssl.SSLCertVerificationError          tls-error naming the verify message
    ssl.SSLError                          tls-error (connection-lost for a TLS EOF in session)
    WebSocketProxyException, ProxyError   proxy-error (ProxyTimeoutError: connect-timeout)
    WebSocketProtocol/PayloadException    protocol-error
    WebSocketException                    by its message (TLS, DNS, proxy, bad header),
                                          else a cause's mapping, else protocol-error
    EADDRINUSE, EACCES (local phase)      local-port-in-use
    other OSError                         network-unreachable; connection-lost in the session
    KeyboardInterrupt                     interrupted
    anything else                         internal-error

The chain is walked from the outermost exception inward (bounded, cycle-safe);
the first one with a specific mapping wins, else the outermost one's generic
mapping. websocket-client and python-socks classes are looked up by qualified
name along the class's MRO in :data:`EXCEPTION_TABLE`, so this module never
imports them.
"""

from __future__ import annotations

import errno
import http
import itertools
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tether import protocol
from tether.classify.httpparse import (
    FIELD_LIMIT,
    MAX_BODY,
    MAX_HEADER_VALUE,
    MAX_RETRY_AFTER,
    NAME_LIMIT,
    Challenge,
    Problem,
    as_body_bytes,
    clean_peer,
    looks_like_html,
    optional_peer,
    parse_problem,
    parse_retry_after,
    parse_www_authenticate,
    safe_str,
)
from tether.errors import CATALOG, Code, Failure, Phase, TetherError
from tether.text import redact_url

__all__ = [
    "EXCEPTION_TABLE",
    "MAX_BODY",
    "MAX_RETRY_AFTER",
    "Challenge",
    "Problem",
    "classify_close",
    "classify_exception",
    "classify_handshake",
    "parse_problem",
    "parse_retry_after",
    "parse_www_authenticate",
]

_DETAIL_LIMIT = 300  # peer text inside a message
_MAX_HEADERS = 256
_MAX_CHAIN = 16


# --- small, safe text functions ----------------------------------------------------

def _words(value: object, limit: int = _DETAIL_LIMIT) -> str | None:
    """:func:`_opt` for text shown in a message: None unless it has a letter or a digit."""
    text = optional_peer(value, limit)
    return text if text and any(c.isalnum() for c in text) else None


def _attr(obj: object, name: str) -> Any:
    """``getattr(obj, name, None)`` that survives properties that raise."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _duration(seconds: float) -> str:
    """``45 s``, ``2 min 5 s``, ``3 h 20 min``."""
    if seconds < 1:
        return "less than a second"
    whole = round(seconds)
    if whole < 90:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _redacted_url(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    return optional_peer(redact_url(url[:4096]), 500)


def _host(url: object, *, with_port: bool = True) -> str | None:
    """``host:port`` (or ``host``) of a URL, for messages."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url[:4096])
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    return optional_peer(f"{host}:{port}" if port and with_port else host, 200)


# --- what was seen, and the words for it ---------------------------------------------


@dataclass
class _Seen:
    """Everything known about one failure, cleaned; turned into a Failure by :func:`_build`."""

    phase: Phase
    what: str = ""  # "HTTP 403 Forbidden", "close 1011 INTERNAL_ERROR"
    service: str | None = None
    command: str | None = None
    role: str | None = None
    gateway: str | None = None
    url: str | None = None
    port: int | None = None
    http_status: int | None = None
    close_code: int | None = None
    close_reason: str | None = None
    problem: Problem | None = None
    detail: str | None = None  # the peer's own words, for the message
    required_role: str | None = None
    retry_after: float | None = None
    request_id: str | None = None
    location: str | None = None
    services: tuple[str, ...] = ()
    body_kind: str | None = None  # "an HTML page titled ...", for non-WebSocket answers


def _svc(seen: _Seen) -> str:
    return f"`{seen.service}`" if seen.service else "the service"


def _status_cmd(seen: _Seen) -> str:
    return f"`tether status {seen.service}`" if seen.service else "`tether status`"


def _cluster_hint(seen: _Seen) -> str:
    name = seen.service or "the service"
    return (f"Verify that the cluster hosting {name} is running and healthy "
            f"({_status_cmd(seen)}); tether retries meanwhile.")


def _role_message(seen: _Seen) -> tuple[str, str | None]:
    """The permission-denied lead sentence and hint."""
    needed, have, command = seen.required_role, seen.role, seen.command
    what = f"`{command}`" if command else "This command"
    if needed and have:
        lead = f"{what} needs role {needed}; you have {have}"
    elif needed:
        lead = f"{what} needs role {needed}"
    elif have:
        lead = f"Role {have} may not do this" + (f" with `{command}`" if command else "")
    else:
        lead = "Permission denied" + (f" for `{command}`" if command else "")
    hint = (f"Ask an Admin of {seen.gateway or 'the gateway'} for the {needed} role."
            if needed else None)
    if needed and have and needed == have:
        hint = (f"Your role {have} should allow this; the gateway may deny it for this "
                f"service or port. Ask an Admin of {seen.gateway or 'the gateway'}.")
    return lead, hint


def _lead(code: Code, seen: _Seen) -> tuple[str, str | None]:
    """The message's first sentence for ``code``, and a hint when it differs from the catalog's."""
    svc = _svc(seen)
    status = seen.http_status
    match code:
        case Code.INVALID_REQUEST:
            return "The gateway rejected the request as invalid", None
        case Code.UNAUTHORIZED:
            return "The gateway did not accept the credential", None
        case Code.TOKEN_EXPIRED:
            return "The token has expired", None
        case Code.PERMISSION_DENIED:
            return _role_message(seen)
        case Code.NOT_FOUND:
            lead = (f"Service {svc} (or the instance asked for) was not found on the gateway"
                    if seen.service else "The gateway found nothing at this address")
            hint = None
            if seen.services:
                hint = "Services the gateway knows: " + ", ".join(seen.services) + "."
            elif seen.problem is None and seen.http_status is not None:
                hint = ("Check the service name; if it is right, the URL may not point at a "
                        "tether gateway (check --gateway / TETHER_GATEWAY).")
            return lead, hint
        case Code.RATE_LIMITED:
            if seen.retry_after is not None:
                wait = _duration(seen.retry_after)
                return (f"The gateway is rate limiting requests and asks to wait {wait}",
                        f"Wait {wait} before trying again; tether waits at least that long.")
            return "The gateway is rate limiting requests", None
        case Code.GATEWAY_ERROR:
            hint = (f"If it persists, report it to the gateway's operators with request id "
                    f"{seen.request_id}." if seen.request_id else None)
            return "The gateway failed while handling the request", hint
        case Code.GATEWAY_UNAVAILABLE:
            lead = "The gateway is at capacity or in maintenance"
            if seen.retry_after is not None:
                wait = _duration(seen.retry_after)
                return (f"{lead} and asks to wait {wait}",
                        f"Wait {wait} and try again; tether waits at least that long.")
            return lead, None
        case Code.BACKEND_UNAVAILABLE:
            return f"The gateway could not reach the backend of {svc}", _cluster_hint(seen)
        case Code.AGENT_TIMEOUT:
            return (f"The agent timed out reaching the pod of {svc}",
                    f"The agent could not reach the pod in time; tether retries. If it persists, "
                    f"check the pod with {_status_cmd(seen)}.")
        case Code.TARGET_UNREACHABLE:
            port = f"port {seen.port}" if seen.port is not None else "the forwarded port"
            return (f"The gateway could not connect to {port} of {svc}",
                    f"Check that {seen.service or 'the service'} is listening on {port}.")
        case Code.GATEWAY_RESTARTING:
            return "The gateway is restarting", None
        case Code.OVERLOADED:
            return "The gateway is overloaded and asked to try again later", None
        case Code.CONNECTION_LOST:
            if seen.close_code == protocol.CloseCode.NORMAL:
                return "The gateway ended the session before it was done", None
            if seen.close_code is None:
                if seen.phase is Phase.SESSION:
                    return "The connection dropped without a close frame", None
                return "The connection closed before the WebSocket handshake finished", None
            if seen.close_code in protocol.LOCAL_ONLY_CLOSE_CODES:
                return "The connection dropped without a proper close", None
            return "The gateway closed the session with a close code tether does not know", None
        case Code.MESSAGE_TOO_BIG:
            return "A message was larger than the gateway accepts", None
        case Code.PROTOCOL_ERROR:
            if status is not None and 200 <= status < 300:
                kind = f" ({seen.body_kind})" if seen.body_kind else ""
                return (f"The server answered instead of upgrading to a WebSocket{kind}: "
                        f"it is not a WebSocket endpoint"), None
            if status == 101:
                return "The server switched protocols but not to a valid WebSocket", None
            if seen.close_code == protocol.CloseCode.UNSUPPORTED_DATA:
                return "The gateway closed the session: it does not accept the data sent", None
            if seen.close_code in (1002, 1010):
                return "The gateway closed the session for a protocol error", None
            if seen.close_code is not None:
                return ("The gateway closed the session with a close code tether.v1 does not "
                        "define"), None
            return "The gateway broke the WebSocket protocol", None
        case Code.UNEXPECTED_STATUS:
            if status is not None and 300 <= status < 400:
                to = f"to {seen.location}" if seen.location else "without a Location"
                return (f"The gateway answered with a redirect {to}; it may be a login page "
                        f"or a proxy, not a tether gateway"), None
            return "The gateway gave an answer tether does not expect", None
        case Code.PROXY_ERROR:
            if status == 407 or seen.close_code == 4407:
                return "The HTTP proxy asks for authentication", (
                    "Put the proxy's credentials in HTTPS_PROXY (http://USER:PASSWORD@HOST:PORT), "
                    "or the gateway in NO_PROXY to bypass the proxy.")
            return "The proxy refused the connection", None
        case Code.TLS_ERROR:
            return "The TLS handshake with the gateway failed", None
        case _:
            return CATALOG[code].title, None


def _build(code: Code, seen: _Seen, *, cause: BaseException | None = None) -> Failure:
    lead, hint = _lead(code, seen)
    message = f"{lead} ({seen.what})." if seen.what else _sentence(lead)
    if seen.detail:
        message += " The gateway says: " + _sentence(seen.detail)
    fields: dict[str, Any] = {
        "http_status": seen.http_status,
        "close_code": seen.close_code,
        "close_reason": seen.close_reason,
        "required_role": seen.required_role if code is Code.PERMISSION_DENIED else None,
        "retry_after": seen.retry_after,
        "request_id": seen.request_id,
        "url": seen.url,
        "cause": cause,
    }
    if seen.problem is not None:
        fields["problem_code"] = seen.problem.code
        fields["problem_title"] = seen.problem.title
        fields["problem_detail"] = seen.problem.detail
    if hint:
        fields["hint"] = hint
    return Failure.of(code, seen.phase, message, **fields)


# --- handshake -----------------------------------------------------------------------


def _headers(headers: object) -> dict[str, str]:
    """Headers as a dict of lowercased names; repeated names joined with ``, ``."""
    out: dict[str, str] = {}
    if headers is None:
        return out
    try:
        if isinstance(headers, Mapping):
            items: Iterable[object] = list(itertools.islice(headers.items(), _MAX_HEADERS))
        elif isinstance(headers, Iterable) and not isinstance(headers, str | bytes):
            items = list(itertools.islice(headers, _MAX_HEADERS))
        else:
            return out
    except Exception:
        return out
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            continue
        name, value = item
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if not isinstance(name, str):
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        elif isinstance(value, list | tuple):
            value = ", ".join(v for v in value if isinstance(v, str))
        if not isinstance(value, str):
            continue
        key = name.strip().lower()
        value = value[:MAX_HEADER_VALUE]
        out[key] = f"{out[key]}, {value}"[:MAX_HEADER_VALUE] if key in out else value
    return out


#: Problem codes that may refine each status.
_STATUS_REFINES: dict[int, frozenset[Code]] = {
    400: frozenset({Code.INVALID_REQUEST}),
    401: frozenset({Code.UNAUTHORIZED, Code.TOKEN_EXPIRED}),
    403: frozenset({Code.PERMISSION_DENIED}),
    404: frozenset({Code.NOT_FOUND}),
    429: frozenset({Code.RATE_LIMITED}),
    500: frozenset({Code.GATEWAY_ERROR}),
    502: frozenset({Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT, Code.TARGET_UNREACHABLE}),
    503: frozenset({Code.GATEWAY_UNAVAILABLE, Code.GATEWAY_RESTARTING, Code.OVERLOADED,
                    Code.BACKEND_UNAVAILABLE}),
    504: frozenset({Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT, Code.TARGET_UNREACHABLE}),
}

_STATUS_CODES: dict[int, Code] = {
    400: Code.INVALID_REQUEST, 401: Code.UNAUTHORIZED, 403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND, 407: Code.PROXY_ERROR, 429: Code.RATE_LIMITED,
    500: Code.GATEWAY_ERROR, 502: Code.BACKEND_UNAVAILABLE, 503: Code.GATEWAY_UNAVAILABLE,
    504: Code.BACKEND_UNAVAILABLE,
}

#: Codes a peer may name in a problem body or a close reason.
_PEER_CODES = frozenset({
    Code.INVALID_REQUEST, Code.UNAUTHORIZED, Code.TOKEN_EXPIRED, Code.PERMISSION_DENIED,
    Code.NOT_FOUND, Code.RATE_LIMITED, Code.GATEWAY_ERROR, Code.GATEWAY_UNAVAILABLE,
    Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT, Code.GATEWAY_RESTARTING, Code.OVERLOADED,
    Code.TARGET_UNREACHABLE, Code.MESSAGE_TOO_BIG, Code.PROTOCOL_ERROR,
})


def _catalog_code(name: str | None) -> Code | None:
    if not name:
        return None
    try:
        return Code(name.strip().lower())
    except ValueError:
        return None


def _status_code(status: int) -> Code:
    """The code of a status by itself, before any refinement."""
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    if status == 101 or 200 <= status < 300:
        return Code.PROTOCOL_ERROR
    return Code.UNEXPECTED_STATUS


def _what_status(status: int) -> str:
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


_HTML_TITLE = re.compile(r"<title[^>]{0,100}>([^<]{0,300})", re.IGNORECASE)


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
    return "text", _words(first)


_EXPIRED = re.compile(r"expired", re.IGNORECASE)
_REQUIRES = re.compile(r"\brequires?\s+(?:role\s+)?([A-Za-z][\w-]{0,31})")


def _required_role(explicit: str | None, text: str | None, seen: _Seen) -> str | None:
    """The role needed: the peer's word, then the reason's ``requires X``, then the catalog."""
    if explicit:
        return clean_peer(explicit, NAME_LIMIT) or None
    if text and (match := _REQUIRES.search(text)) and match.group(1) in protocol.ROLES:
        return match.group(1)
    command = seen.command
    if command in protocol.MINIMUM_ROLES:
        needed = protocol.MINIMUM_ROLES[command]
        if seen.role and protocol.role_allows(seen.role, command):
            return None  # the role suffices for the command: something else was denied
        return needed
    return None


def _context(phase: Phase, *, service: object, command: object, role: object,
             gateway: object, url: object) -> _Seen:
    gw = gateway if isinstance(gateway, str) else None
    if gw and "://" in gw:
        gw = redact_url(gw[:4096])
    return _Seen(phase=phase, service=optional_peer(service, NAME_LIMIT) if service else None,
                 command=optional_peer(command, NAME_LIMIT) if command else None,
                 role=optional_peer(role, NAME_LIMIT) if role else None,
                 gateway=optional_peer(gw, 200) if gw else None, url=_redacted_url(url))


def classify_handshake(status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
                       body: bytes | None, *, url: str | None = None,
                       service: str | None = None, command: str | None = None,
                       role: str | None = None, gateway: str | None = None,
                       now: float | None = None) -> Failure:
    """The Failure for an HTTP answer that did not upgrade to a WebSocket."""
    seen = _context(Phase.HANDSHAKE, service=service, command=command, role=role,
                    gateway=gateway, url=url)
    try:
        number = int(status) if not isinstance(status, bool) else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not 0 <= number <= 9999:
        seen.what = "an unreadable HTTP status"
        return _build(Code.UNEXPECTED_STATUS, seen)
    seen.http_status = number
    seen.what = _what_status(number)
    try:
        return _handshake(number, headers, body, seen, now)
    except Exception:  # the parsers are tolerant; this is one more line of defence
        seen.detail = "(details could not be read)"
        return _build(_status_code(number), seen)


def _handshake(status: int, headers: object, body: object, seen: _Seen,
               now: float | None) -> Failure:
    head = _headers(headers)
    raw = as_body_bytes(body)
    content_type = head.get("content-type")
    problem = parse_problem(raw, content_type)
    seen.problem = problem
    seen.request_id = optional_peer(head.get("x-request-id"), 200) or (problem.request_id if problem
                                                                else None)
    clock = time.time() if now is None else now
    if "retry-after" in head:
        seen.retry_after = parse_retry_after(head["retry-after"], clock)
    if seen.retry_after is None and problem is not None and status in (429, 503):
        seen.retry_after = problem.retry_after

    code = _status_code(status)
    refined = _catalog_code(problem.code if problem else None)
    if refined is not None and refined in _STATUS_REFINES.get(status, frozenset()):
        code = refined

    if problem is not None:
        seen.detail = _words(problem.detail or problem.title)
        seen.services = problem.services
    else:
        seen.body_kind, seen.detail = _body_words(raw, content_type)

    if status == 401:
        bearer = next((c for c in parse_www_authenticate(head.get("www-authenticate", ""))
                       if c.scheme.lower() == "bearer"), None)
        description = _words(bearer.get("error_description")) if bearer else None
        if seen.detail is None:
            seen.detail = description
        if code is Code.UNAUTHORIZED and (
                (bearer is not None and bearer.get("error") == "invalid_token"
                 and description and _EXPIRED.search(description))
                or (seen.detail and _EXPIRED.search(seen.detail))):
            code = Code.TOKEN_EXPIRED
    elif code is Code.PERMISSION_DENIED:
        seen.required_role = _required_role(problem.required_role if problem else None,
                                            seen.detail, seen)
    elif 300 <= status < 400:
        location = head.get("location")
        seen.location = _redacted_url(location.strip()) if location else None
    elif 200 <= status < 300 and seen.body_kind is None and problem is None:
        seen.body_kind = "an empty body" if not raw.strip() else None
    return _build(code, seen)


# --- close frames ----------------------------------------------------------------------

_AGENT_TIMEOUT = re.compile(
    r"timeout|timed out|exceeded for receiving agent response|while connecting to pod"
    r"|while setting up port forward|retry budget exhausted",
    re.IGNORECASE)

_CLOSE_CODES: dict[int, Code] = {
    1000: Code.CONNECTION_LOST, 1001: Code.GATEWAY_RESTARTING, 1002: Code.PROTOCOL_ERROR,
    1003: Code.PROTOCOL_ERROR, 1005: Code.CONNECTION_LOST, 1006: Code.CONNECTION_LOST,
    1007: Code.PERMISSION_DENIED, 1008: Code.UNAUTHORIZED, 1009: Code.MESSAGE_TOO_BIG,
    1010: Code.PROTOCOL_ERROR, 1011: Code.BACKEND_UNAVAILABLE, 1012: Code.GATEWAY_RESTARTING,
    1013: Code.OVERLOADED, 1014: Code.BACKEND_UNAVAILABLE, 1015: Code.TLS_ERROR,
}

#: Reason codes that may refine each close code; codes absent here are never refined.
_CLOSE_REFINES: dict[int, frozenset[Code]] = {
    1001: frozenset({Code.GATEWAY_RESTARTING}),
    1007: frozenset({Code.PERMISSION_DENIED}),
    1008: frozenset({Code.UNAUTHORIZED, Code.TOKEN_EXPIRED, Code.PERMISSION_DENIED}),
    1011: frozenset({Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT, Code.TARGET_UNREACHABLE,
                     Code.GATEWAY_ERROR}),
    1012: frozenset({Code.GATEWAY_RESTARTING}),
    1013: frozenset({Code.OVERLOADED, Code.RATE_LIMITED}),
    1014: frozenset({Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT, Code.TARGET_UNREACHABLE}),
}

_RETRY_IN_REASON = re.compile(r"retry[- ]after[:= ]\s*(\d{1,6})", re.IGNORECASE)


def _close_base(code: int) -> tuple[Code, frozenset[Code]]:
    """The code of a close code by itself, and the reason codes that may refine it."""
    if code in _CLOSE_CODES:
        return _CLOSE_CODES[code], _CLOSE_REFINES.get(code, frozenset())
    if 4400 <= code <= 4599:
        status = code - 4000
        return _status_code(status), _STATUS_REFINES.get(status, frozenset())
    if 3000 <= code <= 3999:
        return Code.CONNECTION_LOST, _PEER_CODES
    if 4000 <= code <= 4999:
        return Code.PROTOCOL_ERROR, _PEER_CODES
    return Code.PROTOCOL_ERROR, frozenset()


def _what_close(code: int) -> str:
    if 4400 <= code <= 4599:
        return f"close {code}, as {_what_status(code - 4000)}"
    return "close " + protocol.close_code_name(code).replace("(", "").replace(")", "")


def classify_close(code: int | None, reason: str | bytes | None, *, service: str | None = None,
                   command: str | None = None, role: str | None = None,
                   gateway: str | None = None, url: str | None = None,
                   port: int | None = None) -> Failure:
    """The Failure for a close frame (``code`` None: the connection ended without one)."""
    seen = _context(Phase.SESSION, service=service, command=command, role=role,
                    gateway=gateway, url=url)
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        seen.port = port
    try:
        number = int(code) if code is not None and not isinstance(code, bool) else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not 0 <= number <= 65535:
        if code is not None:
            seen.what = "an unreadable close code"
        return _build(Code.CONNECTION_LOST, seen)
    seen.close_code = number
    seen.what = _what_close(number)
    try:
        return _close(number, reason, seen)
    except Exception:  # the parsing is tolerant; this is one more line of defence
        seen.detail = "(details could not be read)"
        return _build(_close_base(number)[0], seen)


def _close(number: int, reason: object, seen: _Seen) -> Failure:
    text = clean_peer(reason, 1024) if reason is not None else ""
    seen.close_reason = text[:FIELD_LIMIT] or None
    prefix, words = protocol.parse_close_reason(text)
    seen.detail = _words(words)

    result, refines = _close_base(number)
    named = _catalog_code(prefix)
    if named is not None and named in refines:
        result = named
    elif named is None and result is Code.BACKEND_UNAVAILABLE and _AGENT_TIMEOUT.search(text):
        result = Code.AGENT_TIMEOUT
    elif (named is None and result is Code.UNAUTHORIZED and number in (1008, 4401)
          and _EXPIRED.search(text)):
        result = Code.TOKEN_EXPIRED

    if result is Code.PERMISSION_DENIED:
        seen.required_role = _required_role(None, text, seen)
    if result in (Code.RATE_LIMITED, Code.GATEWAY_UNAVAILABLE, Code.OVERLOADED):
        match = _RETRY_IN_REASON.search(text)
        if match:
            seen.retry_after = min(float(match.group(1)), MAX_RETRY_AFTER)
    return _build(result, seen)


# --- exceptions --------------------------------------------------------------------------

_Handler = Callable[[BaseException, "_ExcContext"], "Failure | None"]


@dataclass
class _ExcContext:
    phase: Phase
    url: str | None
    raw_url: str | None
    service: str | None
    command: str | None
    role: str | None
    gateway: str | None
    now: float | None
    root: BaseException

    def seen(self, what: str = "") -> _Seen:
        seen = _context(self.phase, service=self.service, command=self.command, role=self.role,
                        gateway=self.gateway, url=self.raw_url)
        seen.what = what
        return seen

    def fail(self, code: Code, message: str, hint: str | None = None,
             phase: Phase | None = None) -> Failure:
        fields: dict[str, Any] = {"url": self.url, "cause": self.root}
        if hint:
            fields["hint"] = hint
        return Failure.of(code, phase or self.phase, _sentence(message), **fields)


def _gateway_words(ctx: _ExcContext) -> str:
    host = _host(ctx.raw_url)
    return f"the gateway at {host}" if host else "the gateway"


def _exc_text(exc: BaseException, limit: int = 200) -> str:
    """A short, cleaned text of an exception; never for bad-status exceptions (raw body)."""
    return clean_peer(safe_str(exc), limit)


def _on_timeout(exc: BaseException, ctx: _ExcContext) -> Failure:
    if ctx.phase is Phase.SESSION:
        return ctx.fail(Code.KEEPALIVE_TIMEOUT,
                        "Nothing arrived from the gateway within the keepalive limit")
    what = ("the WebSocket handshake with " if ctx.phase is Phase.HANDSHAKE
            else "connecting to ")
    return ctx.fail(Code.CONNECT_TIMEOUT, f"Timed out {what}{_gateway_words(ctx)}")


_DNS_MISSING = frozenset(
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY")
    if hasattr(socket, name))
_DNS_UNREACHABLE = frozenset(
    getattr(socket, name) for name in ("EAI_AGAIN", "EAI_FAIL") if hasattr(socket, name))


def _on_gaierror(exc: BaseException, ctx: _ExcContext) -> Failure:
    number = _attr(exc, "errno")
    host = _host(ctx.raw_url, with_port=False)
    name = f"`{host}`" if host else "the gateway's host name"
    if number in _DNS_MISSING:
        return ctx.fail(Code.DNS_FAILURE, f"The host name {name} does not exist (DNS has no "
                        "such name)", "Check the gateway address for a typo "
                        "(`tether auth status`).")
    if number in _DNS_UNREACHABLE:
        return ctx.fail(Code.DNS_FAILURE, f"Could not resolve {name}: no DNS server answered "
                        "(temporary failure in name resolution)",
                        "Check this machine's network connection, VPN and DNS settings; "
                        "tether retries for a short while.")
    words = clean_peer(_attr(exc, "strerror") or "", 120)
    return ctx.fail(Code.DNS_FAILURE, f"Could not resolve {name}"
                    + (f" ({words})" if words else ""))


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def _on_address(exc: BaseException, ctx: _ExcContext) -> Failure:
    inner = _find(exc, socket.gaierror)
    if inner is not None and inner is not exc:
        return _on_gaierror(inner, ctx)
    return ctx.fail(Code.DNS_FAILURE, f"Could not resolve the address of {_gateway_words(ctx)}",
                    phase=Phase.CONNECT)


def _on_bad_status(exc: BaseException, ctx: _ExcContext) -> Failure:
    status = _attr(exc, "status_code")
    headers = _attr(exc, "resp_headers")
    body = _attr(exc, "resp_body")
    failure = classify_handshake(
        status if isinstance(status, int) else -1,
        headers if isinstance(headers, Mapping | list | tuple) else None,
        as_body_bytes(body) if body is not None else None,
        url=ctx.raw_url, service=ctx.service, command=ctx.command, role=ctx.role,
        gateway=ctx.gateway, now=ctx.now)
    return failure.replace(cause=ctx.root)


def _on_closed(exc: BaseException, ctx: _ExcContext) -> Failure:
    if ctx.phase is Phase.SESSION:
        return ctx.fail(Code.CONNECTION_LOST, "The connection to the gateway was lost")
    return ctx.fail(Code.CONNECTION_LOST, f"The connection to {_gateway_words(ctx)} closed "
                    "before the WebSocket handshake finished")


_PROXY_STATUS = re.compile(r"status:?\s*(\d{3})")


def _on_proxy(exc: BaseException, ctx: _ExcContext) -> Failure:
    text = _exc_text(exc)
    match = _PROXY_STATUS.search(text)
    if match and match.group(1) == "407":
        seen = ctx.seen("HTTP 407 from the proxy")
        seen.http_status = 407
        failure = _build(Code.PROXY_ERROR, seen, cause=ctx.root)
        return failure.replace(phase=ctx.phase)
    return ctx.fail(Code.PROXY_ERROR, "The proxy refused the connection"
                    + (f": {text}" if text else ""))


def _on_proxy_timeout(exc: BaseException, ctx: _ExcContext) -> Failure:
    return ctx.fail(Code.CONNECT_TIMEOUT, "Timed out connecting through the proxy",
                    "Check the proxy settings (HTTPS_PROXY, NO_PROXY) and that the proxy is up.")


def _on_protocol(exc: BaseException, ctx: _ExcContext) -> Failure:
    text = _exc_text(exc)
    return ctx.fail(Code.PROTOCOL_ERROR, "The gateway broke the WebSocket protocol"
                    + (f": {text}" if text else ""))


def _on_ws_base(exc: BaseException, ctx: _ExcContext) -> Failure | None:
    """websocket-client's base class: its message says which of its many cases it is."""
    text = _exc_text(exc)
    lower = text.lower()
    if "invalid websocket header" in lower:
        return ctx.fail(Code.PROTOCOL_ERROR, f"{_gateway_words(ctx).capitalize()} switched "
                        "protocols but did not complete a WebSocket upgrade: it is not a "
                        "WebSocket endpoint")
    if "ssl" in lower:
        return ctx.fail(Code.TLS_ERROR, f"TLS could not be set up: {text}")
    if "host not found" in lower:
        return ctx.fail(Code.DNS_FAILURE, f"Could not resolve {_gateway_words(ctx)}")
    if "python socks" in lower or "proxy" in lower:
        return ctx.fail(Code.PROXY_ERROR, f"The proxy could not be used: {text}")
    if "status line" in lower or "invalid header" in lower or "content-length" in lower:
        return ctx.fail(Code.PROTOCOL_ERROR, f"The gateway's HTTP answer could not be read: "
                        f"{text}")
    return None


def _ws_generic(exc: BaseException, ctx: _ExcContext) -> Failure:
    text = _exc_text(exc)
    return ctx.fail(Code.PROTOCOL_ERROR, "The WebSocket connection failed"
                    + (f": {text}" if text else ""))


#: websocket-client and python-socks exceptions, by qualified class name; looked up
#: along the MRO, so the most specific class wins. A handler returning None defers
#: to the exceptions further down the cause chain.
EXCEPTION_TABLE: dict[str, _Handler] = {
    "websocket._exceptions.WebSocketBadStatusException": _on_bad_status,
    "websocket._exceptions.WebSocketAddressException": _on_address,
    "websocket._exceptions.WebSocketTimeoutException": _on_timeout,
    "websocket._exceptions.WebSocketConnectionClosedException": _on_closed,
    "websocket._exceptions.WebSocketProxyException": _on_proxy,
    "websocket._exceptions.WebSocketPayloadException": _on_protocol,
    "websocket._exceptions.WebSocketProtocolException": _on_protocol,
    "websocket._exceptions.WebSocketException": _on_ws_base,
    "python_socks._errors.ProxyTimeoutError": _on_proxy_timeout,
    "python_socks._errors.ProxyConnectionError": _on_proxy,
    "python_socks._errors.ProxyError": _on_proxy,
    "websocket._http.ProxyTimeoutError": _on_proxy_timeout,
    "websocket._http.ProxyConnectionError": _on_proxy,
    "websocket._http.ProxyError": _on_proxy,
}

def _table_key(exc: BaseException, table: Mapping[str, _Handler]) -> str | None:
    for cls in type(exc).__mro__:
        key = f"{cls.__module__}.{cls.__qualname__}"
        if key in table:
            return key
    return None


_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN,
                          errno.EHOSTDOWN, errno.EADDRNOTAVAIL})
_LOST = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN,
                   errno.ESHUTDOWN})


def _errno_name(number: object) -> str:
    return errno.errorcode.get(number, "") if isinstance(number, int) else ""


def _on_ssl(exc: BaseException, ctx: _ExcContext) -> Failure:
    host = _host(ctx.raw_url)
    whose = f"of {host} " if host else ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        words = clean_peer(_attr(exc, "verify_message") or _attr(exc, "reason") or "", 200)
        return ctx.fail(Code.TLS_ERROR, f"The TLS certificate {whose}could not be verified"
                        + (f": {words}" if words else ""))
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError) and ctx.phase is Phase.SESSION:
        return ctx.fail(Code.CONNECTION_LOST, "The TLS connection to the gateway was closed")
    reason = clean_peer(_attr(exc, "reason") or "", 120)
    text = _exc_text(exc)
    if "timed out" in text.lower():
        return _on_timeout(exc, ctx)
    if isinstance(exc, ssl.SSLEOFError):
        return ctx.fail(Code.TLS_ERROR, f"{(host or 'The gateway')} closed the connection "
                        "during the TLS handshake")
    if reason.upper() in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
        return ctx.fail(Code.TLS_ERROR, f"{host or 'The gateway'} does not speak TLS on that "
                        f"port ({reason})",
                        "Check the port, or use ws:// or http:// if the gateway has no TLS.")
    return ctx.fail(Code.TLS_ERROR, "The TLS handshake with the gateway failed"
                    + (f" ({reason or text})" if reason or text else ""))


def _on_os_error(exc: OSError, ctx: _ExcContext) -> Failure | None:
    """Specific OSErrors by class, then by errno; None for an errno with no meaning here."""
    number = _attr(exc, "errno")
    name = _errno_name(number)
    words = clean_peer(_attr(exc, "strerror") or "", 120)
    detail = f" ({name}: {words})" if name and words else (f" ({name or words})"
                                                             if name or words else "")
    gateway = _gateway_words(ctx)
    if isinstance(exc, TimeoutError) or number == errno.ETIMEDOUT:
        return _on_timeout(exc, ctx)
    if isinstance(exc, ConnectionRefusedError) or number == errno.ECONNREFUSED:
        return ctx.fail(Code.CONNECTION_REFUSED, f"Nothing accepts connections at "
                        f"{_host(ctx.raw_url) or 'the gateway'}{detail}")
    if number in _UNREACHABLE:
        return ctx.fail(Code.NETWORK_UNREACHABLE, f"No route to {gateway}{detail}")
    if (isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError)
            or number in _LOST):
        lead = ("The connection to the gateway was lost" if ctx.phase is Phase.SESSION
                else f"The connection to {gateway} was closed during the handshake")
        return ctx.fail(Code.CONNECTION_LOST, lead + detail)
    if ctx.phase is Phase.LOCAL and number in (errno.EADDRINUSE, errno.EACCES):
        return ctx.fail(Code.LOCAL_PORT_IN_USE, f"The local port could not be bound{detail}")
    return None


def _os_generic(exc: OSError, ctx: _ExcContext) -> Failure:
    name = _errno_name(_attr(exc, "errno"))
    words = clean_peer(_attr(exc, "strerror") or safe_str(exc), 120)
    detail = ": " + ", ".join(x for x in (name, words) if x) if name or words else ""
    if ctx.phase is Phase.SESSION:
        return ctx.fail(Code.CONNECTION_LOST, f"The connection to the gateway failed{detail}")
    return ctx.fail(Code.NETWORK_UNREACHABLE,
                    f"Could not connect to {_gateway_words(ctx)}{detail}")


def _specific(exc: BaseException, ctx: _ExcContext) -> Failure | None:
    """A specific Failure for one exception of the chain, or None to look further."""
    if isinstance(exc, TetherError) and isinstance(exc.failure, Failure):
        return exc.failure
    key = _table_key(exc, EXCEPTION_TABLE)
    if key is not None:
        return EXCEPTION_TABLE[key](exc, ctx)
    if isinstance(exc, ssl.SSLError):
        return _on_ssl(exc, ctx)
    if isinstance(exc, socket.gaierror):
        return _on_gaierror(exc, ctx)
    if isinstance(exc, OSError):
        return _on_os_error(exc, ctx)
    if isinstance(exc, EOFError):
        return _on_closed(exc, ctx)
    if isinstance(exc, KeyboardInterrupt):
        return ctx.fail(Code.INTERRUPTED, "Interrupted (SIGINT)", phase=Phase.LOCAL)
    return None


def _generic(exc: BaseException, ctx: _ExcContext) -> Failure:
    if _table_key(exc, EXCEPTION_TABLE) is not None:  # a table entry that deferred
        return _ws_generic(exc, ctx)
    if isinstance(exc, OSError):
        return _os_generic(exc, ctx)
    kind = clean_peer(type(exc).__qualname__, 80)
    return ctx.fail(Code.INTERNAL_ERROR, f"Unexpected {kind} while talking to the gateway")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and exceptions given as its arguments; bounded."""
    out: list[BaseException] = []
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue and len(out) < _MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        nxt = _attr(current, "__cause__") or _attr(current, "__context__")
        if isinstance(nxt, BaseException):
            queue.append(nxt)
        args = _attr(current, "args")
        if isinstance(args, tuple):
            queue.extend(a for a in args[:4] if isinstance(a, BaseException))
    return out


def classify_exception(exc: BaseException, *, phase: Phase | None = None, url: str | None = None,
                       service: str | None = None, command: str | None = None,
                       role: str | None = None, gateway: str | None = None,
                       now: float | None = None) -> Failure:
    """The Failure for an exception raised while dialing or during a session.

    ``phase`` is where the caller was (connect when not given): a timeout in
    the session phase is a keepalive timeout, elsewhere a connect timeout.
    """
    ctx = _ExcContext(phase=phase if isinstance(phase, Phase) else Phase.CONNECT,
                      url=_redacted_url(url),
                      raw_url=url if isinstance(url, str) else None,
                      service=service, command=command, role=role, gateway=gateway, now=now,
                      root=exc)
    try:
        chain = _chain(exc)
        for item in chain:
            found = _specific(item, ctx)
            if found is not None:
                return found
        return _generic(exc, ctx)
    except Exception:  # a hostile exception object; classify by type alone
        if isinstance(exc, OSError):
            code = Code.CONNECTION_LOST if ctx.phase is Phase.SESSION else Code.NETWORK_UNREACHABLE
            return ctx.fail(code, "The connection to the gateway failed")
        return ctx.fail(Code.INTERNAL_ERROR, "An unexpected error happened")
