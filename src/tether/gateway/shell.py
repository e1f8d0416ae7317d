"""``/v1/shell``: a process on a pseudo-terminal, or on pipes, bridged to one WebSocket.

With a tty the process becomes a session leader with the terminal as its
controlling tty (a short ``python -c`` prelude calls ``login_tty`` and execs
the command: ``fork`` in a threaded gateway is not safe for anything more).
Output is read in 64 KiB pieces, and the next read waits until the previous
frame is handed to the socket, so a slow client slows the process, not the
gateway's memory. With ``tether.v2`` the same :class:`ShellProcess` is the
:class:`ShellBackend` of a resumable session (``resumable.py``), which reads
it into a bounded replay buffer instead.

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
import sys
import termios
import uuid
from collections.abc import Awaitable, Callable, Sequence

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tether.gateway.config import ServiceConfig
from tether.gateway.session import Ending, close_with, decode_or_close
from tether.protocol import (
    CloseCode,
    Eof,
    Exit,
    ProtocolViolation,
    Resize,
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


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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


class FdReader:
    """Reads a non-blocking fd (a pty's master) in the event loop.

    The fd stays registered with the loop while reads wait for it, so a quiet
    terminal costs no registration per keystroke; it is unregistered while
    the output waits for the socket, so a slow client slows the process.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._watching = False

    def _readable(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        else:  # no read is waiting: stop watching until one does
            self._unwatch()

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_reader(self.fd)
            self._watching = False

    async def read(self, size: int) -> bytes:
        """Wait for bytes, then take all that are ready, up to ``size``; b"" at the end.

        A pty gives at most a few KiB per read: after a full piece, reading on
        while more is ready makes fewer, larger frames without waiting for
        anything (a keystroke's echo goes out at once).
        """
        while (data := _read_now(self.fd, size)) is None:
            if not self._watching:
                self._loop.add_reader(self.fd, self._readable)
                self._watching = True
            self._waiter = self._loop.create_future()
            await self._waiter
        chunks = [data]
        total = len(data)
        while len(data) >= COALESCE and total < size and (data := _read_now(self.fd, size - total)):
            chunks.append(data)
            total += len(data)
        return b"".join(chunks) if len(chunks) > 1 else chunks[0]

    def close(self) -> None:
        """Stop watching the fd (before it is closed)."""
        self._unwatch()


async def write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a non-blocking fd, waiting while it is full."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
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


class ShellProcess:
    """One process, on a pty or on pipes: started, fed, resized, waited for and reaped."""

    def __init__(self, service: ServiceConfig, instance: str, argv: list[str], *, tty: bool,
                 cols: int, rows: int) -> None:
        self.service = service
        self.instance = instance
        self.argv = argv
        self.tty = tty
        self.cols, self.rows = cols, rows
        self.process: asyncio.subprocess.Process | None = None
        self.master: int | None = None
        self.output: FdReader | None = None

    async def spawn(self) -> None:
        """Start the process; raises OSError when it cannot start."""
        env = process_env(self.service, self.instance, tty=self.tty)
        cwd = self.service.cwd
        if not self.tty:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env, start_new_session=True,
                limit=READ_SIZE)
            return
        master, slave = os.openpty()
        try:
            set_window(master, self.cols, self.rows)
            os.set_blocking(master, False)
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", _LOGIN_TTY, *self.argv,
                stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.master = master

    def outputs(self) -> list[tuple[Stream, Callable[[int], Awaitable[bytes]]]]:
        """The process's output streams, each with a read(at most) callable."""
        proc = self.process
        assert proc is not None
        if self.master is not None:
            self.output = self.output or FdReader(self.master)
            return [(Stream.STDOUT, self.output.read)]
        assert proc.stdout is not None and proc.stderr is not None
        return [(Stream.STDOUT, proc.stdout.read), (Stream.STDERR, proc.stderr.read)]

    async def wait(self) -> int:
        """The exit status, once the process has exited."""
        assert self.process is not None
        return exit_status(await self.process.wait())

    async def write(self, data: bytes) -> None:
        """Stdin; a process that stopped reading loses it quietly, as on a terminal."""
        proc = self.process
        assert proc is not None
        with contextlib.suppress(OSError, ConnectionError):
            if self.master is not None:
                await write_fd(self.master, data)
            elif proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.write(data)
                await proc.stdin.drain()

    async def eof(self) -> None:
        """End of stdin: the terminal's EOF character with a tty, else close the pipe."""
        proc = self.process
        assert proc is not None
        if self.master is not None:
            try:
                eof_char = termios.tcgetattr(self.master)[6][termios.VEOF]
            except termios.error:
                eof_char = b"\x04"
            await self.write(eof_char if isinstance(eof_char, bytes) else bytes([eof_char]))
        elif proc.stdin is not None:
            proc.stdin.close()

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's new size, and SIGWINCH to its process group (no-op on pipes)."""
        if self.master is not None:
            set_window(self.master, cols, rows)
            self._signal(signal.SIGWINCH)

    def _signal(self, signum: int) -> None:
        proc = self.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)

    async def cleanup(self) -> None:
        """Hang up the process group (as a closing terminal would); kill it if it stays."""
        proc = self.process
        if self.output is not None:
            self.output.close()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        for signum in (signal.SIGHUP, signal.SIGCONT):
            self._signal_group(signum)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), 1.0)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 1.0)
        await end_session_members(proc.pid)

    def _signal_group(self, signum: int) -> None:
        proc = self.process
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)


async def drain(pumps: Sequence[asyncio.Task[None]], progress: Callable[[], int],
                busy: Callable[[], bool] = lambda: False) -> None:
    """After the process exited: wait for the output still on its way, while it keeps coming
    (``progress`` changes) or a pump waits for room to put it (``busy``)."""
    if not pumps:
        return
    for _ in range(10_000):
        before = progress()
        _, pending = await asyncio.wait(pumps, timeout=DRAIN_IDLE)
        if not pending or (progress() == before and not busy()):
            return


class ShellSession:
    """tether.v1: one process and the pumps between it and the WebSocket."""

    def __init__(self, ws: ServerConnection, process: ShellProcess) -> None:
        self.ws = ws
        self.shell = process
        self.progress = 0  # bytes sent so far, to tell a busy drain from an idle one

    async def run(self) -> None:
        """Bridge until the process exits (exit message, close 1000) or the client goes."""
        shell = self.shell
        await self.ws.send(encode_control(SessionStarted(uuid.uuid4().hex, shell.instance)))
        pumps = [asyncio.create_task(self._pump(read, stream))
                 for stream, read in shell.outputs()]
        inbound = asyncio.create_task(self._input())
        waiter = asyncio.create_task(shell.wait())
        try:
            await asyncio.wait({waiter, inbound}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                return  # the client went away or broke the protocol: finally kills the process
            await drain(pumps, lambda: self.progress)
            await self.ws.send(encode_control(Exit(waiter.result())))
            await self.ws.close(CloseCode.NORMAL, "")
        except ConnectionClosed:
            pass
        finally:
            for task in (*pumps, inbound, waiter):
                task.cancel()
            for task in (*pumps, inbound):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await shell.cleanup()

    async def _pump(self, read: Callable[[int], Awaitable[bytes]], stream: Stream) -> None:
        while True:
            data = await read(READ_SIZE)
            if not data:
                return
            await self.ws.send(encode_shell_frame(stream, data))
            self.progress += len(data)

    async def _input(self) -> None:
        """Client to process: stdin frames, resize and eof; returns when the client is gone."""
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                if isinstance(message, str):
                    control = await decode_or_close(self.ws, message)
                    if control is None or not await self._control(control):
                        return
                    continue
                try:
                    data = stdin_payload(message)
                except ProtocolViolation as exc:
                    await close_with(self.ws, CloseCode.PROTOCOL_ERROR, "protocol-error", str(exc))
                    return
                await self.shell.write(data)

    async def _control(self, control: object) -> bool:
        if isinstance(control, Resize):
            self.shell.resize(control.cols, control.rows)
            return True
        if isinstance(control, Eof):
            await self.shell.eof()
            return True
        await close_with(self.ws, CloseCode.UNSUPPORTED_DATA, "protocol-error",
                         f"{type(control).__name__} is not a message a client sends")
        return False


def stdin_payload(frame: bytes) -> bytes:
    """The data of a client's shell frame; raises ProtocolViolation unless it is stdin."""
    stream, data = decode_shell_frame(frame)
    if stream is not Stream.STDIN:
        raise ProtocolViolation("a client may send only stdin (0x00) frames")
    return data


class ShellBackend:
    """tether.v2: a shell process as the backend of a resumable session."""

    evicts_when_detached = True  # the process keeps running while detached

    def __init__(self, process: ShellProcess) -> None:
        self.shell = process

    def outputs(self) -> list[tuple[int, Callable[[int], Awaitable[bytes]]]]:
        return [(int(stream), read) for stream, read in self.shell.outputs()]

    def frame(self, tag: int, data: bytes) -> bytes:
        return encode_shell_frame(Stream(tag), data)

    def payload(self, frame: bytes) -> bytes:
        return stdin_payload(frame)

    async def write(self, data: bytes) -> None:
        await self.shell.write(data)

    async def eof(self) -> None:
        await self.shell.eof()

    def resize(self, cols: int, rows: int) -> bool:
        self.shell.resize(cols, rows)
        return True

    async def finished(self, pumps: Sequence[asyncio.Task[None]], progress: Callable[[], int],
                       busy: Callable[[], bool]) -> Ending:
        status = await self.shell.wait()
        await drain(pumps, progress, busy)
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


async def serve_shell(ws: ServerConnection, service: ServiceConfig, instance: str,
                      argv: list[str], *, tty: bool, cols: int, rows: int) -> None:
    """Serve one tether.v1 ``/v1/shell`` session."""
    process = ShellProcess(service, instance, argv, tty=tty, cols=cols, rows=rows)
    if await start_shell(ws, process):
        await ShellSession(ws, process).run()
