"""What an HTTP status or a WebSocket close code says by itself. Pure tables.

A :class:`Reading` holds the catalog code of a status or close code, the codes
a peer's own word (a problem body's ``code``, a close reason's ``code:``
prefix) may refine it to, and the :class:`Situation` it names beyond its code,
so that whoever words the failure does not work the situation out again.

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
    422                     port-not-forwarded   lists the ports the body names
    429                     rate-limited         retry_after from Retry-After, or the body
    500                     gateway-error
    502, 504                backend-unavailable  cluster-health hint
    503                     gateway-unavailable  retry_after when given
    other                   unexpected-status

A problem body's ``code`` refines the mapping when it names a catalog code that
fits the status (401 -> token-expired; 403 -> port-not-forwarded; 502/504 ->
agent-timeout or target-unreachable; 503 -> gateway-restarting or overloaded).

An answer from something in between (:func:`read_middlebox`: no problem body
of the gateway's, and a proxy named by ``Server``, ``Via`` or its page, or any
page at all for 502/503/504 and 2xx) reads otherwise::

    502, 503, 504           gateway-unreachable  the proxy could not reach the gateway behind it
    2xx with an HTML page   protocol-error       a captive portal or a sign-in page
    other                   as above, worded as the proxy's own answer

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
    4410                    session-expired      tether.v2: a resume found no session
    4416                    resume-lost          tether.v2: the bytes a resume needs were evicted
    4400-4599 other         as HTTP status - 4000 (4401 unauthorized, 4403 permission-denied,
                                                 4404 not-found, 4422 port-not-forwarded,
                                                 4429 rate-limited, 4500, 4502, 4503, 4504;
                                                 unlisted ones unexpected-status)
    4000-4399, 4600-4999    protocol-error       private codes outside the tether.v1 scheme
    5000-65535              protocol-error       not a valid close code

A reason written ``code: text`` (docs/protocol.md section 3) refines the mapping when
``code`` is a catalog code that fits the close code (1008 ``token-expired``,
1011 ``agent-timeout``); for codes tether does not know (3000-4999 outside the
mirrored range) any code a peer may name is taken. 1000 and the local-only
codes are never refined.
"""

from __future__ import annotations

import enum
import http
from collections.abc import Mapping
from dataclasses import dataclass, field

from tether import protocol
from tether.errors import Code


class Situation(enum.Enum):
    """What a status or close code says beyond its catalog code; each has its own words."""

    BAD_UPGRADE = "101 without a valid WebSocket"
    NOT_WEBSOCKET = "2xx: an answer instead of an upgrade"
    REDIRECT = "3xx: a redirect, maybe to a login page or a proxy"
    PROXY_AUTH = "407: the proxy asks for credentials"
    NORMAL_CLOSE = "1000 before the work was done"
    NO_CLOSE_FRAME = "the connection ended without a close frame"
    LOCAL_ONLY_CLOSE = "a code no peer should send (1005, 1006)"
    UNSUPPORTED_DATA = "1003: the peer does not accept the data sent"
    PROTOCOL_CLOSE = "1002, 1010: the peer saw a protocol error"
    UNDEFINED_CLOSE = "a code tether.v1 does not define"
    UNKNOWN_CLOSE = "3000-3999: a registered code tether does not know"
    PORTAL = "2xx: an HTML page from something in between, maybe a captive portal"
    MIDDLEBOX = "a proxy in front of the gateway answered instead of it"


_NONE: frozenset[Code] = frozenset()

#: Codes a peer may name in a problem body or a close reason.
PEER_CODES = frozenset({
    Code.INVALID_REQUEST, Code.UNAUTHORIZED, Code.TOKEN_EXPIRED, Code.PERMISSION_DENIED,
    Code.NOT_FOUND, Code.RATE_LIMITED, Code.GATEWAY_ERROR, Code.GATEWAY_UNAVAILABLE,
    Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT, Code.GATEWAY_RESTARTING, Code.OVERLOADED,
    Code.TARGET_UNREACHABLE, Code.MESSAGE_TOO_BIG, Code.PROTOCOL_ERROR, Code.STATE_UNAVAILABLE,
    Code.PORT_NOT_FORWARDED,
})


@dataclass(frozen=True)
class Reading:
    """What one status or close code says: its code, refinements and situations."""

    code: Code
    what: str  # "HTTP 403 Forbidden", "close 1011 INTERNAL_ERROR"
    refines: frozenset[Code] = _NONE
    #: the situation named, by the code the failure ends with
    says: Mapping[Code, Situation] = field(default_factory=dict)

    def refined(self, named: Code | None) -> Code:
        """``named`` when a peer's word may refine this code to it, else the code itself."""
        return named if named is not None and named in self.refines else self.code


_BACKEND = frozenset({Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT, Code.TARGET_UNREACHABLE})

#: status: (code, the problem codes that may refine it, situation)
_STATUSES: dict[int, tuple[Code, frozenset[Code], Situation | None]] = {
    101: (Code.PROTOCOL_ERROR, _NONE, Situation.BAD_UPGRADE),
    400: (Code.INVALID_REQUEST, frozenset({Code.INVALID_REQUEST}), None),
    401: (Code.UNAUTHORIZED, frozenset({Code.UNAUTHORIZED, Code.TOKEN_EXPIRED}), None),
    403: (Code.PERMISSION_DENIED, frozenset({Code.PERMISSION_DENIED,
                                              Code.PORT_NOT_FORWARDED}), None),
    404: (Code.NOT_FOUND, frozenset({Code.NOT_FOUND}), None),
    407: (Code.PROXY_ERROR, _NONE, Situation.PROXY_AUTH),
    422: (Code.PORT_NOT_FORWARDED, frozenset({Code.PORT_NOT_FORWARDED}), None),
    429: (Code.RATE_LIMITED, frozenset({Code.RATE_LIMITED}), None),
    500: (Code.GATEWAY_ERROR, frozenset({Code.GATEWAY_ERROR}), None),
    502: (Code.BACKEND_UNAVAILABLE, _BACKEND, None),
    503: (Code.GATEWAY_UNAVAILABLE, frozenset({Code.GATEWAY_UNAVAILABLE,
                                                Code.GATEWAY_RESTARTING, Code.OVERLOADED,
                                                Code.BACKEND_UNAVAILABLE,
                                                Code.STATE_UNAVAILABLE}), None),
    504: (Code.BACKEND_UNAVAILABLE, _BACKEND, None),
}

#: status classes (first digit) not in the table above
_STATUS_CLASSES: dict[int, tuple[Code, frozenset[Code], Situation | None]] = {
    2: (Code.PROTOCOL_ERROR, _NONE, Situation.NOT_WEBSOCKET),
    3: (Code.UNEXPECTED_STATUS, _NONE, Situation.REDIRECT),
}

_UNEXPECTED: tuple[Code, frozenset[Code], Situation | None] = (Code.UNEXPECTED_STATUS, _NONE,
                                                                None)

#: close code: (code, the reason codes that may refine it, situation)
_CLOSES: dict[int, tuple[Code, frozenset[Code], Situation | None]] = {
    1000: (Code.CONNECTION_LOST, _NONE, Situation.NORMAL_CLOSE),
    1001: (Code.GATEWAY_RESTARTING, frozenset({Code.GATEWAY_RESTARTING}), None),
    1002: (Code.PROTOCOL_ERROR, _NONE, Situation.PROTOCOL_CLOSE),
    1003: (Code.PROTOCOL_ERROR, _NONE, Situation.UNSUPPORTED_DATA),
    1005: (Code.CONNECTION_LOST, _NONE, Situation.LOCAL_ONLY_CLOSE),
    1006: (Code.CONNECTION_LOST, _NONE, Situation.LOCAL_ONLY_CLOSE),
    1007: (Code.PERMISSION_DENIED, frozenset({Code.PERMISSION_DENIED}), None),
    1008: (Code.UNAUTHORIZED, frozenset({Code.UNAUTHORIZED, Code.TOKEN_EXPIRED,
                                        Code.PERMISSION_DENIED}), None),
    1009: (Code.MESSAGE_TOO_BIG, _NONE, None),
    1010: (Code.PROTOCOL_ERROR, _NONE, Situation.PROTOCOL_CLOSE),
    1011: (Code.BACKEND_UNAVAILABLE, _BACKEND | {Code.GATEWAY_ERROR}, None),
    1012: (Code.GATEWAY_RESTARTING, frozenset({Code.GATEWAY_RESTARTING}), None),
    1013: (Code.OVERLOADED, frozenset({Code.OVERLOADED, Code.RATE_LIMITED}), None),
    1014: (Code.BACKEND_UNAVAILABLE, _BACKEND, None),
    1015: (Code.TLS_ERROR, _NONE, None),
    protocol.CloseCode.SESSION_GONE: (Code.SESSION_EXPIRED, _NONE, None),
    protocol.CloseCode.RESUME_LOST: (Code.RESUME_LOST, _NONE, None),
}

#: close codes mirroring an HTTP status (close code - 4000)
MIRRORED = range(4400, 4600)
_MIRROR_OFFSET = 4000

#: ranges of close codes not in the table above, first match wins; then "undefined"
_CLOSE_RANGES: tuple[tuple[range, Reading], ...] = (
    (range(3000, 4000), Reading(Code.CONNECTION_LOST, "", PEER_CODES, {
        Code.CONNECTION_LOST: Situation.UNKNOWN_CLOSE,
        Code.PROTOCOL_ERROR: Situation.UNDEFINED_CLOSE})),
    (range(4000, 5000), Reading(Code.PROTOCOL_ERROR, "", PEER_CODES,
                                {Code.PROTOCOL_ERROR: Situation.UNDEFINED_CLOSE})),
)
_UNDEFINED_CLOSE = Reading(Code.PROTOCOL_ERROR, "",
                           says={Code.PROTOCOL_ERROR: Situation.UNDEFINED_CLOSE})


def _reading(row: tuple[Code, frozenset[Code], Situation | None], what: str) -> Reading:
    code, refines, situation = row
    return Reading(code, what, refines, {code: situation} if situation else {})


def _what_status(status: int) -> str:
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def read_status(status: int) -> Reading:
    """What an HTTP status says by itself, before the headers and body refine it."""
    row = _STATUSES.get(status) or _STATUS_CLASSES.get(status // 100, _UNEXPECTED)
    return _reading(row, _what_status(status))


#: statuses whose answer from a proxy says the gateway behind it could not be had
PROXY_FOR_DOWN_GATEWAY = frozenset({502, 503, 504})


def read_middlebox(status: int, *, html: bool) -> Reading:
    """What ``status`` says when something in front of the gateway answered it itself.

    ``html``: the answer carried an HTML page (a 2xx one is then a portal).
    """
    what = _what_status(status)
    if status in PROXY_FOR_DOWN_GATEWAY:
        return Reading(Code.GATEWAY_UNREACHABLE, what)
    if 200 <= status < 300 and html:
        return Reading(Code.PROTOCOL_ERROR, what, says={Code.PROTOCOL_ERROR: Situation.PORTAL})
    own = read_status(status)
    if own.says:  # a redirect, a 407: their own words already say who answered
        return Reading(own.code, what, _NONE, own.says)
    return Reading(own.code, what, _NONE, {own.code: Situation.MIDDLEBOX})


def read_close(code: int) -> Reading:
    """What a close code says by itself, before its reason refines it."""
    if code in MIRRORED and code not in _CLOSES:
        status = read_status(code - _MIRROR_OFFSET)
        return Reading(status.code, f"close {code}, as {status.what}", status.refines,
                       status.says)
    what = "close " + protocol.close_code_name(code).replace("(", "").replace(")", "")
    if code in _CLOSES:
        return _reading(_CLOSES[code], what)
    found = next((r for span, r in _CLOSE_RANGES if code in span), _UNDEFINED_CLOSE)
    return Reading(found.code, what, found.refines, found.says)


#: The connection ended without a close frame (``what`` when the code could not be read).
NO_CLOSE_FRAME = Reading(Code.CONNECTION_LOST, "",
                         says={Code.CONNECTION_LOST: Situation.NO_CLOSE_FRAME})
UNREADABLE_STATUS = Reading(Code.UNEXPECTED_STATUS, "an unreadable HTTP status")
