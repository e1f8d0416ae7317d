"""``/v1/port-forward``: one TCP connection to an allowed port, bridged to one WebSocket.

Binary frames carry the raw bytes both ways. With ``tether.v1``,
``{"type":"eof"}`` either way is a half-close, and the WebSocket closes 1000
when both halves are done. With plain ``binary`` (websockify-style peers) the
end of the target's stream closes the WebSocket. With ``tether.v2`` the
connection is the :class:`TcpBackend` of a resumable session: it stays open
while the client is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tether.gateway.session import Ending, close_with, decode_or_close
from tether.protocol import SUBPROTOCOL, CloseCode, Eof, encode_control, format_close_reason

log = logging.getLogger("tether.gateway.forward")
READ_SIZE = 64 * 1024
WRITE_BUFFER = 64 * 1024  # beyond this much unsent, wait for the target to take it
CONNECT_TIMEOUT = 5.0


async def open_target(ws: ServerConnection, service: str, host: str, port: int, *,
                      request_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection to ``host:port``; None after closing 1011 target-unreachable."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.info("request %s: port %d of service %s unreachable: %s", request_id, port, service,
                 exc)
        await close_with(ws, CloseCode.INTERNAL_ERROR, "target-unreachable",
                         f"nothing answers on port {port} of service {service}")
        return None


def _broke(service: str, port: int) -> tuple[int, str, str]:
    return (CloseCode.INTERNAL_ERROR, "target-unreachable",
            f"the connection to port {port} of service {service} broke")


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write, waiting for the target only when much is unsent; raises OSError when it is gone."""
    writer.write(data)
    transport = writer.transport
    if transport.is_closing() or transport.get_write_buffer_size() > WRITE_BUFFER:
        await writer.drain()


def _half_close(writer: asyncio.StreamWriter) -> None:
    if writer.can_write_eof() and not writer.transport.is_closing():
        writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ConnectionError):
        await writer.wait_closed()


async def serve_forward(ws: ServerConnection, service: str, host: str, port: int,
                        *, request_id: str) -> None:
    """Serve one tether.v1 (or plain ``binary``) ``/v1/port-forward`` session to ``host:port``."""
    target = await open_target(ws, service, host, port, request_id=request_id)
    if target is None:
        return
    reader, writer = target
    tether = ws.subprotocol == SUBPROTOCOL
    upstream = asyncio.create_task(_client_to_target(ws, writer, tether))
    downstream = asyncio.create_task(_target_to_client(ws, reader, tether))
    try:
        pending = {upstream, downstream}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                failure = task.exception()
                if isinstance(failure, OSError):
                    await close_with(ws, *_broke(service, port))
                if failure is not None or task.result() is False:
                    return  # the client went, broke the protocol, or the target broke
            if not tether and downstream in done:
                break
        await close_with(ws, CloseCode.NORMAL, "", "")
    finally:
        for task in (upstream, downstream):
            task.cancel()
        for task in (upstream, downstream):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await _close(writer)


async def _client_to_target(ws: ServerConnection, writer: asyncio.StreamWriter,
                            tether: bool) -> bool:
    """Client bytes to the target; True at the client's eof, False when the client is gone."""
    try:
        async for message in ws:
            if isinstance(message, bytes):
                await _write(writer, message)
                continue
            control = await decode_or_close(ws, message)
            if control is None:
                return False
            if isinstance(control, Eof):
                _half_close(writer)
                return True
            await close_with(ws, CloseCode.UNSUPPORTED_DATA, "protocol-error",
                             "port-forward takes only data and eof")
            return False
    except ConnectionClosed:
        return False
    return False


async def _target_to_client(ws: ServerConnection, reader: asyncio.StreamReader,
                            tether: bool) -> bool:
    """Target bytes to the client; True at the target's end of stream (eof sent)."""
    while data := await reader.read(READ_SIZE):
        await ws.send(data)
    if tether:
        await ws.send(encode_control(Eof()))
    return True


class TcpBackend:
    """tether.v2: a forwarded TCP connection as the backend of a resumable session."""

    evicts_when_detached = False  # a byte stream cannot skip: the target waits instead
    writes_whole = True  # write() buffers all of its data before it waits for the target

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 service: str, port: int) -> None:
        self.reader, self.writer = reader, writer
        self.service, self.port = service, port
        self._eof = False

    def outputs(self) -> list[tuple[int, Callable[[int], Awaitable[bytes]]]]:
        return [(0, self.reader.read)]

    def frame(self, tag: int, data: bytes) -> bytes:
        return data

    def payload(self, frame: bytes) -> bytes:
        return frame

    async def write(self, data: bytes) -> None:
        await _write(self.writer, data)

    async def eof(self) -> None:
        if not self._eof:
            self._eof = True
            _half_close(self.writer)

    def resize(self, cols: int, rows: int) -> bool:
        return False

    async def finished(self, pumps: Sequence[asyncio.Task[None]], progress: Callable[[], int],
                       busy: Callable[[], bool]) -> Ending:
        await asyncio.wait(pumps)
        if any(not task.cancelled() and task.exception() is not None for task in pumps):
            return self.broken()
        return Ending(Eof(), needs_client_eof=True)

    def broken(self) -> Ending:
        code, catalog, text = _broke(self.service, self.port)
        return Ending(None, code, format_close_reason(catalog, text))

    async def close(self) -> None:
        await _close(self.writer)
