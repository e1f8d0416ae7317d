"""WebSocket framing for the client, without I/O: masked frames out, messages in.

:func:`encode` builds a client frame as its header and its payload masked
with websockets' C ``apply_mask``. A :class:`Parser` takes the gateway's byte
stream in one buffer that reads go straight into (:meth:`Parser.buffer`),
and parses it in place: whole messages (fragments joined) queue in
:attr:`Parser.messages`, pings are returned for answering, and the peer's
close frame is kept in :attr:`Parser.close`. A payload is copied once, out
of the buffer; an outgoing one once, by the masking.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

import websocket

try:
    from websockets.speedups import apply_mask
except ImportError:  # a build without the C extension: websockets' own fallback
    from websockets.utils import apply_mask

__all__ = ["OPCODE_BINARY", "OPCODE_CLOSE", "OPCODE_PING", "OPCODE_PONG", "OPCODE_TEXT",
           "FrameTooBig", "MaskKeys", "Message", "Parser", "encode"]

OPCODE_CONT = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
_OPCODES = frozenset((OPCODE_CONT, OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING,
                      OPCODE_PONG))

READ_SIZE = 256 * 1024  # the usual buffer; it grows for one larger frame at a time
_MAX_HEAD = 14  # the longest header with its mask key

_SHORT = struct.Struct("!BB4s")
_MEDIUM = struct.Struct("!BBH4s")
_LONG = struct.Struct("!BBQ4s")
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


class Message(NamedTuple):
    """One whole message: ``opcode`` is :data:`OPCODE_TEXT` or :data:`OPCODE_BINARY`."""

    opcode: int
    data: bytes  # text messages stay UTF-8 bytes; decode with errors="replace" if shown

    @property
    def is_text(self) -> bool:
        """True for a text message (JSON control messages, log records)."""
        return self.opcode == OPCODE_TEXT


class FrameTooBig(ValueError):
    """A frame or message over the parser's limit; the message says which and how big."""


class MaskKeys:
    """Fresh 4-byte masking keys from the system's CSPRNG, drawn 1,024 at a time: one
    ``os.urandom`` per frame was most of the cost of masking a small frame. Each key is
    handed out once (taking from a list iterator is atomic under the GIL)."""

    def __init__(self, per_draw: int = 1024) -> None:
        self._per_draw = per_draw
        self._keys: Iterator[bytes] = iter(())

    def __call__(self) -> bytes:
        key = next(self._keys, None)
        while key is None:
            pool = os.urandom(4 * self._per_draw)
            self._keys = iter([pool[at:at + 4] for at in range(0, len(pool), 4)])
            key = next(self._keys, None)
        return key


_mask_key = MaskKeys()


def encode(opcode: int, payload: bytes | memoryview) -> tuple[bytes, bytes]:
    """A client frame (FIN set, masked with a fresh key): its header and its masked payload."""
    key = _mask_key()
    size = len(payload)
    if size < 126:
        header = _SHORT.pack(0x80 | opcode, 0x80 | size, key)
    elif size < 65536:
        header = _MEDIUM.pack(0x80 | opcode, 0xFE, size, key)
    else:
        header = _LONG.pack(0x80 | opcode, 0xFF, size, key)
    return header, apply_mask(payload, key) if size else b""


class Parser:
    """The gateway's frames, parsed from one buffer; ``max_message`` bounds frames and messages."""

    def __init__(self, max_message: int, initial: bytes = b"") -> None:
        self.max_message = max_message
        self.messages: deque[Message] = deque()
        self.close: bytes | None = None  # the payload of the peer's close frame
        self._buf = bytearray(max(READ_SIZE, len(initial)))
        self._buf[:len(initial)] = initial
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = len(initial)
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self._fragment_size = 0

    @property
    def pending(self) -> bool:
        """Whether bytes of a frame not yet whole are buffered."""
        return self._end > self._start

    def buffer(self) -> memoryview:
        """Where the next read goes: the free end of the buffer (never empty)."""
        return self._view[self._end:]

    def received(self, count: int) -> list[bytes]:
        """``count`` bytes were read into :meth:`buffer`: parse; the payloads of pings.

        Raises FrameTooBig, or websocket-client's WebSocketProtocolException.
        """
        self._end += count
        return self.parse()

    def parse(self) -> list[bytes]:
        """Take every whole frame buffered (stopping at a close frame); the pings' payloads."""
        pings: list[bytes] = []
        buf, view = self._buf, self._view
        pos, end = self._start, self._end
        while end - pos >= 2 and self.close is None:
            first, second = buf[pos], buf[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = _U16.unpack_from(buf, pos + 2)[0], 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = _U64.unpack_from(buf, pos + 2)[0], 10
            opcode = first & 0x0F
            if first & 0x70 or opcode not in _OPCODES:
                raise websocket.WebSocketProtocolException(
                    f"a frame with reserved bits or opcode {opcode:#x}")
            if opcode >= OPCODE_CLOSE and (length > 125 or not first & 0x80):
                raise websocket.WebSocketProtocolException("a long or fragmented control frame")
            if length > self.max_message:
                raise FrameTooBig(f"The gateway sent a frame of {length} bytes, more than the "
                                  f"limit of {self.max_message} bytes.")
            if second & 0x80:
                head += 4
            if end - pos < head + length:
                break
            payload = view[pos + head:pos + head + length].tobytes()
            if second & 0x80:
                payload = apply_mask(payload, bytes(buf[pos + head - 4:pos + head]))
            pos += head + length
            if opcode == OPCODE_PING:
                pings.append(payload)
            elif opcode == OPCODE_CLOSE:
                self.close = payload
            elif opcode != OPCODE_PONG:
                self._data(first & 0x80, opcode, payload)
        self._compact(pos, end)
        return pings

    def _data(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode != OPCODE_CONT:
            if self._fragments:
                raise websocket.WebSocketProtocolException("a new message began inside another")
            if fin:
                self.messages.append(Message(opcode, payload))
            else:
                self._fragment_op, self._fragments = opcode, [payload]
                self._fragment_size = len(payload)
            return
        if not self._fragments:
            raise websocket.WebSocketProtocolException("a continuation frame without a message")
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if self._fragment_size > self.max_message:
            raise FrameTooBig(f"The gateway sent a message of more than {self.max_message} "
                              "bytes.")
        if fin:
            whole = b"".join(self._fragments)
            self._fragments, self._fragment_size = [], 0
            self.messages.append(Message(self._fragment_op, whole))

    def _compact(self, pos: int, end: int) -> None:
        """Keep room to read into: the partial frame at ``pos`` moves to the front if need be."""
        buf = self._buf
        if pos == end:
            self._start = self._end = 0
            if len(buf) > READ_SIZE:  # a large frame is done: back to the usual buffer
                self._buf = bytearray(READ_SIZE)
                self._view = memoryview(self._buf)
            return
        self._start = pos
        need = _MAX_HEAD + self._partial_size(pos, end)
        if pos + need > len(buf) or len(buf) - end < READ_SIZE // 4:
            rest = buf[pos:end]
            if need > len(buf):
                self._buf = bytearray(need)
                self._view = memoryview(self._buf)
            self._buf[:len(rest)] = rest
            self._start, self._end = 0, len(rest)

    def _partial_size(self, pos: int, end: int) -> int:
        """The payload size of the partial frame at ``pos``, once its length has arrived."""
        buf = self._buf
        if end - pos < 2:
            return 0
        length = buf[pos + 1] & 0x7F
        if length == 126:
            return int(_U16.unpack_from(buf, pos + 2)[0]) if end - pos >= 4 else 0
        if length == 127:
            return int(_U64.unpack_from(buf, pos + 2)[0]) if end - pos >= 10 else 0
        return length
