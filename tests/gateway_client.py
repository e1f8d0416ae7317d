"""An independent wire client for checking the gateway: websockets' sync client and http.client.

It is deliberately not tether's own client, so gateway tests check the wire
contract (docs/protocol.md) rather than one implementation against itself.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

TETHER = "tether.v1"


@dataclass
class Refused:
    """An HTTP answer that was not a 101."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Closed:
    """What a session sent before and in its close frame."""

    messages: list[str | bytes] = field(default_factory=list)
    code: int | None = None
    reason: str = ""

    @property
    def text(self) -> list[str]:
        return [m for m in self.messages if isinstance(m, str)]

    @property
    def binary(self) -> bytes:
        return b"".join(m for m in self.messages if isinstance(m, bytes))


def ws_url(base: str, path: str, **params: Any) -> str:
    """``ws(s)://host:port/path?query`` from an http(s) base URL."""
    scheme = "wss" if base.startswith("https") else "ws"
    rest = base.split("://", 1)[1]
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            pairs += [(key, str(v)) for v in value]
        elif value is not None:
            pairs.append((key, str(value)))
    query = ("?" + urlencode(pairs)) if pairs else ""
    return f"{scheme}://{rest}{path}{query}"


def dial(base: str, path: str, token: str | None = None, *, request_id: str | None = None,
         subprotocols: tuple[str, ...] = (TETHER,), headers: dict[str, str] | None = None,
         ssl_context: ssl.SSLContext | None = None, max_size: int | None = 16 * 2**20,
         open_timeout: float = 5.0, **params: Any) -> ClientConnection:
    """Open a session; raises InvalidStatus when refused."""
    extra = {"X-Request-Id": request_id or str(uuid.uuid4())}
    if token is not None:
        extra["Authorization"] = f"Bearer {token}"
    extra.update(headers or {})
    return connect(ws_url(base, path, **params), additional_headers=extra,
                   subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
                   ssl=ssl_context, compression=None, proxy=None, open_timeout=open_timeout,
                   max_size=max_size, ping_interval=None, close_timeout=2, legacy=True)


def refusal(base: str, path: str, token: str | None = None, **kwargs: Any) -> Refused:
    """Dial and expect a refusal; the status, headers and body."""
    try:
        ws = dial(base, path, token, **kwargs)
    except InvalidStatus as exc:
        response = exc.response
        headers = {k.lower(): v for k, v in response.headers.raw_items()}
        return Refused(response.status_code, headers, bytes(response.body or b""))
    ws.close()
    raise AssertionError(f"{path} was not refused")


def collect(ws: ClientConnection, timeout: float = 10.0, limit: int = 100_000) -> Closed:
    """Every message until the close frame (bounded in time and count)."""
    out = Closed()
    deadline = time.monotonic() + timeout
    for _ in range(limit):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no close within {timeout} s; got {len(out.messages)} messages")
        try:
            out.messages.append(ws.recv(timeout=left))
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                out.code, out.reason = exc.rcvd.code, exc.rcvd.reason
            return out
    raise AssertionError("too many messages")


def http_request(base: str, method: str, path: str, *, form: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> Refused:
    """One plain HTTP request; the status, headers and body."""
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=5, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=5)
    body = urlencode(form).encode() if form is not None else None
    all_headers = dict(headers or {})
    if body is not None:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Refused(response.status, {k.lower(): v for k, v in response.getheaders()},
                       response.read(1 << 20))
    finally:
        conn.close()
