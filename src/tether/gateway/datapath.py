"""Two small parts of the callback data path (``stream.py``): whole messages out of frames,
and client data written to a backend in order without a task per write."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from websockets.frames import Frame, Opcode

#: A write to a backend: None when it took the data whole, else what finishes it.
Write = Callable[[], Awaitable[None] | None]


class Messages:
    """Reassembles data frames into ``(is_text, payload)`` messages; websockets' protocol
    object has already checked the order of frames and bounded a message's size."""

    def __init__(self) -> None:
        self._text = False
        self._parts: list[bytes] | None = None

    def add(self, frame: Frame) -> tuple[bool, bytes] | None:
        """The message ``frame`` completes, or None while one is still incomplete."""
        data = frame.data if isinstance(frame.data, bytes) else bytes(frame.data)
        if frame.opcode is Opcode.CONT:
            if self._parts is None:
                return None  # the protocol object refuses a continuation out of place
            self._parts.append(data)
            if not frame.fin:
                return None
            parts, self._parts = self._parts, None
            return self._text, b"".join(parts)
        text = frame.opcode is Opcode.TEXT
        if frame.fin:
            return text, data
        self._text, self._parts = text, [data]
        return None


class InputQueue:
    """Client data to a backend, in order. A write the backend takes whole is done at once,
    in the read callback; one that must wait (a full pty, a slow target) is finished by a
    task, which also does what arrives meanwhile, and ``hold(True)`` asks the caller to
    stop reading the client until ``hold(False)``. ``broke`` is told once when a write
    raises OSError; nothing is written after that."""

    def __init__(self, hold: Callable[[bool], None], idle: Callable[[], None],
                 broke: Callable[[], None]) -> None:
        self._hold = hold
        self._idle = idle
        self._broke = broke
        self._waiting: deque[Write] | None = None
        self._task: asyncio.Task[None] | None = None
        self.broken = False

    @property
    def busy(self) -> bool:
        """Whether a write is still being finished (the client is not read meanwhile)."""
        return self._waiting is not None

    def put(self, write: Write) -> None:
        """Do ``write`` now, or after the writes before it."""
        if self.broken:
            return
        if self._waiting is not None:
            self._waiting.append(write)
            return
        try:
            pending = write()
        except OSError:
            self._break()
            return
        if pending is not None:
            self._waiting = deque()
            self._hold(True)
            self._task = asyncio.create_task(self._finish(pending))

    async def _finish(self, pending: Awaitable[None]) -> None:
        try:
            await pending
            while self._waiting:
                more = self._waiting.popleft()()
                if more is not None:
                    await more
        except OSError:
            self._break()
        finally:
            self._waiting = None
            self._task = None
            self._hold(False)
        self._idle()

    def _break(self) -> None:
        if not self.broken:
            self.broken = True
            self._broke()

    async def flushed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the writes still being finished."""
        task = self._task
        if task is not None:
            await asyncio.wait([task], timeout=timeout)

    async def cancel(self) -> None:
        """Stop finishing writes (the backend is being closed)."""
        task, self._task = self._task, None
        await cancelled(task)


async def cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it is over, whatever it raised."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
