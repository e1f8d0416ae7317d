"""``/v1/port-forward``: one TCP connection to an allowed port, bridged to one WebSocket.

Binary frames carry the raw bytes both ways. With ``tether.v1``,
``{"type":"eof"}`` either way is a half-close, and the WebSocket closes 1000
when both halves are done. With plain ``binary`` (websockify-style peers) the
end of the target's stream closes the WebSocket. With ``tether.v2`` the
connection is the backend of a resumable session: it stays open while the
client is away. Either way :class:`TcpBackend` is an asyncio protocol whose
callbacks feed the session's data path (``stream.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from websockets.asyncio.server import ServerConnection

from tether.gateway.connection import GatewayConnection
from tether.gateway.session import Ending, Output, close_with
from tether.gateway.stream import serve_stream
from tether.protocol import SUBPROTOCOL, CloseCode, Eof, format_close_reason

log = logging.getLogger("tether.gateway.forward")
WRITE_BUFFER = 64 * 1024  # beyond this much unsent, the client waits for the target
CONNECT_TIMEOUT = 5.0


class TcpBackend(asyncio.Protocol):
    """A forwarded TCP connection: what it reads goes to the session's :class:`Output` from
    the read callback; client bytes are written at once (a wait only when much is unsent)."""

    evicts_when_detached = False  # a byte stream cannot skip: the target waits instead

    def __init__(self, service: str, port: int, *, closes_at_end: bool = False) -> None:
        self.service, self.port = service, port
        self.closes_at_end = closes_at_end  # plain binary: the target's end closes 1000
        self.transport: asyncio.Transport | None = None
        self._output: Output | None = None
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drained: asyncio.Future[None] | None = None
        self._eof_sent = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's too
        transport.pause_reading()  # until the session starts
        transport.set_write_buffer_limits(high=WRITE_BUFFER)

    def data_received(self, data: bytes) -> None:
        if self._output is not None:
            self._output.data(0, data)

    def eof_received(self) -> bool:
        if not self._ended.done():
            self._ended.set_result(None)
        return True  # the client may still write: a half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._ended.done():
            self._ended.set_exception(exc or ConnectionResetError("the target closed"))
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # --- Backend ----------------------------------------------------------------------------

    def start(self, output: Output) -> None:
        self._output = output
        self.resume_output()

    def pause_output(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_output(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def frame(self, tag: int, data: bytes | memoryview) -> bytes | memoryview:
        return data

    def payload(self, frame: bytes) -> bytes:
        return frame

    def write(self, data: bytes) -> Awaitable[None] | None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise BrokenPipeError("the target connection is closed")
        transport.write(data)
        return None if self._drained is None else self._wait(self._drained)

    async def _wait(self, drained: asyncio.Future[None]) -> None:
        await drained
        if self.transport is None or self.transport.is_closing():
            raise BrokenPipeError("the target connection is closed")

    def eof(self) -> None:
        transport = self.transport
        if not self._eof_sent and transport is not None and not transport.is_closing():
            self._eof_sent = True
            transport.write_eof()

    def resize(self, cols: int, rows: int) -> bool:
        return False

    async def finished(self, progress: Callable[[], int], busy: Callable[[], bool]) -> Ending:
        try:
            await asyncio.shield(self._ended)
        except OSError:
            return self.broken()
        if self.closes_at_end:
            return Ending(None)
        return Ending(Eof(), needs_client_eof=True)

    def broken(self) -> Ending:
        code, catalog, text = _broke(self.service, self.port)
        return Ending(None, code, format_close_reason(catalog, text))

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self._ended.done():
            self._ended.cancel()
        elif not self._ended.cancelled():
            self._ended.exception()  # retrieved: a broken target was already reported


def _broke(service: str, port: int) -> tuple[int, str, str]:
    return (CloseCode.INTERNAL_ERROR, "target-unreachable",
            f"the connection to port {port} of service {service} broke")


async def open_target(ws: ServerConnection, service: str, host: str, port: int, *,
                      request_id: str, closes_at_end: bool = False) -> TcpBackend | None:
    """A connection to ``host:port``; None after closing 1011 target-unreachable."""
    loop = asyncio.get_running_loop()
    try:
        _, backend = await asyncio.wait_for(loop.create_connection(
            lambda: TcpBackend(service, port, closes_at_end=closes_at_end), host, port),
            CONNECT_TIMEOUT)
        return backend
    except (OSError, TimeoutError) as exc:
        log.info("request %s: port %d of service %s unreachable: %s", request_id, port, service,
                 exc)
        await close_with(ws, CloseCode.INTERNAL_ERROR, "target-unreachable",
                         f"nothing answers on port {port} of service {service}")
        return None


async def serve_forward(ws: GatewayConnection, service: str, host: str, port: int,
                        *, request_id: str, close_timeout: float) -> None:
    """Serve one tether.v1 (or plain ``binary``) ``/v1/port-forward`` session to ``host:port``."""
    backend = await open_target(ws, service, host, port, request_id=request_id,
                                closes_at_end=ws.subprotocol != SUBPROTOCOL)
    if backend is not None:
        await serve_stream(ws, backend, first=None, request_id=request_id,
                           endpoint="port-forward", close_timeout=close_timeout)
