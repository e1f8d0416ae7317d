"""A websockets server connection that also accepts small HTTP request bodies.

websockets reads only bodiless requests (WebSocket handshakes are GETs), but
the token endpoints take form-encoded POSTs. Until the request head is
complete this connection holds back the bytes; it then takes the body off
(``http_body``), drops ``Content-Length`` from the head, and hands the rest to
websockets as usual, so ``process_request`` can answer the POST.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.server import ServerConnection

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024


class GatewayConnection(ServerConnection):
    """A ServerConnection with ``http_body`` and a slot for the gateway's session context."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_body: bytes = b""
        self.body_too_large = False
        self.context: Any = None
        self.request_id: str | None = None
        self._head: bytearray | None = bytearray()
        self._body_left = 0
        self._rest_head = b""

    def data_received(self, data: bytes) -> None:
        """Hold bytes back until the request head (and any body) has arrived."""
        if self._head is None:
            super().data_received(data)
            return
        if self._body_left:
            self._take_body(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._release(bytes(self._head))
            return
        head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4:])
        length = _content_length(head)
        if length is None or length == 0:
            self._release(head + rest)
            return
        self._rest_head = _without_content_length(head)
        if length > MAX_BODY:
            self.body_too_large = True
            self._release(self._rest_head)
            return
        self._body_left = length
        self._head = bytearray()
        self._take_body(rest)

    def _take_body(self, data: bytes) -> None:
        piece = data[: self._body_left]
        self.http_body += piece
        self._body_left -= len(piece)
        if self._body_left == 0:
            self._release(self._rest_head + data[len(piece):])

    def _release(self, data: bytes) -> None:
        self._head = None
        if data:
            super().data_received(data)


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            try:
                return max(0, int(value.strip()))
            except ValueError:
                return None
    return None


def _without_content_length(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n")
             if line.partition(b":")[0].strip().lower() != b"content-length"]
    return b"\r\n".join(lines)
