"""``/v1/port-forward``: one TCP connection to an allowed port, bridged to one WebSocket.

Binary frames carry the raw bytes both ways. With ``tether.v1``,
``{"type":"eof"}`` either way is a half-close, and the WebSocket closes 1000
when both halves are done. With plain ``binary`` (websockify-style peers) the
end of the target's stream closes the WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tether.gateway.session import close_with, decode_or_close
from tether.protocol import SUBPROTOCOL, CloseCode, Eof, encode_control

log = logging.getLogger("tether.gateway.forward")
READ_SIZE = 64 * 1024
WRITE_BUFFER = 64 * 1024  # beyond this much unsent, wait for the target to take it
CONNECT_TIMEOUT = 5.0


async def serve_forward(ws: ServerConnection, service: str, host: str, port: int,
                        *, request_id: str) -> None:
    """Serve one ``/v1/port-forward`` session to ``host:port``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.info("request %s: port %d of service %s unreachable: %s", request_id, port, service,
                 exc)
        await close_with(ws, CloseCode.INTERNAL_ERROR, "target-unreachable",
                         f"nothing answers on port {port} of service {service}")
        return
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
                    await close_with(ws, CloseCode.INTERNAL_ERROR, "target-unreachable",
                                     f"the connection to port {port} of service {service} broke")
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
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()


async def _client_to_target(ws: ServerConnection, writer: asyncio.StreamWriter,
                            tether: bool) -> bool:
    """Client bytes to the target; True at the client's eof, False when the client is gone."""
    try:
        async for message in ws:
            if isinstance(message, bytes):
                writer.write(message)
                transport = writer.transport
                if transport.is_closing() or transport.get_write_buffer_size() > WRITE_BUFFER:
                    await writer.drain()  # waits for the target, or raises when it is gone
                continue
            control = await decode_or_close(ws, message)
            if control is None:
                return False
            if isinstance(control, Eof):
                if writer.can_write_eof():
                    writer.write_eof()
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
