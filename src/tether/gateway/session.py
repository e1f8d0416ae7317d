"""What every WebSocket session shares: its context, closing with a reason, checking input,
and what a resumable (tether.v2) session runs: a :class:`Backend` that ends in an
:class:`Ending`."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Data

from tether.gateway.config import ServiceConfig
from tether.gateway.cursor import Position
from tether.gateway.tokens import Principal
from tether.protocol import (
    CloseCode,
    ControlMessage,
    Eof,
    Exit,
    ProtocolViolation,
    decode_control,
    format_close_reason,
)
from tether.ttymodes import Modes


@dataclass(frozen=True)
class LogRequest:
    """What a client asked of ``/v1/logs``."""

    service: str
    instance: str | None
    follow: bool
    tail: int | None
    since: float | None
    after: dict[str, Position] | None


@dataclass(frozen=True)
class ShellRequest:
    """What a client asked of ``/v1/shell``."""

    argv: list[str]
    tty: bool
    cols: int
    rows: int
    modes: Modes | None = None  # the client terminal's, for the pty (tether.ttymodes)


@dataclass
class SessionContext:
    """One accepted upgrade: who, what, where."""

    request_id: str
    endpoint: str  # "shell", "logs" or "port-forward"
    service: ServiceConfig
    instance: str | None
    principal: Principal
    shell: ShellRequest | None = None
    logs: LogRequest | None = None
    port: int | None = None
    resume: bool = False  # tether.v2: the dial resumes a session (``resume=1``)


@dataclass(frozen=True)
class Ending:
    """How the gateway's side of a resumable session ends, once all its data is sent: an
    optional last message, then a close with ``code`` and ``reason``."""

    message: Exit | Eof | None = None  # Exit for a shell, Eof for a port-forward's target
    code: int = CloseCode.NORMAL
    reason: str = ""  # ``catalog-code: text``
    needs_client_eof: bool = False  # close only once the client's eof came too (port-forward)


class Output(Protocol):
    """Where a backend puts what it reads (a :class:`~tether.gateway.stream.Session`)."""

    def data(self, tag: int, data: bytes) -> None:
        """``data`` read from the stream ``tag``; called from the event loop's callbacks."""
        ...


class Backend(Protocol):
    """What a shell or port-forward session runs: a process, or a TCP connection.

    It reads in the event loop's callbacks and hands each piece to its
    :class:`Output` at once; ``pause_output`` stops that until ``resume_output``.
    """

    #: True: while detached, keep reading and let the oldest unacknowledged bytes go
    #: (counted); False: stop reading when the replay buffer is full.
    evicts_when_detached: bool

    def start(self, output: Output) -> None:
        """Begin reading into ``output``."""
        ...

    def pause_output(self) -> None:
        """Stop reading (the client is behind)."""
        ...

    def resume_output(self) -> None:
        """Read again."""
        ...

    def frame(self, tag: int, data: bytes | memoryview) -> bytes | memoryview:
        """One binary frame carrying ``data`` of stream ``tag``."""
        ...

    def payload(self, frame: bytes) -> bytes:
        """The data of a client's binary frame; raises ProtocolViolation."""
        ...

    def write(self, data: bytes) -> Awaitable[None] | None:
        """Client data in: None when taken whole now, else what finishes the write.
        Raises OSError (now or from the awaitable) when the backend broke."""
        ...

    def eof(self) -> Awaitable[None] | None:
        """The client finished writing (as :meth:`write`)."""
        ...

    def resize(self, cols: int, rows: int) -> bool:
        """Apply a terminal size; False when this backend takes no resize."""
        ...

    async def finished(self, progress: Callable[[], int], busy: Callable[[], bool]) -> Ending:
        """Wait until the backend is done and its output is read; how the session ends.
        ``progress`` counts the bytes read so far, ``busy`` says output waits for room."""
        ...

    def broken(self) -> Ending:
        """The ending after a write failed."""
        ...

    async def close(self) -> None:
        """Release everything: reap the process, close the socket."""
        ...


async def close_with(ws: ServerConnection, code: int, catalog_code: str, text: str) -> None:
    """Close with ``code`` and the reason ``catalog_code: text`` (cut to 123 bytes)."""
    with contextlib.suppress(ConnectionClosed):
        await ws.close(code, format_close_reason(catalog_code, text))


def violation_close_code(exc: ProtocolViolation) -> int:
    """1003 for a message of an unknown type; 1002 for anything else that breaks tether.v1."""
    if "unknown control message type" in str(exc):
        return CloseCode.UNSUPPORTED_DATA
    return CloseCode.PROTOCOL_ERROR


async def decode_or_close(ws: ServerConnection, text: str) -> ControlMessage | None:
    """The control message in ``text``; None after closing 1002/1003 when it is not one."""
    try:
        return decode_control(text)
    except ProtocolViolation as exc:
        await close_with(ws, violation_close_code(exc), "protocol-error", str(exc))
        return None


async def check_client_message(ws: ServerConnection, message: Data, *,
                               allow_binary: bool) -> bool:
    """True when ``message`` is acceptable input that needs nothing done; False after a close."""
    if isinstance(message, bytes):
        if allow_binary:
            return True
        await close_with(ws, CloseCode.UNSUPPORTED_DATA, "protocol-error",
                         "this stream takes no binary frames")
        return False
    return await decode_or_close(ws, message) is not None
