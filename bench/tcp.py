"""Loopback TCP targets (a counting sink and an echo) and the two forward measurements."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

CHUNK = 1 << 20
_ACK = b"ok"


def _serve(handler_name: str) -> tuple[socket.socket, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    handler = _sink if handler_name == "sink" else _echo

    def accept_loop() -> None:
        while listener.fileno() >= 0:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    return listener, thread


def _sink(conn: socket.socket) -> None:
    """Read an 8-byte length, then that many bytes, then answer ``ok``."""
    with conn, contextlib.suppress(ConnectionError, TimeoutError):
        conn.settimeout(120)
        header = _read_exact(conn, 8)
        (left,) = struct.unpack("!Q", header)
        buf = bytearray(CHUNK)
        while left > 0:
            n = conn.recv_into(buf, min(CHUNK, left))
            if n == 0:
                return
            left -= n
        conn.sendall(_ACK)


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(120)
        while data := conn.recv(65536):
            conn.sendall(data)


def _read_exact(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        piece = conn.recv(n - len(out))
        if not piece:
            raise ConnectionError(f"peer closed after {len(out)} of {n} bytes")
        out += piece
    return bytes(out)


@contextlib.contextmanager
def target(kind: str) -> Iterator[int]:
    """A ``sink`` or ``echo`` server on 127.0.0.1; yields its port."""
    listener, thread = _serve(kind)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(timeout=2)


def throughput(port: int, size: int, timeout: float = 300.0) -> float:
    """MiB/s of sending ``size`` bytes to a sink through ``port``, until its ack arrives."""
    payload = memoryview(bytes(CHUNK))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        start = time.perf_counter()
        sock.sendall(struct.pack("!Q", size))
        left = size
        while left > 0:
            n = min(CHUNK, left)
            sock.sendall(payload[:n])
            left -= n
        if _read_exact(sock, len(_ACK)) != _ACK:
            raise ConnectionError("sink did not acknowledge")
        elapsed = time.perf_counter() - start
    return size / elapsed / 2**20


def round_trip(port: int, count: int, size: int = 64, timeout: float = 60.0) -> float:
    """Microseconds per request/response of ``size`` bytes through an echo at ``port``."""
    message = b"x" * size
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(message)  # the first exchange opens the tunnel; not timed
        _read_exact(sock, size)
        start = time.perf_counter()
        for _ in range(count):
            sock.sendall(message)
            _read_exact(sock, size)
        elapsed = time.perf_counter() - start
    return elapsed / count * 1e6


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Block until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")
