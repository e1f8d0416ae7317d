"""``/v1/shell``: a process on a pseudo-terminal, or on pipes, bridged to one WebSocket.

With a tty the process becomes a session leader with the terminal as its
controlling tty (a short ``python -c`` prelude calls ``login_tty`` and execs
the command: ``fork`` in a threaded gateway is not safe for anything more).
Output is read in the event loop's callbacks (a reader on the pty, a
subprocess protocol on pipes) straight into the session's data path
(``stream.py``), which stops reading while the client is behind, so a slow
client slows the process, not the gateway's memory. :class:`ShellBackend`
serves tether.v1 and tether.v2 sessions alike.

The environment of the process is small on purpose: PATH, HOME, USER, LANG,
TERM, the service's ``env``, and TETHER_SERVICE / TETHER_INSTANCE.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import signal
import struct
import subprocess
import sys
import termios
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

from websockets.asyncio.server import ServerConnection

from tether import ttymodes
from tether.gateway.config import ServiceConfig
from tether.gateway.connection import GatewayConnection
from tether.gateway.session import Ending, Output, ShellRequest, close_with
from tether.gateway.stream import serve_stream
from tether.protocol import (
    CloseCode,
    Exit,
    ProtocolViolation,
    SessionStarted,
    Stream,
    decode_shell_frame,
    encode_control,
    encode_shell_frame,
    format_close_reason,
)

log = logging.getLogger("tether.gateway.shell")
READ_SIZE = 64 * 1024
COALESCE = 1024  # after a read of this much, read on while more is ready
DRAIN_IDLE = 0.5  # after the process exits, wait this long for output still on its way

_LOGIN_TTY = (
    "import os,sys\n"
    "os.login_tty(0)\n"
    "try:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write(f'tether: cannot run {sys.argv[1]}: {e.strerror}\\r\\n')\n"
    "    os._exit(126 if e.errno == 13 else 127)\n"
)


def process_env(service: ServiceConfig, instance: str, *, tty: bool) -> dict[str, str]:
    """The environment of a shell process."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL",
                                           "TMPDIR") if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["TERM"] = "xterm-256color" if tty else "dumb"
    env.update(service.env)
    env["TETHER_SERVICE"] = service.name
    env["TETHER_INSTANCE"] = instance
    return env


def exit_status(returncode: int) -> int:
    """The exit status a shell would report: the code, or 128 + signal number."""
    return 128 - returncode if returncode < 0 else returncode


def _read_now(fd: int, size: int) -> bytes | None:
    """At most ``size`` bytes ready on a non-blocking fd; None when none are; b"" at the end
    (EIO on a pty is the end)."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def _read_ready(fd: int, size: int) -> bytes | None:
    """Take all that is ready, up to ``size`` (None: nothing; b"": the end). A pty gives at
    most a few KiB per read: after a full piece, reading on while more is ready makes fewer,
    larger frames without waiting for anything (a keystroke's echo goes out at once)."""
    data = _read_now(fd, size)
    if not data:
        return data
    chunks = [data]
    total = len(data)
    while len(data) >= COALESCE and total < size and (data := _read_now(fd, size - total)):
        chunks.append(data)
        total += len(data)
    return b"".join(chunks) if len(chunks) > 1 else chunks[0]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def write_fd(fd: int, view: memoryview) -> None:
    """Write all of ``view`` to a non-blocking fd, waiting while it is full."""
    loop = asyncio.get_running_loop()
    while view:
        try:
            view = view[os.write(fd, view):]
            continue
        except BlockingIOError:
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_writer(fd)


def session_members(sid: int) -> list[int]:
    """The processes still in session ``sid`` (Linux ``/proc``; empty elsewhere)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    members = []
    for name in names:
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(name)) == sid:
                    members.append(int(name))
    return members


async def end_session_members(sid: int) -> None:
    """Hang up what a shell left running in its session (background jobs have their own
    process groups, which a hangup of the shell's group misses); kill what stays."""
    for signum in (signal.SIGHUP, signal.SIGCONT, signal.SIGKILL):
        members = session_members(sid)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        if signum == signal.SIGCONT:
            for _ in range(20):
                await asyncio.sleep(0.05)
                if not session_members(sid):
                    return


def set_window(fd: int, cols: int, rows: int) -> None:
    """Set a terminal's size (TIOCSWINSZ)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _Process(asyncio.SubprocessProtocol):
    """The process's callbacks: its pipes' output, their ends, its exit, stdin's flow."""

    def __init__(self, shell: ShellProcess) -> None:
        self.shell = shell

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        self.shell.deliver(Stream.STDERR if fd == 2 else Stream.STDOUT, data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in (1, 2):
            self.shell.ended(Stream.STDERR if fd == 2 else Stream.STDOUT)

    def process_exited(self) -> None:
        self.shell.exited()

    def pause_writing(self) -> None:
        self.shell.stdin_full(True)

    def resume_writing(self) -> None:
        self.shell.stdin_full(False)


class ShellProcess:
    """One process, on a pty or on pipes: started, fed, read, resized, waited for, reaped."""

    def __init__(self, service: ServiceConfig, instance: str, request: ShellRequest) -> None:
        self.service = service
        self.instance = instance
        self.argv = request.argv
        self.tty = request.tty
        self.cols, self.rows = request.cols, request.rows
        self.modes = request.modes
        self.transport: asyncio.SubprocessTransport | None = None
        self.master: int | None = None
        self._output: Output | None = None
        self._early: list[tuple[int, bytes]] = []  # read before the session started
        self._loop = asyncio.get_running_loop()
        self._status: asyncio.Future[int] = self._loop.create_future()
        self._open: dict[Stream, asyncio.Future[None]] = {}  # output streams not yet ended
        self._reading = False  # the pty's reader is registered
        self._paused = False
        self._stdin_room: asyncio.Future[None] | None = None

    async def spawn(self) -> None:
        """Start the process; raises OSError when it cannot start."""
        env = process_env(self.service, self.instance, tty=self.tty)
        cwd = self.service.cwd
        if not self.tty:
            self._open = {stream: self._loop.create_future()
                          for stream in (Stream.STDOUT, Stream.STDERR)}
            self.transport, _ = await self._loop.subprocess_exec(
                lambda: _Process(self), *self.argv, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env,
                start_new_session=True)
            return
        master, slave = os.openpty()
        try:
            set_window(master, self.cols, self.rows)
            if self.modes is not None:
                ttymodes.apply(slave, self.modes)
            os.set_blocking(master, False)
            self.transport, _ = await self._loop.subprocess_exec(
                lambda: _Process(self), sys.executable, "-I", "-S", "-c", _LOGIN_TTY,
                *self.argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.master = master
        self._open = {Stream.STDOUT: self._loop.create_future()}

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return None if self.transport is None else self.transport.get_pid()

    # --- output -----------------------------------------------------------------------------

    def start(self, output: Output) -> None:
        """Hand output to ``output`` from now on (what came before first)."""
        self._output = output
        early, self._early = self._early, []
        for tag, data in early:
            output.data(tag, data)
        self.resume_output()

    def deliver(self, stream: Stream, data: bytes) -> None:
        """Output read by a callback."""
        if self._output is None:
            self._early.append((int(stream), data))
        else:
            self._output.data(int(stream), data)

    def ended(self, stream: Stream) -> None:
        """An output stream reached its end."""
        future = self._open.get(stream)
        if future is not None and not future.done():
            future.set_result(None)

    def exited(self) -> None:
        """The process exited (its output may still be on its way)."""
        transport = self.transport
        code = transport.get_returncode() if transport is not None else None
        if not self._status.done():
            self._status.set_result(exit_status(code if code is not None else 0))

    def _readable(self) -> None:
        master = self.master
        if master is None:
            return
        try:
            data = _read_ready(master, READ_SIZE)
        except OSError:
            data = b""
        if data is None:
            return
        if not data:
            self._unwatch()
            self.ended(Stream.STDOUT)
            return
        self.deliver(Stream.STDOUT, data)

    def _unwatch(self) -> None:
        if self._reading and self.master is not None:
            self._loop.remove_reader(self.master)
        self._reading = False

    def pause_output(self) -> None:
        """Stop reading (the process blocks once its pipe or pty is full)."""
        self._paused = True
        if self.master is not None:
            self._unwatch()
        else:
            self._pipes("pause_reading")

    def resume_output(self) -> None:
        """Read again."""
        self._paused = False
        if self.master is not None:
            done = self._open[Stream.STDOUT].done()
            if not self._reading and not done:
                self._loop.add_reader(self.master, self._readable)
                self._reading = True
        else:
            self._pipes("resume_reading")

    def _pipes(self, action: str) -> None:
        transport = self.transport
        if transport is None:
            return
        for fd in (1, 2):
            pipe = transport.get_pipe_transport(fd)
            if pipe is not None and not pipe.is_closing():
                getattr(pipe, action)()

    async def drained(self, progress: Callable[[], int], busy: Callable[[], bool]) -> None:
        """After the process exited: wait for the output still on its way, while it keeps
        coming (``progress`` changes) or waits for room (``busy``)."""
        open_streams = [future for future in self._open.values() if not future.done()]
        for _ in range(10_000):
            if not open_streams:
                return
            before = progress()
            _, pending = await asyncio.wait(open_streams, timeout=DRAIN_IDLE)
            open_streams = list(pending)
            if pending and progress() == before and not busy():
                return

    async def wait(self) -> int:
        """The exit status, once the process has exited."""
        return await asyncio.shield(self._status)

    # --- input ------------------------------------------------------------------------------

    def stdin_full(self, full: bool) -> None:
        """The stdin pipe's buffer is over (or back under) its limit."""
        if full and self._stdin_room is None:
            self._stdin_room = self._loop.create_future()
        elif not full and self._stdin_room is not None:
            room, self._stdin_room = self._stdin_room, None
            if not room.done():
                room.set_result(None)

    def write(self, data: bytes) -> Awaitable[None] | None:
        """Stdin; a process that stopped reading loses it quietly, as on a terminal.
        None when written whole now."""
        if self.master is not None:
            try:
                written = os.write(self.master, data)
            except BlockingIOError:
                written = 0
            except OSError:
                return None
            if written == len(data):
                return None
            return self._write_rest(self.master, memoryview(data)[written:])
        pipe = self._stdin()
        if pipe is None:
            return None
        pipe.write(data)
        return None if self._stdin_room is None else self._stdin_room

    async def _write_rest(self, fd: int, rest: memoryview) -> None:
        with contextlib.suppress(OSError):
            await write_fd(fd, rest)

    def _stdin(self) -> asyncio.WriteTransport | None:
        transport = self.transport
        pipe = None if transport is None else transport.get_pipe_transport(0)
        if pipe is None or pipe.is_closing():
            return None
        return cast(asyncio.WriteTransport, pipe)

    def eof(self) -> Awaitable[None] | None:
        """End of stdin: the terminal's EOF character with a tty, else close the pipe."""
        if self.master is not None:
            try:
                eof_char = termios.tcgetattr(self.master)[6][termios.VEOF]
            except termios.error:
                eof_char = b"\x04"
            return self.write(eof_char if isinstance(eof_char, bytes) else bytes([eof_char]))
        pipe = self._stdin()
        if pipe is not None:
            pipe.close()
        return None

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's new size, and SIGWINCH to its process group (no-op on pipes)."""
        if self.master is not None:
            set_window(self.master, cols, rows)
            if not self._status.done():
                self._signal_group(signal.SIGWINCH)

    async def cleanup(self) -> None:
        """Hang up the process group (as a closing terminal would); kill it if it stays."""
        if self.master is not None:
            self._unwatch()
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None
        transport = self.transport
        if transport is None:
            return
        pipe = self._stdin()
        if pipe is not None:
            pipe.close()
        for signum in (signal.SIGHUP, signal.SIGCONT):
            self._signal_group(signum)
        try:
            await asyncio.wait_for(self.wait(), 1.0)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(), 1.0)
        await end_session_members(transport.get_pid())
        transport.close()

    def _signal_group(self, signum: int) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)


def stdin_payload(frame: bytes) -> bytes:
    """The data of a client's shell frame; raises ProtocolViolation unless it is stdin."""
    stream, data = decode_shell_frame(frame)
    if stream is not Stream.STDIN:
        raise ProtocolViolation("a client may send only stdin (0x00) frames")
    return data


class ShellBackend:
    """A shell process as the backend of a session (tether.v1 or tether.v2)."""

    evicts_when_detached = True  # the process keeps running while detached

    def __init__(self, process: ShellProcess) -> None:
        self.shell = process

    def start(self, output: Output) -> None:
        self.shell.start(output)

    def pause_output(self) -> None:
        self.shell.pause_output()

    def resume_output(self) -> None:
        self.shell.resume_output()

    def frame(self, tag: int, data: bytes | memoryview) -> bytes | memoryview:
        return encode_shell_frame(Stream(tag), data)

    def payload(self, frame: bytes) -> bytes:
        return stdin_payload(frame)

    def write(self, data: bytes) -> Awaitable[None] | None:
        return self.shell.write(data)

    def eof(self) -> Awaitable[None] | None:
        return self.shell.eof()

    def resize(self, cols: int, rows: int) -> bool:
        self.shell.resize(cols, rows)
        return True

    async def finished(self, progress: Callable[[], int], busy: Callable[[], bool]) -> Ending:
        status = await self.shell.wait()
        await self.shell.drained(progress, busy)
        return Ending(Exit(status))

    def broken(self) -> Ending:
        return Ending(None, CloseCode.INTERNAL_ERROR, format_close_reason(
            "backend-unavailable", f"the shell of service {self.shell.service.name} failed"))

    async def close(self) -> None:
        await self.shell.cleanup()


async def start_shell(ws: ServerConnection, process: ShellProcess) -> bool:
    """Spawn ``process``; False after answering the client when it cannot start (a command
    that is not found exits 127 with a message, as a shell would; anything else closes 1011)."""
    service, argv = process.service, process.argv
    try:
        await process.spawn()
        return True
    except FileNotFoundError as exc:
        if service.cwd is not None and not service.cwd.is_dir():
            log.error("shell of service %s: working directory missing: %s", service.name, exc)
            await close_with(ws, CloseCode.INTERNAL_ERROR, "backend-unavailable",
                             f"the host of service {service.name} cannot start a shell")
            return False
        await ws.send(encode_control(SessionStarted(uuid.uuid4().hex, process.instance)))
        await ws.send(encode_shell_frame(Stream.STDERR,
                                         f"tether: cannot run {argv[0]}: not found\n".encode()))
        await ws.send(encode_control(Exit(127)))
        await ws.close(CloseCode.NORMAL, "")
        return False
    except OSError as exc:
        log.error("shell of service %s did not start: %s", service.name, exc)
        await close_with(ws, CloseCode.INTERNAL_ERROR, "backend-unavailable",
                         f"the host of service {service.name} cannot start a shell")
        return False


async def serve_shell(ws: GatewayConnection, service: ServiceConfig, instance: str,
                      request: ShellRequest, *, request_id: str, close_timeout: float) -> None:
    """Serve one tether.v1 ``/v1/shell`` session."""
    process = ShellProcess(service, instance, request)
    if await start_shell(ws, process):
        await serve_stream(ws, ShellBackend(process),
                           first=SessionStarted(uuid.uuid4().hex, instance),
                           request_id=request_id, endpoint="shell", close_timeout=close_timeout)
