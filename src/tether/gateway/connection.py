"""A websockets server connection that also accepts small HTTP request bodies.

websockets reads only bodiless requests (WebSocket handshakes are GETs), but
the token endpoints take form-encoded POSTs. Until the request head is
complete this connection holds back the bytes; it then takes the body off
(``http_body``), drops ``Content-Length`` from the head, and hands the rest to
websockets as usual, so ``process_request`` can answer the POST.

It also carries the data path of shell and port-forward sessions below
websockets' asyncio API (bench/analysis.md): :meth:`divert` hands every data
frame to a callback from the read callback itself, in order, and
:meth:`send_now` writes a whole message from any callback, so a byte crosses
the gateway without waking a task. websockets' sans-I/O protocol object does
the framing either way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame
from websockets.protocol import State

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
_FIN_BINARY = 0x82
_JOIN = 16 * 1024  # binary messages smaller than this are joined to their header


def _binary_header(size: int) -> bytes:
    """The header of a final, unmasked binary frame of ``size`` bytes (RFC 6455, 5.2)."""
    if size < 126:
        return bytes((_FIN_BINARY, size))
    if size < 1 << 16:
        return struct.pack("!BBH", _FIN_BINARY, 126, size)
    return struct.pack("!BBQ", _FIN_BINARY, 127, size)


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
        self._sink: Callable[[Frame], None] | None = None
        self.on_writable: Callable[[], None] | None = None  # the write buffer drained

    # --- the data path ------------------------------------------------------------------

    def divert(self, sink: Callable[[Frame], None] | None) -> None:
        """From now on hand every data frame to ``sink`` as it is parsed, frames already
        queued for ``recv()`` first; None gives the frames back to ``recv()``."""
        self._sink = sink
        if sink is None:
            return
        queued = self.recv_messages.frames.queue  # websockets 17's Assembler (pinned)
        while queued and self._sink is sink:
            sink(queued.popleft())
        self.recv_messages.maybe_resume()

    def process_event(self, event: Any) -> None:
        sink = self._sink
        if sink is not None and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            sink(event)
        else:
            super().process_event(event)

    @property
    def writable(self) -> bool:
        """Whether the write buffer is below its high-water mark."""
        return not self.paused

    @property
    def open(self) -> bool:
        """Whether messages may still be sent."""
        return self.protocol.state is State.OPEN

    def send_now(self, message: bytes | memoryview | str) -> bool:
        """Send one whole message from a callback, without waiting; False when the connection
        is no longer open (or the write failed: the connection is then aborted)."""
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            return False
        try:
            if isinstance(message, str):
                protocol.send_text(message.encode())
                self.send_data()
            elif protocol.extensions or protocol.writes:  # websockets frames it, after those
                protocol.send_binary(message)
                self.send_data()
            elif len(message) < _JOIN:  # one piece: one TLS record for a small frame
                self.transport.write(_binary_header(len(message)) + message)
            else:
                # header and payload written together, not joined: websockets' serializer
                # would copy the payload to put its header in front
                self.transport.writelines((_binary_header(len(message)), message))
        except Exception as exc:  # as send_context does: any failure ends the connection
            self.set_connection_exc(exc)
            self.transport.abort()
            return False
        return True

    def pause_reading(self) -> None:
        """Stop reading from the client (its frames wait in the network)."""
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the client again."""
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    # --- HTTP bodies ----------------------------------------------------------------------

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
