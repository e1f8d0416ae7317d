"""The client's connection alone: round trips and upload rate against a bare WebSocket peer.

The peer is the ``websockets`` asyncio server in its own process (echo, or a
sink that reports the byte count), so the figures move only with tether's
:class:`~tether.client.connection.Connection`: its framing, masking and I/O
thread. Over ws:// and wss:// (trustme certificates).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.harness import Figure, Results, stop_process
from tether.client.connection import Connection
from tether.client.credential import StaticCredential
from tether.client.dial import DialOptions, dial

SECTION = "Client connection against a bare WebSocket peer (CPU: this process, all threads)"
_PEER = r"""
import asyncio, ssl, sys
from websockets.asyncio.server import serve

async def handler(ws):
    if "sink" in ws.request.path:
        total = 0
        async for message in ws:
            if isinstance(message, str):
                await ws.send(str(total))
                total = 0
            else:
                total += len(message)
    else:
        async for message in ws:
            await ws.send(message)

async def main():
    tls = None
    if len(sys.argv) > 2:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[1], sys.argv[2])
    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None,
                     ssl=tls, ping_interval=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


@contextlib.contextmanager
def peer(tls: bool) -> Iterator[tuple[str, DialOptions]]:
    """The peer process; yields the gateway URL and the dial options that trust it."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-client-") as tmp:
        args: list[str] = []
        ca_file = None
        if tls:
            from bench.tether_forward import tls_files

            chain, key, ca_file = tls_files(Path(tmp))
            args = [str(chain), str(key)]
        proc = subprocess.Popen([sys.executable, "-c", _PEER, *args], stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            scheme = "wss" if tls else "ws"
            yield (f"{scheme}://127.0.0.1:{port}",
                   DialOptions(ca_cert=str(ca_file) if ca_file else None,
                               keepalive_interval=30, keepalive_timeout=75))
        finally:
            stop_process(proc)


def connect(url: str, options: DialOptions, mode: str) -> Connection:
    """A port-forward dial to the peer; ``mode`` is ``echo`` or ``sink``."""
    return dial(url, "port-forward", {"service": mode}, StaticCredential("bench"), options)


def round_trip(conn: Connection, count: int, size: int = 64) -> tuple[float, float]:
    """Microseconds per ``size``-byte message echoed back: wall clock, and this process's CPU."""
    message = b"x" * size
    conn.send_binary(message)
    conn.recv()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        conn.send_binary(message)
        conn.recv()
    return ((time.perf_counter() - start) / count * 1e6,
            (time.process_time() - cpu) / count * 1e6)


def upload(conn: Connection, size: int, frame: int = 64 * 1024) -> tuple[float, float]:
    """Sending ``size`` bytes in ``frame``-byte messages until the sink has them: MiB/s, and
    this process's CPU milliseconds per MiB."""
    payload = bytes(frame)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(size // frame):
        conn.send_binary(payload)
    conn.send_text("done")
    answer = conn.recv()
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    if answer is None or int(answer.data) != size // frame * frame:
        raise RuntimeError(f"the sink counted {answer!r}")
    mib = size / 2**20
    return mib / elapsed, used / mib * 1e3


def run(results: Results, runs: int, quick: bool = False) -> None:
    """64-byte round trips and 64 KiB uploads over ws:// and wss://, wall clock and CPU."""
    count, size = (200, 16 << 20) if quick else (2000, 256 << 20)
    for tls in (False, True):
        scheme = "wss://" if tls else "ws://"
        rtt = results.add(Figure(f"64-byte round trip, {scheme}", "µs"), SECTION)
        rtt_cpu = results.add(Figure(f"client CPU per round trip, {scheme}", "µs"), SECTION)
        rate = results.add(Figure(f"upload in 64 KiB messages, {scheme}", "MiB/s",
                                  higher_is_better=True), SECTION)
        rate_cpu = results.add(Figure(f"client CPU per MiB uploaded, {scheme}", "ms"), SECTION)
        with peer(tls) as (url, options):
            with connect(url, options, "echo") as conn:
                for _ in range(runs):
                    wall, cpu = round_trip(conn, count)
                    rtt.samples.append(wall)
                    rtt_cpu.samples.append(cpu)
            with connect(url, options, "sink") as conn:
                for _ in range(runs):
                    mib_s, ms = upload(conn, size)
                    rate.samples.append(mib_s)
                    rate_cpu.samples.append(ms)
