"""Where log records come from: files (one instance per file) and commands (an in-memory ring).

A file reader keeps its own open file and byte offset, so it follows a file
that is rotated (renamed, then made anew: the rest of the old file is read
first) or truncated (read again from the start). Only complete lines are
records; a last line without its newline waits for it, except at rotation.

Times: a line's own timestamp when it has one (see ``timestamps.line_time``);
otherwise the file's modification time for lines already there when the
stream starts, and the time the gateway read it for lines that came later.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tether.gateway.config import LogSource, ServiceConfig
from tether.gateway.cursor import Position
from tether.gateway.timestamps import Stamp, format_ts, line_time

log = logging.getLogger("tether.gateway.logs")
READ_CHUNK = 64 * 1024
MAX_LINE = 1024 * 1024


class Line(NamedTuple):
    """One record before it gets its cursor."""

    instance: str
    ts: float
    ts_text: str  # ts as RFC 3339 UTC
    stream: str
    message: str
    position: Position  # where the instance stands right after this record


class FileInstance:
    """One log file, read from a position onwards, surviving rotation and truncation."""

    def __init__(self, name: str, path: str, stream: str) -> None:
        self.name = name
        self.path = path
        self.stream = stream
        self.fd: int | None = None
        self.ino = 0
        self.offset = 0
        self.old: tuple[int, int, int] | None = None  # rotated file: fd, inode, offset
        self.backlog_time = time.time()
        self.backlog_end = 0

    def open(self, *, resume: Position | None, tail: int | None) -> None:
        """Open the file and pick the start: after ``resume``, the last ``tail`` lines, or 0."""
        self._open_current()
        if self.fd is None:
            return
        if resume is not None:
            ino, offset = resume
            if ino == self.ino:
                self.offset = offset if offset <= os.fstat(self.fd).st_size else 0
            else:
                self._find_rotated(ino, offset)
                self.offset = 0
        elif tail is not None:
            self.offset = _tail_offset(self.fd, os.fstat(self.fd).st_size, tail)

    def _open_current(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            self.fd = None
            return
        st = os.fstat(fd)
        self.fd, self.ino, self.offset = fd, st.st_ino, 0
        self.backlog_time, self.backlog_end = st.st_mtime, st.st_size

    def _find_rotated(self, ino: int, offset: int) -> None:
        """Look next to the file for the one with inode ``ino`` (it was rotated)."""
        directory = os.path.dirname(self.path) or "."
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                if entry.inode() == ino and entry.is_file():
                    fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    self.old = (fd, ino, offset)
                    return

    def position(self) -> Position:
        """Where this instance stands now."""
        if self.old is not None:
            return (self.old[1], self.old[2])
        return (self.ino, self.offset)

    def check_rotation(self) -> None:
        """Notice a rotated (new inode at the path) or truncated file."""
        try:
            st = os.stat(self.path)
        except OSError:
            return
        if self.fd is None:
            self._open_current()
            self.backlog_end = 0
            return
        if st.st_ino != self.ino:
            if self.old is None:
                self.old = (self.fd, self.ino, self.offset)
                self.fd = None
                self._open_current()
                self.backlog_end = 0
        elif st.st_size < self.offset:
            log.info("log file of instance %s was truncated; reading it from the start", self.name)
            self.offset = 0
            self.backlog_end = 0

    def read(self, limit: int = READ_CHUNK) -> list[Line]:
        """The complete lines available now, up to about ``limit`` bytes."""
        if self.old is not None:
            fd, ino, offset = self.old
            lines, new_offset = self._read_lines(fd, ino, offset, limit, final=True)
            if lines or new_offset != offset:
                self.old = (fd, ino, new_offset)
                return lines
            os.close(fd)
            self.old = None
        if self.fd is None:
            return []
        lines, self.offset = self._read_lines(self.fd, self.ino, self.offset, limit, final=False)
        return lines

    def _read_lines(self, fd: int, ino: int, offset: int, limit: int,
                    *, final: bool) -> tuple[list[Line], int]:
        size = limit
        while True:
            chunk = os.pread(fd, size, offset)
            end = chunk.rfind(b"\n")
            if end >= 0:
                chunk = chunk[: end + 1]
                break
            if len(chunk) < size:  # no newline before the end of the file
                if not (final and chunk):
                    return [], offset
                break
            if size >= MAX_LINE:  # a giant line: cut it
                break
            size *= 4
        backlog, now = _stamp(self.backlog_time), _stamp(time.time())
        name, stream, backlog_end = self.name, self.stream, self.backlog_end
        out: list[Line] = []
        pos = offset
        for raw in chunk.splitlines(keepends=True):
            pos += len(raw)
            stamp, message = line_time(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"))
            if stamp is None:
                stamp = backlog if pos <= backlog_end else now
            out.append(Line(name, stamp[0], stamp[1], stream, message, (ino, pos)))
        return out, pos

    def close(self) -> None:
        """Close the open files."""
        for fd in (self.fd, self.old[0] if self.old else None):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd, self.old = None, None


def _stamp(when: float) -> Stamp:
    """A Unix time with its RFC 3339 text."""
    return when, format_ts(when)


def _tail_offset(fd: int, size: int, count: int) -> int:
    """The offset where the last ``count`` complete lines of the file start."""
    found = 0
    pos = size
    while pos > 0:
        start = max(0, pos - READ_CHUNK)
        chunk = os.pread(fd, pos - start, start)
        i = len(chunk)
        while (i := chunk.rfind(b"\n", 0, i)) >= 0:
            found += 1
            if found == count + 1:
                return start + i + 1
        pos = start
    return 0


@dataclass(frozen=True)
class RingEntry:
    """One line of a command's output, numbered."""

    seq: int
    ts: float
    ts_text: str
    stream: str
    message: str


class CommandLog:
    """A command whose output is a log: run for the gateway's life, kept in a bounded ring."""

    def __init__(self, source: LogSource, service: ServiceConfig) -> None:
        self.name = source.instance or service.name
        self.source = source
        self.service = service
        self.ring: deque[RingEntry] = deque(maxlen=source.ring_size)
        self.seq = 0
        self.generation = secrets.randbelow(2**31)
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None

    def start(self) -> None:
        """Start the command, in the running loop."""
        self.changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self.source.command is not None
        env = {**os.environ, **self.service.env}
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.source.command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=self.service.cwd, env=env, start_new_session=True)
        except OSError as exc:
            log.error("log command of service %s did not start: %s", self.service.name, exc)
            return
        assert self._process.stdout is not None and self._process.stderr is not None
        await asyncio.gather(self._pump(self._process.stdout, self.source.stream),
                             self._pump(self._process.stderr, "stderr"))
        await self._process.wait()

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line longer than the reader's limit
                raw = await reader.read(READ_CHUNK)
            if not raw:
                return
            text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            stamp, message = line_time(text)
            when, when_text = stamp or _stamp(time.time())
            self.seq += 1
            self.ring.append(RingEntry(self.seq, when, when_text, stream, message))
            self.changed.set()

    async def stop(self) -> None:
        """Stop the command."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, 9)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2.0)  # its pipes end with the process


class RingReader:
    """One session's view of a CommandLog, from a sequence number onwards."""

    def __init__(self, source: CommandLog) -> None:
        self.name = source.name
        self.source = source
        self.seq = 0

    def open(self, *, resume: Position | None, tail: int | None) -> None:
        """Pick the start: after ``resume`` (same generation), the last ``tail`` records, or 0."""
        if resume is not None and resume[0] == self.source.generation:
            self.seq = resume[1]
        elif tail is not None:
            self.seq = max(0, self.source.seq - tail)

    def position(self) -> Position:
        """Where this instance stands now."""
        return (self.source.generation, self.seq)

    def check_rotation(self) -> None:
        """Rings do not rotate."""

    def read(self, limit: int = 500) -> list[Line]:
        """The records after this reader's position, at most ``limit``."""
        ring = self.source.ring
        if not ring or ring[-1].seq <= self.seq:
            return []
        first = ring[0].seq
        index = max(0, self.seq + 1 - first)
        out: list[Line] = []
        for i in range(index, min(len(ring), index + limit)):
            entry = ring[i]
            out.append(Line(self.name, entry.ts, entry.ts_text, entry.stream, entry.message,
                            (self.source.generation, entry.seq)))
        self.seq = out[-1].position[1]
        return out

    def close(self) -> None:
        """Nothing to close."""


Reader = FileInstance | RingReader


class LogHub:
    """The log sources of every service; starts and stops the command sources."""

    def __init__(self, services: Mapping[str, ServiceConfig]) -> None:
        self.services = services
        self.commands: dict[str, list[CommandLog]] = {
            name: [CommandLog(src, svc) for src in svc.logs if src.command]
            for name, svc in services.items()}

    def start(self) -> None:
        """Start every command source, in the running loop."""
        for sources in self.commands.values():
            for source in sources:
                source.start()

    async def stop(self) -> None:
        """Stop every command source."""
        for sources in self.commands.values():
            for source in sources:
                await source.stop()

    def files(self, service: str) -> dict[str, tuple[str, str]]:
        """Instance name -> (path, stream) of each file a service's globs match now."""
        out: dict[str, tuple[str, str]] = {}
        for source in self.services[service].logs:
            if source.files:
                for path in sorted(glob.glob(source.files)):
                    if os.path.isfile(path):
                        out.setdefault(Path(path).stem, (path, source.stream))
        return out

    def instances(self, service: str) -> list[str]:
        """The log instances of a service, as they are now."""
        names = list(self.files(service))
        names += [c.name for c in self.commands.get(service, []) if c.name not in names]
        return names

    def readers(self, service: str, only: str | None) -> dict[str, Reader]:
        """A fresh reader for each instance (or only ``only``), not yet opened."""
        out: dict[str, Reader] = {}
        for name, (path, stream) in self.files(service).items():
            if only in (None, name):
                out[name] = FileInstance(name, path, stream)
        for command in self.commands.get(self.services[service].name, []):
            if only in (None, command.name) and command.name not in out:
                out[command.name] = RingReader(command)
        return out
