"""``/v1/logs``: records as NDJSON text frames, many per frame, each with a vector cursor.

Records of one instance go out in order. Across instances, each read round
(up to 64 KiB per instance) is merged by time. A finite stream (``follow=0``)
sends what is there when it starts and closes 1000; a follow polls for more,
notices new instances, rotation and truncation, and stays open when quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Iterable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tether.gateway.cursor import Position, encode_cursor
from tether.gateway.logsources import Line, LogHub, Reader
from tether.gateway.session import LogRequest, check_client_message
from tether.gateway.timestamps import format_ts
from tether.ws.protocol import LogRecord, encode_log_record

log = logging.getLogger("tether.gateway.logs")
MAX_FRAME_BYTES = 64 * 1024
MAX_FRAME_RECORDS = 500
POLL_INTERVAL = 0.1


class FrameBudget(Exception):
    """Raised when the fault injector's frame budget for this stream is spent."""


class LogStream:
    """One client's stream: opens readers, reads rounds, sends batches."""

    def __init__(self, ws: ServerConnection, hub: LogHub, request: LogRequest,
                 frame_budget: int | None = None) -> None:
        self.ws = ws
        self.hub = hub
        self.request = request
        self.readers: dict[str, Reader] = {}
        self.positions: dict[str, Position] = {}
        self.frames_left = frame_budget

    def _open(self, name: str, reader: Reader, *, fresh: bool) -> None:
        after = self.request.after
        # an instance the cursor does not know, or one that appeared later: all of it is new
        resume = after.get(name) if after is not None else None
        tail = self.request.tail if after is None and not fresh else None
        reader.open(resume=resume, tail=tail)
        self.readers[name] = reader
        self.positions[name] = reader.position()

    def open_all(self) -> None:
        """Readers for every instance there is now, at their start positions."""
        for name, reader in self.hub.readers(self.request.service, self.request.instance).items():
            self._open(name, reader, fresh=False)

    def discover(self) -> None:
        """Readers for instances that appeared since the stream started; read from their start."""
        for name, reader in self.hub.readers(self.request.service, self.request.instance).items():
            if name not in self.readers:
                self._open(name, reader, fresh=True)

    def read_round(self) -> list[Line]:
        """One round: what every reader has now, merged by time, filtered by ``since``."""
        parts = [reader.read() for reader in self.readers.values()]
        merged: Iterable[Line] = heapq.merge(*parts, key=lambda line: line.ts)
        since = self.request.since
        if since is not None:
            out = []
            for line in merged:
                if line.ts >= since:
                    out.append(line)
                else:  # skipped, but the cursor still moves past it
                    self.positions[line.instance] = line.position
            return out
        return list(merged)

    async def send(self, lines: list[Line]) -> None:
        """Send ``lines`` as frames of at most 500 records or about 64 KiB."""
        batch: list[str] = []
        size = 0
        for line in lines:
            self.positions[line.instance] = line.position
            text = encode_log_record(LogRecord(encode_cursor(self.positions), format_ts(line.ts),
                                               line.instance, line.stream, line.message))
            batch.append(text)
            size += len(text) + 1
            if len(batch) >= MAX_FRAME_RECORDS or size >= MAX_FRAME_BYTES:
                await self._send_frame(batch)
                batch, size = [], 0
        if batch:
            await self._send_frame(batch)

    async def _send_frame(self, batch: list[str]) -> None:
        if self.frames_left is not None:
            if self.frames_left <= 0:
                raise FrameBudget
            self.frames_left -= 1
        await self.ws.send("\n".join(batch) + "\n")

    async def run(self) -> None:
        """Stream until done (finite) or until the client goes (follow)."""
        self.open_all()
        try:
            while lines := self.read_round():
                await self.send(lines)
            if not self.request.follow:
                return
            idle = 0
            while True:
                for reader in self.readers.values():
                    reader.check_rotation()
                if idle % 10 == 0:
                    self.discover()
                lines = self.read_round()
                if lines:
                    idle = 0
                    await self.send(lines)
                else:
                    idle += 1
                    await asyncio.sleep(POLL_INTERVAL)
        finally:
            for reader in self.readers.values():
                reader.close()


async def serve_logs(ws: ServerConnection, hub: LogHub, request: LogRequest,
                     frame_budget: int | None, on_budget: tuple[int, str]) -> None:
    """Serve one ``/v1/logs`` session: stream, then close 1000 when a finite stream is done."""
    stream = LogStream(ws, hub, request, frame_budget)
    watcher = asyncio.create_task(_watch_client(ws))
    streamer = asyncio.create_task(stream.run())
    try:
        done, _ = await asyncio.wait({watcher, streamer}, return_when=asyncio.FIRST_COMPLETED)
        if streamer in done:
            exc = streamer.exception()
            if isinstance(exc, FrameBudget):
                await ws.close(*on_budget)
            elif isinstance(exc, ConnectionClosed) or exc is None:
                await ws.close(1000, "")
            else:
                raise exc
    finally:
        for task in (watcher, streamer):
            task.cancel()
        for task in (watcher, streamer):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _watch_client(ws: ServerConnection) -> None:
    """Read (and check) what the client sends on a log stream, until it closes."""
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            if not await check_client_message(ws, message, allow_binary=False):
                return
