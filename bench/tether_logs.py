"""Logs: records per second through `tether logs` into a pipe, and its memory while following.

A real gateway (``tether gateway serve``, its own process) serves one service
whose log is a prepared file of N records of about 100 bytes. Figures:

- ``tether logs SVC`` (finite stream) into a pipe that the bench reads and
  counts: records/s from start to exit (process start included), and from
  its first byte to its last (the streaming rate);
- the gateway alone, read by a bare WebSocket client that only counts lines
  (the ceiling the gateway sets for any client);
- ``cat`` of the same file into the same kind of pipe (the ceiling of the pipe);
- the peak resident memory of ``tether logs SVC -f`` while it follows records
  appended to the file as it goes (VmHWM from /proc).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.gateway_proc import GatewayProcess, rss_mib, running_gateway
from bench.harness import Figure, Results
from bench.startup import tether_command

SECTION_RATE = "Logs throughput into a pipe (records/s of ~100 bytes, higher is better)"
SECTION_MEMORY = "Logs memory while following (MiB, lower is better)"
CHUNK = 1 << 20


def record_line(i: int) -> bytes:
    """One ~100-byte log line with its own timestamp (as services write them)."""
    return (b"2026-01-02T03:04:05.%06dZ INFO request %09d handled in 12ms by worker-7 "
            b"path=/api/v1/items status=200\n" % (i % 1_000_000, i))


def write_records(path: Path, start: int, count: int) -> None:
    """Append records ``start .. start+count`` to ``path``."""
    with path.open("ab") as handle:
        for first in range(start, start + count, 10_000):
            handle.write(b"".join(record_line(i)
                                  for i in range(first, min(first + 10_000, start + count))))


@contextlib.contextmanager
def gateway(directory: Path) -> Iterator[GatewayProcess]:
    """A gateway process for service ``svc`` (logs ``directory/logs/*.log``), a Viewer token."""
    logs = directory / "logs"
    logs.mkdir(exist_ok=True)
    config = (f'[gateway]\nrate_limit = {{ rate = 1000.0, burst = 1000 }}\n\n'
              f'[services.svc]\nshell = "/bin/sh"\n\n[[services.svc.logs]]\n'
              f'files = "{logs}/*.log"\n')
    with running_gateway(directory, config, role="Viewer") as gw:
        yield gw


@dataclass
class PipeRun:
    """One command read through a pipe to its end."""

    lines: int
    total: float  # seconds from start to exit
    streaming: float  # seconds from the first byte to the last


def read_pipe(argv: list[str], env: dict[str, str] | None = None,
              timeout: float = 600.0) -> PipeRun:
    """Run ``argv`` with stdout into a pipe; count the lines it writes."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines, first = 0, None
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, CHUNK):
        if first is None:
            first = time.perf_counter()
        lines += chunk.count(b"\n")
    end = time.perf_counter()
    code = proc.wait(timeout)
    if code != 0:
        raise RuntimeError(f"{argv[:4]} exited {code}")
    return PipeRun(lines, end - start, end - (first or start))


def gateway_alone(gw: GatewayProcess, expected: int) -> float:
    """Records/s of a bare websocket-client reader of the finite stream (no printing)."""
    import websocket

    start = time.perf_counter()
    ws = websocket.create_connection(
        gw.url.replace("http", "ws", 1) + "/v1/logs?service=svc&follow=0",
        header=[f"Authorization: Bearer {gw.token}"], subprotocols=["tether.v1"],
        skip_utf8_validation=True)
    lines = 0
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            lines += data.count(b"\n")
    finally:
        ws.close()
    if lines != expected:
        raise RuntimeError(f"the gateway sent {lines} records, not {expected}")
    return lines / (time.perf_counter() - start)


def record_frames(gw: GatewayProcess) -> list[bytes]:
    """The text frames of the gateway's finite stream, as they came."""
    import websocket

    ws = websocket.create_connection(
        gw.url.replace("http", "ws", 1) + "/v1/logs?service=svc&follow=0",
        header=[f"Authorization: Bearer {gw.token}"], subprotocols=["tether.v1"],
        skip_utf8_validation=True)
    frames: list[bytes] = []
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return frames
            frames.append(data)
    finally:
        ws.close()


@contextlib.contextmanager
def replay_peer(frames: list[bytes]) -> Iterator[str]:
    """A loopback WebSocket peer that answers any upgrade, sends ``frames`` at once, closes 1000.

    It stands for a gateway infinitely faster than ours: what is left is the client's cost.
    """
    import base64
    import hashlib
    import socket
    import struct

    def frame(opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        head = (struct.pack("!BB", 0x80 | opcode, n) if n < 126 else
                struct.pack("!BBH", 0x80 | opcode, 126, n) if n < 65536 else
                struct.pack("!BBQ", 0x80 | opcode, 127, n))
        return head + payload

    wire = b"".join(frame(0x1, f) for f in frames) + frame(0x8, struct.pack("!H", 1000))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
                accept = base64.b64encode(hashlib.sha1(
                    (key.group(1) if key else b"") + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                ).digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Protocol: tether.v1\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + wire)
                with contextlib.suppress(OSError):
                    conn.settimeout(5)
                    while conn.recv(65536):
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def follow_memory(directory: Path, gw: GatewayProcess, path: Path, start: int, count: int,
                  timeout: float) -> tuple[float, float, float]:
    """RSS after a tenth and peak RSS (MiB) of `tether logs -f` following ``count`` appended
    records, and its records/s."""
    argv = [*tether_command(), "logs", "svc", "-f", "--tail", "0"]
    proc = subprocess.Popen(argv, env=gw.client_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen = [0]

    def drain() -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, CHUNK):
            seen[0] += chunk.count(b"\n")

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        time.sleep(1.0)  # connected, at the end of the file
        began = time.perf_counter()
        writer = threading.Thread(target=write_records, args=(path, start, count), daemon=True)
        writer.start()
        deadline = time.monotonic() + timeout
        early = float("nan")
        while seen[0] < count and time.monotonic() < deadline and proc.poll() is None:
            if early != early and seen[0] >= count // 10:
                early = rss_mib(proc.pid, "VmRSS")
            time.sleep(0.1)
        elapsed = time.perf_counter() - began
        peak = rss_mib(proc.pid, "VmHWM")
        if seen[0] < count:
            raise RuntimeError(f"followed {seen[0]} of {count} records in {timeout:.0f} s")
        return early, peak, count / elapsed
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(5)


def run(results: Results, runs: int, quick: bool = False) -> None:
    """Throughput of a finite stream, the gateway and cat beside it, and memory while following."""
    count = 200_000 if quick else 1_000_000
    follow_count = 200_000 if quick else 10_000_000
    rate_goal = "200,000 records/s"
    with tempfile.TemporaryDirectory(prefix="tether-bench-logs-") as tmp:
        directory = Path(tmp)
        (directory / "logs").mkdir()
        path = directory / "logs" / "svc-1.log"
        write_records(path, 0, count)
        with gateway(directory) as gw:
            env = gw.client_env()
            argv = [*tether_command(), "logs", "svc"]
            read_pipe(argv, env)  # warm the page cache and the bytecode
            total = results.add(Figure("tether logs (start to exit)", "records/s",
                                       higher_is_better=True, peer="cat", goal=rate_goal),
                                SECTION_RATE)
            streaming = results.add(Figure("tether logs (first to last byte)", "records/s",
                                           higher_is_better=True, peer="gateway alone",
                                           goal=rate_goal), SECTION_RATE)
            alone = results.add(Figure("gateway alone", "records/s", higher_is_better=True,
                                       note="a bare websocket-client reader that only counts "
                                            "lines: the gateway's own ceiling"),
                                SECTION_RATE)
            cat = results.add(Figure("cat", "records/s", higher_is_better=True,
                                     note=f"{count:,} records of {len(record_line(0))} bytes; "
                                          "`cat` of the file into the same pipe"),
                              SECTION_RATE)
            for _ in range(runs):
                done = read_pipe(argv, env)
                if done.lines != count:
                    raise RuntimeError(f"tether logs printed {done.lines} of {count} records")
                total.samples.append(count / done.total)
                streaming.samples.append(count / done.streaming)
                alone.samples.append(gateway_alone(gw, count))
                cat.samples.append(count / read_pipe(["cat", str(path)]).total)

            frames = record_frames(gw)
            with replay_peer(frames) as peer_url:
                replay_env = {**env, "TETHER_GATEWAY": peer_url}
                replay = results.add(Figure("tether logs from a replaying peer", "records/s",
                                            higher_is_better=True, goal=rate_goal,
                                            note="the gateway's frames replayed by a loopback "
                                                 "peer that sends them all at once: the "
                                                 "client's own rate (first to last byte)"),
                                     SECTION_RATE)
                for _ in range(runs):
                    done = read_pipe(argv, replay_env)
                    if done.lines != count:
                        raise RuntimeError(f"printed {done.lines} of {count} replayed records")
                    replay.samples.append(count / done.streaming)

            memory = results.add(Figure("tether logs -f, peak RSS", "MiB",
                                        goal="flat, under 60 MiB"), SECTION_MEMORY)
            follow_rate = results.add(Figure("tether logs -f while appending", "records/s",
                                             higher_is_better=True,
                                             note=f"following {follow_count:,} records "
                                                  "appended as it runs"), SECTION_MEMORY)
            early, peak, rate = follow_memory(directory, gw, path, count, follow_count,
                                              timeout=120 if quick else 900)
            memory.samples.append(peak)
            memory.note = (f"resident {early:.1f} MiB after a tenth of the records, "
                           f"peak {peak:.1f} MiB at the end")
            follow_rate.samples.append(rate)
            path.unlink()  # the follow's file can be large


if __name__ == "__main__":
    results = Results()
    run(results, 1, quick="--quick" in sys.argv)
    print(results.markdown(quick="--quick" in sys.argv, runs=1))
