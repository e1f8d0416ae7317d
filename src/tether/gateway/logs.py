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
import json
import logging
from json.encoder import encode_basestring

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tether.gateway.cursor import CursorVector
from tether.gateway.logsources import Line, LogHub, Reader
from tether.gateway.session import LogRequest, check_client_message

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
        self.cursor = CursorVector()
        self.frames_left = frame_budget
        self._middles: dict[tuple[str, str], str] = {}

    def _open(self, name: str, reader: Reader, *, fresh: bool) -> None:
        after = self.request.after
        # an instance the cursor does not know, or one that appeared later: all of it is new
        resume = after.get(name) if after is not None else None
        tail = self.request.tail if after is None and not fresh else None
        reader.open(resume=resume, tail=tail)
        self.readers[name] = reader
        self.cursor.set(name, reader.position())

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
        parts = [lines for reader in self.readers.values() if (lines := reader.read())]
        if len(parts) <= 1:
            merged = parts[0] if parts else []
        else:
            merged = list(heapq.merge(*parts, key=lambda line: line.ts))
        since = self.request.since
        if since is None:
            return merged
        out = []
        for line in merged:
            if line.ts >= since:
                out.append(line)
            else:  # skipped, but the cursor still moves past it
                self.cursor.set(line.instance, line.position)
        return out

    async def send(self, lines: list[Line]) -> None:
        """Send ``lines`` as frames of at most 500 records or about 64 KiB."""
        batch: list[str] = []
        size = 0
        cursor, middle = self.cursor, self._middle
        for instance, _, ts_text, stream, message, position in lines:
            text = (f'{{"cursor":"{cursor.set(instance, position)}","ts":"{ts_text}'
                    f'{middle(instance, stream)}{encode_basestring(message)}}}\n')
            batch.append(text)
            size += len(text)
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
        await self.ws.send("".join(batch))

    def _middle(self, instance: str, stream: str) -> str:
        """The part of a record between its time and its message (cursor and time need no
        escaping, the message is escaped as ``json.dumps`` does)."""
        middle = self._middles.get((instance, stream))
        if middle is None:
            middle = (f'","instance":{json.dumps(instance, ensure_ascii=False)},'
                      f'"stream":{json.dumps(stream, ensure_ascii=False)},"message":')
            self._middles[(instance, stream)] = middle
        return middle

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
