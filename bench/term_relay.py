"""The floor of a remote terminal written in Python: a bare server and client, no WebSocket.

``python -m bench.term_relay serve`` prints its port and, for each connection,
runs the command line it is sent (one line, then bytes both ways) in a new pty
set raw, as ``ssh -tt`` from a raw terminal gets it; ``python -m bench.term_relay
PORT COMMAND...`` is the client: its terminal's bytes go to the server and the
pty's come back to its stdout. Both copy in their event loop's read callbacks
(uvloop's when installed, as the gateway uses). Beside ``ssh -tt`` and ``tether
shell`` (bench.shell) they show what a Python terminal costs here before any
framing, session or thread of tether's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tty
from collections.abc import Iterator
from typing import cast

from bench.harness import stop_process
from bench.relay import nodelay
from tether.gateway.serve import new_event_loop


class _Terminal(asyncio.Protocol):
    """The server's side of one connection: the first line is the command; then a pty."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.master = -1
        self.proc: subprocess.Popen[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's too
        nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.master >= 0:
            os.write(self.master, data)
            return
        self.head += data
        if b"\n" in self.head:
            line, rest = self.head.split(b"\n", 1)
            self._start(line.decode())
            if rest:
                os.write(self.master, rest)

    def _start(self, command: str) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True)
        os.close(slave)
        asyncio.get_running_loop().add_reader(self.master, self._output)

    def _output(self) -> None:
        assert self.transport is not None
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the command and everything it started are gone
            data = b""
        if data:
            self.transport.write(data)
            return
        asyncio.get_running_loop().remove_reader(self.master)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.master >= 0:
            asyncio.get_running_loop().remove_reader(self.master)  # False if already removed
            os.close(self.master)
        if self.proc is not None:
            stop_process(self.proc)


async def _serve() -> None:
    server = await asyncio.get_running_loop().create_server(_Terminal, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class _Client(asyncio.Protocol):
    """The client's side: the pty's bytes to stdout (non-blocking, as the loop made stdin's
    terminal: what does not fit waits, and reading from the server pauses); the end of the
    connection ends it once stdout has everything."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.waiting = bytearray()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        nodelay(transport)

    def data_received(self, data: bytes) -> None:
        self.waiting += data
        self._flush()

    def _flush(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(BlockingIOError):
            del self.waiting[:os.write(1, self.waiting)]
        if self.waiting:
            if not self.transport.is_reading():
                return
            self.transport.pause_reading()
            loop.add_writer(1, self._flush)
            return
        if not self.transport.is_reading():
            loop.remove_writer(1)
            self.transport.resume_reading()
        if self.lost and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.waiting and not self.done.done():
            self.done.set_result(None)


async def _client(port: int, command: list[str]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Client(done), "127.0.0.1", port)
    transport.write(" ".join(command).encode() + b"\n")  # as ssh joins its arguments

    def keys() -> None:
        data = os.read(0, 65536)
        if data:
            transport.write(data)
        else:
            loop.remove_reader(0)

    loop.add_reader(0, keys)
    await done


def main() -> None:
    """``serve``, or ``PORT COMMAND...``."""
    with contextlib.suppress(KeyboardInterrupt), \
            asyncio.Runner(loop_factory=new_event_loop) as runner:
        if sys.argv[1] == "serve":
            runner.run(_serve())
        else:
            runner.run(_client(int(sys.argv[1]), sys.argv[2:]))


@contextlib.contextmanager
def server() -> Iterator[list[str]]:
    """A server process; yields the client's command prefix (append the remote command)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.term_relay", "serve"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield [sys.executable, "-m", "bench.term_relay", str(port)]
    finally:
        stop_process(proc)


if __name__ == "__main__":
    main()
