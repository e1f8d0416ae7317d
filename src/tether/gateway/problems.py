"""HTTP answers before the upgrade: RFC 9457 problem bodies, request ids, plain JSON.

A refusal says what the client needs and nothing more: no stack trace, path,
SQL, backend host name or token. The details go to the gateway's log under
the request id.
"""

from __future__ import annotations

import email.utils
import http
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response

from tether.errors import CATALOG, Code

PROBLEM_BASE = "https://tether.dev/errors/"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(value: str | None) -> str:
    """The client's X-Request-Id when it is sane (short, plain characters), else a new uuid4."""
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return str(uuid.uuid4())


def _quote(text: str) -> str:
    """``text`` as an RFC 7230 quoted-string without control characters."""
    cleaned = "".join(c for c in text if 32 <= ord(c) < 127 and c not in '"\\')
    return f'"{cleaned}"'


@dataclass
class Refusal(Exception):
    """Raised while checking a request: the gateway refuses it with ``status``."""

    status: int
    code: Code
    detail: str
    required_role: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    log: str = ""  # what the operator's log gets, beyond the detail
    members: dict[str, Any] = field(default_factory=dict)  # extension members of the body

    def __post_init__(self) -> None:
        super().__init__(self.detail)


def unauthorized(description: str, *, expired: bool = False) -> Refusal:
    """A 401 with ``WWW-Authenticate: Bearer error="invalid_token"``."""
    header = (f'Bearer realm="tether", error="invalid_token", '
              f"error_description={_quote(description)}")
    return Refusal(401, Code.TOKEN_EXPIRED if expired else Code.UNAUTHORIZED, description,
                   headers={"WWW-Authenticate": header})


def forbidden(detail: str, required_role: str | None) -> Refusal:
    """A 403 with ``WWW-Authenticate: Bearer error="insufficient_scope"``."""
    header = (f'Bearer realm="tether", error="insufficient_scope", '
              f"error_description={_quote(detail)}")
    return Refusal(403, Code.PERMISSION_DENIED, detail, required_role=required_role,
                   headers={"WWW-Authenticate": header})


def state_unavailable(log: str) -> Refusal:
    """A 503: the state database is lost or too slow; ``log`` (why) goes to the log only."""
    return Refusal(503, Code.STATE_UNAVAILABLE,
                   "its state database is lost or too slow; try again shortly",
                   headers={"Retry-After": "1"}, log=log)


def port_not_forwarded(service: str, port: int, ports: tuple[int, ...]) -> Refusal:
    """A 422: ``port`` of ``service`` is not open for forwarding; the body lists ``ports``."""
    allowed = ", ".join(map(str, ports)) or "none"
    return Refusal(422, Code.PORT_NOT_FORWARDED,
                   f"port {port} of service {service} is not open for forwarding; "
                   f"open ports: {allowed}", members={"port": port, "ports": list(ports)})


def problem_body(refusal: Refusal, request_id: str) -> dict[str, Any]:
    """The RFC 9457 body of a refusal."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + str(refusal.code),
        "title": CATALOG[refusal.code].title,
        "status": refusal.status,
        "detail": refusal.detail,
        "code": str(refusal.code),
    }
    if refusal.required_role:
        body["required_role"] = refusal.required_role
    body.update(refusal.members)
    body["request_id"] = request_id
    return body


def json_response(status: int, body: Any, *, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> Response:
    """An HTTP response with a JSON body that closes the connection."""
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return raw_response(status, data, content_type=content_type, headers=headers)


def raw_response(status: int, data: bytes, *, content_type: str,
                 headers: dict[str, str] | None = None) -> Response:
    """An HTTP response with ``data`` as its body that closes the connection."""
    phrase = http.HTTPStatus(status).phrase
    all_headers = Headers([("Date", email.utils.formatdate(usegmt=True)),
                           ("Connection", "close"),
                           ("Content-Type", content_type),
                           ("Content-Length", str(len(data))),
                           ("Cache-Control", "no-store")])
    for name, value in (headers or {}).items():
        all_headers[name] = value
    return Response(status, phrase, all_headers, data)


def problem_response(refusal: Refusal, request_id: str) -> Response:
    """The HTTP response of a refusal, problem body and headers included."""
    return json_response(refusal.status, problem_body(refusal, request_id),
                         content_type="application/problem+json", headers=refusal.headers)
