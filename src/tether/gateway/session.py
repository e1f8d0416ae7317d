"""What every WebSocket session shares: its context, closing with a reason, checking input."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Data

from tether.gateway.config import ServiceConfig
from tether.gateway.cursor import Position
from tether.gateway.tokens import Principal
from tether.protocol import (
    CloseCode,
    ControlMessage,
    ProtocolViolation,
    decode_control,
    format_close_reason,
)


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
