"""The HTTP/1.1 side of dialing, written by hand so that a refusal keeps what it said.

:func:`upgrade_request` words the WebSocket upgrade; :func:`read_head` and
:func:`parse_head` read an answer's status line and headers (bounded, also for
a proxy's CONNECT answer); :func:`read_body` keeps at most 64 KiB of a
refusal's body, as far as it came (a body shorter than its ``Content-Length``
is kept, a chunked one decoded); :func:`check_upgrade` checks a 101.
:func:`user_agent` is the ``User-Agent`` of every request tether sends.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Sequence
from typing import Protocol

from tether import __version__
from tether.classify import MAX_BODY
from tether.errors import Code, Failure, Phase, TetherError
from tether.text import redact_url, strip_control

__all__ = [
    "Budget",
    "check_upgrade",
    "dechunk",
    "header_value",
    "parse_head",
    "protocol_error",
    "read_body",
    "read_head",
    "upgrade_request",
    "user_agent",
]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024  # status line and headers of the gateway's answer
_BODY_GRACE = 1.0  # seconds a refusal's body may take once its headers are in
_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)? +(\d{3})(?: .*)?")


class Budget(Protocol):
    """The time left for a read: a :class:`tether.client.transport.Deadline`."""

    @property
    def end(self) -> float:
        """The time.monotonic() at which it runs out."""

    def remaining(self) -> float:
        """Seconds left; TimeoutError once none are."""


def user_agent() -> str:
    """``tether/<version> (python <x.y>; <os>)``."""
    system = platform.system().lower() or sys.platform
    return f"tether/{__version__} (python {sys.version_info[0]}.{sys.version_info[1]}; {system})"


def upgrade_request(path: str, host: str, offered: Sequence[str], authorization: str,
                    request_id: str) -> tuple[bytes, str]:
    """The upgrade request of ``path`` (with its query) and the Sec-WebSocket-Key it sends."""
    key = base64.b64encode(os.urandom(16)).decode()
    # Subprotocols joined by "," alone: websockify 0.13 splits the header on "," and does not strip.
    request = "\r\n".join([
        f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
        "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {','.join(offered)}",
        *([f"Authorization: {authorization}"] if authorization else []),
        f"X-Request-Id: {request_id}", f"User-Agent: {user_agent()}", "", ""]).encode()
    return request, key


def header_value(value: str) -> str:
    """``value`` for a header; TetherError(unauthorized) when it holds a line break."""
    if "\r" in value or "\n" in value:
        raise TetherError(Failure.of(Code.UNAUTHORIZED, Phase.CREDENTIALS,
                                     "The credential contains a line break and cannot be sent."))
    return value


def read_head(sock: socket.socket, deadline: Budget) -> tuple[bytes, bytes]:
    """Status line and headers (up to the blank line), and whatever came after them."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > _MAX_HEAD:
            break
        sock.settimeout(deadline.remaining())
        chunk = sock.recv(16384)
        if not chunk:
            if not buf:
                import websocket

                raise websocket.WebSocketConnectionClosedException(
                    "the connection was closed before any answer")
            break
        buf += chunk
    head, sep, rest = buf.partition(b"\r\n\r\n")
    return head, rest if sep else b""


def parse_head(head: bytes) -> tuple[int, list[tuple[str, str]], dict[str, str]]:
    """The status (0 when not HTTP), the headers in order, and a lowercased dict of them."""
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip())
    if match is None:
        return 0, [], {}
    pairs: list[tuple[str, str]] = []
    lowered: dict[str, str] = {}
    for line in lines[1:200]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key, text = name.strip().decode("latin-1"), value.strip().decode("latin-1")
        pairs.append((key, text))
        low = key.lower()
        lowered[low] = f"{lowered[low]}, {text}" if low in lowered else text
    return int(match.group(1)), pairs, lowered


def read_body(sock: socket.socket, headers: dict[str, str], status: int, first: bytes,
              deadline: Budget) -> bytes:
    """At most MAX_BODY bytes of a refusal's body; what came, when it stops short."""
    if status < 200 or status in (204, 304):
        return b""
    try:
        length: int | None = int(headers.get("content-length", ""))
    except ValueError:
        length = None
    want = MAX_BODY if length is None else min(max(length, 0), MAX_BODY)
    body = bytearray(first[:want])
    grace_end = min(deadline.end, time.monotonic() + _BODY_GRACE)
    with contextlib.suppress(OSError):
        while len(body) < want:
            left = grace_end - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(want - len(body))
            if not chunk:
                break
            body += chunk
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return dechunk(bytes(body))
    return bytes(body)


def dechunk(raw: bytes) -> bytes:
    """A chunked body decoded as far as it is well formed."""
    out = bytearray()
    pos = 0
    while pos < len(raw):
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            break
        try:
            size = int(raw[pos:line_end].split(b";")[0].strip(), 16)
        except ValueError:
            break
        if size == 0:
            break
        out += raw[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2
    return bytes(out)


def protocol_error(message: str, url: str, request_id: str, status: int = 101) -> TetherError:
    """TetherError(protocol-error) of the handshake."""
    return TetherError(Failure.of(Code.PROTOCOL_ERROR, Phase.HANDSHAKE, message,
                                  http_status=status, url=redact_url(url),
                                  request_id=request_id))


def check_upgrade(headers: dict[str, str], key: str, offered: Sequence[str], url: str,
                  request_id: str) -> str | None:
    """The subprotocol the gateway chose (None: it chose none, as plain bridges do)."""
    accept = base64.b64encode(hashlib.sha1((key + _GUID).encode(),
                                           usedforsecurity=False).digest()).decode()
    if (headers.get("upgrade", "").lower() != "websocket"
            or "upgrade" not in headers.get("connection", "").lower()
            or headers.get("sec-websocket-accept", "").strip() != accept):
        raise protocol_error("The gateway answered 101 but did not complete a valid WebSocket "
                             "upgrade (Upgrade, Connection or Sec-WebSocket-Accept is wrong).",
                             url, request_id)
    chosen = headers.get("sec-websocket-protocol", "").strip() or None
    if chosen is not None and chosen not in offered:
        shown = strip_control(chosen, limit=60)
        raise protocol_error(f"The gateway chose the subprotocol {shown!r}, which tether did "
                             f"not offer ({', '.join(offered)}).", url, request_id)
    return chosen
